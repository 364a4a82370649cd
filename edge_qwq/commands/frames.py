"""`edge-qwq frames train|fit`: make a student and its bundle inspect whole camera frames (tile mode)."""
from __future__ import annotations

import click


@click.group("frames")
def command():
    """Whole camera frames: train the student on frame tiles, fit the frame-level threshold.

    \b
    The tile-mode flow:
      edge-qwq data sample --out data/ --frames 200           # crops + frames/{train,fit,score}
      edge-qwq frames train --student student/ --data data/ --frames data/frames/train --out student-tiles/
      edge-qwq export --student student-tiles/ --out bundle/  # input mode: tile
      edge-qwq frames fit --bundle bundle/ --frames data/frames/fit
      edge-qwq bench --bundle bundle/ --data data/ --frames data/frames/score
    """


@command.command("train")
@click.option("--student", required=True, type=click.Path(), help="Distilled student folder.")
@click.option("--data", required=True, type=click.Path(), help="Crop image folder (train/ is replayed, val/ measured).")
@click.option("--frames", "frames_dir", required=True, type=click.Path(),
              help="Training frames: PNGs with a boxes.json (data sample --frames writes frames/train).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Student folder to write.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="Epochs per round.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Rounds of mining hard negatives with the student as the last round left it, then training.")
@click.option("--lr", default=5e-4, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--hard-per-frame", default=16, show_default=True, type=click.IntRange(0, 10000),
              help="Defect-free tiles per frame that the student rates most defect-like (hard negatives).")
@click.option("--random-per-frame", default=8, show_default=True, type=click.IntRange(0, 10000),
              help="Other defect-free tiles per frame, drawn at random.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
def train(student, data, frames_dir, out, epochs, rounds, lr, hard_per_frame, random_per_frame, seed, force):
    """Fine-tune STUDENT for whole frames: tiles cut from the training frames exactly as the runtime cuts
    them (defect tiles, the hardest defect-free tiles, random ones) with the crop set replayed. The
    student written is marked for tile mode; `export` gives its bundle `input.mode: tile`.
    """
    from edge_qwq.console import console
    from edge_qwq.guards import refuse_non_empty
    from edge_runtime.frame_eval import load_frames
    from export.frame_training import frame_tune_student

    refuse_non_empty(out, force)
    load_frames(frames_dir)  # a wrong folder is refused before any training
    m = frame_tune_student(student, data, frames_dir, out, epochs, lr, hard_per_frame, random_per_frame, seed,
                           log=lambda s: console.print(s, highlight=False), rounds=rounds)
    acc = ", ".join(f"{100 * a:.2f}" for a in m["val_accuracy_per_exit"])
    console.print(f"student for tile mode saved to {out}; crop accuracy per exit on DATA/val: {acc} %, "
                  f"early exit {100 * m['val_early_exit_accuracy']:.2f} % ({m['val_images']} images)")


@command.command("fit")
@click.option("--bundle", required=True, type=click.Path(), help="Tile-mode bundle.")
@click.option("--frames", "frames_dir", required=True, type=click.Path(),
              help="Fitting frames with boxes.json (data/frames/fit); its defect-free frames set the threshold.")
@click.option("--false-alarms", default=0.03, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Fraction of the defect-free fitting frames allowed over the threshold.")
@click.option("--precision", default="all", show_default=True, type=click.Choice(["all", "fp32", "quantized"]),
              help="Stages to fit for; all: FP32 and, when present, the quantized stages.")
def fit(bundle, frames_dir, false_alarms, precision):
    """Fit the frame-level threshold of a tile-mode BUNDLE on defect-free frames and write it to the
    manifest (`frames` section), per precision. A frame is then a defect when one of its tiles scores
    at least the threshold; the defect frames of the fitting set give the recall it costs.
    """
    from edge_qwq.console import console, progress_callback
    from edge_runtime.frame_eval import load_frames

    from calib.frame_threshold import fit_frame_threshold, tile_bundle

    tile_bundle(bundle)  # refused before any progress bar
    n = len(load_frames(frames_dir))
    with progress_callback(f"scoring {n} fitting frames") as cb:
        spec = fit_frame_threshold(bundle, frames_dir, false_alarms,
                                   None if precision == "all" else [precision], lambda p, i, total: cb(i, total))
    for p, t in spec.threshold.items():
        m = spec.measured[p]
        recall = "n/a" if m["recall_pct"] is None else f"{m['recall_pct']:.1f} %"
        console.print(f"{p}: frame threshold {t:.6f} (false alarms on the fitting frames {m['false_alarm_pct']:.1f} %, "
                      f"recall {recall}; {spec.fitted_on['good_frames']} defect-free of {spec.fitted_on['frames']})",
                      highlight=False)
    console.print(f"written to {bundle}/manifest.json (frames)")
