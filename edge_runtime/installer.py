"""Installed bundles for the service: switch atomically, keep the last N, roll back to the previous one.

Layout of an install root (default /var/lib/edge-qwq)::

    ROOT/bundles/<model_version>-<UTC time>/   verified copies, oldest first by time
    ROOT/current  -> bundles/...               what the service runs (a symlink, swapped with os.replace)
    ROOT/previous -> bundles/...               where a rollback goes

A rollback marks the bad bundle REJECTED (a file in its folder), points `current` at `previous` and
`previous` at the newest older bundle that is not rejected.

    >>> install("bundle/", "/var/lib/edge-qwq", keep=3)      # doctest: +SKIP
    >>> rollback("/var/lib/edge-qwq", reason="agreement 91%")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from edge_runtime.bundle import Bundle
from edge_runtime.errors import EdgeError

REJECTED = "REJECTED"


class InstallError(EdgeError):
    """A bundle cannot be installed or rolled back."""


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _age_key(p: Path) -> str:
    return p.name.rsplit("-", 1)[-1]


def installed(root: str | os.PathLike) -> list[Path]:
    """Installed bundle folders, oldest first."""
    d = Path(root) / "bundles"
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_age_key)


def link_target(root: str | os.PathLike, name: str) -> Path | None:
    link = Path(root) / name
    return (Path(root) / os.readlink(link)).resolve() if link.is_symlink() else None


def switch_link(root: Path, name: str, target: Path | None) -> None:
    """Point ROOT/name at `target` atomically (a temp symlink renamed over it); None removes it."""
    link = root / name
    if target is None:
        link.unlink(missing_ok=True)
        return
    tmp = root / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, root), tmp)
    os.replace(tmp, link)


def install(bundle: str | os.PathLike, root: str | os.PathLike, keep: int = 3, trusted_key: str | None = None,
            report=None) -> Path:
    """Copy `bundle` into ROOT, verify the copy, run it on a few inputs (`trial_run`), and only then make it
    `current` (the old one becomes `previous`). With `trusted_key`, only a bundle that key signed. `report`
    (a callable) receives the trial run's summary."""
    from edge_runtime.trial_run import trial_run

    if keep < 1:
        raise InstallError(f"--keep must be at least 1, got {keep}")
    src = Bundle.open(bundle, trusted_key=trusted_key)  # BundleError (one line): not a bundle, edited, unsigned
    root = Path(root)
    try:
        (root / "bundles").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InstallError(f"{root}: cannot create the install root ({e.strerror})") from None
    dest = root / "bundles" / f"{src.version}-{_stamp()}"
    tmp = root / "bundles" / f".incoming-{dest.name}"
    try:
        shutil.copytree(src.root, tmp, ignore=shutil.ignore_patterns(REJECTED))
        Bundle.open(tmp, trusted_key=trusted_key)  # the copy is checked, not only the source
        try:
            summary = trial_run(tmp, trusted_key)
        except EdgeError as e:
            raise InstallError(f"{bundle} does not run here, so it was not installed ({e}); "
                               f"{_current_note(root)}") from None
        if report is not None:
            report(summary)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = link_target(root, "current")
    if old is not None and old.is_dir():
        switch_link(root, "previous", old)
    switch_link(root, "current", dest)
    prune(root, keep)
    return dest


def _current_note(root: Path) -> str:
    cur = link_target(root, "current")
    return f"current is still {cur.name}" if cur is not None else "nothing is installed yet"


def prune(root: Path, keep: int) -> list[Path]:
    """Delete the oldest bundles beyond `keep`, never `current` or `previous`."""
    protected = {link_target(root, "current"), link_target(root, "previous")}
    removed = []
    for p in installed(root)[:-keep] if keep else []:
        if p.resolve() not in protected:
            shutil.rmtree(p)
            removed.append(p)
    return removed


def rollback(root: str | os.PathLike, reason: str = "") -> tuple[Path, Path]:
    """Switch `current` to `previous`; mark the old current REJECTED. Returns (from, to)."""
    root = Path(root)
    cur, prev = link_target(root, "current"), link_target(root, "previous")
    if cur is None or prev is None or not prev.is_dir():
        raise InstallError(f"{root}: no previous bundle to roll back to")
    (cur / REJECTED).write_text(json.dumps({"time": time.time(), "reason": reason}) + "\n")
    switch_link(root, "current", prev)
    older = [p for p in installed(root) if _age_key(p) < _age_key(prev) and not (p / REJECTED).exists()]
    switch_link(root, "previous", older[-1] if older else None)
    return cur, prev


def resolve(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(bundle folder, install root or None) for --bundle: an install root, ROOT/current, or a bundle."""
    p = Path(path)
    if (p / "current").is_symlink():
        return (p / "current").resolve(), p
    if p.is_symlink() and p.name == "current" and (p.parent / "bundles").is_dir():
        return p.resolve(), p.parent
    return p, None
