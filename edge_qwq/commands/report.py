"""`edge-qwq report`: one self-contained HTML page about a bundle (edge_qwq/report.py)."""
from __future__ import annotations

import click

from edge_qwq.commands import finite, frame_size_callback


@click.command("report")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--bench", default=None, type=click.Path(dir_okay=False),
              help="JSON of `edge-qwq bench --json` (or `bench --frames --json` for a tile bundle): accuracy per "
                   "exit and exit rates as measured. Without it: the figures the bundle records.")
@click.option("--tune", default=None, type=click.Path(),
              help="The tuning result: a tune.json, or the folder `edge-qwq tune --out` wrote. For a study in a "
                   "shared storage, run `edge-qwq tune --bundle B --data D --trials 0 --storage URL --study NAME "
                   "--out DIR` first (it reads the study, adds no trial) and give DIR. Refused when it tunes "
                   "another bundle version.")
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The page to write.")
@click.option("--cameras", default=8, show_default=True, type=click.IntRange(min=1),
              help="Cameras on the line (plan and cost).")
@click.option("--fps", default=30.0, show_default=True, type=finite(0.0, None, min_open=True),
              help="Frames per second per camera (plan and cost).")
@click.option("--frame-size", default=None, metavar="WIDTHxHEIGHT", callback=frame_size_callback(),
              help="Camera frame size for the estimate and the plan (tile bundles: default 1920x1080).")
@click.option("--budget-ms", default=15.0, show_default=True, type=finite(0.0, None, min_open=True),
              help="Latency budget per frame, ms.")
def command(bundle, bench, tune, out, cameras, fps, frame_size, budget_ms):
    """Write one self-contained HTML page about BUNDLE for the production engineer: accuracy per exit and
    exit rates, the quantization plan and per-layer sensitivity, the latency estimate per stage against the
    budget on each Jetson Orin, the plan and cost table for the line, and (with --tune) the tuning Pareto
    front. Images are embedded: the page opens offline, and fetches nothing.

    \b
    Examples:
      edge-qwq report --bundle bundle/ --bench bench.json --out report.html
      edge-qwq report --bundle bundle/ --bench bench.json --tune tune_out/ --cameras 8 --fps 30 \\
          --frame-size 1920x1080 --out report.html
    """
    from edge_qwq.report import write_report

    path, warnings = write_report(bundle, out, bench=bench, tune=tune, cameras=cameras, fps=fps,
                                  frame_size=frame_size, budget_ms=budget_ms)
    for w in warnings:
        click.echo(f"edge-qwq: warning: {w}", err=True)
    click.echo(f"report: {path} ({path.stat().st_size / 1024:.0f} KB)")
