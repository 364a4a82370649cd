"""Frames to tensors, exactly as every stage of the pipeline sees them (training, calibration, runtime).

Frames are OpenCV's BGR uint8 arrays (H, W, 3). The tensor is float32 (B, 3, H, W), RGB, normalized with
the bundle's mean and std on [0, 1] pixels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_runtime.bundle import InputSpec
from edge_runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as BGR uint8 (H, W, 3); InputError if it is not a readable image."""
    import cv2

    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise InputError(f"{path}: no such file")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # over the pixel limit (edge_runtime.MAX_IMAGE_PIXELS), or a codec refusing it
        limit = "over the decoding limit of " + os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "?") + " pixels" \
            if "MAX_IMAGE_PIXELS" in str(e) else "refused by the decoder"
        raise InputError(f"{path}: image {limit}; not decoded") from None
    if img is None:
        raise InputError(f"{path}: not a readable image (corrupt, empty or not an image format)")
    return img


def to_rgb_resized(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """BGR uint8 (H, W, 3) of any size -> RGB uint8 (spec.height, spec.width, 3)."""
    import cv2

    if frame_bgr is None or frame_bgr.ndim not in (2, 3) or frame_bgr.size == 0:
        raise InputError("empty or malformed frame")
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    if frame_bgr.shape[:2] != (spec.height, spec.width):
        frame_bgr = cv2.resize(frame_bgr, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def normalize_rgb(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 (B, H, W, 3) or (H, W, 3) -> float32 (B, 3, H, W) normalized."""
    if rgb.ndim == 3:
        rgb = rgb[None]
    x = rgb.astype(np.float32) * (1.0 / 255.0)  # (B, H, W, 3) in [0, 1]
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (B, 3, H, W)


def preprocess(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One BGR frame -> the stage-0 input (1, 3, H, W) float32."""
    return normalize_rgb(to_rgb_resized(frame_bgr, spec), spec)
