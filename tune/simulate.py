"""What a configuration would do, from cached exit scores: decisions, exits taken, reuse, metrics.

`decide` is `edge_runtime.executor.simulate_exits` vectorised over images (a test checks they agree on every
image); `reuse` replays `edge_runtime.reuse.FrameReuse` on a video's patch statistics. `measure` turns both
into a trial's figures: accuracy and defect recall in percent, the share of frames leaving at each exit, the
expected ms per frame from per-stage ms (estimated on a target, or measured), and the share of video frames
whose decision reuse changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tune.scores import ExitScores


def decide(s: ExitScores, thresholds, ok_thresholds, ok_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,), exit taken (N,)) under the policy: at early exit k an image stops when its
    top-1 confidence reaches the bar for its class (ok_thresholds[k] for the ok class, else thresholds[k])
    and that bar is below 1; the last stage answers the rest."""
    last = s.stages - 1
    pred, taken = s.top[last].copy(), np.full(len(s), last, np.int64)
    open_ = np.ones(len(s), bool)
    for k in range(last):
        need = np.where(s.top[k] == ok_index, np.float32(ok_thresholds[k]), np.float32(thresholds[k]))
        stop = open_ & (s.conf[k] >= need) & (need < 1.0)
        pred[stop], taken[stop] = s.top[k][stop], k
        open_ &= ~stop
    return pred, taken


def reuse(stats: np.ndarray, decisions: np.ndarray, window: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Replay FrameReuse on a video: stats (F, ...) each frame's patch statistics, decisions (F,) what
    inferring each frame would decide. Returns (the decisions with reuse (F,), reused (F,) bool)."""
    out, reused = decisions.copy(), np.zeros(len(decisions), bool)
    if window <= 0:
        return out, reused
    ref, last, run = None, None, 0
    for i in range(len(decisions)):
        if ref is not None and run < window and float(np.abs(stats[i] - ref).max()) <= threshold:
            out[i], reused[i] = last, True
            run += 1
            continue
        ref, last, run = stats[i], decisions[i], 0
    return out, reused


def expected_ms(stage_ms: list[float], rates: np.ndarray) -> float:
    """Mean ms per inferred frame when rates[k] of frames leave after stage k."""
    return float(np.dot(rates, np.cumsum(stage_ms)))


@dataclass
class Figures:
    accuracy: float  # percent, on the split's images
    recall: float  # percent of defect images flagged as a defect
    exit_rates: list[float]  # share of images leaving at each exit (sums to 1)
    reuse_rate: float  # share of video frames that reused a decision (0 without reuse)
    reuse_changed_pct: float  # percent of video frames whose decision reuse changed
    latency_ms: float  # expected ms per frame: exit rates x stage ms, times the frames not reused
    measured_ms: float | None = None  # the same with per-stage ms measured here

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def measure(s: ExitScores, params: dict, ok_index: int, stage_ms: list[float], video=None,
            measured_stage_ms: list[float] | None = None) -> Figures:
    """A configuration's figures on a split (and a video, for reuse). params: early_exit, early_exit_ok
    (lists), reuse_window, reuse_threshold."""
    pred, taken = decide(s, params["early_exit"], params["early_exit_ok"], ok_index)
    labels = s.labels
    acc = 100.0 * float((pred == labels).mean())
    defect = labels != ok_index
    recall = 100.0 * float((pred[defect] != ok_index).mean()) if defect.any() else 100.0
    rates = np.bincount(taken, minlength=s.stages) / len(s)
    reuse_rate = changed = 0.0
    if video is not None and params.get("reuse_window", 0) > 0:
        every, _ = decide(video.scores, params["early_exit"], params["early_exit_ok"], ok_index)
        with_reuse, reused = reuse(video.stats, every, params["reuse_window"], params["reuse_threshold"])
        reuse_rate = float(reused.mean())
        changed = 100.0 * float((with_reuse != every).mean())
    inferred = 1.0 - reuse_rate
    measured = None if measured_stage_ms is None else inferred * expected_ms(measured_stage_ms, rates)
    return Figures(acc, recall, [round(float(r), 4) for r in rates], reuse_rate, changed,
                   inferred * expected_ms(stage_ms, rates), measured)
