"""The device service: source -> frame reuse -> DynamicInference -> store -> metrics and health; with --reject,
each defect frame's reject is handed to the reject worker (`edge_runtime.reject`) and recorded in the store;
with --mqtt, the store is published (`edge_runtime.mqtt`).

    >>> Service(ServiceConfig(bundle="/var/lib/edge-qwq", source="csi://0", store="decisions.db",
    ...                       http="0.0.0.0:8080")).run()           # doctest: +SKIP

This module wires the parts and runs the frame loop; each part has a room of its own: `active_model`
(load, switch, roll back, fall back; the current model's HealthMonitor), `metrics` (Prometheus, live
gauges), `sinks` (where decisions go without --store; `store` with it), `http_api`, `sources`, `reuse`.

Start-up checks everything a user can get wrong before the first frame (bundle, port, evidence disk, store,
source), each a one-line EdgeError, closing what was already opened: a file or folder that does not exist and
a malformed source URI fail at once. A live source that is not up yet (a network camera booting slower than
the device, a USB camera plugged in late) is not an error: the service starts anyway and keeps trying to open
it (capped backoff, `LiveSource.BACKOFF`), so systemd's start limits never leave the line uninspected; until
its first frame /healthz is 200, /readyz 503 "waiting for source ...: why", /status "source_state" says why
and how many attempts (events "source_waiting", then "source_connected"), and after `connect_timeout` s one
warning line goes to stderr (never an exit; a one-shot `edge-qwq run` without --store/--http still fails
after it, with one line). READY=1 goes to systemd once the model, the store, HTTP
and the source are set up (at most READY_GRACE s after that, waiting for a first frame, so that STATUS= says
"deciding" or "waiting for source"); WATCHDOG=1 from the loop itself, which ticks while it waits too, and
only while it decides (see `stall_timeout`, which counts only while the source delivers), so a hung or stuck
loop gets restarted. SIGTERM (or SIGINT) stops the loop, also while it waits for the source,
commits the pending decisions and closes the store. A rollback requested by the health monitor is carried
out by the loop, between two frames (`ActiveModel.rollback_now`).

Tile mode (a tile bundle, or --tiling on): frames are decoded at full size and inferred whole (the model
cuts them into tiles; no resize in the decode thread); whole-frame reuse is off, since the model reuses
unchanged tiles itself; the stored row and the JSON lines carry the defect boxes and the tile counts, and
evidence JPEGs and /latest.jpg show the boxes (and, with `heatmap`, the tile map).
"""
from __future__ import annotations

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
from edge_runtime.active_model import ActiveModel
from edge_runtime.health import HealthConfig, HealthMonitor
from edge_runtime.inference import Decision, DynamicInference, InferenceConfig
from edge_runtime.metrics import Live, Metrics
from edge_runtime.notify import Notifier
from edge_runtime.reuse import FrameReuse
from edge_runtime.sinks import Sink, StdoutSink
from edge_runtime.sources import redact_url, EndOfStream, Frame

REJECT_SAY_S = 10.0  # s between two lines about failed or late rejects
READY_GRACE = 2.0  # s READY=1 may wait for a live source's first frame (then it says "waiting for source")


