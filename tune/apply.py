"""Write a chosen configuration into a bundle's manifest: its exit policy, its reuse settings and where they
came from (`tuning`). The manifest gets a new digest, so a new version; a signature that no longer holds is
removed and the caller is told (sign it again with `edge-qwq sign`). Files other than the manifest are not
touched, and their hashes are checked first."""
from __future__ import annotations

import os
from datetime import datetime, timezone

from edge_runtime.bundle import Bundle, TuningSpec


def apply_params(bundle_path: str | os.PathLike, params: dict, exit_rates: list[float],
                 record: dict) -> tuple[Bundle, str, str | None]:
    """(the bundle, its version before, the signature note or None). exit_rates: the share leaving at each
    exit under the new policy (the judge split's), written as exit_policy.exit_fraction for `estimate`."""
    b = Bundle.open(bundle_path)  # verifies every file before anything is written
    before = b.version
    m = b.manifest
    m.exit_policy.early_exit = [round(float(v), 6) for v in params["early_exit"]]
    m.exit_policy.early_exit_ok = [round(float(v), 6) for v in params["early_exit_ok"]]
    m.exit_policy.exit_fraction = [round(float(r), 4) for r in exit_rates[:-1]]
    m.dynamic.reuse_window = int(params["reuse_window"])
    m.dynamic.reuse_threshold = round(float(params["reuse_threshold"]), 4)
    m.tuning = TuningSpec(base_version=before, params=params,
                          time=datetime.now(timezone.utc).isoformat(timespec="seconds"), **record)
    note = b.save()
    return b, before, note
