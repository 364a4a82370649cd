"""The device service: source -> frame reuse -> DynamicInference -> store -> metrics and health.

    >>> Service(ServiceConfig(bundle="/var/lib/edge-qwq", source="csi://0", store="decisions.db",
    ...                       http="0.0.0.0:8080")).run()           # doctest: +SKIP

Start-up checks everything a user can get wrong before the first frame (bundle, port, evidence disk, store,
source), each a one-line EdgeError, closing what was already opened. READY=1 goes to systemd once frames can
flow; WATCHDOG=1 from the loop itself, so a hung loop gets restarted. SIGTERM (or SIGINT) stops the loop,
commits the pending decisions and closes the store. A rollback requested by the health monitor is carried
out here, between two frames: `installer.rollback` when --bundle is an install root, else the FP32 stages.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_runtime import installer
from edge_runtime.errors import BackendUnavailable, EdgeError
from edge_runtime.health import HealthConfig, HealthMonitor
from edge_runtime.notify import Notifier
from edge_runtime.reuse import FrameReuse
from edge_runtime.sources import EndOfStream, Frame


@dataclass
class ServiceConfig:
    bundle: str
    source: str
    store: str | None = None
    jsonl: str | None = None  # JSON lines of stored decisions ("-": stdout); default stdout without --store
    http: str | None = None
    evidence: str | None = None
    evidence_budget_mb: float = 1024.0
    reuse_window: int = 0
    shadow_rate: float = 0.05
    backend: str = "onnxruntime"
    precision: str = "auto"
    early_exit: list[float] | None = None
    early_exit_ok: list[float] | None = None
    threads: int = 0
    max_frames: int = 0
    full_res_frames: bool = False  # MJPEG: decode at full size (evidence, /latest.jpg) at a CPU cost
    connect_timeout: float = 10.0
    handle_signals: bool = True  # SIGTERM/SIGINT stop the loop (main thread only)
    health: HealthConfig = field(default_factory=HealthConfig)


class Metrics:
    """Prometheus metrics in a registry of their own (several services may live in one test process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.frames = Counter("edgeqwq_frames", "Frames decided", ["reused"], registry=r)
        self.exits = Counter("edgeqwq_exits", "Inferred frames by the exit taken", ["exit"], registry=r)
        self.defects = Counter("edgeqwq_defects", "Frames decided as a defect", registry=r)
        self.latency = Histogram("edgeqwq_latency_seconds", "Per-frame decision latency", registry=r,
                                 buckets=(.001, .002, .005, .01, .015, .02, .03, .05, .1, .25, 1.0))
        self.dropped = Counter("edgeqwq_dropped_frames", "Frames not decided", ["reason"], registry=r)
        self.reconnects = Counter("edgeqwq_source_reconnects", "Stream reopenings after a loss", registry=r)
        self.stored = Counter("edgeqwq_stored_decisions", "Decisions committed to the store", registry=r)
        self.events = Counter("edgeqwq_events", "Service events", ["kind"], registry=r)
        self.agreement = Gauge("edgeqwq_shadow_agreement", "Decision agreement with FP32 (window)", registry=r)
        self.healthy = Gauge("edgeqwq_health_ok", "1 when the health monitor reports ok", registry=r)
        self.fps = Gauge("edgeqwq_fps", "Decided frames per second (recent)", registry=r)
        self._seen = {"stale": 0, "corrupt": 0, "reconnects": 0}
        self._children: dict = {}

    def child(self, metric, label: str):
        """metric.labels(label), looked up once (labels() takes a lock and builds a key: per-frame cost)."""
        key = (metric._name, label)
        if key not in self._children:
            self._children[key] = metric.labels(label)
        return self._children[key]

    def sync_source(self, stats) -> None:
        for key, now, counter in (("stale", stats.stale_dropped, self.child(self.dropped, "stale")),
                                  ("corrupt", stats.corrupt, self.child(self.dropped, "corrupt")),
                                  ("reconnects", stats.reconnects, self.reconnects)):
            if now > self._seen[key]:
                counter.inc(now - self._seen[key])
                self._seen[key] = now


class StdoutSink:
    """No --store: each decision is printed as a JSON line at once (nothing is kept)."""

    stored = last_id = 0

    def __init__(self, out=None):
        self.out = out or sys.stdout

    def add(self, row: dict) -> dict:
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()
        return row

    def maybe_commit(self, now=None) -> list[dict]:
        return []

    flush = maybe_commit

    def event(self, kind: str, detail: dict, when=None) -> None:
        print(f"edge-qwq: event {kind}: {json.dumps(detail)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.out.flush()


class Service:
    def __init__(self, config: ServiceConfig):
        self.cfg = config
        self.metrics = Metrics()
        self.registry = self.metrics.registry
        self.notifier = Notifier()
        self.reuse = FrameReuse(config.reuse_window)
        self.events: deque[dict] = deque(maxlen=50)
        self._pending_events: deque[dict] = deque()
        self._stop = threading.Event()
        self._rollback_reason: str | None = None
        self._latest: tuple[np.ndarray, object] | None = None
        self._latency: deque[float] = deque(maxlen=1000)
        self._times: deque[float] = deque(maxlen=300)
        self._exit_counts: dict[int, int] = {}
        self.frames = self.inferred = 0
        self.started = time.time()
        self._beat = time.monotonic()
        self.model = self.health = self.source = self.store = self.evidence = self.http = None
        self.bundle_dir, self.install_root = installer.resolve(config.bundle)

    # ---------------------------------------------------------------- start and stop
    def run(self) -> int:
        """Run until the source ends, `max_frames`, SIGTERM or SIGINT; returns the exit status (0)."""
        self._install_signals()
        with ExitStack() as stack:
            self._start(stack)
            self.notifier.ready(f"deciding on {self.cfg.source} with {self.model.bundle.version}")
            try:
                self._loop()
            finally:
                self.notifier.stopping()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> None:
        if self.cfg.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())

    def _start(self, stack: ExitStack) -> None:
        self._load_model(self.bundle_dir, self.cfg.precision)  # BundleError: not a bundle
        stack.callback(lambda: self.health and self.health.close())
        if self.cfg.http:
            from edge_runtime.http_api import HttpApi

            self.http = HttpApi(self.cfg.http, self).start()  # EdgeError: port in use
            stack.callback(self.http.close)
        if self.cfg.evidence:
            from edge_runtime.store import EvidenceWriter

            self.evidence = EvidenceWriter(self.cfg.evidence, self.cfg.evidence_budget_mb)  # budget > disk
        self.store = self._open_store()
        stack.callback(self.store.close)  # last decisions committed on every way out
        from edge_runtime.sources import open_source

        spec = self.model.spec
        self.source = open_source(self.cfg.source, connect_timeout=self.cfg.connect_timeout,  # no such source
                                  prepare=self._prepare,
                                  min_size=None if self.cfg.full_res_frames else (spec.height, spec.width))
        stack.callback(self.source.close)
        self._event("started", {"bundle": str(self.bundle_dir), "model_version": self.model.bundle.version,
                                "precision": self.model.precision, "source": self.cfg.source})

    def _open_store(self):
        if not self.cfg.store:
            return StdoutSink()
        from edge_runtime.store import DecisionStore

        return DecisionStore(self.cfg.store, jsonl=self.cfg.jsonl)

    def _load_model(self, bundle_dir: Path, precision: str, backend: str | None = None) -> None:
        from edge_runtime.inference import DynamicInference, InferenceConfig

        if self.health is not None:
            self.health.close()
        cfg = InferenceConfig(backend=backend or self.cfg.backend, precision=precision, early_exit=self.cfg.early_exit,
                              early_exit_ok=self.cfg.early_exit_ok, reuse_window=self.cfg.reuse_window,
                              threads=self.cfg.threads)
        self.model = DynamicInference(bundle_dir, cfg)
        self.bundle_dir = bundle_dir
        self.reuse.reset()
        hcfg = replace(self.cfg.health, sample_rate=self.cfg.shadow_rate)
        self.health = HealthMonitor(self.model, hcfg, emit=self._event_threadsafe,
                                    on_rollback=self._request_rollback)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """Preprocessing, run in the source's decode thread (overlaps inference)."""
        from edge_runtime.preprocess import preprocess

        return preprocess(image, self.model.spec)

    def _infer(self, frame: Frame):
        """DynamicInference.infer on a frame whose tensor the decode thread already prepared."""
        if frame.tensor is None or frame.tensor.shape[2:] != (self.model.spec.height, self.model.spec.width):
            return self.model.infer(frame.image)
        from edge_runtime.inference import Decision

        m, t0 = self.model, time.perf_counter()
        r = m.executor.run(frame.tensor)
        latency = frame.prep_ms + (time.perf_counter() - t0) * 1e3
        return Decision(m.classes[r.label_index], r.confidence, r.exit_index,
                        r.label_index != m.ok_index, latency, r.stage_ms, m.bundle.version)

    # ---------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read(timeout=0.25)
            except EndOfStream:
                break
            if frame is not None:
                self._process(frame)
            self._tick()
            if self.cfg.max_frames and self.frames >= self.cfg.max_frames:
                break

    def _process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        d = self.reuse.lookup(frame.image)
        if d is None:
            d = self._infer(frame)
            self.reuse.remember(frame.image, d)
            self.health.submit(frame.image, d)
            self.health.observe(d)
            self.inferred += 1
            self._exit_counts[d.exit_index] = self._exit_counts.get(d.exit_index, 0) + 1
            self.metrics.child(self.metrics.exits, str(d.exit_index)).inc()
        else:
            d = replace(d, latency_ms=(time.perf_counter() - t0) * 1e3)
        evidence = self._save_evidence(frame, d) if d.is_defect else None
        self.store.add({"time": time.time(), "frame_id": frame.id, "source": self.cfg.source, "label": d.label,
                        "confidence": round(d.confidence, 5), "exit": d.exit_index,
                        "latency_ms": round(d.latency_ms, 3), "model_version": d.model_version,
                        "reused": int(d.reused), "evidence": evidence})
        self._latest = (frame.image, d)
        self.frames += 1
        self._latency.append(d.latency_ms)
        self._times.append(time.monotonic())
        self.metrics.child(self.metrics.frames, str(d.reused).lower()).inc()
        self.metrics.latency.observe(d.latency_ms / 1e3)
        if d.is_defect:
            self.metrics.defects.inc()

    def _save_evidence(self, frame: Frame, d) -> str | None:
        if self.evidence is None:
            return None
        was_paused = self.evidence.paused_reason
        path = self.evidence.save(frame.image, frame.id, d.label)
        if self.evidence.paused_reason and not was_paused:
            print(f"edge-qwq: warning: {self.evidence.paused_reason}", file=sys.stderr, flush=True)
            self._event("evidence_paused", {"reason": self.evidence.paused_reason})
        return path

    def _tick(self) -> None:
        self._beat = time.monotonic()
        self.notifier.watchdog(self._beat)
        while self._pending_events:
            e = self._pending_events.popleft()
            self.store.event(e["kind"], e["detail"], e["time"])
        done = self.store.maybe_commit(self._beat)
        if done:
            self.metrics.stored.inc(len(done))
        self.metrics.sync_source(self.source.stats)
        if self._rollback_reason:
            self._rollback(self._rollback_reason)

    # ---------------------------------------------------------------- health actions
    def _event_threadsafe(self, kind: str, detail: dict) -> None:
        e = {"time": time.time(), "kind": kind, "detail": detail}
        self.events.append(e)
        self._pending_events.append(e)
        self.metrics.events.labels(kind).inc()

    def _event(self, kind: str, detail: dict) -> None:
        self._event_threadsafe(kind, detail)
        if self.store is not None:
            while self._pending_events:
                e = self._pending_events.popleft()
                self.store.event(e["kind"], e["detail"], e["time"])

    def _request_rollback(self, reason: str) -> None:
        self._rollback_reason = reason  # carried out by the loop, between two frames

    def _rollback(self, reason: str) -> None:
        self._rollback_reason = None
        old = str(self.bundle_dir)
        if self.install_root is not None:
            try:
                bad, good = installer.rollback(self.install_root, reason)
            except EdgeError as e:
                self._event("rollback_failed", {"reason": reason, "error": str(e)})
                return self._fallback_fp32(reason)
            self._load_model_or_cpu(good, self.cfg.precision)
            self._event("rollback", {"from": str(bad), "to": str(good), "reason": reason,
                                     "model_version": self.model.bundle.version,
                                     "precision": self.model.precision})
        else:
            self._fallback_fp32(reason, old)

    def _load_model_or_cpu(self, bundle_dir: Path, precision: str) -> None:
        """Switching bundles while running: if the backend cannot run it (no TensorRT engines built for
        this bundle on this device yet), keep deciding on ONNX Runtime rather than stop, and say so."""
        try:
            self._load_model(bundle_dir, precision)
        except BackendUnavailable as e:
            self._load_model(bundle_dir, precision, backend="onnxruntime")
            self._event("backend_fallback", {"bundle": str(bundle_dir), "backend": "onnxruntime", "reason": str(e)})

    def _fallback_fp32(self, reason: str, old: str | None = None) -> None:
        if self.model.precision != "quantized":
            self._event("rollback_unavailable", {"reason": reason, "bundle": str(self.bundle_dir)})
            return
        self._load_model_or_cpu(self.bundle_dir, "fp32")
        self._event("fallback_fp32", {"reason": reason, "bundle": old or str(self.bundle_dir),
                                      "note": "no previous bundle installed: running the FP32 stages"})

    # ---------------------------------------------------------------- what HTTP reads
    def healthz(self) -> tuple[bool, str]:
        age = time.monotonic() - self._beat
        return (age < 10.0, f"loop alive {age:.1f} s ago" if age < 10.0 else f"loop stalled for {age:.0f} s")

    def readyz(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "stopping"
        if self.source is None or self.model is None:
            return False, "starting"
        if self.source.live and not self.source.stats.connected:
            return False, "source disconnected (reconnecting)"
        return True, "ready"

    def latest_jpeg(self) -> bytes | None:
        import cv2

        from edge_runtime.overlay import annotate

        latest = self._latest
        if latest is None:
            return None
        ok, buf = cv2.imencode(".jpg", annotate(*latest))
        return buf.tobytes() if ok else None

    def fps(self) -> float:
        t = list(self._times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def status(self) -> dict:
        lat = np.asarray(self._latency) if self._latency else None
        health = self.health.status() if self.health else {}
        self.metrics.fps.set(self.fps())
        self.metrics.healthy.set(1 if health.get("state") == "ok" else 0)
        if health.get("shadow", {}).get("agreement") is not None:
            self.metrics.agreement.set(health["shadow"]["agreement"])
        stats = self.source.stats.to_dict() if self.source else {}
        return {
            "model_version": self.model.bundle.version if self.model else None,
            "bundle": str(self.bundle_dir), "precision": self.model.precision if self.model else None,
            "source": self.cfg.source, "uptime_s": round(time.time() - self.started, 1),
            "frames": self.frames, "inferred": self.inferred, "fps": round(self.fps(), 2),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 3) if lat is not None else None,
                           "p99": round(float(np.percentile(lat, 99)), 3) if lat is not None else None},
            "exit_rates": {str(k): round(v / self.inferred, 4) for k, v in sorted(self._exit_counts.items())},
            "drops": {"stale": stats.get("stale_dropped", 0), "corrupt": stats.get("corrupt", 0)},
            "source_stats": stats,
            "reuse": {"window": self.reuse.window, "reused": self.reuse.reused, "rate": round(self.reuse.rate, 4)},
            "store": {"path": self.cfg.store, "stored": self.store.stored if self.store else 0,
                      "last_id": self.store.last_id if self.store else 0},
            "evidence": None if self.evidence is None else {
                "dir": str(self.evidence.root), "used_bytes": self.evidence.used, "saved": self.evidence.saved,
                "deleted_oldest": self.evidence.deleted, "paused": self.evidence.paused_reason},
            "health": health,
            "events": list(self.events)[-20:],
        }
