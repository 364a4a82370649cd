"""`edge-qwq build`: teacher + data -> a device-ready bundle, saying plainly what is left for the device."""
from __future__ import annotations

import click

TARGETS = {"orin": "orin-agx", "orin-agx": "orin-agx", "orin-nx": "orin-nx", "orin-nano": "orin-nano"}


@click.command("build")
@click.option("--teacher", required=True, type=click.Path(), help="Teacher folder (transformers save_pretrained).")
@click.option("--data", required=True, type=click.Path(), help="Image folder with train/, val/ and calib/.")
@click.option("--target", default="orin", show_default=True, type=click.Choice(list(TARGETS)),
              help="Device; `orin` means the AGX Orin.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--student-out", default=None, type=click.Path(file_okay=False),
              help="Where the distilled student goes (default: OUT.student).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 10000), help="Distillation epochs.")
@click.option("--quantize", "mode", default="mixed", show_default=True,
              type=click.Choice(["mixed", "int8", "int4", "none"]), help="Quantization mode.")
@click.option("--trt-version", default="10.3", show_default=True, help="TensorRT on the device (JetPack 6.1/6.2: 10.3).")
@click.option("--budget-ms", default=15.0, show_default=True, type=float, help="Per-frame latency budget.")
@click.option("--force", is_flag=True, help="Replace an existing bundle / student.")
def command(teacher, data, target, out, student_out, epochs, mode, trt_version, budget_ms, force):
    """Distil TEACHER on DATA, export the staged bundle, quantize it, lint it for TensorRT, estimate its
    latency on TARGET and build the TensorRT engines when TensorRT is present (on the device);
    elsewhere the bundle is complete and the engines are built on the device.

    \b
    Example:
      edge-qwq build --teacher teacher/ --data data/ --target orin --out bundle/
    """
    from pathlib import Path

    from edge_qwq import pipeline
    from edge_qwq.console import console
    from edge_qwq.guards import refuse_non_empty
    from edge_runtime.errors import EdgeError
    from export.teacher import load_teacher

    student_out = Path(student_out or f"{Path(out)}.student")
    refuse_non_empty(out, force)
    refuse_non_empty(student_out, force)
    load_teacher(teacher)  # fail fast on a bad teacher, before minutes of work
    timings: dict = {}
    with pipeline.step("distil", timings):
        pipeline.distill_student(teacher, data, student_out, epochs)
    with pipeline.step("export", timings):
        pipeline.export_student(student_out, out, force=force)
    if mode != "none":
        with pipeline.step("quantize", timings):
            pipeline.quantize(out, data, mode=mode, trt_version=trt_version)
        findings = pipeline.lint(out, trt_version)
        if findings:
            raise EdgeError(f"the bundle breaks {len(findings)} TensorRT rule(s); see the list above")
    est = pipeline.estimate(out, TARGETS[target], budget_ms)
    if est and est["early_exit_ms"] > budget_ms:
        raise EdgeError(f"even the estimate ({est['early_exit_ms']:.1f} ms per frame with early exit) exceeds "
                        f"the {budget_ms:g} ms budget on {TARGETS[target]}; use a smaller student or a faster target")
    console.print(pipeline.engines(out))
    console.print(f"[bold]bundle ready:[/bold] {out}")
