"""The health monitor's four checks, one class each. A check keeps its own windows and reference and says
what it saw (a `Finding`); acting on it (raising thresholds, asking for a rollback) is the monitor's. The
decision-drift check only reports (an event), so it emits that itself, from the frame loop without a wrapper.

    ShadowCheck       (a) FP32 reference vs the stages in use: decision agreement, logit error
    InputDriftCheck   (b) brightness, contrast, sharpness of the frame vs the calibration statistics
    SaturationCheck   (d) share of the FP32 hidden state outside its calibrated range
    DecisionDriftCheck(c) confidence and early-exit rate vs the first decisions of the run

Each manifest section is read in one place, the check's `from_bundle` (keys documented in health.py).
Only `DecisionDriftCheck.observe` runs per frame, in the caller's thread; the others run in the monitor's
background thread, under its lock.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.executor import ExitPolicy, simulate_exits
from edge_runtime.inference import stage_outputs

if TYPE_CHECKING:
    from edge_runtime.bundle import Bundle
    from edge_runtime.health import HealthConfig

STATS = ("brightness", "contrast", "sharpness")
STAT_FLOOR = {"brightness": 2.0, "contrast": 2.0, "sharpness": 0.1}  # sharpness floor is relative


@dataclass(frozen=True)
class Finding:
    """A check's verdict: `cause` is on (raise the thresholds) or off (restore), or a rollback is due."""

    cause: str
    on: bool
    detail: dict = field(default_factory=dict)
    rollback: str | None = None  # the reason, when the check asks for a rollback instead


