"""Frame sources: an image, a folder of images, a video file. (Live cameras: see issue 4.)

Each source yields (frame_id, BGR uint8 frame (H, W, 3), origin string).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.preprocess import IMAGE_SUFFIXES, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg")


def open_source(uri: str | os.PathLike) -> Iterator[tuple[int, np.ndarray, str]]:
    """Frames from `uri`: an image file, a folder of images, or a video file."""
    path = Path(uri)
    if path.is_dir():
        return _folder(path)
    if not path.exists():
        raise InputError(f"{uri}: no such file, folder or stream")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return iter([(0, read_image(path), str(path))])
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video(path)
    raise InputError(f"{uri}: not an image, image folder or video file")


def _folder(root: Path) -> Iterator[tuple[int, np.ndarray, str]]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{root}: no images in this folder")
    for i, p in enumerate(files):
        yield i, read_image(p), str(p)


def _video(path: Path) -> Iterator[tuple[int, np.ndarray, str]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: OpenCV cannot open this video")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield i, frame, f"{path}#{i}"
            i += 1
        if i == 0:
            raise InputError(f"{path}: the video has no readable frames")
    finally:
        cap.release()
