"""Whole frames as tiles: where the tiles lie, the region of interest, and cutting them into one batch.

In tile mode the model sees native-scale crops of its input size (the way the sample crops are made), so
a defect of a few dozen pixels keeps its pixels on a 1280x960 frame. Tiles overlap (25 % by default) so a
defect cut by one tile's border lies whole in its neighbour; the last row and column are aligned to the
region's far edge (as SAHI slices), so nothing is left out and no tile hangs over the frame.

    >>> grid = TileGrid.for_frame((960, 1280), (96, 96), overlap=0.25)
    >>> grid.rows, grid.cols, len(grid)
    (13, 18, 234)

A frame smaller than one tile is padded (edge pixels repeated) and `grid.padded` says so. The region of
interest is a box `x0,y0,x1,y1` in frame pixels or a mask image (non-zero = inspect); tiles that do not
touch it are never cut.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edge_runtime.bundle import InputSpec
from edge_runtime.errors import InputError


@dataclass(frozen=True)
class Roi:
    """The inspected area: a box (x0, y0, x1, y1), frame pixels, x1/y1 exclusive; or a mask (H, W) bool."""

    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None
    source: str = ""  # what the user gave, for messages

    def box_in(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The ROI's box clipped to a frame (height, width); InputError if it misses the frame or is empty."""
        if self.mask is not None:
            if self.mask.shape != (height, width):
                raise InputError(f"ROI mask {self.source} is {self.mask.shape[1]}x{self.mask.shape[0]} but the "
                                 f"frame is {width}x{height}; give a mask of the frame's size")
            ys, xs = np.nonzero(self.mask)
            if xs.size == 0:
                raise InputError(f"ROI mask {self.source} is empty (no non-zero pixel): nothing to inspect")
            return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        x0, y0, x1, y1 = self.box
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        if cx1 <= cx0 or cy1 <= cy0:
            raise InputError(f"ROI {self.source} lies outside the {width}x{height} frame: nothing to inspect")
        return cx0, cy0, cx1, cy1


def parse_roi(text: str | None) -> Roi | None:
    """`--roi`: "x0,y0,x1,y1" (frame pixels) or the path of a mask image (non-zero = inspect)."""
    if not text:
        return None
    parts = text.split(",")
    if len(parts) == 4:
        try:
            x0, y0, x1, y1 = (int(p) for p in parts)
        except ValueError:
            raise InputError(f"--roi {text!r}: give x0,y0,x1,y1 as whole pixels, or a mask image") from None
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"--roi {text!r} is empty: x1 must exceed x0 and y1 exceed y0")
        return Roi(box=(x0, y0, x1, y1), source=text)
    path = Path(text)
    if not path.is_file():
        raise InputError(f"--roi {text!r} is neither x0,y0,x1,y1 nor an existing mask image")
    return Roi(mask=_read_mask(path), source=text)


def _read_mask(path: os.PathLike) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise InputError(f"ROI mask {path} is not a readable image")
    return img > 0


