"""`edge-qwq build`: teacher + data -> a device-ready bundle; on the device, the TensorRT engines."""
from __future__ import annotations

import click

from edge_qwq.commands import frame_size_callback

TARGETS = ("orin", "orin-agx", "orin-nx", "orin-nano")  # `orin`: checked against the smallest, the Nano


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
@click.option("--trt-version", default=None,
              help="TensorRT on the device, for the lint and the quantization: by default the installed one where "
                   "TensorRT is installed (on the device), else 10.3 (JetPack 6.1/6.2; JetPack 6.0: 8.6).")
@click.option("--budget-ms", default=15.0, show_default=True, type=float, help="Per-frame latency budget.")
@click.option("--dla", "dla_core", default=None, type=int, help="Build for this DLA core (GPU fallback); "
              "AGX Orin and Orin NX only.")
@click.option("--workspace-mb", default=512, show_default=True, type=int, help="TensorRT builder workspace.")
@click.option("--frame-size", default=None, metavar="WIDTHxHEIGHT", callback=frame_size_callback(),
              help="Tile bundles: the largest camera frame the engines take; the batch profile runs from 1 tile to "
                   "this frame's tile count (default 1920x1080; with --dla the batch is fixed at that count).")
@click.option("--frames", "frames_dir", default=None, type=click.Path(file_okay=False),
              help="Whole camera frames (a folder with train/ and fit/, as `data sample --frames` writes): build a "
                   "tile-mode bundle: the student is trained on frame tiles, exported in tile mode, and its "
                   "frame-level threshold fitted on FRAMES/fit (docs/tiles.md).")
@click.option("--force", is_flag=True, help="Replace an existing bundle / student; rebuild existing engines.")
def command(teacher, data, out, bundle, target, student_out, epochs, budget, mode, max_drop, trt_version, budget_ms,
            dla_core, workspace_mb, frame_size, frames_dir, force):
    """Distil TEACHER on DATA, export the staged bundle, quantize it, lint it for TensorRT, estimate its
    latency on TARGET, then build the TensorRT engines where TensorRT is present (on the device).
    Elsewhere the bundle is complete and the engines are built on the device.

    \b
    Examples:
      edge-qwq build --teacher teacher/ --data data/ --target orin --out bundle/    # workstation
      edge-qwq build --target orin --bundle bundle/                                 # on the Orin
    """
    from pathlib import Path

    from edge_qwq import pipeline
    from edge_qwq.console import console
    from engine_builder.build import installed_trt_version

    trt_version = trt_version or installed_trt_version() or "10.3"  # on the device: lint for what it has
    if bundle is None:
        if not (teacher and data and out):
            raise click.UsageError("give --teacher, --data and --out (a new bundle), or --bundle (an existing one)")
        if frames_dir:
            from edge_runtime.frame_eval import load_frames

            load_frames(Path(frames_dir) / "train"), load_frames(Path(frames_dir) / "fit")  # refused up front
        _make_bundle(teacher, data, out, student_out, epochs, budget, target, mode, max_drop, trt_version, force,
                     frames_dir)
        bundle = out
    elif mode != "none":
        _lint_or_fail(bundle, trt_version)
    _estimate_or_fail(bundle, target, budget_ms, frame_size)
    console.print(pipeline.engines(bundle, **_engine_options(dla_core, workspace_mb, force, frame_size)))
    console.print(f"[bold]bundle ready:[/bold] {bundle}")


def _make_bundle(teacher, data, out, student_out, epochs, budget, target, mode, max_drop, trt_version,
                 force, frames_dir=None) -> None:
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
    if frames_dir:
        from export.frame_training import frame_tune_student

        tiles_student = Path(f"{student_out}-tiles")
        refuse_non_empty(tiles_student, force)
        with pipeline.step("train on frame tiles", timings):
            frame_tune_student(student_out, data, Path(frames_dir) / "train", tiles_student)
        student_out = tiles_student
    with pipeline.step("export", timings):
        pipeline.export_student(student_out, out, force=force)
    if mode != "none":
        with pipeline.step("quantize", timings):
            pipeline.quantize(out, data, mode=mode, trt_version=trt_version, max_drop=max_drop)
        _lint_or_fail(out, trt_version)
    if frames_dir:
        from calib.frame_threshold import fit_frame_threshold
        from edge_qwq.console import console

        with pipeline.step("fit the frame threshold", timings):
            spec = fit_frame_threshold(out, Path(frames_dir) / "fit")
            for p, t in spec.threshold.items():
                console.print(f"{p}: frame threshold {t:.6f}, false alarms on the fitting frames "
                              f"{spec.measured[p]['false_alarm_pct']:.1f} %", highlight=False)


def _lint_or_fail(bundle, trt_version: str) -> None:
    from edge_qwq import pipeline
    from edge_runtime.errors import EdgeError

    findings = pipeline.lint(bundle, trt_version)
    if findings:
        raise EdgeError(f"the bundle breaks {len(findings)} TensorRT rule(s) listed above")


def _estimate_or_fail(bundle, target: str, budget_ms: float, frame_size=None) -> None:
    from edge_qwq import pipeline
    from edge_runtime.bundle import Bundle
    from edge_runtime.errors import EdgeError

    spec = Bundle.open(bundle).input
    if spec.mode == "tile":  # the budget holds per camera frame, not per tile: say what fits, do not refuse
        from edge_qwq.console import console
        from engine_builder.estimate import estimate_frame
        from engine_builder.targets import get_target

        hw = frame_size or spec.frame_size or (1080, 1920)
        e = estimate_frame(bundle, get_target(target).name, frame_size=hw, budget_ms=budget_ms)
        verdict = "within" if e["within_budget"] else f"OVER; {e['fps_mean']:.0f} frames per second fit"
        console.print(f"estimated per {e['frame']} frame on {e['target']} ({e['tiles']} tiles): {e['mean_ms']:.2f} ms "
                      f"mean, {e['worst_ms']:.2f} ms if every tile ran to full depth; {verdict} the {budget_ms:g} ms "
                      "budget", highlight=False)
        return
    est = pipeline.estimate(bundle, target, budget_ms)
    if est and est["early_exit_ms"] > budget_ms:
        raise EdgeError(f"even the estimate ({est['early_exit_ms']:.1f} ms per frame with early exit) exceeds "
                        f"the {budget_ms:g} ms budget on {target}; use a smaller student or a faster target")


def _engine_options(dla_core, workspace_mb: int, force: bool, frame_size: tuple[int, int] | None = None) -> dict:
    from engine_builder.plan import BuildOptions

    return {"options": BuildOptions(workspace_mb=workspace_mb, dla_core=dla_core, frame_size=frame_size),
            "force": force}
