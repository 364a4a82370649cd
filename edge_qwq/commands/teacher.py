"""`edge-qwq teacher train`: a transformers teacher for users who have none."""
from __future__ import annotations

import click


@click.group("teacher")
def command():
    """Teachers: transformers image classifiers (a folder from save_pretrained)."""


@command.command("train")
@click.option("--data", required=True, type=click.Path(), help="Image folder with train/ and val/ splits.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to save_pretrained into.")
@click.option("--arch", default="resnet", show_default=True, type=click.Choice(["vit", "resnet", "convnext"]))
@click.option("--epochs", default=6, show_default=True, type=click.IntRange(1, 1000))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--tiny", is_flag=True, help="A very small config (tests, smoke runs).")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
def train(data, out, arch, epochs, batch_size, seed, tiny, force):
    """Train a teacher on DATA/train and report its DATA/val accuracy.

    \b
    Example:
      edge-qwq teacher train --data data/ --out teacher/ --arch resnet
    """
    from edge_qwq.console import console
    from edge_qwq.guards import refuse_non_empty
    from export.teacher_train import train_teacher

    refuse_non_empty(out, force)
    r = train_teacher(data, out, arch=arch, epochs=epochs, batch_size=batch_size, seed=seed, tiny=tiny)
    console.print(f"teacher ({arch}) saved to {out}: val accuracy {100 * r['val_accuracy']:.2f}%")
