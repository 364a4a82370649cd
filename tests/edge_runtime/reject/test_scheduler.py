"""The reject worker and its scheduler, with the FAKE chip (fake-gpio:, edges to a file) and a real local HTTP
gateway. Timing here is checked with wide margins (a shared 2-core machine): bench/reject_bench.py measures it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge_runtime.reject import scheduler as sched_mod
from edge_runtime.reject.scheduler import RejectScheduler
from edge_runtime.reject.spec import RejectError, parse_reject
from tests.edge_runtime.service_helpers import wait_for

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(60)


def edges(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def results_until(s: RejectScheduler, n: int, timeout: float = 10.0) -> list[dict]:
    got: list[dict] = []
    wait_for(lambda: got.extend(s.take_results()) or len(got) >= n, timeout, what=f"{n} reject results")
    return got


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "edges.jsonl"
    s = RejectScheduler(parse_reject(f"fake-gpio:{path}"), delay_ms=100, pulse_ms=20).start()
    yield s, path
    s.close(timeout=5)


def test_each_reject_drives_the_line_at_its_due_time_for_its_pulse(fake):
    s, path = fake
    assert s.api.startswith("FAKE")
    now = time.monotonic()
    dues = [now + 0.15 + 0.1 * k for k in range(3)]  # 100 ms apart: three separate 20 ms pulses
    for k, due in enumerate(dues):
        s.schedule(k + 1, due)
    got = results_until(s, 3)
    assert [r["id"] for r in got] == [1, 2, 3] and all(r["ok"] for r in got)
    assert all(-0.001 < r["on"] - r["due"] < 0.05 for r in got), got  # never early; on time within 50 ms here
    wait_for(lambda: len(edges(path)) >= 6, 5, what="the last pulse's end")
    e = edges(path)
    assert [x["value"] for x in e] == [1, 0, 1, 0, 1, 0]
    ons = [x["mono_ns"] / 1e9 for x in e[0::2]]
    widths = [(b["mono_ns"] - a["mono_ns"]) / 1e6 for a, b in zip(e[0::2], e[1::2])]
    assert all(abs(on - due) < 0.05 for on, due in zip(ons, dues))  # where the chip received it
    assert all(19.5 <= w < 80 for w in widths), widths  # the pulse: 20 ms, never shorter


def test_rejects_closer_than_the_pulse_make_one_longer_pulse(fake):
    s, path = fake
    now = time.monotonic()
    for k in range(3):
        s.schedule(k + 1, now + 0.1 + 0.005 * k)  # 5 ms apart, pulse 20 ms
    assert len(results_until(s, 3)) == 3
    wait_for(lambda: edges(path) and edges(path)[-1]["value"] == 0, 5, what="the pulse's end")
    values = [x["value"] for x in edges(path)]
    assert values == [1, 1, 1, 0]  # each reject wrote active; the line went inactive once, after the last
    e = edges(path)
    assert (e[-1]["mono_ns"] - e[-2]["mono_ns"]) / 1e6 >= 19.5


def test_it_keeps_the_capture_time_when_the_decision_is_slow(fake):
    """A frame captured 300 ms ago with a 500 ms delay: the reject is due 200 ms from now, not 500 ms."""
    s, _ = fake
    capture = time.monotonic() - 0.3
    t0 = time.monotonic()
    s.schedule(1, capture + 0.5)
    (r,) = results_until(s, 1)
    assert r["ok"] and not r["late"]
    assert 0.19 < r["on"] - t0 < 0.35  # ~0.2 s after scheduling (a wait of the delay would be 0.5 s)


def test_a_reject_already_due_fires_at_once_and_is_counted_late(fake):
    s, _ = fake
    t0 = time.monotonic()
    s.schedule(1, t0 - 0.05)  # the decision came 50 ms after the part passed the ejector's time
    (r,) = results_until(s, 1)
    assert r["ok"] and r["late"] and r["error_ms"] >= 49
    assert r["on"] - t0 < 0.1
    assert s.status()["late"] == 1 and s.status()["fired"] == 1


def test_close_fires_what_is_still_scheduled(tmp_path):
    path = tmp_path / "edges.jsonl"
    s = RejectScheduler(parse_reject(f"fake-gpio:{path}"), delay_ms=300, pulse_ms=10).start()
    due = time.monotonic() + 0.3
    s.schedule(1, due)
    s.close()  # the part is on the belt: it is still rejected, then the worker ends
    assert time.monotonic() >= due
    (r,) = s.take_results()
    assert r["ok"] and r["id"] == 1
    assert [x["value"] for x in edges(path)][:2] == [1, 0] and edges(path)[-1]["value"] == 0
    assert not s.alive  # (closing the output writes inactive once more)


def test_a_dead_worker_is_reported_and_restarted(tmp_path, monkeypatch):
    monkeypatch.setattr(sched_mod, "RESTART_S", 0.2)
    path = tmp_path / "edges.jsonl"
    s = RejectScheduler(parse_reject(f"fake-gpio:{path}"), delay_ms=50, pulse_ms=5).start()
    try:
        s._proc.kill()
        s._proc.wait()
        s._restart_at = time.monotonic() + 0.2  # as if it had just been restarted: the next one waits
        s.schedule(1, time.monotonic() + 0.05)
        (r,) = s.take_results()
        assert not r["ok"] and "not running" in r["error"]
        time.sleep(0.25)
        s.schedule(2, time.monotonic() + 0.05)
        (r2,) = results_until(s, 1)
        assert r2["ok"] and r2["id"] == 2 and s.restarts == 1
        assert any("restarted" in w for w in s.take_warnings())
        assert s.status()["failed"] == 1 and s.status()["fired"] == 1
    finally:
        s.close(timeout=5)


def test_a_missing_gpio_chip_is_one_line_at_start():
    if Path("/dev/gpiochip9").exists():
        pytest.skip("this machine has a /dev/gpiochip9")
    with pytest.raises(RejectError) as e:
        RejectScheduler(parse_reject("gpio:gpiochip9:3")).start()
    assert "no GPIO chip /dev/gpiochip9" in str(e.value) and "\n" not in str(e.value)


class Gateway:
    """A real HTTP server on loopback standing for a PLC gateway: records each POST and its arrival time."""

    def __init__(self):
        got = self.got = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append((time.monotonic(), json.loads(body), self.headers.get("Authorization")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_http_gateway_gets_each_reject_at_its_due_time_and_the_password_stays_off_the_command_line():
    gw = Gateway()
    url = f"http://plc:S3cret-pw@127.0.0.1:{gw.port}/reject"
    s = RejectScheduler(parse_reject(url), delay_ms=200).start()
    try:
        cmdline = Path(f"/proc/{s._proc.pid}/cmdline").read_bytes()
        assert b"S3cret" not in cmdline and b"S3cret" not in json.dumps(s.status()).encode()
        due = time.monotonic() + 0.2
        s.schedule(7, due, {"frame_id": 42, "label": "crack"})
        (r,) = results_until(s, 1)
        assert r["ok"], r
        (arrived, body, auth) = gw.got[0]
        assert body["frame_id"] == 42 and body["label"] == "crack" and body["reject_id"] == 7
        assert auth and auth.startswith("Basic ")
        assert due <= arrived < due + 0.5
    finally:
        s.close(timeout=5)
        gw.close()


def test_an_unreachable_gateway_fails_the_reject_with_why(free_tcp_port=None):
    from tests.edge_runtime.service_helpers import free_port

    s = RejectScheduler(parse_reject(f"http://127.0.0.1:{free_port()}/r"), delay_ms=10).start()
    try:
        s.schedule(1, time.monotonic())
        (r,) = results_until(s, 1)
        assert not r["ok"] and "cannot be reached" in r["error"]
    finally:
        s.close(timeout=5)


def test_a_killed_service_still_gets_its_scheduled_parts_rejected(tmp_path):
    """kill -9 of the service: the worker reads the end of its input and fires what was scheduled."""
    path = tmp_path / "edges.jsonl"
    script = textwrap.dedent(f"""
        import os, signal, time
        from edge_runtime.reject.scheduler import RejectScheduler
        from edge_runtime.reject.spec import parse_reject
        s = RejectScheduler(parse_reject("fake-gpio:{path}"), delay_ms=400, pulse_ms=5).start()
        now = time.monotonic()
        for k in range(3):
            s.schedule(k + 1, now + 0.4 + 0.02 * k)
        print(s._proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert p.returncode == -signal.SIGKILL
    worker = int(p.stdout.split()[0])
    wait_for(lambda: sum(x["value"] for x in edges(path)) == 3, 5, what="the three rejects")
    wait_for(lambda: not Path(f"/proc/{worker}").exists() or _zombie(worker), 5, what="the worker's end")
    assert edges(path)[-1]["value"] == 0


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_the_worker_takes_real_time_priority_where_it_may(fake):
    s, _ = fake
    if os.geteuid() == 0:
        assert s.priority.startswith("SCHED_FIFO")  # root may; a unit gives it LimitRTPRIO=
    else:
        assert s.priority  # said, whatever it got
