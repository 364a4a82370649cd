"""`edge-qwq bench`: accuracy, exits, FLOPs and latency of a bundle vs its teacher, as JSON."""
from __future__ import annotations

import click


@click.command("bench")
@click.option("--bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--data", default=None, type=click.Path(), help="Image folder; its val/ split is measured.")
@click.option("--teacher", default=None, type=click.Path(), help="Teacher folder, timed on the same backend.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Write the JSON here.")
@click.option("--frames", default=None, metavar="DIR|N",
              help="A frames folder (PNGs + boxes.json, e.g. data/frames/score): bench whole frames in tile mode "
                   "(frame-level recall, false alarms, defects located, tiles per frame, early exit vs full "
                   "depth, estimated ms per frame on each Orin). A number N: single crops timed per latency "
                   "path (same as --timed N).")
@click.option("--timed", default=1000, show_default=True, type=click.IntRange(10, 100000),
              help="Single frames timed per latency path (p50/p95/p99) in the crop bench.")
@click.option("--limit", default=None, type=click.IntRange(1, 1000000),
              help="Frame bench: score only the first N frames.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "quantized"]),
              help="Frame bench: the stages to run (auto: quantized when the bundle has them).")
def command(bundle, data, teacher, json_out, frames, timed, limit, precision):
    """Measure BUNDLE in one run and print JSON.

    \b
    Crops (--data): accuracy per exit on DATA/val, full depth and with early exit, exit rates, compute
    ratio, FLOPs and p50/p95/p99 latency per frame, beside the teacher (exported to ONNX and timed on the
    same backend, with the same thread policy) and, for a quantized bundle, the quantized stages; and the
    runtime's overhead over bare ONNX Runtime at full depth. Accuracies are in percent.
    Whole frames (--frames DIR, a tile-mode bundle): each frame with per-tile early exit and at full depth.

    \b
    Examples:
      edge-qwq bench --bundle bundle/ --data data/ --teacher teacher/ --json bench.json
      edge-qwq bench --bundle bundle/ --frames data/frames/score --json frames.json
    """
    import json

    from edge_qwq.console import console

    frames_dir = None
    if frames is not None:
        if frames.isdigit():
            timed = int(frames)
        else:
            frames_dir = frames
    if frames_dir is None and data is None:
        raise click.UsageError("give --data (crop bench) or --frames DIR (whole-frame bench)")
    if frames_dir is not None:
        r = _frame_bench(bundle, frames_dir, limit, precision)
    else:
        from edge_qwq.bench import run_bench
        from edge_qwq.tables import bench_table

        r = run_bench(bundle, data, teacher, frames=timed, log=lambda m: console.print(f"[dim]{m}[/dim]"))
        console.print(bench_table(r))
        if "pruning" in r:
            from edge_runtime.bundle import Bundle

            console.print(f"student {Bundle.open(bundle).manifest.student.pruning.describe()}", highlight=False)
    text = json.dumps(r, indent=2)
    if json_out:
        from edge_runtime.bundle import atomic_write_text

        atomic_write_text(json_out, text + "\n")
        console.print(f"wrote {json_out}")
    else:
        click.echo(text)


def _frame_bench(bundle, frames_dir, limit, precision) -> dict:
    from edge_qwq.console import console, progress_callback
    from edge_qwq.frame_bench import run_frame_bench
    from edge_qwq.tables import frame_bench_table

    with progress_callback("frames") as cb:
        r = run_frame_bench(bundle, frames_dir, limit, precision, progress=cb,
                            log=lambda m: console.print(f"[dim]{m}[/dim]"))
    console.print(frame_bench_table(r))
    return r
