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


class TileReuse:
    """Changed-tiles-only: a tile whose pixels have not changed beyond `threshold` since its last inference
    keeps its last result, for at most `window` frames in a row (the same window and threshold as
    FrameReuse: one reuse setting serves frames and tiles). Each tile is compared as a `sub` x `sub` grid
    of block means and contrasts (grey levels), from integral images: one pass over the frame."""

    def __init__(self, window: int = 0, threshold: float = 3.0, sub: int = 4):
        self.window, self.threshold, self.sub = int(window), float(threshold), sub
        self.reset()
        self.tiles = self.reused = 0

    def reset(self) -> None:
        self._grid = self._ref = self._run = None

    def stale(self, frame_bgr: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows of `grid` to infer, ascending; the frame's tile statistics to `remember` for them).
        Every tile is inferred when reuse is off, on the first frame and when the grid changes."""
        n = len(grid)
        self.tiles += n
        if self.window <= 0:
            return np.arange(n), None
        stats = tile_stats(frame_bgr, grid, self.sub)  # (N, 2, sub, sub)
        if self._grid is not grid or self._ref is None:
            self._grid, self._ref, self._run = grid, stats.copy(), np.zeros(n, np.int64)
            return np.arange(n), stats
        change = np.abs(stats - self._ref).reshape(n, -1).max(axis=1)
        rows = np.flatnonzero((change > self.threshold) | (self._run >= self.window))
        self.reused += n - len(rows)
        return rows, stats

    def remember(self, rows: np.ndarray, stats: np.ndarray | None) -> None:
        """Tiles `rows` were inferred on the frame whose statistics are `stats`; the others were reused."""
        if stats is None or self._run is None:
            return
        self._run += 1
        self._run[rows] = 0
        self._ref[rows] = stats[rows]

    @property
    def rate(self) -> float:
        return self.reused / self.tiles if self.tiles else 0.0


def tile_stats(frame_bgr: np.ndarray, grid, sub: int = 4) -> np.ndarray:
    """(N, 2, sub, sub) float32: mean and std (grey levels) of each tile's sub x sub blocks."""
    import cv2

    g = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    if grid.padded:
        g = cv2.copyMakeBorder(g, 0, grid.pad[0], 0, grid.pad[1], cv2.BORDER_REPLICATE)
    s, sq = cv2.integral2(g, sdepth=cv2.CV_64F)  # (H+1, W+1) sums of pixels and of their squares
    x0, y0 = grid.rects[:, 0], grid.rects[:, 1]  # (N,)
    ey = (np.arange(sub + 1) * grid.tile_h) // sub  # block edges inside a tile
    ex = (np.arange(sub + 1) * grid.tile_w) // sub
    ys = y0[:, None] + ey[None, :]  # (N, sub+1)
    xs = x0[:, None] + ex[None, :]

    def block_sums(t: np.ndarray) -> np.ndarray:  # (N, sub, sub)
        c = t[ys[:, :, None], xs[:, None, :]]  # (N, sub+1, sub+1) integral at block corners
        return c[:, 1:, 1:] - c[:, :-1, 1:] - c[:, 1:, :-1] + c[:, :-1, :-1]

    area = np.diff(ey)[:, None] * np.diff(ex)[None, :]  # (sub, sub) pixels per block
    mean = block_sums(s) / area
    std = np.sqrt(np.maximum(block_sums(sq) / area - mean ** 2, 0.0))
    return np.stack([mean, std], axis=1).astype(np.float32)
