"""`edge-qwq quantize`: INT8 / AWQ INT4 / mixed-precision stages for a bundle, ready for TensorRT."""
from __future__ import annotations

import click


@click.command("quantize")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder (from export/build).")
@click.option("--calib", "calib_dir", required=True, type=click.Path(),
              help="Labelled calibration images: DIR/calib/<class>/*.png (or DIR/<class>/*.png).")
@click.option("--mode", default="mixed", show_default=True, type=click.Choice(["int8", "int4", "mixed"]),
              help="mixed: FP16 for the most sensitive 10%, AWQ INT4 while --max-drop holds, INT8 elsewhere.")
@click.option("--trt-version", default="10.3", show_default=True,
              help="TensorRT on the device (JetPack 6.1/6.2: 10.3); below 10 there is no INT4.")
@click.option("--max-drop", default=0.3, show_default=True, type=float,
              help="Accuracy budget in points (full depth and with early exit).")
def command(bundle, calib_dir, mode, trt_version, max_drop):
    """Quantize BUNDLE's stages and write stages/stage{k}.q.onnx and quant_report.json.

    \b
    Example:
      edge-qwq quantize --bundle bundle/ --calib data/ --mode mixed --trt-version 10.3
    """
    from rich.console import Console

    from calib import quantize_bundle

    console = Console(stderr=True)
    last = {"step": None}

    def progress(step: str, done: int, total: int) -> None:
        if step != last["step"]:
            console.print(f"[dim]quantize:[/dim] {step}")
            last["step"] = step

    r = quantize_bundle(bundle, calib_dir, mode=mode, trt_version=trt_version, max_drop=max_drop, progress=progress)
    counts = {}
    for layer in r["layers"]:
        counts[layer["precision"]] = counts.get(layer["precision"], 0) + 1
    wb, t4 = r["weight_bytes"], r["int4_totals"]
    click.echo(f"quantized {bundle} ({r['mode']}, TensorRT {r['trt_version']}, calibration "
               f"{r['calibration_method']}): layers {', '.join(f'{n} {p}' for p, n in sorted(counts.items()))}")
    click.echo(f"accuracy {r['fp32']['accuracy']:.2f} -> {r['quantized']['accuracy']:.2f} full-depth, "
               f"{r['fp32']['accuracy_early_exit']:.2f} -> {r['quantized']['accuracy_early_exit']:.2f} with early "
               f"exit ({r['eval_images']} images); weights {wb['quantized']} / {wb['fp32']} bytes ({wb['ratio']:.0%})")
    if t4["layers"]:
        click.echo(f"INT4 output error (held-out): AWQ {t4['awq_error']:.4g} vs round-to-nearest {t4['rtn_error']:.4g}")
    for note in r.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
