"""`edge-qwq distill`: teacher -> early-exit student."""
from __future__ import annotations

import click


@click.command("distill")
@click.option("--teacher", required=True, type=click.Path(), help="Teacher folder (transformers save_pretrained).")
@click.option("--data", required=True, type=click.Path(), help="Image folder with train/ and val/ splits.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Student folder to write.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 10000))
@click.option("--dim", default=64, show_default=True, type=int, help="Student width.")
@click.option("--depth", default=6, show_default=True, type=int, help="Student blocks.")
@click.option("--heads", default=2, show_default=True, type=int, help="Attention heads per block.")
@click.option("--patch", default=8, show_default=True, type=int,
              help="Pixels per token side (keep small: defects are small).")
@click.option("--exits", default="2,4", show_default=True, help="Blocks after which an early exit head sits.")
@click.option("--temperature", default=2.0, show_default=True, type=float)
@click.option("--alpha", default=0.5, show_default=True, type=float, help="Weight of the teacher's soft labels.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
def command(teacher, data, out, epochs, dim, depth, heads, patch, exits, temperature, alpha, seed, force):
    """Distil TEACHER into a small ViT student with early-exit heads, on every exit, from the teacher's
    soft labels (temperature-scaled KL) and the true labels. Prints per-exit accuracy on DATA/val.

    \b
    Example:
      edge-qwq distill --teacher teacher/ --data data/ --out student/
    """
    from edge_qwq.console import console
    from edge_qwq.guards import refuse_non_empty
    from edge_qwq.tables import exit_table
    from export.distill import DistillConfig, distill

    refuse_non_empty(out, force)
    try:
        exit_list = tuple(int(e) for e in exits.split(",") if e.strip())
    except ValueError:
        raise click.BadParameter(f"--exits takes block numbers like 2,4, not {exits!r}") from None
    student = {"dim": dim, "depth": depth, "heads": heads, "patch": patch, "exits": exit_list}
    m = distill(teacher, data, out, student_config=student,
                config=DistillConfig(epochs=epochs, temperature=temperature, alpha=alpha, seed=seed))
    console.print(exit_table(m))
    console.print(f"student saved to {out}")
