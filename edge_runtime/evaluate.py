"""Accuracy, exit rates, compute and latency of staged graphs on a labelled image set.

Used by `edge-qwq bench` (FP32 and quantized stages side by side) and by calib's accuracy budget.
Latency is wall-clock ms per single frame, as p50/p95/p99 over `frames` timed frames; "full depth" is
the executor's own per-frame path (`EarlyExitExecutor.run`) with every early exit closed.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge_runtime.executor import EarlyExitExecutor, ExitPolicy, simulate_exits


QUANTILES = (50, 95, 99)


def percentiles(ms: list[float]) -> dict[str, float]:
    """{"p50", "p95", "p99"} of per-frame ms."""
    values = np.percentile(np.asarray(ms, np.float64), QUANTILES)
    return {f"p{q}": round(float(v), 4) for q, v in zip(QUANTILES, values)}


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


def time_per_frame(fn: Callable[[np.ndarray], object], x: np.ndarray, frames: int, warmup: int = 50) -> list[float]:
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


def full_depth(executor: EarlyExitExecutor) -> EarlyExitExecutor:
    """The same backend and stages with every early exit closed (threshold 1.0 never exits)."""
    n = executor.num_stages - 1
    return EarlyExitExecutor(executor.backend, ExitPolicy.build(n, [1.0] * n, [1.0] * n), executor.ok_index)


def latency_report(executor: EarlyExitExecutor, x: np.ndarray, frames: int = 1000) -> dict:
    """p50/p95/p99 ms per frame at full depth and with early exit, on the same frames."""
    full = time_per_frame(full_depth(executor).run, x, frames)
    early = time_per_frame(executor.run, x, frames)
    return {"student_full": percentiles(full), "early_exit": percentiles(early)}


def overhead_report(runtime: Callable[[np.ndarray], object], bare: Callable[[np.ndarray], object], x: np.ndarray,
                    frames: int = 1000, warmup: int = 50) -> dict:
    """The runtime's per-frame cost over bare calls doing the same work (e.g. session.run chained over the
    same sessions). Each frame runs both back to back, in ABBA order (neither always goes first), and
    overhead_pct is the median over frames of runtime / bare - 1, in percent: a pair shares the load of
    its moment, so a busy second on a shared machine cancels out instead of landing on one side."""
    for i in range(warmup):
        bare(x[i % len(x)][None])
        runtime(x[i % len(x)][None])
    per: dict[str, list[float]] = {"bare": [], "runtime": []}
    pair = (("bare", bare), ("runtime", runtime))
    clock = time.perf_counter
    for i in range(frames):
        xi = x[i % len(x)][None]
        for name, fn in (pair if i % 2 else pair[::-1]):
            t0 = clock()
            fn(xi)
            per[name].append((clock() - t0) * 1e3)
    ratio = np.asarray(per["runtime"]) / np.maximum(np.asarray(per["bare"]), 1e-9)
    return {"bare_ms": percentiles(per["bare"]), "runtime_ms": percentiles(per["runtime"]), "frames": frames,
            "overhead_pct": round(100.0 * (float(np.median(ratio)) - 1.0), 2)}
