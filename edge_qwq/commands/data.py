"""`edge-qwq data sample` and `edge-qwq data video`: the sample inspection data set, frames and video."""
from __future__ import annotations

import click

from edge_qwq.commands import frame_size_callback


def _has_files(folder) -> bool:
    from pathlib import Path

    return Path(folder).is_dir() and any(Path(folder).iterdir())


@click.group("data")
def command():
    """Inspection data sets."""


@command.command("sample")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write DIR/{train,val,calib}/<class>/ (and DIR/frames/ with --frames).")
@click.option("--size", default=96, show_default=True, type=click.IntRange(32, 1024), help="Image side in pixels.")
@click.option("--per-class", default=250, show_default=True, type=click.IntRange(1, 100000),
              help="Training images per class (val gets 40%, calib 15%, at least 8).")
@click.option("--val-per-class", default=None, type=click.IntRange(8, 100000),
              help="Validation images per class (default 40% of --per-class); train and calib stay the same, "
                   "so accuracy can be measured on 2000+ images (--val-per-class 500).")
@click.option("--frames", "n_frames", default=0, show_default=True, type=click.IntRange(0, 100000),
              help="Also write N large frames per split (train, fit, score) with defects at known places "
                   "to DIR/frames/, after the crops; half the frames are good.")
@click.option("--frame-size", default="1280x960", show_default=True, callback=frame_size_callback(96),
              help="Frame size WIDTHxHEIGHT for --frames.")
@click.option("--frames-only", is_flag=True, help="Write only the frames (needs --frames N), not the crops.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same images.")
@click.option("--force", is_flag=True, help="Write into a folder that already has images.")
def sample(out, size, per_class, val_per_class, n_frames, frame_size, frames_only, seed, force):
    """Write the sample inspection set: real texture photographs shipped with scikit-image (brick,
    grass, gravel) with synthetic defects drawn on them (scratch, spot, crack) and an `ok` class.
    With --frames N, also large frames (DIR/frames/{train,fit,score}/ with boxes.json) for measuring
    and calibrating frame-level decisions.

    \b
    Example:
      edge-qwq data sample --out data/ --per-class 250
      edge-qwq data sample --out data/ --frames 100 --frames-only
    """
    from pathlib import Path

    from edge_qwq.console import console, progress_callback
    from edge_runtime.errors import InputError

    if frames_only and not n_frames:
        raise click.UsageError("--frames-only needs --frames N with N > 0")
    frames_dir = Path(out) / "frames"
    if not frames_only and _has_files(out) and not force:
        raise InputError(f"{out} is not empty; choose another --out or pass --force to write into it")
    if n_frames and _has_files(frames_dir) and not force:
        raise InputError(f"{frames_dir} already has frames; choose another --out or pass --force to write into it")
    if not frames_only:
        from export.sample_data import make_sample

        with progress_callback("sample data") as cb:
            counts = make_sample(out, size=size, per_class=per_class, seed=seed, progress=cb,
                                 val_per_class=val_per_class)
        split_counts = ", ".join(f"{k}: {v}" for k, v in counts.items())
        console.print(f"wrote {sum(counts.values())} images to {out} ({split_counts}); "
                      "surfaces are real scikit-image texture photographs, defects are synthetic")
    if n_frames:
        from export.sample_frames import make_frames

        with progress_callback("sample frames") as cb:
            counts = make_frames(frames_dir, n_frames, size_hw=frame_size, seed=seed, progress=cb)
        split_counts = ", ".join(f"{k}: {v}" for k, v in counts.items())
        console.print(f"wrote {sum(counts.values())} frames of {frame_size[1]}x{frame_size[0]} to {frames_dir} "
                      f"({split_counts}; defect boxes in <split>/boxes.json); surfaces are real scikit-image "
                      "texture photographs, defects are synthetic")


@command.command("video")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .avi to write (MJPG); the defect boxes per frame go next to it as .json.")
@click.option("--frame-size", default="640x480", show_default=True, callback=frame_size_callback(96),
              help="Frame size WIDTHxHEIGHT.")
@click.option("--frames", "n_frames", default=150, show_default=True, type=click.IntRange(1, 100000),
              help="Number of frames.")
@click.option("--fps", default=15, show_default=True, type=click.IntRange(1, 240), help="Frames per second.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same video.")
@click.option("--force", is_flag=True, help="Overwrite an existing video.")
def video(out, frame_size, n_frames, fps, seed, force):
    """Write a sample conveyor video: a fixed camera over a belt that parts (some with one defect) cross
    from left to right, with empty belt between them. Real scikit-image texture photographs, synthetic
    defects; MJPG, so the frames carry real JPEG artefacts.

    \b
    Example:
      edge-qwq data video --out line.avi
      edge-qwq run --bundle bundle/ --source line.avi
    """
    from pathlib import Path

    from edge_qwq.console import console
    from edge_runtime.errors import InputError
    from export.sample_data import load_textures
    from export.sample_frames import make_conveyor_video

    path = Path(out)
    if path.suffix.lower() != ".avi":
        raise click.BadParameter(f"the video is MJPG in an .avi; got {out!r}", param_hint="'--out'")
    if path.exists() and not force:
        raise InputError(f"{out} exists; choose another --out or pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    info = make_conveyor_video(load_textures(), path, size_hw=frame_size, frames=n_frames, fps=fps, seed=seed)
    console.print(f"wrote {info['frames']} frames of {frame_size[1]}x{frame_size[0]} at {fps} fps to {out} "
                  f"({info['part_frames']} with a part on the belt; defect boxes per frame in "
                  f"{path.with_suffix('.json')}); surfaces are real scikit-image texture photographs, "
                  "defects are synthetic")