def parse_frame_size(text: str, min_side: int = 1) -> tuple[int, int]:
    """"1920x1080" (width x height, as cameras name it) -> (height, width); ValueError (naming the frame
    size and what to give) if it is not WIDTHxHEIGHT in whole pixels, or a side is under `min_side`."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"frame size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1920x1080") from None
    if min(w, h) < min_side:
        raise ValueError(f"frame size {text!r}: each side must be at least {min_side} px")
    return h, w


def axis_starts(lo: int, hi: int, tile: int, stride: int) -> list[int]:
    """Tile starts covering [lo, hi) with tiles of `tile` px every `stride` px; the last one ends at hi."""
    span = hi - lo
    if span <= tile:
        return [lo]
    n = math.ceil((span - tile) / stride) + 1
    return [lo + i * stride for i in range(n - 1)] + [hi - tile]


@dataclass(frozen=True)
class TileGrid:
    """Tile positions on one frame size. `rects` (N, 4) int: x0, y0, x1, y1 in (padded) frame pixels;
    `cells` (N, 2) int: each tile's (row, col) in the full grid of `rows` x `cols`."""

    height: int  # the frame as given
    width: int
    tile_h: int
    tile_w: int
    overlap: float
    rects: np.ndarray  # (N, 4) int32
    cells: np.ndarray  # (N, 2) int32
    rows: int
    cols: int
    pad: tuple[int, int]  # (bottom, right) pixels added to a frame smaller than one tile

    @classmethod
    def for_frame(cls, frame_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: float = 0.25,
                  roi: Roi | None = None) -> "TileGrid":
        if not 0.0 <= overlap < 1.0:
            raise InputError(f"tile overlap must lie in [0, 1), got {overlap}")
        h, w = int(frame_hw[0]), int(frame_hw[1])
        th, tw = tile_hw
        pad = (max(0, th - h), max(0, tw - w))
        x0, y0, x1, y1 = roi.box_in(h, w) if roi is not None else (0, 0, w, h)
        ph, pw = h + pad[0], w + pad[1]
        # a ROI narrower than a tile still gets a whole tile, kept inside the (padded) frame
        x0, x1 = _widen(x0, x1, tw, pw)
        y0, y1 = _widen(y0, y1, th, ph)
        ys = axis_starts(y0, y1, th, max(1, round(th * (1 - overlap))))
        xs = axis_starts(x0, x1, tw, max(1, round(tw * (1 - overlap))))
        rr, cc = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
        cells = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int32)  # (N, 2) row-major
        ya, xa = np.asarray(ys)[cells[:, 0]], np.asarray(xs)[cells[:, 1]]
        rects = np.stack([xa, ya, xa + tw, ya + th], axis=1).astype(np.int32)
        if roi is not None and roi.mask is not None:
            keep = np.array([roi.mask[y:y + th, x:x + tw].any() for x, y, _, _ in rects], bool)
            rects, cells = rects[keep], cells[keep]
        return cls(h, w, th, tw, float(overlap), rects, cells, len(ys), len(xs), pad)

    def __len__(self) -> int:
        return int(self.rects.shape[0])

    @property
    def padded(self) -> bool:
        return self.pad != (0, 0)

    def cut(self, frame_bgr: np.ndarray, spec: InputSpec, rows: np.ndarray | None = None) -> np.ndarray:
        """The frame's tiles (or only tiles `rows`) as the stage-0 batch (n, 3, tile_h, tile_w) float32,
        normalised as `preprocess` normalises (RGB, bundle mean and std); the frame is converted once."""
        import cv2

        frame = _as_bgr(frame_bgr)
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the tile grid was made for "
                             f"{self.width}x{self.height}")
        if self.padded:
            frame = cv2.copyMakeBorder(frame, 0, self.pad[0], 0, self.pad[1], cv2.BORDER_REPLICATE)
        rects = self.rects if rows is None else self.rects[rows]
        view = sliding_window_view(frame, (self.tile_h, self.tile_w), axis=(0, 1))  # (H-T+1, W-T+1, 3, T, T)
        tiles = view[rects[:, 1], rects[:, 0], ::-1]  # (n, 3, T, T) uint8, RGB: one gather, no per-tile loop
        scale = (np.float32(1.0 / 255.0) / np.asarray(spec.std, np.float32))[:, None, None]  # (3, 1, 1)
        shift = (np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32))[:, None, None]
        out = tiles.astype(np.float32, order="C")
        out *= scale
        out -= shift
        return out  # (n, 3, T, T) float32

    def describe(self) -> dict:
        return {"tiles": len(self), "rows": self.rows, "cols": self.cols, "tile": [self.tile_w, self.tile_h],
                "overlap": self.overlap, "padded": self.padded}


def _widen(lo: int, hi: int, tile: int, size: int) -> tuple[int, int]:
    """[lo, hi) widened to at least one tile, kept inside [0, size)."""
    if hi - lo >= tile:
        return lo, hi
    lo = min(max(0, (lo + hi - tile) // 2), size - tile)
    return lo, lo + tile


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame is None or frame.ndim not in (2, 3) or frame.size == 0:
        raise InputError("empty or malformed frame")
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame


class GridCache:
    """One TileGrid per frame size (a camera's frames all have one size: the grid is made once)."""

    def __init__(self, tile_hw: tuple[int, int], overlap: float, roi: Roi | None = None):
        self.tile_hw, self.overlap, self.roi = tile_hw, overlap, roi
        self._grids: dict[tuple[int, int], TileGrid] = {}

    def get(self, frame_hw: tuple[int, int]) -> TileGrid:
        grid = self._grids.get(frame_hw)
        if grid is None:
            grid = self._grids[frame_hw] = TileGrid.for_frame(frame_hw, self.tile_hw, self.overlap, self.roi)
        return grid
