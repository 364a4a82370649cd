"""Real media and processes for the service tests: videos written by OpenCV, MJPEG served by ffmpeg on
127.0.0.1, the service run as `python -m edge_qwq.cli run ...`, quantized stages made (and damaged) here."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed "
                                  "(make system-deps installs it)")


def frames(n: int, size: tuple[int, int] = (64, 48), seed: int = 0, moving: bool = True,
           gain: float = 1.0) -> list[np.ndarray]:
    """n BGR frames (H, W, 3) of a fixed texture with a moving dark spot; `gain` < 1 darkens them."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(90, 170, (h, w, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        if moving:
            x = 4 + (i * 3) % (w - 8)
            f[h // 2 - 2:h // 2 + 2, x:x + 4] = 20
        out.append(np.clip(f.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return out


def write_video(path: Path, images: list[np.ndarray], fps: int = 30) -> Path:
    import cv2

    h, w = images[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in images:
        vw.write(f)
    vw.release()
    return path


def corrupt_avi(path: Path, indices: list[int], seed: int = 0) -> None:
    """Overwrite the JPEG data of the given frames of an MJPG AVI with random bytes (sizes kept)."""
    data = bytearray(path.read_bytes())
    chunks, i = [], data.find(b"movi")
    while (i := data.find(b"00dc", i + 4)) > 0:
        size = int.from_bytes(data[i + 4:i + 8], "little")
        if data[i + 8:i + 10] == b"\xff\xd8":  # a frame chunk (not an index entry)
            chunks.append((i + 8, size))
    rng = np.random.default_rng(seed)
    for k in indices:
        start, size = chunks[k]
        data[start:start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class MjpegServer:
    """`ffmpeg -re -stream_loop -1 -i VIDEO -c:v copy -f mpjpeg -listen 1 http://127.0.0.1:PORT/`."""

    def __init__(self, video: Path, port: int | None = None):
        self.video, self.port = video, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MjpegServer":
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.video),
             "-c:v", "copy", "-f", "mpjpeg", "-listen", "1", self.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, 10, what=f"ffmpeg listening on {self.port}")
        return self

    def _listening(self) -> bool:
        # ffmpeg serves one client; probing with a connect would consume it, so look at /proc/net/tcp:
        # listening (0A), or already serving (01) when a reconnecting client got there first.
        hexport = f":{self.port:04X}"
        with open("/proc/net/tcp") as f:
            return any(line.split()[1].endswith(hexport) and line.split()[3] in ("0A", "01") for line in f)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> "MjpegServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    """`edge-qwq ARGS` in a subprocess (the real entry point), stdout/stderr piped."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "edge_qwq.cli", *args], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def cli_run(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    p = cli(*args, env=env)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status(port: int) -> dict | None:
    with contextlib.suppress(OSError):
        code, body = http_get(f"http://127.0.0.1:{port}/status")
        return json.loads(body) if code == 200 else None
    return None


def add_quantized_stages(bundle_dir: Path, damage: float = 0.0, seed: int = 0) -> None:
    """Give a bundle "quantized" stages: copies of the FP32 graphs, recorded in the manifest as calib does.
    `damage` > 0 multiplies every weight by (1 + damage * N(0, 1)) noise, as a broken quantizer might."""
    import onnx
    from onnx import numpy_helper

    from edge_runtime.bundle import Bundle

    b = Bundle.open(bundle_dir)
    rng = np.random.default_rng(seed)
    for st in b.stages:
        qrel = st.file.replace(".onnx", ".q.onnx")
        model = onnx.load(str(bundle_dir / st.file))
        if damage:
            for init in model.graph.initializer:
                w = numpy_helper.to_array(init)
                if w.dtype == np.float32 and w.size > 1:
                    noisy = w * (1 + damage * rng.standard_normal(w.shape)).astype(np.float32)
                    init.CopyFrom(numpy_helper.from_array(noisy, init.name))
        onnx.save(model, str(bundle_dir / qrel))
        st.quantized = qrel
        b.add_file(qrel)
    b.save()