@dataclass
class ServiceConfig:
    bundle: str
    source: str
    store: str | None = None
    jsonl: str | None = None  # JSON lines of stored decisions ("-": stdout); default stdout without --store
    http: str | None = None
    evidence: str | None = None
    evidence_budget_mb: float = 1024.0
    reuse_window: int | None = None  # None: the bundle's (manifest dynamic.reuse_window)
    shadow_rate: float = 0.05
    backend: str = "onnxruntime"
    precision: str = "auto"
    early_exit: list[float] | None = None
    early_exit_ok: list[float] | None = None
    threads: int = 0
    max_frames: int = 0
    full_res_frames: bool = False  # MJPEG: never at a reduced JPEG scale (by default: where a DecodeCheck allows)
    tiling: str = "auto"  # "auto": the bundle's input mode; "on": tiles (a tile bundle only); "off": resize
    tile_overlap: float | None = None  # None: the bundle's
    roi: str | None = None  # tile mode: "x0,y0,x1,y1" or a mask image
    reuse_threshold: float | None = None  # None: the bundle's (manifest dynamic.reuse_threshold)
    frame_threshold: float | None = None  # tile mode: None: the bundle's fitted frame threshold
    heatmap: bool = False  # tile mode: lay the tile map over /latest.jpg and evidence JPEGs
    tile_map: bool = False  # tile mode: the JSON lines also carry each frame's tile map (not stored in SQLite)
    connect_timeout: float = 10.0  # a live source without a frame this long: one warning line (never an exit)
    http_token_file: str | None = None  # --http: a file holding a bearer token; all but /healthz /readyz ask for it
    stall_timeout: float = 30.0  # no decision this long while the source is up: /healthz fails, no WATCHDOG=1 (0: off)
    trusted_key: str | None = None  # an Ed25519 public key: load (and roll back to) only bundles it signed
    mqtt: str | None = None  # mqtt[s]://HOST[:PORT]/PREFIX: publish the store (the outbox) there (needs store)
    device_name: str | None = None  # the MQTT topic level naming this device (default: the host name)
    mqtt_qos: int = 1
    mqtt_tls_ca: str | None = None
    mqtt_user: str | None = None
    mqtt_password_file: str | None = None
    mqtt_rate: float = 200.0  # messages a second at most (a backlog drains at this rate)
    reject: str | None = None  # gpio:CHIP:LINE[:active_low], http://GATEWAY/PATH or fake-gpio:FILE (needs store)
    reject_delay_ms: float = 400.0  # capture to ejector: the part's travel time
    reject_pulse_ms: float = 50.0
    handle_signals: bool = True  # SIGTERM/SIGINT stop the loop (main thread only)
    health: HealthConfig = field(default_factory=HealthConfig)


