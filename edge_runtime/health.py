"""The health monitor: the service watching its own model, and what it does about it.

On a sampled fraction of frames a background thread runs
  (a) the FP32 reference stages next to the stages in use (quantized) and tracks decision agreement and
      logit error, the quantization error as it accumulates;
  (b) input drift: brightness, contrast and sharpness of the frame against the calibration statistics;
  (d) saturation: how much of the FP32 hidden state lies outside its calibrated range;
and on every frame (cheap, in the caller's thread)
  (c) confidence and exit-rate drift against the first decisions of the run (or the manifest's).
Each check is a small class in `edge_runtime.health_checks`; this module samples, runs them and acts.

The background thread does not call the backend the frame loop uses. A backend that says it must not be
shared between threads (`for_thread`: TensorRT, whose execution contexts, CUDA stream and device buffers
belong to one thread, and whose CUDA context is current only where it was pushed) gives the health thread
one of its own, made and closed in that thread: the same engines, its own execution contexts, stream and
buffers (batch 1), under the same CUDA context pushed there. Why not reuse what the frame loop computed: the
loop stops at the first confident exit and keeps no hidden state, while the checks need every exit's logits
and every stage's hidden state, so they would cost the loop a full-depth run and device-to-host copies on the
sampled frames. ONNX Runtime's sessions may be shared between threads: its backend is used as it is.

Actions: an agreement drop of up to `rollback_points` (2) points, input drift or saturation raise the exit
thresholds (`ExitPolicy.raised`: more frames go deeper); they return to normal when the cause clears. An
agreement drop above 2 points asks for a rollback to the previous bundle (`on_rollback`, carried out by
the service's loop). Every action is an event (`emit`).

Manifest sections read (optional; written by calib), each field by one check's `from_bundle`:

    calibration.input_stats     brightness / contrast / sharpness (mean, std) over the calibration images
    calibration.hidden_range    (lo, hi) per stage of the FP32 hidden state over the calibration images
    quantization.fp32_agreement_pct   early-exit decisions equal to FP32's at calibration, % (else 100)

The statistics are those of `input_stats`, on the frame resized to the model input (as the model sees it).
Without them the reference is taken from the first `ref_samples` sampled frames, and /status says so.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.health_checks import (
    STATS, DecisionDriftCheck, Finding, InputDriftCheck, SaturationCheck, ShadowCheck)
from edge_runtime.inference import stage_outputs
from edge_runtime.preprocess import normalize_rgb, to_rgb_resized

__all__ = ["STATS", "HealthConfig", "HealthMonitor", "input_stats"]


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
    """Watches one model (a DynamicInference); the service makes a new monitor for each model it loads."""

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
        self.shadow = ShadowCheck.from_bundle(model.bundle, model.precision, self.cfg)
        self.input = InputDriftCheck.from_bundle(model.bundle, self.cfg)
        self.saturation = SaturationCheck.from_bundle(model.bundle, self.cfg)
        self.decisions = DecisionDriftCheck(self.cfg, model.num_stages - 1, emit=self.emit)
        # observe(decision), every inferred frame in the caller's thread: the check's own method, no wrapper
        self.observe: Callable[[object], None] = self.decisions.observe
        self._q: queue.Queue = queue.Queue(maxsize=self.cfg.queue_size)
        self._acc = 0.0
        self.sampled = self.skipped = 0
        self._rng = np.random.default_rng(0)  # which tile of a frame a tile-mode check looks at
        self._thread = threading.Thread(target=self._work, name="health", daemon=True)
        self._thread.start()

    # the references in use, and where they came from (calib's tests read these)
    @property
    def input_ref_source(self) -> str:
        return self.input.source

    @property
    def hidden_range(self) -> list[tuple[float, float]] | None:
        return self.saturation.range

    @property
    def hidden_range_source(self) -> str:
        return self.saturation.source

    # ---------------------------------------------------------------- caller's side
    # observe(decision), bound in __init__: every inferred (not reused) decision; confidence and exit-rate
    # drift, O(1). submit(frame, decision): the sampled background checks.
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
        backend, opened = None, False  # this thread's backend, opened at the first sample
        try:
            while True:
                item = self._q.get()
                try:
                    if item is None:
                        return
                    if not opened:
                        backend, opened = self._open_thread_backend(), True
                    self._check(*item, backend=backend)
                except Exception as e:  # the monitor must never take the service down
                    self.emit("health_error", {"error": f"{type(e).__name__}: {e}"})
                finally:
                    self._q.task_done()
        finally:
            if backend is not None:
                try:
                    backend.close()
                except Exception as e:  # noqa: BLE001 - closing must not hide why the thread ended
                    self.emit("health_error", {"error": f"closing the health thread's backend: {e}"})

    def _open_thread_backend(self):
        """This thread's own backend where the model's backend must not be shared (see the module
        docstring); None where it may be (the model's own is used)."""
        for_thread = getattr(self.model.backend, "for_thread", None)
        if for_thread is None:
            return None
        try:
            return for_thread(max_batch=1)
        except Exception as e:  # noqa: BLE001 - reported; the model checks then fail one by one, said so
            self.emit("health_error", {"error": f"cannot open a backend for the health thread: "
                                                f"{type(e).__name__}: {e}"})
            return _Unavailable(f"the health thread has no backend ({type(e).__name__}: {e})")

    def _check(self, frame_bgr: np.ndarray, decision, backend=None) -> None:
        spec = self.model.spec
        rgb = to_rgb_resized(self._view(frame_bgr), spec)  # (h, w, 3) uint8
        x = normalize_rgb(rgb, spec)  # (1, 3, h, w) float32
        primary = stage_outputs(backend, x) if backend is not None else self.model.run_all_stages(x)
        ref = self.shadow.reference_outputs(x) if self.shadow.active else primary
        with self._lock:
            if self.shadow.active:
                self._act(self.shadow.update(primary[0], ref[0], self.model.policy, self.model.ok_index))
            self._act(self.input.update(input_stats(rgb)))
            self._act(self.saturation.update(ref[1]))

    def _view(self, frame_bgr: np.ndarray) -> np.ndarray:
        """What the model sees of a frame: the frame (resize mode), or one of its tiles at random (tile
        mode: a whole frame shrunk to a tile is an image the model never sees)."""
        tiled = getattr(self.model, "tiled", None)
        if tiled is None:
            return frame_bgr
        grid = tiled.grid_for(frame_bgr)
        x0, y0, x1, y1 = grid.rects[int(self._rng.integers(len(grid)))]
        return frame_bgr[y0:y1, x0:x1]

    def _act(self, finding: Finding | None) -> None:
        if finding is None:
            return
        if finding.rollback:
            self._request_rollback(finding.rollback)
        else:
            self._set_cause(finding.cause, finding.on, finding.detail)

    def _request_rollback(self, reason: str) -> None:
        if self.rollback_requested:
            return
        self.rollback_requested = reason
        self.emit("rollback_requested", {"reason": reason, "agreement": self.shadow.agreement(),
                                         "logit_error": self.shadow.mean_logit_error()})
        self.on_rollback(reason)

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

    # ---------------------------------------------------------------- reporting
    def agreement(self) -> float | None:
        return self.shadow.agreement()

    def agreement_drop(self) -> float:
        return self.shadow.drop()

    def mean_logit_error(self) -> float | None:
        return self.shadow.mean_logit_error()

    @property
    def state(self) -> str:
        if self.rollback_requested:
            return "rolling_back"
        return "degraded" if self.active or self.decisions.drifting else "ok"

    def gauges(self) -> tuple[str, float | None]:
        """(state, agreement) for the live metrics: consistent with each other, cheap, any thread."""
        with self._lock:
            return self.state, self.shadow.agreement()

    def status(self) -> dict:
        with self._lock:
            policy = self.model.policy
            return {
                "state": self.state, "sampled": self.sampled, "skipped_busy": self.skipped,
                "shadow": self.shadow.status(),
                "input_drift": self.input.status(),
                "decisions": self.decisions.status(),
                "saturation": self.saturation.status(),
                "raised_by": sorted(self.active),
                "early_exit": list(policy.thresholds), "early_exit_ok": list(policy.ok_thresholds),
                "rollback_requested": self.rollback_requested,
            }


class _Unavailable:
    """Stands for a thread backend that could not be opened: every use raises, with the reason."""

    def __init__(self, reason: str):
        self.reason = reason

    def __getattr__(self, name):
        raise RuntimeError(self.reason)

    def close(self) -> None:
        pass


def _join_with_timeout(q: queue.Queue, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while q.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.01)
