"""`edge-qwq export`: student -> bundle of staged ONNX graphs."""
from __future__ import annotations

import click


@click.command("export")
@click.option("--student", required=True, type=click.Path(), help="Student folder (from distill).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle (only once the new one is complete).")
@click.option("--input-mode", default="auto", show_default=True, type=click.Choice(["auto", "resize", "tile"]),
              help="How the runtime shows a frame to the model: resize (the whole frame scaled to the input) or "
                   "tile (native-scale tiles of the input size, for whole camera frames). auto: tile for a student "
                   "trained with `frames train`, else resize.")
@click.option("--tile-overlap", default=0.25, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Tile mode: the share of a tile its neighbour also covers.")
def command(student, out, force, input_mode, tile_overlap):
    """Export STUDENT as one ONNX graph per stage plus the bundle manifest. Each stage is checked with
    onnx.checker and against torch (max abs error <= 1e-4) before the bundle is moved into place.

    \b
    Example:
      edge-qwq export --student student/ --out bundle/
    """
    from edge_qwq.console import console
    from export.onnx_export import export_bundle
    from export.student import load_student

    bundle = export_bundle(load_student(student), out, force=force,
                           progress=lambda k, n: console.print(f"  stage {k + 1}/{n} exported and checked"),
                           input_mode=None if input_mode == "auto" else input_mode, tile_overlap=tile_overlap)
    for s in bundle.stages:
        console.print(f"  {s.file}: {s.flops / 1e6:.1f} MFLOPs, max |onnx - torch| = "
                      f"{s.max_abs_error_vs_torch:.1e}")
    mode = bundle.input.mode
    console.print(f"bundle written to {out} (model version {bundle.version}, input mode {mode}"
                  + (f", tile overlap {bundle.input.tile_overlap:g})" if mode == "tile" else ")"))
    if mode == "tile" and bundle.manifest.frames is None:
        console.print("next: fit its frame-level threshold with `edge-qwq frames fit --bundle "
                      f"{out} --frames FRAMES/fit`")
