"""Model benchmark: student vs teacher, early exit vs full depth, FP32 vs quantized; prints JSON.

    python bench/model_bench.py [--workdir demo_out] [--frames 1000]

Runs on the demo's artefacts (run `make demo` first): WORKDIR/bundle, WORKDIR/data (sample data: real
scikit-image texture photographs with synthetic defects) and WORKDIR/teacher. Every figure comes from
one run on one machine; the ratios are what to compare across machines, not the absolute times.
Issue 8's tail targets are checked in `tail`: full-depth p99 <= 1.5 x its p50, early-exit p99 <= 1.2 x
full-depth p99, runtime overhead over bare ONNX Runtime (same sessions and options) <= 3 %.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ratios(r: dict) -> dict:
    lat, flops = r["latency_ms"], r["flops"]
    out = {"early_exit_vs_full_p50": round(lat["early_exit"]["p50"] / lat["student_full"]["p50"], 4),
           "compute_ratio": r["compute_ratio"]}
    if lat.get("teacher"):
        out["student_early_exit_vs_teacher_p50"] = round(lat["early_exit"]["p50"] / lat["teacher"]["p50"], 4)
        out["student_full_vs_teacher_p50"] = round(lat["student_full"]["p50"] / lat["teacher"]["p50"], 4)
        out["student_vs_teacher_flops"] = round(flops["student_full"] / flops["teacher"], 4)
    if r.get("teacher_ort_default"):  # the teacher at its own best thread settings (one session, ORT defaults)
        t = r["teacher_ort_default"]["latency_ms"]
        out["student_full_vs_teacher_ort_default_p50"] = round(lat["student_full"]["p50"] / t["p50"], 4)
    if "quantized" in r:
        q = r["quantized"]["latency_ms"]
        out["quantized_vs_fp32_full_p50"] = round(q["student_full"]["p50"] / lat["student_full"]["p50"], 4)
    return out


def tail(r: dict) -> dict:
    """Issue 8's acceptance: a tight tail and a thin runtime, from one run."""
    full, early = r["latency_ms"]["student_full"], r["latency_ms"]["early_exit"]
    out = {"full_p99_vs_p50": round(full["p99"] / full["p50"], 4),
           "early_exit_p99_vs_full_p99": round(early["p99"] / full["p99"], 4),
           "runtime_overhead_pct": r["runtime_overhead"]["overhead_pct"]}
    out["ok"] = (out["full_p99_vs_p50"] <= 1.5 and out["early_exit_p99_vs_full_p99"] <= 1.2
                 and out["runtime_overhead_pct"] <= 3.0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("demo_out"))
    p.add_argument("--frames", type=int, default=1000, help="single frames timed per latency path")
    args = p.parse_args(argv)
    bundle, data, teacher = args.workdir / "bundle", args.workdir / "data", args.workdir / "teacher"
    if not (bundle / "manifest.json").is_file():
        print(f"no bundle at {bundle}: run `make demo` first", file=sys.stderr)
        return 2
    from edge_qwq.bench import run_bench

    r = run_bench(bundle, data, teacher if teacher.is_dir() else None, frames=args.frames,
                  log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"ratios": ratios(r), "tail": tail(r), **r}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
