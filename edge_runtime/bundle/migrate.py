"""Older manifests opened in memory as the current schema. The files on disk are never rewritten here, so
their sha256 still hold: the installer may roll back to a bundle an older edge-qwq installed.

Schema 1 -> 2:
- exit_policy: `temperatures_folded_into_heads` -> `temperatures`, `exit_rates` -> `exit_fraction`; a missing
  `early_exit_ok` is derived from `early_exit` by the one rule `ExitPolicy` uses.
- dynamic: `prune_threshold` dropped (nothing pruned; a pruning step will write its own).
- student: gains `awq_groups` (a top-level `awq_groups` list, if any, moves there).
- quantization: the nested score dicts become flat fields with units; `fp32_agreement` (percent) ->
  `fp32_agreement_pct`.
- calibration: the per-stage `hidden` details are dropped (`hidden_range` stays); no stored samples.
- the top-level `opset` is dropped (each graph carries its own).
"""
from __future__ import annotations

import copy
from collections.abc import Callable

from edge_runtime.bundle.manifest import SCHEMA_VERSION


def migrate(raw: dict) -> tuple[dict, int]:
    """(manifest dict in the current schema, the schema it was written in). ValueError for an unknown one."""
    version = raw.get("schema_version")
    start = version
    d = copy.deepcopy(raw)
    while version != SCHEMA_VERSION:
        step = STEPS.get(version)
        if step is None:
            raise ValueError(f"unknown schema {version}")
        d = step(d)
        version = d["schema_version"]
    return d, start


def _v1_to_v2(d: dict) -> dict:
    from edge_runtime.executor import ok_thresholds_for

    pol = d.get("exit_policy") or {}
    early = pol.get("early_exit")
    n = max(len(d.get("stages") or []) - 1, 0)
    if early is None:
        from edge_runtime.executor import default_thresholds

        early = default_thresholds(n)[0]
    d["exit_policy"] = {"early_exit": early,
                        "early_exit_ok": pol.get("early_exit_ok") or ok_thresholds_for(early),
                        "temperatures": pol.get("temperatures_folded_into_heads"),
                        "exit_fraction": pol.get("exit_rates")}
    d["dynamic"] = {"reuse_window": int((d.get("dynamic") or {}).get("reuse_window", 0))}
    groups = d.pop("awq_groups", None) or []
    if d.get("student") is not None:
        d["student"]["awq_groups"] = [{"norm": g[0], "linears": list(g[1])} if isinstance(g, (list, tuple)) else g
                                      for g in groups]
    if d.get("quantization"):
        d["quantization"] = _quantization_v1(d["quantization"])
    if d.get("calibration"):
        c = d["calibration"]
        c.pop("hidden", None)
        c.setdefault("samples", None)
        c.setdefault("samples_count", 0)
    d.pop("opset", None)
    d["schema_version"] = 2
    return d


def _quantization_v1(q: dict) -> dict:
    fp32, quant, wb = q.get("fp32", {}), q.get("quantized", {}), q.get("weight_bytes", {})
    return {"mode": q["mode"], "trt_version": q["trt_version"], "calibration_method": q.get("calibration_method", ""),
            "plan": q.get("plan", {}), "eval_images": 0,
            "fp32_accuracy_pct": fp32.get("accuracy", 0.0),
            "fp32_accuracy_early_exit_pct": fp32.get("accuracy_early_exit", 0.0),
            "accuracy_pct": quant.get("accuracy", 0.0),
            "accuracy_early_exit_pct": quant.get("accuracy_early_exit", 0.0),
            # schema 1 wrote this in percent (calib.evaluate.Scores), whatever its comment said
            "fp32_agreement_pct": float(q.get("fp32_agreement", quant.get("fp32_agreement", 100.0))),
            "weight_bytes_fp32": wb.get("fp32", 0), "weight_bytes_quantized": wb.get("quantized", 0),
            "opset": q.get("opset"), "report": q.get("report", "quant_report.json")}


STEPS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2}
