"""The health monitor: the service watching its own model, and what it does about it.

On a sampled fraction of frames a background thread runs
  (a) the FP32 reference stages next to the stages in use (quantized) and tracks decision agreement and
      logit error, the quantization error as it accumulates;
  (b) input drift: brightness, contrast and sharpness of the frame against the calibration statistics;
  (d) saturation: how much of the FP32 hidden state lies outside its calibrated range;
and on every frame (cheap, in the caller's thread)
  (c) confidence and exit-rate drift against the first decisions of the run (or the manifest's).

Actions: an agreement drop of up to `rollback_points` (2) points, input drift or saturation raise the exit
thresholds (`ExitPolicy.raised`: more frames go deeper); they return to normal when the cause clears. An
agreement drop above 2 points asks for a rollback to the previous bundle (`on_rollback`, carried out by
the service's loop). Every action is an event (`emit`).

Manifest fields read (all optional; written by calib)::

    "calibration": {"input_stats": {"brightness": {"mean": m, "std": s}, "contrast": {...}, "sharpness": {...}},
                    "hidden_range": [[lo, hi], ...one per stage (FP32 hidden state over the calibration set)]}
    "quantization": {"fp32_agreement": 0.99}   # decision agreement measured at calibration (else 1.0)

The statistics are those of `input_stats`, on the frame resized to the model input (as the model sees it).
Without them the reference is taken from the first `ref_samples` sampled frames, and /status says so.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.executor import simulate_exits
from edge_runtime.preprocess import normalize_rgb, to_rgb_resized

STATS = ("brightness", "contrast", "sharpness")
STAT_FLOOR = {"brightness": 2.0, "contrast": 2.0, "sharpness": 0.1}  # sharpness floor is relative


def input_stats(rgb: np.ndarray) -> dict[str, float]:
    """Brightness (mean grey), contrast (grey std) and sharpness (variance of the Laplacian) of an RGB
    uint8 image (H, W, 3) at the model's input size, grey levels 0..255."""
    import cv2

    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {"brightness": float(g.mean()), "contrast": float(g.std()),
            "sharpness": float(cv2.Laplacian(g, cv2.CV_32F).var())}


@dataclass
class HealthConfig:
    sample_rate: float = 0.05  # fraction of inferred frames checked in the background
    window: int = 100  # shadow samples in the rolling agreement window
    min_samples: int = 50  # before any agreement action
    fast_samples: int = 20  # ... except a gross drop (> fast_drop_points) after this many
    fast_drop_points: float = 20.0
    rollback_points: float = 2.0  # agreement drop above this: roll back; up to it: raise thresholds
    raise_delta: float = 0.04  # per active cause
    ref_samples: int = 50  # frames for the input reference when the manifest has none
    drift_z: float = 3.0  # window mean this many reference stds away: drift
    drift_window: int = 20
    saturation_limit: float = 0.01
    decision_window: int = 300
    queue_size: int = 2  # samples waiting for the background thread; more are skipped (counted)


