"""Calibration images, preprocessed exactly as the runtime does, and the statistics the health
monitor compares live frames against.

    >>> cs = load_calib("data/", bundle)       # doctest: +SKIP
    >>> cs.x.shape, cs.labels.shape             # doctest: +SKIP
    ((60, 3, 96, 96), (60,))
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib.errors import CalibError
from edge_runtime.errors import InputError

MIN_IMAGES = 8


@dataclass
class CalibSet:
    """Labelled calibration images as stage-0 tensors."""

    x: np.ndarray  # (N, 3, H, W) float32, normalized like the runtime
    labels: np.ndarray  # (N,) int64, indices into the bundle's classes
    root: Path
    resized: int  # images whose size differed from the bundle's input (resized as the runtime does)
    stats: dict = field(default_factory=dict)  # per-image brightness / contrast / sharpness

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, held_out: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Indices (search, held_out): a stratified-enough random split for AWQ's held-out batch."""
        idx = np.random.default_rng(seed).permutation(len(self))
        n_out = max(1, int(round(len(self) * held_out)))
        return np.sort(idx[n_out:]), np.sort(idx[:n_out])


def _split_root(calib_dir: Path, split: str) -> tuple[Path, str]:
    """Accept DATA (with DATA/<split>/<class>/) or the split folder itself (DIR/<class>/)."""
    if not calib_dir.is_dir():
        raise CalibError(f"calibration folder {calib_dir} does not exist")
    if (calib_dir / split).is_dir():
        return calib_dir, split
    return calib_dir.parent, calib_dir.name


def load_calib(calib_dir: str | os.PathLike, bundle, split: str = "calib") -> CalibSet:
    """Read DIR/<split>/<class>/* (or DIR/<class>/*) with the bundle's class order; CalibError if the
    folder is missing, empty or has unreadable files. Images of another size are resized exactly as
    the runtime resizes frames (`CalibSet.resized` counts them)."""
    from edge_runtime.image_folder import open_split
    from edge_runtime.preprocess import normalize_rgb, read_image, to_rgb_resized

    calib_dir = Path(calib_dir)
    root, split = _split_root(calib_dir, split)
    try:
        folder = open_split(root, split, classes=bundle.classes, allow_empty_classes=True)
    except InputError as e:
        raise CalibError(f"calibration images: {e}") from None
    if len(folder) < MIN_IMAGES:
        raise CalibError(f"calibration folder {folder.root} has {len(folder)} images; quantization needs at "
                         f"least {MIN_IMAGES} labelled images in {folder.root}/<class>/ "
                         f"(classes: {', '.join(bundle.classes)})")
    spec = bundle.input
    rgb = np.empty((len(folder), spec.height, spec.width, 3), np.uint8)
    resized = 0
    for i, p in enumerate(folder.paths):
        try:
            img = read_image(p)
        except InputError as e:
            raise CalibError(f"calibration images: {e}") from None
        resized += img.shape[:2] != (spec.height, spec.width)
        rgb[i] = to_rgb_resized(img, spec)  # (H, W, 3): the runtime's resize
    return CalibSet(normalize_rgb(rgb, spec), folder.labels, folder.root, resized, image_stats(rgb))


def image_stats(rgb: np.ndarray) -> dict:
    """Brightness, contrast and sharpness of RGB uint8 images (N, H, W, 3): mean and std over images,
    each image measured exactly as the device's health monitor measures a live frame
    (`edge_runtime.health.input_stats`), so the two can be compared."""
    from edge_runtime.health import input_stats

    per_image = [input_stats(im) for im in rgb]
    return {k: {"mean": float(np.mean([s[k] for s in per_image])), "std": float(np.std([s[k] for s in per_image]))}
            for k in per_image[0]}
