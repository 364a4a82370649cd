"""The sample inspection data set: real texture photographs with synthetic defects.

The surfaces are real photographs that scikit-image ships (brick, grass, gravel); the defects
(scratch, spot, crack) are drawn onto them synthetically. Layout: OUT/{train,val,calib}/<class>/*.png,
the image-folder layout every command accepts. Deterministic for a seed.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

TEXTURES = ("brick", "grass", "gravel")
CLASSES = ("crack", "ok", "scratch", "spot")
SPLITS = {"train": 1.0, "val": 0.4, "calib": 0.15}  # images per class, relative to --per-class


def load_textures() -> dict[str, np.ndarray]:
    """The scikit-image texture photographs, grayscale uint8 (512, 512)."""
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in TEXTURES}


def _surface(tex: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a texture, resized to (size, size), tinted and lit: RGB float32 in [0, 255]."""
    import cv2

    crop = int(rng.integers(size, min(tex.shape) // 2))
    y, x = rng.integers(0, tex.shape[0] - crop), rng.integers(0, tex.shape[1] - crop)
    patch = cv2.resize(tex[y:y + crop, x:x + crop], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    gain, bias = rng.uniform(0.8, 1.15), rng.uniform(-15, 15)
    tint = rng.uniform(0.85, 1.1, size=3).astype(np.float32)
    return np.clip((patch * gain + bias)[..., None] * tint, 0, 255)


def _polyline_mask(size: int, pts: np.ndarray, width: int) -> np.ndarray:
    import cv2

    mask = np.zeros((size * 4, size * 4), np.uint8)  # draw at 4x, then downsample: anti-aliased
    cv2.polylines(mask, [np.round(pts * 4).astype(np.int32)], False, 255, thickness=width * 4, lineType=cv2.LINE_AA)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _scratch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A thin straight or gently curved bright line: (mask (size, size) in [0, 1], intensity)."""
    length, angle = rng.uniform(0.25, 0.5) * size, rng.uniform(0, np.pi)
    c = rng.uniform(0.25, 0.75, size=2) * size
    t = np.linspace(-0.5, 0.5, 12)[:, None]
    d = np.array([np.cos(angle), np.sin(angle)])
    bend = rng.uniform(-0.08, 0.08) * size * (1 - (2 * t) ** 2) * np.array([-d[1], d[0]])
    return _polyline_mask(size, c + t * length * d + bend, int(rng.integers(1, 3))), rng.uniform(80, 130)


def _crack(size: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A dark jagged random walk."""
    n, step = int(rng.integers(10, 16)), size * rng.uniform(0.025, 0.04)
    heading = rng.uniform(0, 2 * np.pi)
    pts = [rng.uniform(0.3, 0.7, size=2) * size]
    for _ in range(n):
        heading += rng.normal(0, 0.6)
        pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return _polyline_mask(size, np.array(pts), 2), -rng.uniform(90, 140)


def _spot(size: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A small soft-edged blob (stain or pit), darker or brighter."""
    import cv2

    mask = np.zeros((size, size), np.float32)
    c = tuple(int(v) for v in rng.uniform(0.2, 0.8, size=2) * size)
    axes = tuple(int(v) for v in rng.uniform(0.04, 0.08, size=2) * size)
    cv2.ellipse(mask, c, axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.8)
    return mask, rng.choice([-1.0, 1.0]) * rng.uniform(70, 110)


DEFECTS: dict[str, Callable] = {"scratch": _scratch, "crack": _crack, "spot": _spot}


def make_image(textures: dict[str, np.ndarray], label: str, size: int, rng: np.random.Generator,
               texture: str) -> np.ndarray:
    """One image of class `label` on `texture`: BGR uint8 (size, size, 3) for cv2.imwrite."""
    img = _surface(textures[texture], size, rng)  # (size, size, 3) RGB float
    if label != "ok":
        mask, delta = DEFECTS[label](size, rng)
        colour = np.array([1.0, 0.55, 0.3], np.float32) if label == "spot" else np.ones(3, np.float32)
        img = img + (mask * delta)[..., None] * colour  # spots are stains: rust-coloured
    img = img + rng.normal(0, 2.0, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)[..., ::-1]


def split_sizes(per_class: int, val_per_class: int | None = None) -> dict[str, int]:
    """Images per class in each split: train `per_class`, val 40 % of it (or `val_per_class`), calib 15 %."""
    sizes = {split: max(8, int(per_class * frac)) for split, frac in SPLITS.items()}
    if val_per_class is not None:
        sizes["val"] = max(8, int(val_per_class))
    return sizes


def make_sample(out: str | Path, size: int = 96, per_class: int = 200, seed: int = 0,
                progress: Callable[[int, int], None] | None = None,
                val_per_class: int | None = None) -> dict[str, int]:
    """Write the sample set; returns images written per split. Each split and class draws from its own
    random stream, so a larger `val_per_class` adds images to val and leaves train and calib unchanged
    (measure accuracy on 2000+ validation images without changing what is trained on)."""
    import cv2

    textures = load_textures()
    out = Path(out)
    counts, done = {}, 0
    sizes = split_sizes(per_class, val_per_class)
    total = sum(sizes.values()) * len(CLASSES)
    for s_idx, split in enumerate(SPLITS):
        n = sizes[split]
        for c_idx, label in enumerate(CLASSES):
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, s_idx, c_idx])
            for i in range(n):
                img = make_image(textures, label, size, rng, TEXTURES[i % len(TEXTURES)])
                if not cv2.imwrite(str(folder / f"{label}_{i:05d}.png"), img):
                    raise OSError(f"cannot write {folder / f'{label}_{i:05d}.png'} (disk full or read-only?)")
                done += 1
                if progress:
                    progress(done, total)
        counts[split] = n * len(CLASSES)
    return counts
