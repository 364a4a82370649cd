"""`edge-qwq tune`: find the exit thresholds and reuse settings that suit a line, with Optuna (tune/)."""
from __future__ import annotations

import click

from edge_qwq.commands import finite


@click.command("tune")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle to tune (a resize bundle).")
@click.option("--data", required=True, type=click.Path(), help="Image folder with the tuning and judge splits.")
@click.option("--trials", default=100, show_default=True, type=click.IntRange(0, 100000),
              help="Trials this process adds to the study (0: only read the study and choose).")
@click.option("--target", default="orin-agx", show_default=True,
              type=click.Choice(["orin-agx", "orin-nx", "orin-nano"]), help="Latency is estimated on this module.")
@click.option("--max-drop", default=0.3, show_default=True, type=finite(0.0, 100.0), metavar="POINTS",
              help="The chosen point: the fastest on the Pareto front within this many points of the untuned "
                   "metric (on the tuning split).")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage shared by every worker: sqlite:///study.db, postgresql://user@host/db, or a "
                   "file path (journal file). Default: OUT/study.journal.")
@click.option("--study", default=None, help="Study name (default: edge-qwq-<bundle version>); workers with the same "
                                            "--storage and --study share it.")
@click.option("--out", default="tune_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for tune.json, the plots, the report and the score cache.")
@click.option("--video", default=None, type=click.Path(dir_okay=False),
              help="Video to tune frame reuse on (default: a conveyor made from the tuning split's images).")
@click.option("--tune-split", default="calib", show_default=True, help="Split that scores the trials.")
@click.option("--judge-split", default="val", show_default=True, help="Split the chosen point is reported on.")
@click.option("--metric", default="accuracy", show_default=True, type=click.Choice(["accuracy", "recall"]),
              help="What to keep: accuracy, or defect recall.")
@click.option("--objective", default="pareto", show_default=True, type=click.Choice(["pareto", "weighted"]),
              help="pareto: metric and latency, multi-objective; weighted: the seed's metric - weight x ms.")
@click.option("--weight", default=1.0, show_default=True, type=finite(0.0, None),
              help="--objective weighted: points of the metric one ms is worth.")
@click.option("--measure", is_flag=True, help="Also measure each stage here (ONNX Runtime): a third objective.")
@click.option("--range", "ranges", multiple=True, metavar="NAME=LO:HI",
              help="Narrow a parameter's range (repeatable): early_exit, early_exit_ok (or early_exit_0, ...), "
                   "reuse_window, reuse_threshold; NAME=VALUE fixes it. Defaults in tune/space.py.")
@click.option("--variant", "variants", multiple=True, type=click.Path(),
              help="A pruned variant of the bundle (from `edge-qwq prune` + export) the study may pick instead.")
@click.option("--no-reuse", is_flag=True, help="Tune the exit thresholds only (frame reuse stays off).")
@click.option("--apply", "apply_", is_flag=True,
              help="Write the chosen configuration into the bundle's manifest (a new version; hashes updated).")
@click.option("--trial", default=None, type=click.IntRange(min=0), help="Choose this trial instead.")
@click.option("--report", is_flag=True, help="Also write OUT/report.html (the plots and tables in one page).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Also write the result here.")
def command(bundle, data, trials, target, max_drop, storage, study, out, video, tune_split, judge_split, metric,
            objective, weight, measure, ranges, variants, no_reuse, apply_, trial, report, json_out):
    """Tune BUNDLE's exit thresholds and frame reuse for a line with Optuna: trials are simulated on exit
    scores computed once per image, scored on the tuning split, and the chosen point is reported on the judge
    split.

    \b
    Examples:
      edge-qwq tune --bundle bundle/ --data data/ --trials 100
      edge-qwq tune --bundle bundle/ --data data/ --apply                 # write the chosen point
      edge-qwq tune --bundle bundle/ --data data/ --storage postgresql://tune@db/studies --study line3
      edge-qwq tune --bundle bundle/ --data data/ --trials 0 --trial 42 --apply --report
    """
    import json
    from pathlib import Path

    from edge_qwq.console import console, progress_callback
    from edge_qwq.tuning import TuneRequest, tune_bundle

    req = TuneRequest(bundle, data, trials, target, max_drop, storage, study, out, video, tune_split, judge_split,
                      metric, objective, weight, measure, list(ranges), list(variants), apply_, trial, no_reuse)
    result = tune_bundle(req, say=lambda m: console.print(m, highlight=False), progress=progress_callback)
    from edge_qwq.tune_output import print_result, write_plots, write_report

    print_result(result, console)
    pngs = write_plots(result, Path(out))
    console.print(f"wrote {Path(out) / 'tune.json'} and {', '.join(str(p) for p in pngs)}", highlight=False)
    if report:
        console.print(f"report: {write_report(result, Path(out))}", highlight=False)
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
