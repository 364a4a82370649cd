"""The collector's HTTP side, with the device's conventions (edge_runtime.http_api: the same bounded server,
bearer token, probes): /healthz, /readyz, /metrics (Prometheus), /status (JSON of every device) and / (a small
HTML table of the same).

    >>> api = FleetHttp("127.0.0.1:8090", FleetView(collector)).start()              # doctest: +SKIP
"""
from __future__ import annotations

import html
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edge_runtime.http_api import HttpApi


class FleetView:
    """What edge_runtime.http_api serves, read from a Collector (healthz/readyz/status/latest_jpeg/registry)."""

    def __init__(self, collector):
        self.collector = collector
        self.registry = CollectorRegistry()
        self.registry.register(_Gauges(collector))

    def healthz(self) -> tuple[bool, str]:
        snap_err = self.collector.last_db_error
        if snap_err:
            return False, f"store not writable: {snap_err}"
        return True, "ok"

    def readyz(self) -> tuple[bool, str]:
        if not self.collector.connected:
            return False, f"not connected to the broker {self.collector.target.shown}"
        if self.collector.last_db_error:
            return False, f"store not writable: {self.collector.last_db_error}"
        return True, "ready"

    def status(self) -> dict:
        return self.collector.snapshot()

    def latest_jpeg(self) -> bytes | None:
        return None

    def page(self) -> bytes:
        s = self.status()
        rows = []
        for name, d in s["devices"].items():
            online = {True: "online", False: "offline", None: "?"}[d["online"]]
            rate = "" if d["defect_rate"] is None else f"{100 * d['defect_rate']:.2f} %"
            ago = "" if d["last_seen_s_ago"] is None else f"{d['last_seen_s_ago']:.0f} s ago"
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                name, online, f"{d['fps']:.2f}", rate, d["decisions"], d["health"] or "", d["model_version"] or "",
                ago)) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in ("device", "state", "fps (1 min)", "defect rate", "decisions",
                                                 "health (last event)", "model version", "last seen"))
        body = (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
                f"<title>edge-qwq fleet</title><style>body{{font-family:sans-serif}}td,th{{padding:2px 10px;"
                f"text-align:left}}tr:nth-child(even){{background:#eee}}</style></head><body>"
                f"<h1>edge-qwq fleet</h1><p>broker {html.escape(s['broker'])} "
                f"({'connected' if s['connected'] else 'not connected'}), store {html.escape(s['store'])}, "
                f"{len(s['devices'])} devices, {time.strftime('%Y-%m-%d %H:%M:%S')}</p>"
                f"<table><tr>{head}</tr>{''.join(rows)}</table>"
                f"<p><a href='/status'>/status</a> <a href='/metrics'>/metrics</a></p></body></html>")
        return body.encode()


class _Gauges:
    def __init__(self, collector):
        self.c = collector

    def collect(self):
        s = self.c.snapshot()
        yield GaugeMetricFamily("edgeqwq_fleet_connected", "1 while connected to the broker", value=int(s["connected"]))
        yield GaugeMetricFamily("edgeqwq_fleet_queued", "messages received, not yet stored", value=s["queued"])
        for key, doc in (("decisions", "decisions stored"), ("events", "events stored"),
                         ("duplicates", "messages already stored (re-sent), skipped"),
                         ("rejected", "malformed messages ignored")):
            yield CounterMetricFamily(f"edgeqwq_fleet_{key}", doc, value=s["stored"].get(key, 0))
        online = GaugeMetricFamily("edgeqwq_fleet_device_online", "1 online, 0 offline (last status)",
                                   labels=["device"])
        fps = GaugeMetricFamily("edgeqwq_fleet_device_fps", "decisions/s over the last minute", labels=["device"])
        for name, d in s["devices"].items():
            if d["online"] is not None:
                online.add_metric([name], int(d["online"]))
            fps.add_metric([name], d["fps"])
        yield online
        yield fps


class FleetHttp(HttpApi):
    """The device's bounded HTTP server with one more route: / (the HTML table)."""

    def __init__(self, address: str, view: FleetView, token_file: str | None = None):
        super().__init__(address, view, token_file)
        base = self.server.handler

        class Handler(base):
            def do_GET(self):  # noqa: N802
                if self.path.split("?", 1)[0] in ("/", "/index.html"):
                    if expected_token and not self._authorized():
                        return
                    self._send(200, "text/html; charset=utf-8", view.page())
                    return
                super().do_GET()

        expected_token = token_file is not None
        self.server.handler = Handler

