"""/metrics is live on its own: the gauges are computed when scraped, whether or not /status is ever called."""
from __future__ import annotations

import threading

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_runtime.health import HealthConfig
from edge_runtime.metrics import Live, Metrics
from edge_runtime.service import Service, ServiceConfig
from tests.edge_runtime.service_helpers import (
    MjpegServer, add_quantized_stages, free_port, frames, http_get, needs_ffmpeg, wait_for, write_video)


def _samples(text: str) -> dict[str, float]:
    """Exposition text -> {sample name (labels appended as name{k=v}): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def _scrape(port: int) -> dict[str, float] | None:
    try:
        code, body = http_get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return None
    return _samples(body.decode()) if code == 200 else None


def test_gauges_are_read_at_each_scrape():
    values = [Live(fps=12.5, healthy=True, agreement=None), Live(fps=30.0, healthy=False, agreement=0.97)]
    m = Metrics(live=lambda: values[0])
    first = _samples(generate_latest(m.registry).decode())
    assert first["edgeqwq_fps"] == 12.5 and first["edgeqwq_health_ok"] == 1.0
    assert "edgeqwq_shadow_agreement" not in first  # unknown is no sample, not 0
    values.pop(0)
    second = _samples(generate_latest(m.registry).decode())
    assert second["edgeqwq_fps"] == 30.0 and second["edgeqwq_health_ok"] == 0.0
    assert second["edgeqwq_shadow_agreement"] == 0.97


@needs_ffmpeg
def test_metrics_alone_on_a_running_service(tiny_bundle, tmp_path):
    add_quantized_stages(tiny_bundle)  # sound quantized stages: the shadow check has something to compare
    video = write_video(tmp_path / "v.avi", frames(60, size=(160, 120)))
    port = free_port()
    with MjpegServer(video) as server:
        svc = Service(ServiceConfig(bundle=str(tiny_bundle), source=server.url, store=str(tmp_path / "d.db"),
                                    http=f"127.0.0.1:{port}", shadow_rate=1.0, handle_signals=False,
                                    health=HealthConfig(queue_size=10_000)))

        def no_status():
            raise AssertionError("/status was called")

        svc.status = no_status  # the scraper below reads /metrics and nothing else
        t = threading.Thread(target=svc.run)
        t.start()
        try:
            m = wait_for(lambda: (s := _scrape(port)) and s["edgeqwq_fps"] > 0
                         and "edgeqwq_shadow_agreement" in s and s.get("edgeqwq_frames_total{reused=false}", 0) >= 15
                         and s, 30, what="live gauges on /metrics")
            assert m["edgeqwq_health_ok"] == (1.0 if svc.health.state == "ok" else 0.0) == 1.0
            assert m["edgeqwq_shadow_agreement"] == 1.0  # the same graphs: every sampled decision agrees
            health = svc.health
            with health._lock:  # the monitor degrades (as a check finding a cause would make it)
                health._set_cause("test", True, {})
            assert health.state == "degraded" and _scrape(port)["edgeqwq_health_ok"] == 0.0
            with health._lock:
                health._set_cause("test", False, {})
            assert health.state == "ok" and _scrape(port)["edgeqwq_health_ok"] == 1.0
        finally:
            svc.stop()
            t.join(20)
    assert not t.is_alive()


def test_the_fps_gauge_falls_when_frames_stop(tiny_bundle):
    """A stalled loop or a lost camera must not keep showing the last good rate."""
    svc = Service(ServiceConfig(bundle=str(tiny_bundle), source="none.avi", handle_signals=False))
    svc._times.extend(100.0 + i / 30 for i in range(90))  # 3 s at 30 fps, last frame at t = 102.97
    assert abs(svc.fps(102.97 + 1 / 30) - 30.0) < 0.5
    assert svc.fps(104.0) < 30.0 * 0.8  # a second without frames: the rate falls
    assert svc.fps(110.0) == 0.0  # nothing in the last 5 s
