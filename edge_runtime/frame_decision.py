"""From tile results to one frame decision: defect or ok, where the defects are, and a per-tile map.

A frame is a defect when one of its tiles scores at least the frame threshold (fitted on defect-free
frames, manifest `frames.threshold`); its label is the class of the most confident defect tile. Defect
tiles of one class that overlap are merged into one box, and a merged group wider or taller than
2 x 2 tiles is split around its strongest tiles (a long run of tiles would otherwise give a box that
says little about where the defect is).

Tile score = 1 - p(ok) at the exit the tile took: the tile's probability of showing some defect.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.tile_executor import TileResults
from edge_runtime.tiling import TileGrid

MAX_BOX_TILES = 2  # a box spans at most this many tiles per side


@dataclass
class FrameVerdict:
    label_index: int
    confidence: float  # defect: the best defect tile's score; ok: 1 - the highest tile score
    defects: list[dict]  # [{"label", "confidence", "box": [x0, y0, x1, y1]}] in frame pixels
    tile_map: list[list[float | None]]  # (rows, cols) tile scores; None where no tile was inspected
    scores: np.ndarray  # (N,) tile scores


def decide_frame(grid: TileGrid, results: TileResults, threshold: float, classes: list[str],
                 ok_index: int) -> FrameVerdict:
    """The frame's verdict from its tiles' results, at tile score `threshold`."""
    scores = results.defect_score(ok_index)  # (N,)
    defect_class = _defect_class(results.probs, ok_index)  # (N,) best class other than ok
    hot = np.flatnonzero(scores >= threshold)
    defects = []
    for c in np.unique(defect_class[hot]):
        tiles = hot[defect_class[hot] == c]
        for group in _groups(grid.cells[tiles]):
            for part in _split(grid.cells[tiles[group]], scores[tiles[group]]):
                members = tiles[group][part]
                defects.append({"label": classes[int(c)], "confidence": round(float(scores[members].max()), 5),
                                "box": _box(grid, members)})
    defects.sort(key=lambda d: -d["confidence"])
    if defects:
        best = hot[np.argmax(scores[hot])]
        label, conf = int(defect_class[best]), float(scores[best])
    else:
        label, conf = ok_index, float(1.0 - scores.max(initial=0.0))
    return FrameVerdict(label, conf, defects, tile_map(grid, scores), scores)


def _defect_class(probs: np.ndarray, ok_index: int) -> np.ndarray:
    p = probs.copy()
    p[:, ok_index] = -1.0
    return p.argmax(axis=1)


def _groups(cells: np.ndarray) -> list[np.ndarray]:
    """Connected groups of tiles (8-neighbourhood on the grid: neighbours overlap). cells (n, 2) row, col."""
    n, seen, groups = len(cells), np.zeros(len(cells), bool), []
    for start in range(n):
        if seen[start]:
            continue
        stack, members = [start], []
        seen[start] = True
        while stack:
            i = stack.pop()
            members.append(i)
            near = np.flatnonzero(~seen & (np.abs(cells - cells[i]).max(axis=1) <= 1))
            seen[near] = True
            stack.extend(near.tolist())
        groups.append(np.array(sorted(members)))
    return groups


def _split(cells: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    """A group's tiles as parts of at most MAX_BOX_TILES x MAX_BOX_TILES cells, strongest first: each part
    is the window (among those holding the strongest remaining tile) with the largest summed score."""
    left, parts = np.arange(len(cells)), []
    while len(left):
        top = left[np.argmax(scores[left])]
        best, best_sum = None, -1.0
        for dr in range(MAX_BOX_TILES):
            for dc in range(MAX_BOX_TILES):
                r0, c0 = cells[top] - (dr, dc)
                inside = left[(cells[left, 0] >= r0) & (cells[left, 0] < r0 + MAX_BOX_TILES)
                              & (cells[left, 1] >= c0) & (cells[left, 1] < c0 + MAX_BOX_TILES)]
                total = float(scores[inside].sum())
                if total > best_sum:
                    best, best_sum = inside, total
        parts.append(best)
        left = np.setdiff1d(left, best)
    return parts


def _box(grid: TileGrid, members: np.ndarray) -> list[int]:
    """The union of tiles `members`, clipped to the frame as given (not its padding)."""
    r = grid.rects[members]
    return [int(r[:, 0].min()), int(r[:, 1].min()), int(min(r[:, 2].max(), grid.width)),
            int(min(r[:, 3].max(), grid.height))]


def tile_map(grid: TileGrid, scores: np.ndarray) -> list[list[float | None]]:
    """(rows, cols) of tile scores rounded to 3 decimals; None for cells outside the region of interest."""
    m: list[list[float | None]] = [[None] * grid.cols for _ in range(grid.rows)]
    for (r, c), s in zip(grid.cells.tolist(), scores.tolist()):
        m[r][c] = round(s, 3)
    return m
