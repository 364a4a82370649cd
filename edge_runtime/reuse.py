"""Frame reuse (`reuse_window`): skip inference on a frame nearly identical to the last inferred one.

The comparison is patch by patch (a 16 x 16 grid of the frame), not over the whole frame: a small new defect
changes one patch a lot and the frame average hardly at all, so it must still trigger inference. A decision
is reused for at most `window` frames in a row; then the next frame is inferred whatever it looks like.

    >>> reuse = FrameReuse(window=5)
    >>> d = reuse.lookup(frame) or model.infer(frame)   # doctest: +SKIP
    >>> reuse.remember(frame, d)                         # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np


def patch_stats(frame_bgr: np.ndarray, grid: int = 16, size: int = 128) -> np.ndarray:
    """Per-patch mean and std of the grey frame, (2, grid, grid) float32, on a `size` x `size` resize."""
    import cv2

    g = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    g = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    p = size // grid
    blocks = g.reshape(grid, p, grid, p)
    return np.stack([blocks.mean(axis=(1, 3)), blocks.std(axis=(1, 3))])


class FrameReuse:
    """`window` 0 disables reuse. `threshold`: the largest per-patch change (grey levels, of the patch
    mean or of its contrast) still counted as "the same frame"."""

    def __init__(self, window: int = 0, threshold: float = 3.0, grid: int = 16):
        self.window, self.threshold, self.grid = int(window), float(threshold), grid
        self._ref: np.ndarray | None = None
        self._decision = None
        self._run = 0  # reuses since the last inference
        self.frames = self.reused = 0

    def lookup(self, frame_bgr: np.ndarray):
        """The previous decision (marked reused) if this frame may reuse it, else None."""
        self.frames += 1
        if self.window <= 0 or self._ref is None or self._run >= self.window:
            return None
        change = float(np.abs(patch_stats(frame_bgr, self.grid) - self._ref).max())
        if change > self.threshold:
            return None
        self._run += 1
        self.reused += 1
        return replace(self._decision, reused=True, stage_ms=[])

    def remember(self, frame_bgr: np.ndarray, decision) -> None:
        """Record an inferred frame and its decision as the new reference."""
        if self.window > 0:
            self._ref = patch_stats(frame_bgr, self.grid)
            self._decision, self._run = decision, 0

    def reset(self) -> None:
        self._ref = self._decision = None
        self._run = 0

    @property
    def rate(self) -> float:
        return self.reused / self.frames if self.frames else 0.0
