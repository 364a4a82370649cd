"""The model the service decides with, and every way it changes: load, switch, roll back, fall back.

    >>> active = ActiveModel(bundle_dir, install_root, InferenceConfig(), HealthConfig(), event=print,
    ...                      health_event=print, on_switch=lambda model, health: ...)   # doctest: +SKIP
    >>> active.load(bundle_dir, "auto")          # a DynamicInference and its HealthMonitor   # doctest: +SKIP
    >>> if active.rollback_reason: active.rollback_now()   # in the loop, between two frames  # doctest: +SKIP

Each loaded model gets a HealthMonitor of its own; the monitor's rollback request (from its thread) is only
recorded here, and carried out by the service's loop between two frames: `installer.rollback` when the
bundle is an install root, else the FP32 stages of the same bundle. A bundle the backend cannot run (no
TensorRT engines for it on this device yet) is run on ONNX Runtime rather than stopping the service.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge_runtime import installer
from edge_runtime.errors import BackendUnavailable, EdgeError
from edge_runtime.health import HealthConfig, HealthMonitor
from edge_runtime.inference import DynamicInference, InferenceConfig

Emit = Callable[[str, dict], None]


class ActiveModel:
    def __init__(self, bundle_dir: Path, install_root: Path | None, inference: InferenceConfig,
                 health: HealthConfig, event: Emit, health_event: Emit,
                 on_switch: Callable[[DynamicInference, HealthMonitor], None] | None = None):
        """event: an event from the loop's thread; health_event: one from any thread (the monitor's);
        on_switch(model, health): after every load, in the thread that loaded."""
        self.bundle_dir, self.install_root = bundle_dir, install_root
        self.inference, self.health_cfg = inference, health
        self._event, self._health_event = event, health_event
        self._on_switch = on_switch or (lambda model, health: None)
        self.model: DynamicInference | None = None
        self.health: HealthMonitor | None = None
        self.rollback_reason: str | None = None  # asked for by the monitor, not yet carried out

    def load(self, bundle_dir: Path, precision: str, backend: str | None = None) -> None:
        """Open `bundle_dir` (BundleError: not a bundle; BackendUnavailable) and give it a new monitor."""
        if self.health is not None:
            self.health.close()
        cfg = replace(self.inference, precision=precision, backend=backend or self.inference.backend)
        self.model = DynamicInference(bundle_dir, cfg)
        self.bundle_dir = bundle_dir
        self.health = HealthMonitor(self.model, self.health_cfg, emit=self._health_event,
                                    on_rollback=self._request_rollback)
        self._on_switch(self.model, self.health)

    def load_or_cpu(self, bundle_dir: Path, precision: str) -> None:
        """Switching bundles while running: if the backend cannot run it (no TensorRT engines built for
        this bundle on this device yet), keep deciding on ONNX Runtime rather than stop, and say so."""
        try:
            self.load(bundle_dir, precision)
        except BackendUnavailable as e:
            self.load(bundle_dir, precision, backend="onnxruntime")
            self._event("backend_fallback", {"bundle": str(bundle_dir), "backend": "onnxruntime", "reason": str(e)})

    def close(self) -> None:
        if self.health is not None:
            self.health.close()

    # ---------------------------------------------------------------- rollback
    def _request_rollback(self, reason: str) -> None:
        self.rollback_reason = reason  # carried out by the loop (rollback_now), between two frames

    def rollback_now(self) -> None:
        """Carry out the pending rollback: the previous installed bundle, else this bundle's FP32 stages."""
        reason, self.rollback_reason = self.rollback_reason, None
        if reason is None:
            return
        old = str(self.bundle_dir)
        if self.install_root is None:
            return self.fallback_fp32(reason, old)
        try:
            bad, good = installer.rollback(self.install_root, reason)
        except EdgeError as e:
            self._event("rollback_failed", {"reason": reason, "error": str(e)})
            return self.fallback_fp32(reason)
        self.load_or_cpu(good, self.inference.precision)
        self._event("rollback", {"from": str(bad), "to": str(good), "reason": reason,
                                 "model_version": self.model.bundle.version, "precision": self.model.precision})

    def fallback_fp32(self, reason: str, old: str | None = None) -> None:
        """The same bundle on its FP32 stages (when the quantized ones are in use)."""
        if self.model.precision != "quantized":
            self._event("rollback_unavailable", {"reason": reason, "bundle": str(self.bundle_dir)})
            return
        self.load_or_cpu(self.bundle_dir, "fp32")
        self._event("fallback_fp32", {"reason": reason, "bundle": old or str(self.bundle_dir),
                                      "note": "no previous bundle installed: running the FP32 stages"})
