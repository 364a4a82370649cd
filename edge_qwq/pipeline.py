"""The pipeline's steps, chained by `edge-qwq build` and `edge-qwq demo`. No algorithm lives here:
each step calls one package and reports what it did."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from edge_qwq.console import console


@contextmanager
def step(name: str, timings: dict):
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 1)
    console.print(f"[green]done[/green] {name} in {timings[name]:.1f} s")


def distill_student(teacher, data, out, epochs: int, force: bool = True) -> dict:
    from edge_qwq.tables import exit_table
    from export.distill import DistillConfig, distill

    m = distill(teacher, data, out, config=DistillConfig(epochs=epochs))
    console.print(exit_table(m))
    return m


def export_student(student, bundle, force: bool = True):
    from export.onnx_export import export_bundle
    from export.student import load_student

    b = export_bundle(load_student(student), bundle, force=force)
    worst = max(s.max_abs_error_vs_torch or 0.0 for s in b.stages)
    console.print(f"{len(b.stages)} stages exported, max |onnx - torch| = {worst:.1e}, "
                  f"{sum(s.flops for s in b.stages) / 1e6:.1f} MFLOPs at full depth")
    return b


def quantize(bundle, data, mode: str = "mixed", trt_version: str = "10.3", max_drop: float = 0.3) -> dict:
    """Quantize with calib, calibrating on DATA/calib."""
    from calib import quantize_bundle

    report = quantize_bundle(bundle, Path(data) / "calib", mode=mode, trt_version=trt_version, max_drop=max_drop)
    console.print(f"quantized ({mode}, TensorRT {trt_version}); report: {Path(bundle) / 'quant_report.json'}")
    return report


def lint(bundle, trt_version: str = "10.3") -> list:
    from calib.lint import lint_bundle

    findings = lint_bundle(bundle, trt_version=trt_version)
    console.print("TensorRT lint: " + ("clean" if not findings else f"{len(findings)} finding(s)"))
    for f in findings:
        console.print(f"  {f}")
    return findings


def estimate(bundle, target: str, budget_ms: float) -> dict:
    from engine_builder.estimate import estimate_bundle, format_estimate

    est = estimate_bundle(bundle, target, budget_ms)
    console.print(format_estimate(est))
    return est


def engines(bundle, **options) -> str:
    """Build the TensorRT engines where TensorRT is installed; elsewhere one sentence on what is left."""
    from engine_builder.build import build_engines_or_explain

    return build_engines_or_explain(bundle, **options)
