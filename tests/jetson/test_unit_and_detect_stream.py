"""The systemd unit (systemd-analyze verify) and jetson/detect_stream.py on real media."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import cv2
import pytest

from tests.edge_runtime.service_helpers import REPO, MjpegServer, frames, needs_ffmpeg, wait_for, write_video

UNIT = REPO / "jetson" / "edge-qwq.service"
SCRIPT = REPO / "jetson" / "detect_stream.py"


def test_unit_passes_systemd_analyze_verify(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text()
    # verify checks that ExecStart's binary exists: point it at this checkout's interpreter
    copy = tmp_path / "edge-qwq.service"
    copy.write_text(text.replace("/opt/edge-qwq/venv/bin/edge-qwq", f"{sys.executable} -m edge_qwq.cli"))
    r = subprocess.run([exe, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(copy) not in r.stderr, r.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Type=notify", "Type=notifyy"))
    r = subprocess.run([exe, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60)
    assert "notifyy" in r.stderr  # the check can fail


def test_unit_has_the_required_settings():
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=on-failure", "User=edge-qwq", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "DevicePolicy=closed", "DeviceAllow=char-video4linux rw",
                 "ReadWritePaths=/var/lib/edge-qwq"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)


def _script(*args, **kw):
    # Ctrl-C as a terminal delivers it: a test run started in the background of a shell without job
    # control inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored in the child
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def test_detect_stream_on_a_video_file_writes_the_annotated_stream(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(25, size=(128, 96)))
    out = tmp_path / "out.avi"
    p = _script("--bundle", str(tiny_bundle), "--source", str(video), "--out", str(out))
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert len(stdout.splitlines()) == 25 and '"label"' in stdout.splitlines()[0]
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 25
    ok, first = cap.read()
    assert ok and first.shape == (96, 128, 3)


@needs_ffmpeg
def test_detect_stream_exits_cleanly_on_ctrl_c(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60, size=(128, 96)))
    out = tmp_path / "out.avi"
    with MjpegServer(video) as server:
        p = _script("--bundle", str(tiny_bundle), "--source", server.url, "--out", str(out))
        try:
            lines = []
            wait_for(lambda: lines.append(p.stdout.readline()) or len(lines) >= 10, 30, interval=0,
                     what="decisions")
            p.send_signal(signal.SIGINT)
            stdout, stderr = p.communicate(timeout=20)
        finally:
            if p.poll() is None:  # a failed wait must not leave the script running after the test
                p.kill()
                p.wait(10)
    assert p.returncode == 0 and "Traceback" not in stderr, stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 10
