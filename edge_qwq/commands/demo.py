"""`edge-qwq demo`: the whole job, end to end, on the embedded default (ONNX Runtime on the CPU)."""
from __future__ import annotations

import click


@click.command("demo")
@click.option("--workdir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Everything the demo makes goes here (data, teacher, student, bundle, bench.json, video).")
@click.option("--per-class", default=250, show_default=True, type=click.IntRange(8, 100000),
              help="Sample training images per class.")
@click.option("--teacher-epochs", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--distill-epochs", default=45, show_default=True, type=click.IntRange(1, 1000))
@click.option("--quantize/--no-quantize", default=True, show_default=True, help="Quantize the bundle (mixed).")
@click.option("--frames/--no-frames", default=True, show_default=True,
              help="Also the whole-frame steps: sample 1280x960 frames, train on frame tiles, a tile-mode bundle "
                   "with its fitted frame threshold, the frame bench, a conveyor video, a frame drawn with its boxes.")
@click.option("--fresh", is_flag=True, help="Delete the workdir first instead of reusing finished steps.")
def command(workdir, per_class, teacher_epochs, distill_epochs, quantize, frames, fresh):
    """Sample data -> teacher -> distilled student -> staged ONNX bundle -> quantized stages -> bench
    (JSON) -> decisions on a short video made from val images; then whole camera frames: a tile-mode
    bundle, its frame bench, a conveyor video with changed-tiles-only and one frame drawn with its boxes
    (WORKDIR/frame_with_boxes.png); then one summary table, and WORKDIR/report.html (edge-qwq report: the
    bundle, accuracy per exit, the quantization plan, the latency estimate, the plan and cost), whose path
    it prints.

    The sample data are real texture photographs shipped with scikit-image with synthetic defects.
    Steps whose output already exists in WORKDIR are reused (delete it, or pass --fresh, to redo them).
    """
    from edge_qwq.demo import run_demo

    run_demo(workdir, per_class=per_class, teacher_epochs=teacher_epochs, distill_epochs=distill_epochs,
             quantize_stages=quantize, fresh=fresh, frames=None if frames else {})