class HealthMonitor:
    def __init__(self, model, config: HealthConfig | None = None,
                 emit: Callable[[str, dict], None] | None = None,
                 on_rollback: Callable[[str], None] | None = None):
        self.model, self.cfg = model, config or HealthConfig()
        self.emit = emit or (lambda kind, detail: None)
        self.on_rollback = on_rollback or (lambda reason: None)
        self.base_policy = model.policy
        self.active: set[str] = set()  # causes currently raising the thresholds
        self.rollback_requested: str | None = None
        self._lock = threading.Lock()
        self._init_shadow()
        self._init_drift()
        self._init_decisions()
        self._q: queue.Queue = queue.Queue(maxsize=self.cfg.queue_size)
        self._acc = 0.0
        self.sampled = self.skipped = 0
        self._thread = threading.Thread(target=self._work, name="health", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- setup
    def _init_shadow(self) -> None:
        from edge_runtime.backends import open_backend

        self.reference = None
        self.shadow_note = "FP32 stages in use: no quantization to check"
        if self.model.precision == "quantized":
            self.reference = open_backend("onnxruntime", self.model.bundle, precision="fp32")
            self.shadow_note = "FP32 reference (onnxruntime) vs the quantized stages in use"
        q = self.model.bundle.section("quantization")
        base = float(q.get("fp32_agreement", 1.0))
        self.baseline = base / 100 if base > 1 else base
        self.agree: deque[bool] = deque(maxlen=self.cfg.window)
        self.logit_err: deque[float] = deque(maxlen=self.cfg.window)

    def _init_drift(self) -> None:
        calib = self.model.bundle.section("calibration")
        ref = calib.get("input_stats") or {}
        self.input_ref = {k: (float(ref[k]["mean"]), float(ref[k]["std"])) for k in STATS if k in ref} or None
        self.input_ref_source = "manifest calibration statistics" if self.input_ref else None
        if self.input_ref is None:
            self.input_ref_source = (f"first {self.cfg.ref_samples} sampled frames (the manifest has no "
                                     "calibration statistics)" if self.cfg.ref_samples else
                                     "skipped: the manifest has no calibration statistics")
        self._ref_samples: list[dict] = []
        self.input_window: deque[dict] = deque(maxlen=self.cfg.drift_window)
        self.drifting: list[str] = []
        ranges = calib.get("hidden_range")
        self.hidden_range = [tuple(map(float, r)) for r in ranges] if ranges else None
        self.hidden_range_source = "manifest" if ranges else f"first {self.cfg.ref_samples} sampled frames"
        self._range_acc: list[list[float]] | None = None
        self._range_n = 0
        self.saturation: deque[float] = deque(maxlen=self.cfg.drift_window)

    def _init_decisions(self) -> None:
        n = self.cfg.decision_window
        self.conf: deque[float] = deque(maxlen=n)
        self.exits: deque[int] = deque(maxlen=n)
        self._observed = 0  # decisions seen; the windows above stop growing once full
        self.decision_ref: tuple[float, float] | None = None  # (mean confidence, early-exit rate)
        self.decision_drift: list[str] = []

    # ---------------------------------------------------------------- caller's side
    def observe(self, decision) -> None:
        """Every inferred (not reused) decision: confidence and exit-rate drift, O(1)."""
        self.conf.append(decision.confidence)
        self.exits.append(decision.exit_index)
        self._observed += 1
        if self.decision_ref is None and len(self.conf) >= self.conf.maxlen:
            self.decision_ref = self._decision_stats()
        elif self.decision_ref is not None and self._observed % 50 == 0:
            self._check_decisions()

    def submit(self, frame_bgr: np.ndarray, decision) -> None:
        """Offer an inferred frame; a `sample_rate` fraction goes to the background checks."""
        self._acc += self.cfg.sample_rate
        if self._acc < 1.0 or self.rollback_requested:
            return
        self._acc -= 1.0
        try:
            self._q.put_nowait((frame_bgr, decision))
            self.sampled += 1
        except queue.Full:
            self.skipped += 1

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until the queued samples are processed (tests, orderly shutdown)."""
        self._q.join() if timeout is None else _join_with_timeout(self._q, timeout)

    # ---------------------------------------------------------------- background
    def _work(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                self._check(*item)
            except Exception as e:  # the monitor must never take the service down
                self.emit("health_error", {"error": f"{type(e).__name__}: {e}"})
            finally:
                self._q.task_done()

    def _check(self, frame_bgr: np.ndarray, decision) -> None:
        spec = self.model.spec
        rgb = to_rgb_resized(frame_bgr, spec)
        x = normalize_rgb(rgb, spec)
        primary = _run_all(self.model.backend, x)
        ref = _run_all(self.reference, x) if self.reference is not None else primary
        with self._lock:
            if self.reference is not None:
                self._check_agreement(primary[0], ref[0])
            self._check_input(input_stats(rgb))
            self._check_saturation(ref[1])

    def _check_agreement(self, logits_q: list[np.ndarray], logits_r: list[np.ndarray]) -> None:
        policy, ok = self.model.policy, self.model.ok_index
        pq, eq = simulate_exits(logits_q, policy, ok)
        pr, _ = simulate_exits(logits_r, policy, ok)
        k = int(eq[0])
        self.agree.append(bool(pq[0] == pr[0]))
        self.logit_err.append(float(np.abs(logits_q[k] - logits_r[k]).max()))
        n, drop = len(self.agree), self.agreement_drop()
        if n >= self.cfg.min_samples or (n >= self.cfg.fast_samples and drop > self.cfg.fast_drop_points):
            if drop > self.cfg.rollback_points:
                self._request_rollback(f"decision agreement with the FP32 reference fell "
                                       f"{drop:.1f} points (> {self.cfg.rollback_points:g}) over {n} samples")
            elif n >= self.cfg.min_samples:
                self._set_cause("agreement", drop > 0, {"drop_points": round(drop, 2), "samples": n})

    def agreement_drop(self) -> float:
        if not self.agree:
            return 0.0
        return max(0.0, (self.baseline - sum(self.agree) / len(self.agree)) * 100)

    def _request_rollback(self, reason: str) -> None:
        if self.rollback_requested:
            return
        self.rollback_requested = reason
        self.emit("rollback_requested", {"reason": reason, "agreement": self.agreement(),
                                         "logit_error": self.mean_logit_error()})
        self.on_rollback(reason)

    def _check_input(self, stats: dict[str, float]) -> None:
        if self.input_ref is None:
            if len(self._ref_samples) < self.cfg.ref_samples:
                self._ref_samples.append(stats)
                if len(self._ref_samples) == self.cfg.ref_samples:
                    self.input_ref = {k: (float(np.mean([s[k] for s in self._ref_samples])),
                                          float(np.std([s[k] for s in self._ref_samples]))) for k in STATS}
            return
        self.input_window.append(stats)
        if len(self.input_window) < self.input_window.maxlen:
            return
        z = self.input_z()
        self.drifting = [k for k, v in z.items() if v > self.cfg.drift_z]
        self._set_cause("input_drift", bool(self.drifting),
                        {"metrics": self.drifting, "z": {k: round(v, 2) for k, v in z.items()}})

    def input_z(self) -> dict[str, float]:
        if self.input_ref is None or not self.input_window:
            return {}
        z = {}
        for k, (mean, std) in self.input_ref.items():
            floor = STAT_FLOOR[k] * (abs(mean) if k == "sharpness" else 1.0)
            now = float(np.mean([s[k] for s in self.input_window]))
            z[k] = abs(now - mean) / max(std, floor, 1e-6)
        return z

    def _check_saturation(self, hidden: list[np.ndarray]) -> None:
        if self.hidden_range is None:
            acc = self._range_acc = self._range_acc or [[np.inf, -np.inf] for _ in hidden]
            for r, h in zip(acc, hidden):
                r[0], r[1] = min(r[0], float(h.min())), max(r[1], float(h.max()))
            self._range_n += 1
            if self._range_n >= max(1, self.cfg.ref_samples):
                self.hidden_range = [tuple(r) for r in acc]
            return
        out = sum(int(((h < lo) | (h > hi)).sum()) for h, (lo, hi) in zip(hidden, self.hidden_range))
        self.saturation.append(out / sum(h.size for h in hidden))
        if len(self.saturation) == self.saturation.maxlen:
            frac = float(np.mean(self.saturation))
            self._set_cause("saturation", frac > self.cfg.saturation_limit, {"fraction": round(frac, 4)})

    def _set_cause(self, cause: str, on: bool, detail: dict) -> None:
        if on == (cause in self.active):
            return
        (self.active.add if on else self.active.discard)(cause)
        policy = self.base_policy.raised(self.cfg.raise_delta * len(self.active)) if self.active \
            else self.base_policy
        self.model.set_policy(policy)
        self.emit("thresholds_raised" if on else "thresholds_restored",
                  {"cause": cause, **detail, "early_exit": list(policy.thresholds),
                   "early_exit_ok": list(policy.ok_thresholds)})

    # ---------------------------------------------------------------- decisions (c)
    def _decision_stats(self) -> tuple[float, float]:
        last = self.model.executor.num_stages - 1
        return float(np.mean(self.conf)), float(np.mean([e < last for e in self.exits]))

    def _check_decisions(self) -> None:
        (c0, e0), (c1, e1) = self.decision_ref, self._decision_stats()
        drift = [name for name, d, lim in (("confidence", c1 - c0, 0.1), ("early_exit_rate", e1 - e0, 0.2))
                 if abs(d) > lim]
        if drift != self.decision_drift:
            self.decision_drift = drift
            self.emit("decision_drift" if drift else "decision_drift_cleared",
                      {"metrics": drift, "confidence": [round(c0, 3), round(c1, 3)],
                       "early_exit_rate": [round(e0, 3), round(e1, 3)]})

    # ---------------------------------------------------------------- reporting
    def agreement(self) -> float | None:
        return round(sum(self.agree) / len(self.agree), 4) if self.agree else None

    def mean_logit_error(self) -> float | None:
        return round(float(np.mean(self.logit_err)), 5) if self.logit_err else None

    @property
    def state(self) -> str:
        if self.rollback_requested:
            return "rolling_back"
        return "degraded" if self.active or self.decision_drift else "ok"

    def status(self) -> dict:
        with self._lock:
            policy = self.model.policy
            return {
                "state": self.state, "sampled": self.sampled, "skipped_busy": self.skipped,
                "shadow": {"check": self.shadow_note, "samples": len(self.agree), "agreement": self.agreement(),
                           "baseline": self.baseline, "drop_points": round(self.agreement_drop(), 2),
                           "logit_error": self.mean_logit_error()},
                "input_drift": {"reference": self.input_ref_source, "drifting": self.drifting,
                                "z": {k: round(v, 2) for k, v in self.input_z().items()}},
                "decisions": {"reference": self.decision_ref, "drifting": self.decision_drift},
                "saturation": {"reference": self.hidden_range_source,
                               "fraction": round(float(np.mean(self.saturation)), 4) if self.saturation else None},
                "raised_by": sorted(self.active),
                "early_exit": list(policy.thresholds), "early_exit_ok": list(policy.ok_thresholds),
                "rollback_requested": self.rollback_requested,
            }


def _run_all(backend, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every exit's logits and every stage's hidden state (host arrays) for x (1, 3, H, W)."""
    h, logits, hidden = x, [], []
    for k in range(backend.num_stages):
        h, lg = backend.run_stage(k, h)
        logits.append(lg)
        hidden.append(backend.hidden_to_host(h))
    return logits, hidden


def _join_with_timeout(q: queue.Queue, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while q.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.01)
