"""Running stage chains on calibration data: accuracy (full depth and with early exit) and errors."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib.qdq import run


@dataclass
class Scores:
    full: float  # accuracy (%) at the last exit
    early: float  # accuracy (%) with the bundle's early-exit policy
    logit_err: float  # mean over exits of relative squared logit error vs FP32 (0 for FP32 itself)
    exit_rate: list[float]  # fraction of frames answered at each exit
    agreement: float = 100.0  # % of frames whose early-exit decision equals FP32's (the health baseline)

    def drop(self, ref: "Scores") -> float:
        """The larger of the two accuracy drops, in points."""
        return max(ref.full - self.full, ref.early - self.early)

    def to_dict(self) -> dict:
        return {"accuracy": round(self.full, 3), "accuracy_early_exit": round(self.early, 3),
                "logit_error": float(self.logit_err), "exit_rate": [round(r, 4) for r in self.exit_rate],
                "fp32_agreement": round(self.agreement, 3)}


def chain(models: list, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run stages in order on x (N, 3, H, W): (inputs of each stage, logits of each exit)."""
    inputs, logits, h = [], [], x
    for m in models:
        inputs.append(h)
        out = run(m, h)
        h, z = out["hidden"], out["logits"]  # (N, T, dim), (N, classes)
        logits.append(z)
    return inputs, logits


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(((a - ref) ** 2).sum() / max((ref ** 2).sum(), 1e-20))


def score(logits: list[np.ndarray], labels: np.ndarray, policy, ok_index: int,
          ref_logits: list[np.ndarray] | None = None) -> Scores:
    from edge_runtime.executor import simulate_exits

    full = float((logits[-1].argmax(axis=1) == labels).mean() * 100)
    pred, exit_at = simulate_exits(logits, policy, ok_index)
    early = float((pred == labels).mean() * 100)
    err = 0.0 if ref_logits is None else float(np.mean([rel_err(z, r) for z, r in zip(logits, ref_logits)]))
    rate = [float((exit_at == k).mean()) for k in range(len(logits))]
    agree = 100.0
    if ref_logits is not None:
        agree = float((simulate_exits(ref_logits, policy, ok_index)[0] == pred).mean() * 100)
    return Scores(full, early, err, rate, agree)


def hidden_stats(h: np.ndarray) -> dict:
    """Range of a hidden state (N, T, dim): what the health monitor compares live frames against."""
    a = np.abs(h)
    return {"min": float(h.min()), "max": float(h.max()), "abs_p99_9": float(np.percentile(a, 99.9)),
            "mean": float(h.mean()), "std": float(h.std())}
