"""The service's Prometheus metrics, in a registry of their own (several services may live in one process).

    >>> m = Metrics(live=lambda: Live(fps=29.8, healthy=True, agreement=0.99))
    >>> b"edgeqwq_fps 29.8" in generate_latest(m.registry)      # doctest: +SKIP
    True

Counters and the latency histogram are updated by the loop as frames are decided. The gauges are live: a
collector asks the service for their values when /metrics is scraped (`Live`), so they are current without
any other endpoint being called, and keeping them costs nothing per frame.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (.001, .002, .005, .01, .015, .02, .03, .05, .1, .25, 1.0)  # seconds


class Live(NamedTuple):
    """What the gauges show, read at scrape time."""

    fps: float  # decided frames per second (recent)
    healthy: bool  # the health monitor of the model in use reports "ok"
    agreement: float | None  # decision agreement with FP32 over the window; None: no shadow samples yet


class LiveGauges:
    """A prometheus_client collector: every gauge computed from `read()` when scraped."""

    GAUGES = (("edgeqwq_fps", "Decided frames per second (recent)"),
              ("edgeqwq_health_ok", "1 when the health monitor reports ok"),
              ("edgeqwq_shadow_agreement", "Decision agreement with FP32 (window); absent until sampled"))

    def __init__(self, read: Callable[[], Live]):
        self.read = read

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, doc) for name, doc in self.GAUGES]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        live = self.read()
        (fps, fps_doc), (ok, ok_doc), (agree, agree_doc) = self.GAUGES
        yield GaugeMetricFamily(fps, fps_doc, value=live.fps)
        yield GaugeMetricFamily(ok, ok_doc, value=1.0 if live.healthy else 0.0)
        family = GaugeMetricFamily(agree, agree_doc)
        if live.agreement is not None:  # unknown is no sample, not 0 (which would read as total disagreement)
            family.add_metric([], live.agreement)
        yield family


class Metrics:
    """Counters the loop increments, plus the live gauges of `live`."""

    def __init__(self, live: Callable[[], Live]):
        r = self.registry = CollectorRegistry()
        self.frames = Counter("edgeqwq_frames", "Frames decided", ["reused"], registry=r)
        self.exits = Counter("edgeqwq_exits", "Inferred frames by the exit taken", ["exit"], registry=r)
        self.defects = Counter("edgeqwq_defects", "Frames decided as a defect", registry=r)
        self.latency = Histogram("edgeqwq_latency_seconds", "Per-frame decision latency", registry=r,
                                 buckets=LATENCY_BUCKETS)
        self.dropped = Counter("edgeqwq_dropped_frames", "Frames not decided", ["reason"], registry=r)
        self.reconnects = Counter("edgeqwq_source_reconnects", "Stream reopenings after a loss", registry=r)
        self.stored = Counter("edgeqwq_stored_decisions", "Decisions committed to the store", registry=r)
        self.events = Counter("edgeqwq_events", "Service events", ["kind"], registry=r)
        self.rejects = Counter("edgeqwq_rejects", "Rejects the output confirmed, by status (fired, late, failed)",
                               ["status"], registry=r)
        self.gauges = LiveGauges(live)
        r.register(self.gauges)
        self._seen = {"stale": 0, "corrupt": 0, "missing": 0, "reconnects": 0}
        self._children: dict = {}

    def child(self, metric, label: str):
        """metric.labels(label), looked up once (labels() takes a lock and builds a key: per-frame cost)."""
        key = (metric._name, label)
        if key not in self._children:
            self._children[key] = metric.labels(label)
        return self._children[key]

    def sync_source(self, stats) -> None:
        """Counters from the source's own running totals (SourceStats), by the increase since last time."""
        for key, now, counter in (("stale", stats.stale_dropped, self.child(self.dropped, "stale")),
                                  ("corrupt", stats.corrupt, self.child(self.dropped, "corrupt")),
                                  ("missing", stats.missing, self.child(self.dropped, "missing")),
                                  ("reconnects", stats.reconnects, self.reconnects)):
            if now > self._seen[key]:
                counter.inc(now - self._seen[key])
                self._seen[key] = now
