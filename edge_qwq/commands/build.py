"""`edge-qwq build`: teacher + data -> a device-ready bundle; on the device, the TensorRT engines."""
from __future__ import annotations

import click

TARGETS = ("orin", "orin-agx", "orin-nx", "orin-nano")  # `orin`: checked against the smallest, the Nano


def _frame_size(ctx, param, value):
    if value is None:
        return None
    from engine_builder.plan import parse_frame_size

    try:
        return parse_frame_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command("build")
@click.option("--teacher", default=None, type=click.Path(), help="Teacher folder (transformers save_pretrained).")
@click.option("--data", default=None, type=click.Path(), help="Image folder with train/, val/ and calib/.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--bundle", default=None, type=click.Path(file_okay=False),
              help="An existing bundle: skip distil/export/quantize, only lint, estimate and build engines "
                   "(the step to run on the Orin).")
@click.option("--target", default="orin", show_default=True, type=click.Choice(TARGETS),
              help="Device for the latency estimate; `orin` checks against the smallest Orin (Nano), so the "
                   "bundle fits any of them.")
@click.option("--student-out", default=None, type=click.Path(file_okay=False),
              help="Where the distilled student goes (default: OUT.student).")
@click.option("--epochs", default=45, show_default=True, type=click.IntRange(1, 10000), help="Distillation epochs.")
@click.option("--budget", default=None, metavar="FRACTION|MSms",
              help="The student's size: a fraction of the teacher's FLOPs (0.1) or a latency on --target (1.5ms; "
                   "roofline, FP16, full depth). Default: 10 % of the teacher's FLOPs, at most 60 MFLOPs.")
@click.option("--quantize", "mode", default="mixed", show_default=True,
              type=click.Choice(["mixed", "int8", "int4", "none"]), help="Quantization mode.")
@click.option("--max-drop", default=0.3, show_default=True, type=float,
              help="Accuracy points the quantized bundle may lose against FP32.")
@click.option("--trt-version", default="10.3", show_default=True,
              help="TensorRT on the device (JetPack 6.1/6.2: 10.3).")
@click.option("--budget-ms", default=15.0, show_default=True, type=float, help="Per-frame latency budget.")
@click.option("--dla", "dla_core", default=None, type=int, help="Build for this DLA core (GPU fallback); "
              "AGX Orin and Orin NX only.")
@click.option("--workspace-mb", default=512, show_default=True, type=int, help="TensorRT builder workspace.")
@click.option("--frame-size", default=None, metavar="WIDTHxHEIGHT", callback=_frame_size,
              help="Tile bundles: the largest camera frame the engines take; the batch profile runs from 1 tile to "
                   "this frame's tile count (default 1920x1080; with --dla the batch is fixed at that count).")
@click.option("--force", is_flag=True, help="Replace an existing bundle / student; rebuild existing engines.")
def command(teacher, data, out, bundle, target, student_out, epochs, budget, mode, max_drop, trt_version, budget_ms,
            dla_core, workspace_mb, frame_size, force):
    """Distil TEACHER on DATA, export the staged bundle, quantize it, lint it for TensorRT, estimate its
    latency on TARGET, then build the TensorRT engines where TensorRT is present (on the device).
    Elsewhere the bundle is complete and the engines are built on the device.

    \b
    Examples:
      edge-qwq build --teacher teacher/ --data data/ --target orin --out bundle/    # workstation
      edge-qwq build --target orin --bundle bundle/                                 # on the Orin
    """
    from edge_qwq import pipeline
    from edge_qwq.console import console

    if bundle is None:
        if not (teacher and data and out):
            raise click.UsageError("give --teacher, --data and --out (a new bundle), or --bundle (an existing one)")
        _make_bundle(teacher, data, out, student_out, epochs, budget, target, mode, max_drop, trt_version, force)
        bundle = out
    elif mode != "none":
        _lint_or_fail(bundle, trt_version)
    _estimate_or_fail(bundle, target, budget_ms)
    console.print(pipeline.engines(bundle, **_engine_options(dla_core, workspace_mb, force, frame_size)))
    console.print(f"[bold]bundle ready:[/bold] {bundle}")


def _make_bundle(teacher, data, out, student_out, epochs, budget, target, mode, max_drop, trt_version,
                 force) -> None:
    from pathlib import Path

    from edge_qwq import pipeline
    from edge_qwq.guards import refuse_non_empty
    from engine_builder.targets import get_target
    from export.sizing import parse_budget
    from export.teacher import load_teacher

    target = get_target(target).name  # `orin`: the smallest, the Nano
    parse_budget(budget, target)  # a bad budget is refused before anything is written

    student_out = Path(student_out or f"{Path(out)}.student")
    refuse_non_empty(out, force)
    refuse_non_empty(student_out, force)
    load_teacher(teacher)  # fail fast on a bad teacher, before minutes of work
    timings: dict = {}
    with pipeline.step("distil", timings):
        pipeline.distill_student(teacher, data, student_out, epochs, budget=budget, target=target)
    with pipeline.step("export", timings):
        pipeline.export_student(student_out, out, force=force)
    if mode != "none":
        with pipeline.step("quantize", timings):
            pipeline.quantize(out, data, mode=mode, trt_version=trt_version, max_drop=max_drop)
        _lint_or_fail(out, trt_version)


def _lint_or_fail(bundle, trt_version: str) -> None:
    from edge_qwq import pipeline
    from edge_runtime.errors import EdgeError

    findings = pipeline.lint(bundle, trt_version)
    if findings:
        raise EdgeError(f"the bundle breaks {len(findings)} TensorRT rule(s) listed above")


def _estimate_or_fail(bundle, target: str, budget_ms: float) -> None:
    from edge_qwq import pipeline
    from edge_runtime.errors import EdgeError

    est = pipeline.estimate(bundle, target, budget_ms)
    if est and est["early_exit_ms"] > budget_ms:
        raise EdgeError(f"even the estimate ({est['early_exit_ms']:.1f} ms per frame with early exit) exceeds "
                        f"the {budget_ms:g} ms budget on {target}; use a smaller student or a faster target")


def _engine_options(dla_core, workspace_mb: int, force: bool, frame_size: tuple[int, int] | None = None) -> dict:
    from engine_builder.plan import BuildOptions

    return {"options": BuildOptions(workspace_mb=workspace_mb, dla_core=dla_core, frame_size=frame_size),
            "force": force}
