"""The early-exit executor: run stage 0, stop when its exit is confident enough, else go deeper.

Inspection asymmetry: missing a defect costs more than a false alarm, so exiting early with "ok" may
demand more confidence (`ok_thresholds`) than exiting early with a defect (`thresholds`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import EdgeError

DEFAULT_EARLY_EXIT = (0.85, 0.92)


def ok_thresholds_for(thresholds) -> list[float]:
    """The bar to exit early as "ok" when none is given: stricter than the defect bar, halving the
    remaining doubt (0.85 -> 0.925, 0.92 -> 0.96). The one rule for it, used by every default."""
    return [round(float(t) + (1 - float(t)) / 2, 4) for t in thresholds]


def default_thresholds(early_exits: int) -> tuple[list[float], list[float]]:
    """The seed's defaults, [0.85, 0.92] (0.92 for any further exit), and the ok bar from them."""
    defect = (list(DEFAULT_EARLY_EXIT) + [DEFAULT_EARLY_EXIT[-1]] * early_exits)[:early_exits]
    return defect, ok_thresholds_for(defect)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class ExitPolicy:
    """Confidence needed to stop at each early exit (the last stage always answers)."""

    thresholds: tuple[float, ...]  # to exit early with a defect class
    ok_thresholds: tuple[float, ...]  # to exit early with the ok class (>= thresholds)

    @classmethod
    def build(cls, early_exits: int, thresholds=None, ok_thresholds=None) -> "ExitPolicy":
        """Missing thresholds take the defaults; a missing ok bar is derived from the defect bar by
        `ok_thresholds_for`, the same rule the defaults follow."""
        th = tuple(float(t) for t in (thresholds if thresholds is not None else default_thresholds(early_exits)[0]))
        ok = tuple(float(t) for t in (ok_thresholds if ok_thresholds is not None else ok_thresholds_for(th)))
        for name, values in (("early_exit", th), ("early_exit_ok", ok)):
            if len(values) != early_exits:
                raise EdgeError(f"{name} needs {early_exits} thresholds (one per early exit), got {list(values)}")
            if any(not 0.0 < v <= 1.0 for v in values):
                raise EdgeError(f"{name} thresholds must lie in (0, 1], got {list(values)}")
        return cls(th, ok)

    @classmethod
    def from_spec(cls, spec, early_exits: int, thresholds=None, ok_thresholds=None) -> "ExitPolicy":
        """The bundle's policy (an `ExitPolicySpec`), each bar overridden where the user gave one."""
        return cls.build(early_exits, thresholds if thresholds is not None else spec.early_exit,
                         ok_thresholds if ok_thresholds is not None else spec.early_exit_ok)

    def raised(self, delta: float) -> "ExitPolicy":
        """Stricter by `delta` (the health monitor's response to drift); capped at 1.0 = never exit."""
        return ExitPolicy(tuple(min(1.0, t + delta) for t in self.thresholds),
                          tuple(min(1.0, t + delta) for t in self.ok_thresholds))

    def exits_at(self, k: int, label: int, confidence: float, ok_index: int) -> bool:
        """Whether top-1 `label` with softmax `confidence` at early exit k is confident enough to stop."""
        need = self.ok_thresholds[k] if label == ok_index else self.thresholds[k]
        return confidence >= need and need < 1.0


def top1(logits: np.ndarray) -> tuple[int, float]:
    """(argmax, its softmax probability) of one frame's logits (classes,), without the full softmax:
    p(label) = 1 / sum(exp(z - z[label])). In plain Python on a list: for a handful of classes this is
    several times cheaper than numpy calls between two ONNX Runtime runs, and it runs after every stage.
    A plain loop (no generator, no key function) halves its cost between ONNX Runtime calls."""
    z = logits.tolist()
    top = max(z)
    s = 0.0
    for v in z:
        s += _exp(v - top)
    return z.index(top), 1.0 / s


_exp = math.exp


@dataclass
class ExitResult:
    label_index: int
    confidence: float  # softmax probability of label_index
    exit_index: int
    stage_ms: list[float]
    hidden: object  # the last stage's hidden handle (for health checks)
    logits: np.ndarray  # (classes,) of the exit taken


class EarlyExitExecutor:
    def __init__(self, backend, policy: ExitPolicy, ok_index: int):
        self.backend, self.policy, self.ok_index = backend, policy, ok_index
        self.num_stages = backend.num_stages

    def run(self, x: np.ndarray, max_stage: int | None = None) -> ExitResult:
        """One frame x (1, 3, H, W): stop at the first confident exit (or at `max_stage`)."""
        last = self.num_stages - 1 if max_stage is None else max_stage
        h, stage_ms = x, []
        for k in range(last + 1):
            t0 = time.perf_counter()
            h, logits = self.backend.run_stage(k, h)
            stage_ms.append((time.perf_counter() - t0) * 1e3)
            label, conf = top1(logits[0])
            if k == last or self.policy.exits_at(k, label, conf, self.ok_index):
                return ExitResult(label, conf, k, stage_ms, h, logits[0])
        raise AssertionError("unreachable")

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Every exit's logits for a batch x (B, 3, H, W): a list of (B, classes), for evaluation."""
        h, outs = x, []
        for k in range(self.num_stages):
            h, logits = self.backend.run_stage(k, h)
            outs.append(logits)
        return outs


def simulate_exits(exit_logits: list[np.ndarray], policy: ExitPolicy, ok_index: int) -> tuple[np.ndarray, np.ndarray]:
    """What the executor would decide for N frames, from all their exit logits [(N, C)] * stages.

    Returns (predicted label (N,), exit taken (N,)), identical to calling `run` frame by frame."""
    n, last = exit_logits[0].shape[0], len(exit_logits) - 1
    pred = np.full(n, -1, np.int64)
    exit_at = np.full(n, last, np.int64)
    for k, logits in enumerate(exit_logits):
        probs = softmax(logits)
        for i in np.flatnonzero(pred < 0):
            label = int(probs[i].argmax())
            if k == last or policy.exits_at(k, label, float(probs[i, label]), ok_index):
                pred[i], exit_at[i] = label, k
    return pred, exit_at
