"""Scoring whole frames against their true defect boxes (a frames folder: PNGs and boxes.json).

    >>> frames = load_frames("data/frames/score")                      # doctest: +SKIP
    >>> outcomes = [FrameOutcome.of(t, model.infer_tiles(frames.image(i)))   # doctest: +SKIP
    ...             for i, t in enumerate(frames.truth)]
    >>> frame_metrics(outcomes, (96, 96), stage_flops)["recall_pct"]    # doctest: +SKIP

A frame is a defect frame when it holds at least one true defect. A true defect is *located* when a
reported box of at most 2 x 2 tiles contains its centre; a reported box is a *location hit* when it
overlaps a true box, and a *false box* when it overlaps none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.errors import InputError

BOXES = "boxes.json"


@dataclass
class FrameSet:
    root: Path
    names: list[str]
    truth: list[list[dict]]  # per frame: [{"label", "box": [x0, y0, x1, y1], "centre": [cx, cy], ...}]

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray:
        from edge_runtime.preprocess import read_image

        return read_image(self.root / self.names[i])


def load_frames(folder: str | Path, limit: int | None = None) -> FrameSet:
    """A folder of frames with its boxes.json ({"frames": {name: [defects]}}); InputError if it is not one."""
    root = Path(folder)
    path = root / BOXES
    if not path.is_file():
        raise InputError(f"{root} is not a frames folder: it has no {BOXES} (make one with "
                         "`edge-qwq data sample --frames N`)")
    try:
        frames = json.loads(path.read_text())["frames"]
        names = sorted(frames)
        truth = [[_defect(d) for d in frames[n]] for n in names]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path} is malformed ({type(e).__name__}: {e})") from None
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise InputError(f"{root}: {len(missing)} frames named in {BOXES} are missing (first: {missing[0]})")
    if not names:
        raise InputError(f"{path} names no frames")
    names, truth = names[:limit], truth[:limit]
    return FrameSet(root, names, truth)


def _defect(d: dict) -> dict:
    box = [int(v) for v in d["box"]]
    centre = d.get("centre") or [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    return {**d, "box": box, "centre": [float(centre[0]), float(centre[1])]}


@dataclass
class FrameOutcome:
    truth: list[dict]
    is_defect: bool
    defects: list[dict]  # reported boxes
    latency_ms: float
    tiles: int
    stage_tiles: list[int]

    @classmethod
    def of(cls, truth: list[dict], decision) -> "FrameOutcome":
        """A tile-mode Decision scored against the frame's true defects."""
        return cls(truth, decision.is_defect, decision.defects or [], decision.latency_ms,
                   decision.tiles["tiles"], decision.tiles["stage_tiles"])


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _contains(box, point) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def frame_metrics(outcomes: list[FrameOutcome], tile_hw: tuple[int, int], stage_flops: list[int]) -> dict:
    """Frame-level recall, false alarms and accuracy (percent), location figures and compute per frame."""
    th, tw = tile_hw
    defect = np.array([bool(o.truth) for o in outcomes])
    flagged = np.array([o.is_defect for o in outcomes])
    n_true = sum(len(o.truth) for o in outcomes)
    located = subtle = subtle_located = hits = false_boxes = boxes = 0
    for o in outcomes:
        small = [b for b in (d["box"] for d in o.defects) if b[2] - b[0] <= 2 * tw and b[3] - b[1] <= 2 * th]
        for t in o.truth:
            found = any(_contains(b, t["centre"]) for b in small)
            located += found
            if t.get("subtle"):
                subtle += 1
                subtle_located += found
        for d in o.defects:
            boxes += 1
            if any(_overlaps(d["box"], t["box"]) for t in o.truth):
                hits += 1
            else:
                false_boxes += 1
    full = sum(stage_flops)
    used = [sum(n * f for n, f in zip(o.stage_tiles, stage_flops)) for o in outcomes]
    lat = np.array([o.latency_ms for o in outcomes])
    pct = lambda a, b: round(100.0 * a / b, 2) if b else None  # noqa: E731
    return {
        "frames": len(outcomes), "defect_frames": int(defect.sum()), "good_frames": int((~defect).sum()),
        "recall_pct": pct(int((flagged & defect).sum()), int(defect.sum())),
        "false_alarm_pct": pct(int((flagged & ~defect).sum()), int((~defect).sum())),
        "accuracy_pct": pct(int((flagged == defect).sum()), len(outcomes)),
        "true_defects": n_true, "located_pct": pct(located, n_true),
        "subtle_defects": subtle, "subtle_located_pct": pct(subtle_located, subtle),
        "boxes": boxes, "location_hits_pct": pct(hits, boxes),
        "false_boxes_per_frame": round(false_boxes / max(1, len(outcomes)), 4),
        "tiles_per_frame": round(float(np.mean([o.tiles for o in outcomes])), 1),
        "stage_tiles_per_frame": [round(float(v), 2) for v in np.mean([_pad(o.stage_tiles, len(stage_flops))
                                                                         for o in outcomes], axis=0)],
        "compute_ratio": round(float(np.sum(used)) / max(1, sum(o.tiles for o in outcomes) * full), 4),
        "flops_per_frame": int(np.mean(used)),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 3), "p99": round(float(np.percentile(lat, 99)), 3)},
    }


def _pad(values: list[int], n: int) -> list[int]:
    return list(values) + [0] * (n - len(values))
