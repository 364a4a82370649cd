"""sd_notify on a real AF_UNIX datagram socket (path and abstract namespace)."""
from __future__ import annotations

import os
import socket

from edge_runtime.notify import Notifier, notify, watchdog_interval


def _listen(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(2)
    return s


def test_ready_watchdog_stopping_on_a_path_socket(tmp_path):
    addr = str(tmp_path / "notify.sock")
    with _listen(addr) as s:
        n = Notifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "1000000"})
        assert n.interval == 0.5
        assert n.ready("up")
        assert s.recv(256) == b"READY=1\nSTATUS=up"
        assert n.watchdog(now=100.0) and not n.watchdog(now=100.2) and n.watchdog(now=100.6)
        assert s.recv(64) == b"WATCHDOG=1" and s.recv(64) == b"WATCHDOG=1"
        assert n.stopping() and s.recv(64) == b"STOPPING=1"
        assert n.sent == {"READY": 1, "WATCHDOG": 2, "STOPPING": 1}


def test_abstract_namespace_socket():
    name = f"edge-qwq-test-{os.getpid()}"
    with _listen("\0" + name) as s:
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(64) == b"READY=1"


def test_no_socket_is_a_no_op_and_watchdog_pid_is_respected(tmp_path):
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert Notifier({}).watchdog() is False
