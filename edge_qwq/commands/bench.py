"""`edge-qwq bench`: accuracy, exits, FLOPs and latency of a bundle vs its teacher, as JSON."""
from __future__ import annotations

import click


@click.command("bench")
@click.option("--bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--data", required=True, type=click.Path(), help="Image folder; its val/ split is measured.")
@click.option("--teacher", default=None, type=click.Path(), help="Teacher folder, timed on the same backend.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Write the JSON here.")
@click.option("--frames", default=1000, show_default=True, type=click.IntRange(10, 100000),
              help="Single frames timed per latency path (p50/p95/p99).")
def command(bundle, data, teacher, json_out, frames):
    """Measure BUNDLE on DATA/val in one run: accuracy per exit, full depth and with early exit, exit
    rates, compute ratio, FLOPs and p50/p95/p99 latency per frame, beside the teacher (exported to ONNX
    and timed on the same backend, with the same thread policy) and, for a quantized bundle, the
    quantized stages; and the runtime's overhead over bare ONNX Runtime at full depth (same sessions,
    same options), in percent. Accuracies are in percent.

    \b
    Example:
      edge-qwq bench --bundle bundle/ --data data/ --teacher teacher/ --json bench.json
    """
    import json

    from edge_qwq.bench import run_bench
    from edge_qwq.console import console
    from edge_qwq.tables import bench_table

    r = run_bench(bundle, data, teacher, frames=frames, log=lambda m: console.print(f"[dim]{m}[/dim]"))
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
