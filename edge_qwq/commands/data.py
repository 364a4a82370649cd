"""`edge-qwq data sample`: the sample inspection data set."""
from __future__ import annotations

import click


@click.group("data")
def command():
    """Inspection data sets."""


@command.command("sample")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write DIR/{train,val,calib}/<class>/.")
@click.option("--size", default=96, show_default=True, type=click.IntRange(32, 1024), help="Image side in pixels.")
@click.option("--per-class", default=250, show_default=True, type=click.IntRange(1, 100000),
              help="Training images per class (val gets 40%, calib 15%, at least 8).")
@click.option("--val-per-class", default=None, type=click.IntRange(8, 100000),
              help="Validation images per class (default 40% of --per-class); train and calib stay the same, "
                   "so accuracy can be measured on 2000+ images (--val-per-class 500).")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same images.")
@click.option("--force", is_flag=True, help="Write into a folder that already has images.")
def sample(out, size, per_class, val_per_class, seed, force):
    """Write the sample inspection set: real texture photographs shipped with scikit-image (brick,
    grass, gravel) with synthetic defects drawn on them (scratch, spot, crack) and an `ok` class.

    \b
    Example:
      edge-qwq data sample --out data/ --per-class 250
    """
    from pathlib import Path

    from edge_qwq.console import console, progress_callback
    from edge_runtime.errors import InputError
    from export.sample_data import make_sample

    if Path(out).is_dir() and any(Path(out).iterdir()) and not force:
        raise InputError(f"{out} is not empty; choose another --out or pass --force to write into it")
    with progress_callback("sample data") as cb:
        counts = make_sample(out, size=size, per_class=per_class, seed=seed, progress=cb,
                             val_per_class=val_per_class)
    split_counts = ", ".join(f"{k}: {v}" for k, v in counts.items())
    console.print(f"wrote {sum(counts.values())} images to {out} ({split_counts}); "
                  "surfaces are real scikit-image texture photographs, defects are synthetic")
