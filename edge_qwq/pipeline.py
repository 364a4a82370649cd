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


ORINS = ("orin-agx", "orin-nx", "orin-nano")


def size_student(teacher, data, budget: str | None = None, target: str | None = None,
                 overrides: dict | None = None) -> tuple[dict, int]:
    """The student's shape for a budget (export/sizing.py): prints the shape chosen and why.
    Returns (StudentConfig keyword arguments, the teacher's FLOPs)."""
    from edge_runtime.image_folder import open_split
    from export.shapes import Shape, exits_for, heads_for, shape_cost
    from export.sizing import choose_shape, parse_budget, teacher_flops
    from export.teacher_train import _size

    b = parse_budget(budget, target)
    size, classes = _size(data), open_split(data, "train").classes
    t_flops = teacher_flops(teacher)
    choice = choose_shape(b, size, len(classes), t_flops, latency_ms=_full_depth_ms(b.target) if b.target else None)
    console.print(f"[bold]student shape[/bold]: {choice.reason()}")
    cfg = choice.shape.student_config()
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        cfg.update(given)
        if "dim" in given and "heads" not in given:
            cfg["heads"] = heads_for(cfg["dim"])
        if "depth" in given and "exits" not in given:
            cfg["exits"] = exits_for(cfg["depth"])
        shape = Shape(cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"], tuple(cfg["exits"]))
        flops = shape_cost(shape, size, len(classes)).flops
        over = "" if flops <= choice.limit or choice.unit != "FLOPs" else ", OVER the budget (given by hand)"
        console.print(f"[bold]shape given by hand[/bold] ({', '.join(given)}): {shape.describe()}, "
                      f"{flops / 1e6:.1f} MFLOPs ({flops / t_flops:.3f} of the teacher){over}")
    return cfg, t_flops


def _full_depth_ms(target: str):
    from engine_builder.estimate import estimate_layer_costs

    return lambda cost: estimate_layer_costs(cost.stages, target, "fp16")["full_ms"]


def student_row(name: str, config, metrics: dict) -> dict:
    """A row of tables.student_table for a trained student (config: a StudentConfig)."""
    from engine_builder.estimate import estimate_layer_costs
    from export.shapes import Shape, shape_cost

    cost = shape_cost(Shape.of(config), config.image_size, config.num_classes)
    rates = tuple(metrics["val_exit_rates"][:-1])
    return {"name": name, "shape": Shape.of(config).describe(), "flops": cost.flops,
            "exit_accuracy": metrics["val_accuracy_per_exit"],
            "early_exit_accuracy": metrics["val_early_exit_accuracy"], "exit_rates": metrics["val_exit_rates"],
            "ms": {t: estimate_layer_costs(cost.stages, t, "fp16", rates)["early_exit_ms"] for t in ORINS}}


def print_student_report(rows: list[dict], teacher_flops: int | None, teacher_accuracy: float | None,
                         title: str) -> None:
    from edge_qwq.tables import student_table

    teacher = None if teacher_flops is None else {"flops": teacher_flops, "accuracy": teacher_accuracy}
    console.print(student_table(rows, teacher, title=title))
    console.print("[dim]accuracy on DATA/val; early exit with the default exit policy; latency: roofline estimate, "
                  "FP16, at the exit rates shown (`edge-qwq estimate` gives a bundle's, quantized)[/dim]")


def distill_student(teacher, data, out, epochs: int, force: bool = True, budget: str | None = None,
                    target: str | None = None, overrides: dict | None = None, nproc: int = 1,
                    device: str = "cpu", seed: int = 0, temperature: float = 2.0, alpha: float = 0.5) -> dict:
    """Size the student for the budget, distil it (on `nproc` processes), print the report."""
    from export.distill import DistillConfig, distill
    from export.student import load_student

    shape, t_flops = size_student(teacher, data, budget, target, overrides)
    config = DistillConfig(epochs=epochs, seed=seed, temperature=temperature, alpha=alpha, device=device)
    ranked = _torchrun_ranks(device)
    if ranked is not None:
        from export.distributed import distill_ranked

        m = distill_ranked(teacher, data, out, shape, config, True, ranked)
        if ranked.rank != 0:
            return m
    elif nproc > 1:
        from export.distributed import run_distributed

        console.print(f"distilling on {nproc} processes ({'nccl' if device.startswith('cuda') else 'gloo'})")
        m = run_distributed(teacher, data, out, shape, config, nproc)
    else:
        m = distill(teacher, data, out, student_config=shape, config=config)
    m["teacher_flops"] = t_flops
    student = load_student(out)
    print_student_report([student_row("student", student.config, m)], t_flops, m.get("teacher_val_accuracy"),
                         title=f"student (accuracy on {m['val_images']} val images)")
    return m


def _torchrun_ranks(device: str):
    from export.distributed import from_torchrun

    return from_torchrun(device)


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