class ShadowCheck:
    """(a) On sampled frames, the FP32 reference stages (ONNX Runtime) next to the quantized stages in use.

    An agreement drop above `rollback_points` asks for a rollback; a smaller one raises the thresholds."""

    def __init__(self, cfg: HealthConfig, reference=None, baseline: float = 1.0,
                 note: str = "FP32 stages in use: no quantization to check"):
        self.cfg, self.reference, self.baseline, self.note = cfg, reference, baseline, note
        self.agree: deque[bool] = deque(maxlen=cfg.window)
        self.logit_err: deque[float] = deque(maxlen=cfg.window)

    @classmethod
    def from_bundle(cls, bundle: Bundle, precision: str, cfg: HealthConfig) -> ShadowCheck:
        """Manifest (calib): quantization.fp32_agreement_pct, the share of early-exit decisions equal to FP32's
        measured at calibration, in percent; without it, 100 %. `baseline` is that share as a fraction."""
        q = bundle.manifest.quantization
        baseline = (q.fp32_agreement_pct if q is not None else 100.0) / 100.0
        if precision != "quantized":
            return cls(cfg, baseline=baseline)
        from edge_runtime.backends import open_backend

        return cls(cfg, open_backend("onnxruntime", bundle, precision="fp32"), baseline,
                   "FP32 reference (onnxruntime) vs the quantized stages in use")

    @property
    def active(self) -> bool:
        return self.reference is not None

    def reference_outputs(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The reference's (exit logits, hidden states) for x (1, 3, H, W)."""
        return stage_outputs(self.reference, x)

    def update(self, logits_q: list[np.ndarray], logits_r: list[np.ndarray], policy: ExitPolicy,
               ok_index: int) -> Finding | None:
        pq, eq = simulate_exits(logits_q, policy, ok_index)
        pr, _ = simulate_exits(logits_r, policy, ok_index)
        k = int(eq[0])
        self.agree.append(bool(pq[0] == pr[0]))
        self.logit_err.append(float(np.abs(logits_q[k] - logits_r[k]).max()))
        cfg, n, drop = self.cfg, len(self.agree), self.drop()
        if n >= cfg.min_samples or (n >= cfg.fast_samples and drop > cfg.fast_drop_points):
            if drop > cfg.rollback_points:
                return Finding("agreement", True, rollback=f"decision agreement with the FP32 reference fell "
                               f"{drop:.1f} points (> {cfg.rollback_points:g}) over {n} samples")
            if n >= cfg.min_samples:
                return Finding("agreement", drop > 0, {"drop_points": round(drop, 2), "samples": n})
        return None

    def drop(self) -> float:
        """Agreement below the calibration baseline, in points (0 when at or above it)."""
        if not self.agree:
            return 0.0
        return max(0.0, (self.baseline - sum(self.agree) / len(self.agree)) * 100)

    def agreement(self) -> float | None:
        return round(sum(self.agree) / len(self.agree), 4) if self.agree else None

    def mean_logit_error(self) -> float | None:
        return round(float(np.mean(self.logit_err)), 5) if self.logit_err else None

    def status(self) -> dict:
        return {"check": self.note, "samples": len(self.agree), "agreement": self.agreement(),
                "baseline": self.baseline, "drop_points": round(self.drop(), 2),
                "logit_error": self.mean_logit_error()}


class InputDriftCheck:
    """(b) Window means of `input_stats` more than `drift_z` reference stds away from the reference."""

    def __init__(self, cfg: HealthConfig, reference: dict[str, tuple[float, float]] | None = None):
        self.cfg = cfg
        self.ref = reference or None  # {stat: (mean, std)}
        if self.ref:
            self.source = "manifest calibration statistics"
        elif cfg.ref_samples:
            self.source = f"first {cfg.ref_samples} sampled frames (the manifest has no calibration statistics)"
        else:
            self.source = "skipped: the manifest has no calibration statistics"
        self._ref_samples: list[dict] = []
        self.window: deque[dict] = deque(maxlen=cfg.drift_window)
        self.drifting: list[str] = []

    @classmethod
    def from_bundle(cls, bundle: Bundle, cfg: HealthConfig) -> InputDriftCheck:
        """Manifest (calib): calibration.input_stats, {"brightness": InputStat(mean, std), "contrast", ...}."""
        cal = bundle.manifest.calibration
        ref = cal.input_stats if cal is not None else {}
        return cls(cfg, {k: (ref[k].mean, ref[k].std) for k in STATS if k in ref})

    def update(self, stats: dict[str, float]) -> Finding | None:
        if self.ref is None:
            if len(self._ref_samples) < self.cfg.ref_samples:
                self._ref_samples.append(stats)
                if len(self._ref_samples) == self.cfg.ref_samples:
                    self.ref = {k: (float(np.mean([s[k] for s in self._ref_samples])),
                                    float(np.std([s[k] for s in self._ref_samples]))) for k in STATS}
            return None
        self.window.append(stats)
        if len(self.window) < self.window.maxlen:
            return None
        z = self.z()
        self.drifting = [k for k, v in z.items() if v > self.cfg.drift_z]
        return Finding("input_drift", bool(self.drifting),
                       {"metrics": self.drifting, "z": {k: round(v, 2) for k, v in z.items()}})

    def z(self) -> dict[str, float]:
        if self.ref is None or not self.window:
            return {}
        z = {}
        for k, (mean, std) in self.ref.items():
            floor = STAT_FLOOR[k] * (abs(mean) if k == "sharpness" else 1.0)
            now = float(np.mean([s[k] for s in self.window]))
            z[k] = abs(now - mean) / max(std, floor, 1e-6)
        return z

    def status(self) -> dict:
        return {"reference": self.source, "drifting": self.drifting,
                "z": {k: round(v, 2) for k, v in self.z().items()}}


class SaturationCheck:
    """(d) Share of the FP32 hidden state (every stage) outside its calibrated [lo, hi]; over
    `saturation_limit` on average over the window raises the thresholds."""

    def __init__(self, cfg: HealthConfig, hidden_range: list[tuple[float, float]] | None = None):
        self.cfg = cfg
        self.range = hidden_range
        self.source = "manifest" if hidden_range else f"first {cfg.ref_samples} sampled frames"
        self._acc: list[list[float]] | None = None
        self._n = 0
        self.window: deque[float] = deque(maxlen=cfg.drift_window)

    @classmethod
    def from_bundle(cls, bundle: Bundle, cfg: HealthConfig) -> SaturationCheck:
        """Manifest (calib): calibration.hidden_range, [(lo, hi), ...one per stage] of the FP32 hidden state."""
        cal = bundle.manifest.calibration
        return cls(cfg, list(cal.hidden_range) if cal is not None and cal.hidden_range else None)

    def update(self, hidden: list[np.ndarray]) -> Finding | None:
        if self.range is None:
            acc = self._acc = self._acc or [[np.inf, -np.inf] for _ in hidden]
            for r, h in zip(acc, hidden):
                r[0], r[1] = min(r[0], float(h.min())), max(r[1], float(h.max()))
            self._n += 1
            if self._n >= max(1, self.cfg.ref_samples):
                self.range = [tuple(r) for r in acc]
            return None
        out = sum(int(((h < lo) | (h > hi)).sum()) for h, (lo, hi) in zip(hidden, self.range))
        self.window.append(out / sum(h.size for h in hidden))
        if len(self.window) == self.window.maxlen:
            frac = float(np.mean(self.window))
            return Finding("saturation", frac > self.cfg.saturation_limit, {"fraction": round(frac, 4)})
        return None

    def fraction(self) -> float | None:
        return round(float(np.mean(self.window)), 4) if self.window else None

    def status(self) -> dict:
        return {"reference": self.source, "fraction": self.fraction()}


class DecisionDriftCheck:
    """(c) Mean confidence and early-exit rate over the last `decision_window` decisions against the first
    window of the run; checked every 50 decisions. O(1) per decision: it runs in the frame loop."""

    def __init__(self, cfg: HealthConfig, last_exit: int, emit: Callable[[str, dict], None]):
        n = cfg.decision_window
        self.last_exit = last_exit  # the final stage's exit index: any exit below it is early
        self.emit = emit  # (kind, detail) when the verdict changes: an event, not a cause
        self.conf: deque[float] = deque(maxlen=n)
        self.exits: deque[int] = deque(maxlen=n)
        self._observed = 0  # decisions seen; the windows above stop growing once full
        self.ref: tuple[float, float] | None = None  # (mean confidence, early-exit rate)
        self.drifting: list[str] = []

    def observe(self, decision) -> None:
        """One inferred decision (its confidence and exit_index); emits an event when the verdict changes."""
        self.conf.append(decision.confidence)
        self.exits.append(decision.exit_index)
        self._observed += 1
        if self.ref is None and len(self.conf) >= self.conf.maxlen:
            self.ref = self._stats()
        elif self.ref is not None and self._observed % 50 == 0:
            self._check()

    def _stats(self) -> tuple[float, float]:
        return float(np.mean(self.conf)), float(np.mean([e < self.last_exit for e in self.exits]))

    def _check(self) -> None:
        (c0, e0), (c1, e1) = self.ref, self._stats()
        drift = [name for name, d, lim in (("confidence", c1 - c0, 0.1), ("early_exit_rate", e1 - e0, 0.2))
                 if abs(d) > lim]
        if drift != self.drifting:
            self.drifting = drift
            self.emit("decision_drift" if drift else "decision_drift_cleared",
                      {"metrics": drift, "confidence": [round(c0, 3), round(c1, 3)],
                       "early_exit_rate": [round(e0, 3), round(e1, 3)]})

    def status(self) -> dict:
        return {"reference": self.ref, "drifting": self.drifting}