class Service:
    def __init__(self, config: ServiceConfig):
        self.cfg = config
        self.metrics = Metrics(live=self.live)
        self.registry = self.metrics.registry
        self.notifier = Notifier()
        self.reuse = FrameReuse(0)  # its window is the model's, set at every load (_switched)
        self.events: deque[dict] = deque(maxlen=50)
        self._pending_events: deque[dict] = deque()
        self._stop = threading.Event()
        self._latest: tuple[np.ndarray, Decision, object] | None = None  # frame, decision, its TileGrid
        self._latency: deque[float] = deque(maxlen=1000)
        self._times: deque[float] = deque(maxlen=300)
        self._exit_counts: dict[int, int] = {}
        self._stage_tiles: list[int] = []  # tile mode: tiles that entered each stage, summed over frames
        self.frames = self.inferred = 0
        self.started = time.time()
        self._beat = self._waiting_since = time.monotonic()  # _waiting_since: see _stalled_for
        self._source_since = self._beat  # when the source was opened (the wait for its first frame starts)
        self._said_waiting = False  # READY's STATUS (or a warning) said "waiting for source"; its end is told
        self._warned_waiting = False  # the one warning line after connect_timeout s without a first frame
        # the model in use and its monitor: set by the ActiveModel at every load (_switched), read per frame
        self.model: DynamicInference | None = None
        self.health: HealthMonitor | None = None
        self.source = self.store = self.evidence = self.http = self.mqtt = None
        self.source_name = redact_url(config.source)  # shown and stored: credentials never leave the process
        self._mqtt_target = self._parse_mqtt()  # a malformed URL, an unreadable password file: one line, now
        self._reject_spec = self._parse_reject()
        self.rejects = None  # the RejectScheduler, with --reject
        self._reject_said = 0.0  # when a failed or late reject was last said (one line per REJECT_SAY_S)
        self._mark_at = 0.0
        bundle_dir, install_root = installer.resolve(config.bundle)
        inference = InferenceConfig(backend=config.backend, precision=config.precision,
                                    early_exit=config.early_exit, early_exit_ok=config.early_exit_ok,
                                    reuse_window=config.reuse_window, threads=config.threads,
                                    tiling=config.tiling, tile_overlap=config.tile_overlap, roi=config.roi,
                                    reuse_threshold=config.reuse_threshold,
                                    frame_threshold=config.frame_threshold, trusted_key=config.trusted_key)
        self.active = ActiveModel(bundle_dir, install_root, inference,
                                  replace(config.health, sample_rate=config.shadow_rate),
                                  event=self._event, health_event=self._event_threadsafe, on_switch=self._switched)

    @property
    def bundle_dir(self) -> Path:
        return self.active.bundle_dir

    @property
    def install_root(self) -> Path | None:
        return self.active.install_root

    # ---------------------------------------------------------------- start and stop
    def run(self) -> int:
        """Run until the source ends, `max_frames`, SIGTERM or SIGINT; returns the exit status (0)."""
        self._install_signals()
        with ExitStack() as stack:
            self._start(stack)
            wait_first = getattr(self.source, "wait_first", None)
            if wait_first is not None and self._source_waiting():  # a camera usually gives a frame at once
                wait_first(min(READY_GRACE, self.cfg.connect_timeout), self._stop)
            self._beat = time.monotonic()
            if self._source_waiting():
                self._said_waiting = True
                self._event("source_waiting", self._wait_detail())
            self.notifier.ready(self._status_line())
            try:
                self._loop()
            finally:
                self.notifier.stopping()
        if self._source_waiting():  # SIGTERM (or SIGINT) before the live source's first frame
            print("edge-qwq: stopped before the source connected", file=sys.stderr, flush=True)
        lost = getattr(self.source, "summary", lambda: None)()  # a video's lost frames, a folder's bad images
        if lost:
            print(f"edge-qwq: warning: {lost}", file=sys.stderr, flush=True)
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> None:
        if self.cfg.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())

    def _start(self, stack: ExitStack) -> None:
        # BundleError: not a bundle. A backend that cannot run it (TensorRT engines missing, refused or built
        # for another precision) is not a reason to leave the line uninspected: ONNX Runtime, said and counted
        self.active.load_or_cpu(self.active.bundle_dir, self.cfg.precision)
        if self.model.backend.name != self.cfg.backend:
            print(f"edge-qwq: warning: {self.cfg.backend} cannot run this bundle here "
                  f"({self.events[-1]['detail']['reason']}); deciding on {self.model.backend.name} instead",
                  file=sys.stderr, flush=True)
        stack.callback(self.active.close)
        from edge_runtime.sources import DecodeCheck, open_source

        # first, so that its error comes alone, in one line: no such file or folder, a malformed URI (InputError).
        # A live source is not waited for here: a camera that is late is the loop's to wait for (it ticks,
        # answers HTTP and stops on SIGTERM meanwhile), never a reason to exit
        self.source = open_source(self.cfg.source, connect_timeout=self.cfg.connect_timeout, prepare=self._prepare,
                                  min_size=None if self.cfg.full_res_frames else self._decode_size,
                                  decode_check=None if self.cfg.full_res_frames else DecodeCheck(), wait=False)
        self._source_since = time.monotonic()
        stack.callback(self.source.close)
        if self.cfg.http:
            from edge_runtime.http_api import HttpApi

            self.http = HttpApi(self.cfg.http, self, self.cfg.http_token_file).start()  # EdgeError: port, token
            stack.callback(self.http.close)
            host = self.http.server.server_address[0]
            print(f"edge-qwq: serving http://{host}:{self.http.port} (/healthz /readyz /metrics /status /latest.jpg)",
                  file=sys.stderr, flush=True)  # the port taken, also when --http asked for port 0
        if self.cfg.evidence:
            from edge_runtime.store import EvidenceWriter

            self.evidence = EvidenceWriter(self.cfg.evidence, self.cfg.evidence_budget_mb)  # budget > disk
        self.store = self._open_store()
        stack.callback(self.store.close)  # last decisions committed on every way out
        if self._mqtt_target is not None:
            self._start_mqtt(stack)
        if self._reject_spec is not None:
            self._start_rejects(stack)
        self._event("started", {"bundle": str(self.bundle_dir), "model_version": self.model.bundle.version,
                                "precision": self.model.precision, "source": self.source_name,
                                "input_mode": "tile" if self.tiled else "resize"})

    def _open_store(self) -> Sink:
        if not self.cfg.store:
            return StdoutSink()
        from edge_runtime.store import DecisionStore

        return DecisionStore(self.cfg.store, jsonl=self.cfg.jsonl)

    def _parse_mqtt(self):
        if not self.cfg.mqtt:
            return None
        from edge_runtime.mqtt import MqttError, check_device_name, parse_mqtt_url

        if not self.cfg.store:
            raise MqttError("--mqtt needs --store: the store is the outbox that decisions and events are sent from")
        if self.cfg.device_name is not None:
            check_device_name(self.cfg.device_name)
        return parse_mqtt_url(self.cfg.mqtt, user=self.cfg.mqtt_user, password_file=self.cfg.mqtt_password_file,
                              tls_ca=self.cfg.mqtt_tls_ca, qos=self.cfg.mqtt_qos)

    def _parse_reject(self):
        if not self.cfg.reject:
            return None
        from edge_runtime.reject.spec import RejectError, check_timing, parse_reject

        if not self.cfg.store:
            raise RejectError("--reject needs --store: every reject is recorded there with its scheduled and "
                              "actual times")
        check_timing(self.cfg.reject_delay_ms, self.cfg.reject_pulse_ms)
        return parse_reject(self.cfg.reject)

    def _start_rejects(self, stack: ExitStack) -> None:
        """The reject worker (its own process: it opens the output now; a chip or line that does not exist
        is one line before any frame). At the end it fires what is scheduled, and the results are recorded
        before the store closes (callbacks run last-in, first-out)."""
        from edge_runtime.reject.scheduler import RejectScheduler

        n = self.store.close_unconfirmed_rejects()
        if n:
            self._event("rejects_unconfirmed", {"count": n, "why": "the previous run stopped before they were "
                                                "confirmed"})
        self.rejects = RejectScheduler(self._reject_spec, self.cfg.reject_delay_ms, self.cfg.reject_pulse_ms).start()
        stack.callback(self._close_rejects)
        pulse = "" if self._reject_spec.kind == "http" else f", {self.cfg.reject_pulse_ms:g} ms pulse"
        print(f"edge-qwq: rejecting defects on {self._reject_spec.shown} ({self.rejects.api}) "
              f"{self.cfg.reject_delay_ms:g} ms after capture{pulse}", file=sys.stderr, flush=True)
        if not self.rejects.priority.startswith("SCHED_FIFO"):
            print(f"edge-qwq: warning: the reject worker runs at {self.rejects.priority.split(' (')[0]}, without "
                  "real-time priority: a busy CPU may delay rejects by milliseconds (the unit's reject drop-in "
                  "allows it: LimitRTPRIO=10, RestrictRealtime=no)", file=sys.stderr, flush=True)

    def _close_rejects(self) -> None:
        self.rejects.close()
        self._record_rejects(time.monotonic())

    def _reject(self, frame: Frame, d: Decision) -> int:
        """Schedule the reject of a defect frame: `delay` after its capture, whenever the decision came;
        returns the reject's id (its row is added with the decision's)."""
        rid = self.store.new_reject_id()
        due = frame.mono + self.rejects.delay_s
        self.rejects.schedule(rid, due, {"frame_id": frame.id, "label": d.label,
                                         "confidence": round(d.confidence, 5), "source": self.source_name,
                                         "model_version": d.model_version,
                                         "scheduled_at": frame.time + self.rejects.delay_s})
        return rid

    def _record_rejects(self, now: float) -> None:
        """What the reject worker reported, into the store; failed or late rejects said (one line and one
        event per REJECT_SAY_S at most), and the worker's own warnings."""
        results = self.rejects.take_results()
        self.store.update_rejects(results)
        for r in results:
            self.metrics.child(self.metrics.rejects, r["status"]).inc()
        for w in self.rejects.take_warnings():
            print(f"edge-qwq: warning: {w}", file=sys.stderr, flush=True)
            self._event("reject_output", {"warning": w})
        bad = [r for r in results if not r.get("ok") or r.get("late")]
        if bad and now >= self._reject_said:
            self._reject_said = now + REJECT_SAY_S
            last = bad[-1]
            why = last.get("error") or f"fired {last['error_ms']:.1f} ms after its due time (the decision came late)"
            print(f"edge-qwq: warning: reject {last['id']} {'failed' if not last.get('ok') else 'late'}: {why} "
                  f"({self.rejects.failed} failed, {self.rejects.late} late so far)", file=sys.stderr, flush=True)
            self._event("reject_failed" if not last.get("ok") else "reject_late",
                        {"id": last["id"], "why": why, "failed": self.rejects.failed, "late": self.rejects.late})

    def _start_mqtt(self, stack: ExitStack) -> None:
        """The outbox's publisher (its own thread, its own read connection); at the end, the last acknowledged
        ids are marked sent before the store closes (callbacks run last-in, first-out)."""
        from edge_runtime.mqtt import Publisher

        self.store.flush()  # the "started" event and anything pending: committed, so the publisher sees them
        self.mqtt = Publisher(self.store.path, self._mqtt_target, device=self.cfg.device_name,
                              model_version=lambda: self.model.bundle.version if self.model else None,
                              rate=self.cfg.mqtt_rate).start()
        stack.callback(self._close_mqtt)
        print(f"edge-qwq: publishing to {self.mqtt.target.shown} as {self.mqtt.topics['decisions'].rsplit('/', 1)[0]}"
              "/{decisions,events,status}", file=sys.stderr, flush=True)

    def _close_mqtt(self) -> None:
        try:
            self.store.flush()  # the last decisions: committed, so that the drain may still send them
        finally:
            self.mqtt.close()
        from edge_runtime.store import StoreError

        try:
            self._mark_sent(force=True)
        except StoreError:  # the store failed already (that error is the one to report): they are sent again
            pass

    def _mark_sent(self, now: float | None = None, force: bool = False) -> None:
        """The rows the broker acknowledged: sent_at through the store's writer, every MARK_EVERY_S."""
        from edge_runtime.mqtt import MARK_EVERY_S

        now = time.monotonic() if now is None else now
        if not force and now < self._mark_at:
            return
        self._mark_at = now + MARK_EVERY_S
        for table, ids in self.mqtt.take_acked().items():
            self.store.mark_sent(table, ids)

    def _switched(self, model: DynamicInference, health: HealthMonitor) -> None:
        """A model was loaded (start, rollback, fallback): decide with it from the next frame on. In tile
        mode whole-frame reuse is off: the model reuses unchanged tiles itself (same window and threshold)."""
        self.model, self.health = model, health
        self.reuse.window = 0 if model.tiled is not None else model.reuse_window
        self.reuse.threshold = model.reuse_threshold
        self.reuse.reset()

    @property
    def tiled(self) -> bool:
        """The model in use cuts frames into tiles."""
        return self.model is not None and self.model.tiled is not None

    def _decode_size(self) -> tuple[int, int] | None:
        """The smallest frame size the model in use needs, asked by the source at every frame: its input
        size when it resizes frames (MJPEG may then decode at a reduced scale, where its DecodeCheck shows
        decisions agree), None (full size) in tile mode, where every pixel counts."""
        m = self.model
        return None if m.tiled is not None else (m.spec.height, m.spec.width)

    def _prepare(self, image: np.ndarray) -> np.ndarray | None:
        """Preprocessing, run in the source's decode thread (overlaps inference); none in tile mode (the
        model cuts the full frame into tiles itself)."""
        from edge_runtime.preprocess import preprocess

        m = self.model
        return None if m.tiled is not None else preprocess(image, m.spec)

    def _infer(self, frame: Frame) -> Decision:
        """The model on a frame whose tensor the decode thread already prepared (else on its image; always
        on its image in tile mode)."""
        m = self.model
        if m.tiled is not None or frame.tensor is None or frame.tensor.shape[2:] != (m.spec.height, m.spec.width):
            return m.infer(frame.image)
        return m.infer_tensor(frame.tensor, frame.prep_ms)

    # ---------------------------------------------------------------- the loop
    def _loop(self) -> None:
        self._waiting_since = time.monotonic()
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

    def _count_tiles(self, stage_tiles: list[int]) -> None:
        if len(self._stage_tiles) < len(stage_tiles):
            self._stage_tiles += [0] * (len(stage_tiles) - len(self._stage_tiles))
        for k, n in enumerate(stage_tiles):
            self._stage_tiles[k] += n

    def tile_exit_rates(self) -> dict[str, float]:
        """Tile mode: the share of inferred tiles leaving at each exit (a frame's exit_index is its deepest
        tile's, so the frame exit rates say little about the work done)."""
        entering = self._stage_tiles + [0]
        total = entering[0] if entering else 0
        return {str(k): round((entering[k] - entering[k + 1]) / total, 4) for k in range(len(entering) - 1)} \
            if total else {}

    def _process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        tiled = self.model.tiled
        d = self.reuse.lookup(frame.image) if tiled is None else None
        if d is None:
            d = self._infer(frame)
            if frame.alt_tensor is not None and tiled is None:  # a DecodeCheck frame: decide its reduced decode too
                changed = self.source.decode_check.compare(frame.alt_tensor, d, self.model)
                if changed:
                    print(f"edge-qwq: {changed}", file=sys.stderr, flush=True)
                    self._event("decode_check", self.source.decode_check.to_dict())
            if tiled is None:
                self.reuse.remember(frame.image, d)
            if not d.reused:  # tile mode: a frame whose every tile was reused ran no stage
                self.health.submit(frame.image, d)
                self.health.observe(d)
                self.inferred += 1
                self._exit_counts[d.exit_index] = self._exit_counts.get(d.exit_index, 0) + 1
                self.metrics.child(self.metrics.exits, str(d.exit_index)).inc()
                if d.tiles is not None:
                    self._count_tiles(d.tiles["stage_tiles"])
        else:
            d = replace(d, latency_ms=(time.perf_counter() - t0) * 1e3)
        reject_id = self._reject(frame, d) if d.is_defect and self.rejects is not None else None
        grid = tiled.grid_for(frame.image) if tiled is not None else None  # cached: one per frame size
        evidence = self._save_evidence(frame, d, grid) if d.is_defect else None
        row = {"time": time.time(), "frame_id": frame.id, "source": self.source_name, "label": d.label,
               "confidence": round(d.confidence, 5), "exit": d.exit_index, "latency_ms": round(d.latency_ms, 3),
               "model_version": d.model_version, "reused": int(d.reused), "evidence": evidence}
        if d.defects is not None:
            row["defects"] = d.defects
        if d.tiles is not None:
            row["tiles"] = d.tiles
        if self.cfg.tile_map and d.tile_map is not None:
            row["tile_map"] = d.tile_map  # JSON lines only: the store has no column for it
        row = self.store.add(row)
        if reject_id is not None:
            self.store.add_reject({"id": reject_id, "decision_id": row["id"], "frame_id": frame.id,
                                   "output": self._reject_spec.shown,
                                   "scheduled_at": frame.time + self.rejects.delay_s})
        self._latest = (frame.image, d, grid)
        self.frames += 1
        self._latency.append(d.latency_ms)
        self._times.append(time.monotonic())
        self.metrics.child(self.metrics.frames, str(d.reused).lower()).inc()
        self.metrics.latency.observe(d.latency_ms / 1e3)
        if d.is_defect:
            self.metrics.defects.inc()

    def _save_evidence(self, frame: Frame, d: Decision, grid=None) -> str | None:
        """The defect frame as a JPEG; in tile mode with its defect boxes drawn (and the tile map)."""
        if self.evidence is None:
            return None
        image = frame.image
        if d.defects or (self.cfg.heatmap and d.tile_map):
            from edge_runtime.overlay import draw_defects

            image = draw_defects(image, d, self.cfg.heatmap, grid)
        was_paused = self.evidence.paused_reason
        path = self.evidence.save(image, frame.id, d.label)
        if self.evidence.paused_reason and not was_paused:
            print(f"edge-qwq: warning: {self.evidence.paused_reason}", file=sys.stderr, flush=True)
            self._event("evidence_paused", {"reason": self.evidence.paused_reason})
        elif was_paused and not self.evidence.paused_reason:  # the disk has room again
            print(f"edge-qwq: evidence resumed in {self.evidence.root} (the disk has room again)",
                  file=sys.stderr, flush=True)
            self._event("evidence_resumed", {"after": was_paused})
        return path

    def _tick(self) -> None:
        self._beat = time.monotonic()
        if not self._source_up():
            self._waiting_since = self._beat  # a reconnecting source: the wait for decisions starts when it is back
        # WATCHDOG=1 only while the loop makes progress: ticking without a decision for stall_timeout s while the
        # source is up (a wedged decoder, a stream that is open but sends nothing) is as stuck as a hung loop, so
        # systemd restarts it WatchdogSec later. A reconnecting source keeps the pings (/readyz reports it).
        if not self._stalled():
            self.notifier.watchdog(self._beat)
        while self._pending_events:
            e = self._pending_events.popleft()
            self.store.event(e["kind"], e["detail"], e["time"])
        done = self.store.maybe_commit(self._beat)
        if done:
            self.metrics.stored.inc(len(done))
        if self.mqtt is not None:
            self._mark_sent(self._beat)
        if self.rejects is not None:
            self._record_rejects(self._beat)
        self.metrics.sync_source(self.source.stats)
        self._watch_source(self._beat)
        if self.active.rollback_reason:
            self.active.rollback_now()

    def _watch_source(self, now: float) -> None:
        """A live source without a first frame: one warning line (and STATUS=) after connect_timeout s; its
        first frame, once the service said it was waiting: one line, an event and STATUS=."""
        if self._source_waiting():
            if not self._warned_waiting and now - self._source_since >= self.cfg.connect_timeout:
                self._warned_waiting = self._said_waiting = True
                d = self._wait_detail(now)
                print(f"edge-qwq: warning: no frame from {self.source_name} after {d['waiting_s']:.0f} s: "
                      f"{d['reason']}; /readyz reports not ready until it comes", file=sys.stderr, flush=True)
                self.notifier.send(f"STATUS={self._status_line()}")
        elif self._said_waiting:
            self._said_waiting = False
            d = self._wait_detail(now)
            self._event("source_connected", {"source": self.source_name, "waited_s": d["waiting_s"]})
            if self._warned_waiting:
                print(f"edge-qwq: {self.source_name} connected after {d['waiting_s']:.0f} s; deciding",
                      file=sys.stderr, flush=True)
            self.notifier.send(f"STATUS={self._status_line()}")

    # ---------------------------------------------------------------- events
    def _event_threadsafe(self, kind: str, detail: dict) -> None:
        """An event from any thread (the health monitor's): stored by the loop at its next tick."""
        e = {"time": time.time(), "kind": kind, "detail": detail}
        self.events.append(e)
        self._pending_events.append(e)
        self.metrics.events.labels(kind).inc()

    def _event(self, kind: str, detail: dict) -> None:
        """An event from the loop's thread (or before it runs): stored at once."""
        self._event_threadsafe(kind, detail)
        if self.store is not None:
            while self._pending_events:
                e = self._pending_events.popleft()
                self.store.event(e["kind"], e["detail"], e["time"])

    # ---------------------------------------------------------------- what HTTP reads
    def _source_waiting(self) -> bool:
        """A live source that has not given its first frame yet (not up yet, or open and silent)."""
        s = self.source
        return s is not None and s.live and bool(getattr(s, "waiting", False))

    def _wait_detail(self, now: float | None = None) -> dict:
        s = self.source
        now = time.monotonic() if now is None else now
        return {"source": self.source_name, "reason": getattr(s, "wait_reason", None),
                "attempts": getattr(s.stats, "attempts", 0), "waiting_s": round(now - self._source_since, 1)}

    def _status_line(self) -> str:
        """systemd's STATUS=: what the service does now."""
        version = self.model.bundle.version
        if self._source_waiting():
            return f"waiting for source {self.source_name}: {self.source.wait_reason}; model {version} loaded"
        return f"deciding on {self.source_name} with {version}"

    def source_state(self) -> dict:
        """/status "source_state": "waiting for source" (no first frame yet), "connected", "reconnecting"
        (lost after frames came), "file" (a file or folder), or "starting"; with why and the attempts."""
        s = self.source
        if s is None:
            return {"state": "starting"}
        if not s.live:
            return {"state": "file"}
        if self._source_waiting():
            return {"state": "waiting for source", **self._wait_detail()}
        st = s.stats
        if not st.connected:
            return {"state": "reconnecting", "reason": getattr(st, "last_error", None),
                    "attempts": getattr(st, "attempts", 0)}
        return {"state": "connected"}

    def _source_up(self) -> bool:
        """A source frames should come from: a live one while connected and once it gave a first frame (the
        wait for it is /readyz's to report, not a stall); a file or folder until it ends (the loop then ends
        too)."""
        s = self.source
        if s is None or self._stop.is_set():
            return False
        return not s.live or (bool(s.stats.connected) and not self._source_waiting())

    def _stalled_for(self, now: float) -> float:
        """Seconds the source has been up without a decision (0 while it is down or reconnecting)."""
        if not self._source_up():
            return 0.0
        times = self._times
        return now - max(times[-1] if times else 0.0, self._waiting_since)

    def _stalled(self) -> bool:
        timeout = self.cfg.stall_timeout
        return bool(timeout) and self._stalled_for(time.monotonic()) >= timeout

    def healthz(self) -> tuple[bool, str]:
        """The loop ticks (heartbeat within 10 s) and, while its source is up, decides (a decision within
        stall_timeout s). A reconnecting source is /readyz's to report; a restart would not bring it back."""
        now = time.monotonic()
        age = now - self._beat
        if age >= 10.0:
            return False, f"loop stalled for {age:.0f} s"
        if self._stalled():
            return False, f"no decision for {self._stalled_for(now):.0f} s while the source is up"
        return True, f"loop alive {age:.1f} s ago"

    def readyz(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "stopping"
        if self.source is None or self.model is None:
            return False, "starting"
        if self._source_waiting():
            return False, f"waiting for source {self.source_name}: {self.source.wait_reason}"
        if self.source.live and not self.source.stats.connected:
            return False, "source disconnected (reconnecting)"
        return True, "ready"

    def latest_jpeg(self) -> bytes | None:
        import cv2

        from edge_runtime.overlay import annotate

        latest = self._latest
        if latest is None:
            return None
        image, decision, grid = latest
        ok, buf = cv2.imencode(".jpg", annotate(image, decision, self.cfg.heatmap, grid))
        return buf.tobytes() if ok else None

    def _reuse_status(self) -> dict:
        """Whole-frame reuse; in tile mode the model's changed-tiles-only reuse (of the model in use)."""
        m = self.model
        if m is not None and m.tiled is not None:
            r = m.tiled.reuse
            return {"mode": "tiles", "window": r.window, "threshold": r.threshold, "tiles": r.tiles,
                    "reused": r.reused, "rate": round(r.rate, 4)}
        return {"mode": "frames", "window": self.reuse.window, "threshold": self.reuse.threshold,
                "reused": self.reuse.reused, "rate": round(self.reuse.rate, 4)}

    def fps(self, now: float | None = None, window_s: float = 5.0) -> float:
        """Decided frames per second over the last 300 frames; given `now` (time.monotonic()), only frames
        of the last `window_s` seconds count and the time since the last frame too, so a stalled loop or a
        lost camera reads as a falling rate, not as the last good one."""
        t = list(self._times)
        if now is None:
            return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        t = [x for x in t if x >= now - window_s]
        return (len(t) - 1) / (now - t[0]) if len(t) > 1 and now > t[0] else 0.0

    def live(self) -> Live:
        """The live gauges' values, read by /metrics at scrape time (any thread)."""
        health = self.health
        state, agreement = health.gauges() if health is not None else (None, None)
        return Live(fps=self.fps(time.monotonic()), healthy=state == "ok", agreement=agreement)

    def status(self) -> dict:
        lat = np.asarray(self._latency) if self._latency else None
        health = self.health.status() if self.health else {}
        stats = self.source.stats.to_dict() if self.source else {}
        return {
            "model_version": self.model.bundle.version if self.model else None,
            "bundle": str(self.bundle_dir), "precision": self.model.precision if self.model else None,
            "source": self.source_name, "uptime_s": round(time.time() - self.started, 1),
            "frames": self.frames, "inferred": self.inferred, "fps": round(self.fps(), 2),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 3) if lat is not None else None,
                           "p99": round(float(np.percentile(lat, 99)), 3) if lat is not None else None},
            "exit_rates": {str(k): round(v / self.inferred, 4) for k, v in sorted(self._exit_counts.items())},
            "tile_exit_rates": self.tile_exit_rates(),
            "drops": {"stale": stats.get("stale_dropped", 0), "corrupt": stats.get("corrupt", 0),
                      "missing": stats.get("missing", 0)},
            "decode": check.to_dict() if (check := getattr(self.source, "decode_check", None)) else None,
            "source_state": self.source_state(),
            "source_stats": stats,
            "reuse": self._reuse_status(),
            "store": {"path": self.cfg.store, "stored": self.store.stored if self.store else 0,
                      "last_id": self.store.last_id if self.store else 0},
            "evidence": None if self.evidence is None else {
                "dir": str(self.evidence.root), "used_bytes": self.evidence.used, "saved": self.evidence.saved,
                "deleted_oldest": self.evidence.deleted, "paused": self.evidence.paused_reason},
            "health": health,
            "mqtt": self.mqtt.status() if self.mqtt is not None else None,
            "reject": self.rejects.status() if self.rejects is not None else None,
            "events": list(self.events)[-20:],
        }
