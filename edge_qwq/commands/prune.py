"""`edge-qwq prune`: remove the weak attention heads of a student, structurally, and recover."""
from __future__ import annotations

import click


@click.command("prune")
@click.option("--student", required=True, type=click.Path(), help="Student folder (from `edge-qwq distill`).")
@click.option("--teacher", required=True, type=click.Path(), help="The teacher it was distilled from.")
@click.option("--data", required=True, type=click.Path(),
              help="Image folder: importance on calib/ (else train/), recovery on train/, accuracy on val/.")
@click.option("--prune-threshold", "threshold", default=0.2, show_default=True, type=float,
              help="Remove a head whose importance is below this fraction of its block's most important head; "
                   "strictly between 0 and 1.")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(0, 1000),
              help="Recovery distillation epochs after the cut.")
@click.option("--lr", default=5e-4, show_default=True, type=float, help="Recovery learning rate.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Pruned student folder to write.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
def command(student, teacher, data, threshold, epochs, lr, out, force):
    """Measure each attention head's importance on calibration images (gradient x activation of the
    distillation loss, summed per head), normalise it by the most important head of its block, remove the
    heads below --prune-threshold from the Q/K/V and output projections (smaller matrices: the FLOPs really
    fall and the stage graphs stay static), then distil briefly from the teacher to recover. The manifest
    of the exported bundle records the threshold and the heads kept; `bench` and `estimate` show the saving.

    \b
    Example:
      edge-qwq prune --student student/ --teacher teacher/ --data data/ --prune-threshold 0.2 --out pruned/
      edge-qwq export --student pruned/ --out bundle/
    """
    from edge_qwq.console import console
    from edge_qwq.guards import refuse_non_empty
    from edge_qwq.pipeline import print_student_report, student_row
    from export.prune import check_threshold, prune_student
    from export.student import load_student

    check_threshold(threshold)
    refuse_non_empty(out, force)
    before = load_student(student)
    m = prune_student(student, teacher, data, threshold, out, epochs=epochs, lr=lr,
                      log=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    p = m["pruning"]
    pruned = load_student(out)
    rows = [student_row("before", before.config, m["before"]), student_row("cut, before recovery", pruned.config,
                                                                           m["after_cut"]),
            student_row("pruned + recovered", pruned.config, m)]
    print_student_report(rows, None, None, title=f"pruned at threshold {threshold:g} "
                         f"(accuracy on {m['val_images']} val images)")
    from edge_runtime.bundle import PruningSpec

    console.print(PruningSpec.from_dict(p).describe(), highlight=False)
    console.print(f"importance ({p['score']}), per block: {p['importance']}")
    console.print(f"pruned student saved to {out}")

