"""The video that frame reuse is tuned on: each frame's patch statistics (what FrameReuse compares) and its
exit scores (what inferring it would decide), computed once.

From a file (`--video`, any video OpenCV reads), or, without one, a conveyor made from the tuning split's
images: each part stays in view for a run of frames (3 to 10) while it drifts a pixel or two per frame, with
sensor noise and JPEG compression, as a fixed camera over a slow line sees it. The images are real
scikit-image texture photographs with synthetic defects when they come from `edge-qwq data sample`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune.scores import ExitScores, exit_scores_of


@dataclass
class VideoScores:
    stats: np.ndarray  # (F, 2, g, g) patch means and contrasts, grey levels (edge_runtime.reuse.patch_stats)
    scores: ExitScores  # every frame's exit scores
    source: str

    def __len__(self) -> int:
        return len(self.stats)


def from_frames(model, frames: list[np.ndarray], labels: np.ndarray | None, source: str) -> VideoScores:
    """frames: BGR uint8 (H, W, 3) each."""
    from edge_runtime.preprocess import preprocess
    from edge_runtime.reuse import patch_stats

    stats = np.stack([patch_stats(f) for f in frames]).astype(np.float32)
    x = np.concatenate([preprocess(f, model.spec) for f in frames])  # (F, 3, H, W)
    return VideoScores(stats, exit_scores_of(model, x, labels, source), source)


def read_video(path: str | Path, max_frames: int = 2000) -> list[np.ndarray]:
    """Frames of a video file (BGR); InputError when it cannot be read or holds no frame."""
    import cv2

    from edge_runtime.errors import InputError

    if not Path(path).is_file():
        raise InputError(f"--video {path}: no such file")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise InputError(f"--video {path}: no frame could be decoded (not a video OpenCV reads?)")
    return frames


def conveyor(images: list[np.ndarray], labels: np.ndarray, seed: int = 0, runs: tuple[int, int] = (3, 10),
             noise: float = 1.5, quality: int = 85) -> tuple[list[np.ndarray], np.ndarray]:
    """A line video from images (BGR, one size): (frames, per-frame labels)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames, out_labels = [], []
    for img, label in zip(images, labels):
        dx = dy = 0.0
        vx, vy = rng.uniform(-1.5, 1.5, 2)  # px per frame
        for _ in range(int(rng.integers(runs[0], runs[1] + 1))):
            dx, dy = dx + vx, dy + vy
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
            noisy = np.clip(moved + rng.normal(0, noise, moved.shape), 0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])
            frames.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
            out_labels.append(label)
    return frames, np.asarray(out_labels, np.int64)


def video_scores(model, video: str | None, data: str, split: str, parts: int = 60, seed: int = 0) -> VideoScores:
    """The tuning video's scores: `video` when given, else a conveyor of `parts` images of DATA/<split>."""
    from edge_runtime.image_folder import open_split
    from edge_runtime.preprocess import read_image

    if video:
        frames = read_video(video)
        return from_frames(model, frames, None, f"{len(frames)} frames of {video}")
    folder = open_split(data, split, classes=model.classes, allow_empty_classes=True)
    pick = np.random.default_rng(seed).permutation(len(folder))[:parts]
    frames, labels = conveyor([read_image(folder.paths[i]) for i in pick], folder.labels[pick], seed)
    return from_frames(model, frames, labels, f"{len(frames)}-frame conveyor made from {len(pick)} images of "
                                              f"{Path(data) / split} (runs of 3-10 frames, drift, noise, JPEG)")
