"""The HTTP API over real loopback HTTP, on a service deciding on a live MJPEG stream served by ffmpeg."""
from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest

from edge_runtime.errors import EdgeError
from edge_runtime.http_api import parse_host_port
from edge_runtime.service import Service, ServiceConfig
from tests.edge_runtime.service_helpers import (
    MjpegServer, free_port, frames, http_get, needs_ffmpeg, status, wait_for, write_video)


@pytest.mark.parametrize("text, want", [("127.0.0.1:8080", ("127.0.0.1", 8080)), (":9000", ("0.0.0.0", 9000)),
                                        ("[::1]:81", ("::1", 81))])
def test_parse_host_port(text, want):
    assert parse_host_port(text) == want


@pytest.mark.parametrize("text", ["8080", "localhost:http", "1.2.3.4:70000"])
def test_bad_address_is_one_clear_error(text):
    with pytest.raises(EdgeError, match="HOST:PORT"):
        parse_host_port(text)


@needs_ffmpeg
def test_endpoints_on_a_running_service(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60, size=(160, 120)))
    port = free_port()
    with MjpegServer(video) as server:
        svc = Service(ServiceConfig(bundle=str(tiny_bundle), source=server.url, store=str(tmp_path / "d.db"),
                                    http=f"127.0.0.1:{port}", reuse_window=3, handle_signals=False))
        t = threading.Thread(target=svc.run)
        t.start()
        try:
            s = wait_for(lambda: (st := status(port)) and st["frames"] >= 15 and st, 30, what="frames")
            base = f"http://127.0.0.1:{port}"
            assert http_get(base + "/healthz")[0] == 200 and http_get(base + "/readyz")[0] == 200
            code, body = http_get(base + "/metrics")
            text = body.decode()
            assert code == 200 and "edgeqwq_frames_total" in text and "edgeqwq_latency_seconds_bucket" in text
            frames_metric = sum(float(line.split()[-1]) for line in text.splitlines()
                                if line.startswith("edgeqwq_frames_total{"))
            assert frames_metric >= 15
            for key in ("model_version", "fps", "latency_ms", "exit_rates", "drops", "reuse", "health", "events"):
                assert key in s
            assert s["model_version"] and s["fps"] > 0 and s["latency_ms"]["p99"] >= s["latency_ms"]["p50"] > 0
            assert s["reuse"]["window"] == 3 and s["events"][0]["kind"] == "started"
            code, jpg = http_get(base + "/latest.jpg")
            img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            # full size: 1/2 scale would cover the 32 px input, but only once decisions through both decodes agree
            assert code == 200 and img.shape == (120, 160, 3)
            assert s["decode"]["mode"] in ("checking", "full") and s["decode"]["compared"] > 0
            assert http_get(base + "/nope")[0] == 404
            json.dumps(s)
        finally:
            svc.stop()
            t.join(20)
    assert not t.is_alive()
    with pytest.raises(OSError):  # the port is closed after stop
        http_get(f"http://127.0.0.1:{port}/healthz", timeout=1)
