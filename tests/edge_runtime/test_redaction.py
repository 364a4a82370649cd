"""Camera credentials never leave the process: /status, stored rows, JSON lines and events show the source
with its password redacted (issue 11, finding 5). Real ffmpeg MJPEG server, real service, real SQLite."""
import json
import signal
import sqlite3

import pytest

from edge_runtime.sources import redact_url
from tests.edge_runtime.service_helpers import MjpegServer, cli, free_port, frames, needs_ffmpeg, status, wait_for, \
    write_video


@pytest.mark.parametrize("uri, shown", [
    ("http://operator:secret@10.0.0.5/video", "http://operator:***@10.0.0.5/video"),
    ("rtsp://admin:p%40ss@cam.local:554/stream1", "rtsp://admin:***@cam.local:554/stream1"),
    ("http://TOKEN123@host/mjpeg", "http://***@host/mjpeg"),
    ("http://host/video.cgi?resolution=640&password=secret&Token=x", "http://host/video.cgi?resolution=640&password=***&Token=***"),
    ("http://host:8080/video", "http://host:8080/video"),
    ("csi://0?width=1280", "csi://0?width=1280"),
    ("/data/line3.mp4", "/data/line3.mp4"),
])
def test_redact_url(uri, shown):
    assert redact_url(uri) == shown


@needs_ffmpeg
def test_the_service_never_shows_or_stores_the_camera_password(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    port, db, jl = free_port(), tmp_path / "d.db", tmp_path / "d.jsonl"
    with MjpegServer(video) as server:
        source = server.url.replace("http://", "http://operator:s3cr3t-pw@")
        p = cli("run", "--bundle", str(tiny_bundle), "--source", source, "--store", str(db), "--jsonl", str(jl),
                "--http", f"127.0.0.1:{port}")
        try:
            s = wait_for(lambda: (st := status(port)) and st.get("frames", 0) >= 5 and st, 30, what="decisions")
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=20)
    assert "operator:***@" in s["source"]
    with sqlite3.connect(db) as c:
        stored = json.dumps([list(r) for r in c.execute("SELECT * FROM decisions")])
        stored += json.dumps([list(r) for r in c.execute("SELECT * FROM events")])
    shown = [json.dumps(s), stored, jl.read_text(), out, err]
    assert all("s3cr3t-pw" not in text for text in shown)
    assert "operator:***@" in stored
