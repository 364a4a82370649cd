"""Accuracy, exit rates, compute and latency of staged graphs on a labelled image set.

Used by `edge-qwq bench` (FP32 and quantized stages side by side) and by calib's accuracy budget.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge_runtime.executor import EarlyExitExecutor, ExitPolicy, simulate_exits


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 4), "p99": round(float(np.percentile(a, 99)), 4)}


def exit_logits(executor: EarlyExitExecutor, x: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Every exit's logits for x (N, 3, H, W): a list of (N, classes)."""
    parts = [executor.run_all(x[i:i + batch]) for i in range(0, len(x), batch)]
    return [np.concatenate([p[k] for p in parts]) for k in range(executor.num_stages)]


def accuracy_report(logits: list[np.ndarray], labels: np.ndarray, policy: ExitPolicy, ok_index: int,
                    stage_flops: list[int]) -> dict:
    """Accuracy per exit, full depth and with early exit; exit rates; compute ratio."""
    pred, taken = simulate_exits(logits, policy, ok_index)
    cum = np.cumsum(stage_flops)
    rates = np.bincount(taken, minlength=len(logits)) / len(labels)
    return {
        "accuracy": {"student_full": _acc(logits[-1].argmax(1), labels),
                     "early_exit": _acc(pred, labels),
                     "exits": [_acc(lg.argmax(1), labels) for lg in logits]},
        "exit_rate": [round(float(r), 4) for r in rates],
        "compute_ratio": round(float(cum[taken].mean() / cum[-1]), 4),
        "defect_recall": _recall(pred, labels, ok_index),
    }


def _acc(pred: np.ndarray, labels: np.ndarray) -> float:
    return round(100.0 * float((pred == labels).mean()), 3)  # percent


def _recall(pred: np.ndarray, labels: np.ndarray, ok_index: int) -> float:
    """Share of defect frames flagged as some defect (a miss is the costly error in inspection)."""
    defect = labels != ok_index
    return round(100.0 * float((pred[defect] != ok_index).mean()), 3) if defect.any() else 100.0


def time_per_frame(fn: Callable[[np.ndarray], object], x: np.ndarray, frames: int, warmup: int = 10) -> list[float]:
    """Wall-clock ms of fn on single frames (1, 3, H, W), cycling through x."""
    for i in range(warmup):
        fn(x[i % len(x)][None])
    out = []
    for i in range(frames):
        xi = x[i % len(x)][None]
        t0 = time.perf_counter()
        fn(xi)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def latency_report(executor: EarlyExitExecutor, x: np.ndarray, frames: int = 200) -> dict:
    """p50/p99 ms per frame at full depth and with early exit, on the same frames."""
    full = time_per_frame(executor.run_all, x, frames)
    early = time_per_frame(executor.run, x, frames)
    return {"student_full": percentiles(full), "early_exit": percentiles(early)}
