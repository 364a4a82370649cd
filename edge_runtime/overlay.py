"""The decision drawn on a frame (for /latest.jpg, evidence JPEGs and jetson/detect_stream.py). cv2 only.

    >>> shown = annotate(frame, decision)                     # border, header, defect boxes  # doctest: +SKIP
    >>> shown = annotate(frame, decision, heatmap=True, grid=model.tiled.grid_for(frame))   # doctest: +SKIP
    >>> evidence = draw_defects(frame, decision)              # only the boxes (and heat)     # doctest: +SKIP

In tile mode a decision carries `defects` ([{"label", "confidence", "box": [x0, y0, x1, y1]}], frame
pixels): each is drawn as a box with "label confidence" on it. With `heatmap`, its `tile_map` (tile defect
scores, None outside the region of interest) is laid over the frame, translucent: blue for 0, red for 1.
"""
from __future__ import annotations

import numpy as np

OK_COLOR, DEFECT_COLOR = (60, 180, 60), (40, 40, 230)  # BGR
HEAT_ALPHA = 0.35  # weight of the heat colours where a tile was inspected


def annotate(frame_bgr: np.ndarray, decision, heatmap: bool = False, grid=None) -> np.ndarray:
    """A copy of `frame_bgr` with a coloured border, "label confidence exit latency" on top, and (tile
    mode) the defect boxes; with `heatmap`, the tile map under them (`grid`: the frame's TileGrid, for
    exact tile positions; without it the map is spread evenly over the frame)."""
    import cv2

    img = draw_defects(frame_bgr, decision, heatmap, grid)
    color = DEFECT_COLOR if decision.is_defect else OK_COLOR
    h, w = img.shape[:2]
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), color, max(2, min(h, w) // 60))
    text = f"{decision.label} {decision.confidence:.2f} exit{decision.exit_index} {decision.latency_ms:.1f}ms"
    if decision.reused:
        text += " (reused)"
    if getattr(decision, "defects", None):
        text += f" {len(decision.defects)} defect{'s' if len(decision.defects) > 1 else ''}"
    scale = max(0.35, min(h, w) / 640)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (min(w, tw + 8), th + base + 8), color, -1)
    cv2.putText(img, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def draw_defects(frame_bgr: np.ndarray, decision, heatmap: bool = False, grid=None) -> np.ndarray:
    """A BGR copy of `frame_bgr` with the decision's defect boxes, each labelled "label confidence"; with
    `heatmap`, the tile map first. A decision without defects (resize mode, an ok frame) comes back as a
    plain copy."""
    import cv2

    img = frame_bgr.copy() if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    tile_map = getattr(decision, "tile_map", None)
    if heatmap and tile_map:
        _heat(img, tile_map, grid)
    for d in getattr(decision, "defects", None) or []:
        _box(img, d)
    return img


def _box(img: np.ndarray, defect: dict) -> None:
    import cv2

    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in defect["box"])
    x0, y0 = min(max(0, x0), w - 1), min(max(0, y0), h - 1)
    x1, y1 = min(max(x0 + 1, x1), w) - 1, min(max(y0 + 1, y1), h) - 1  # inclusive corner for cv2
    thick = max(1, min(h, w) // 240)
    cv2.rectangle(img, (x0, y0), (x1, y1), DEFECT_COLOR, thick)
    text = f"{defect['label']} {float(defect['confidence']):.2f}"
    scale = max(0.3, min(h, w) / 960)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y0 - base - 2 if y0 - th - base - 4 >= 0 else min(h - 1, y0 + th + base + 2)  # above, else inside
    tx = min(x0, max(0, w - tw - 4))
    cv2.rectangle(img, (tx, ty - th - 2), (min(w - 1, tx + tw + 4), ty + base), DEFECT_COLOR, -1)
    cv2.putText(img, text, (tx + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _heat(img: np.ndarray, tile_map: list[list[float | None]], grid=None) -> None:
    """Blend the tile scores into `img` in place: each pixel takes the highest score of the tiles that
    cover it; pixels no inspected tile covers are left as they are."""
    import cv2

    h, w = img.shape[:2]
    heat = np.full((h, w), -1.0, np.float32)  # -1: not inspected
    for (x0, y0, x1, y1), s in _cells(tile_map, grid, h, w):
        region = heat[y0:y1, x0:x1]
        np.maximum(region, s, out=region)
    covered = heat >= 0
    if not covered.any():
        return
    colors = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    blend = cv2.addWeighted(img, 1.0 - HEAT_ALPHA, colors, HEAT_ALPHA, 0.0)
    img[covered] = blend[covered]


def _cells(tile_map, grid, h: int, w: int):
    """((x0, y0, x1, y1) clipped to the frame, score) for every inspected tile."""
    if grid is not None and (grid.rows, grid.cols) == (len(tile_map), len(tile_map[0])):
        for (x0, y0, x1, y1), (r, c) in zip(grid.rects.tolist(), grid.cells.tolist()):
            s = tile_map[r][c]
            if s is not None:
                yield (x0, y0, min(x1, w), min(y1, h)), float(s)
        return
    rows, cols = len(tile_map), len(tile_map[0])
    ys, xs = np.linspace(0, h, rows + 1).astype(int), np.linspace(0, w, cols + 1).astype(int)
    for r in range(rows):
        for c in range(cols):
            if tile_map[r][c] is not None:
                yield (xs[c], ys[r], xs[c + 1], ys[r + 1]), float(tile_map[r][c])
