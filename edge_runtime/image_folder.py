"""Image-folder data sets: ROOT/<split>/<class>/*.png, as `edge-qwq data sample` writes and users bring.

Every file is checked, so a stray file or an empty class is one clear error, not a crash mid-training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.preprocess import IMAGE_SUFFIXES, read_image


@dataclass
class ImageFolder:
    """One split: paths, integer labels and the sorted class names."""

    root: Path
    classes: list[str]
    paths: list[Path]
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.paths)

    def load_rgb(self, height: int, width: int) -> np.ndarray:
        """All images as RGB uint8 (N, height, width, 3), resized the way the runtime resizes."""
        import cv2

        out = np.empty((len(self.paths), height, width, 3), np.uint8)
        for i, p in enumerate(self.paths):
            img = read_image(p)
            if img.shape[:2] != (height, width):
                img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
            out[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return out


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def open_split(data: str | os.PathLike, split: str, classes: list[str] | None = None,
               allow_empty_classes: bool = False) -> ImageFolder:
    """Read DATA/<split>/<class>/* ; `classes` (e.g. the bundle's) fixes the label order."""
    root = Path(data) / split
    if not Path(data).is_dir():
        raise InputError(f"{data}: no such data folder")
    if not root.is_dir():
        raise InputError(f"{data} has no {split}/ folder (expected {data}/{split}/<class>/*.png)")
    stray = [p for p in root.iterdir() if _visible(p) and not p.is_dir()]
    if stray:
        raise InputError(f"{stray[0]}: a file directly in {root}; images go in {root}/<class>/ folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if not found:
        raise InputError(f"{root} has no class folders")
    classes = list(classes) if classes is not None else found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise InputError(f"{root}: class folder(s) {', '.join(unknown)} not among the model's classes {classes}")
    paths, labels = [], []
    for idx, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if _visible(p)) if folder.is_dir() else []
        for p in files:
            if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{p}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        if not files and not allow_empty_classes:
            raise InputError(f"{folder}: class folder is empty or missing; every class needs images")
        paths += files
        labels += [idx] * len(files)
    return ImageFolder(root, classes, paths, np.asarray(labels, np.int64))
