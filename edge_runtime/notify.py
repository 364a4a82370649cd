"""systemd notifications (sd_notify) by hand: one AF_UNIX datagram to $NOTIFY_SOCKET per message.

    >>> n = Notifier()          # reads NOTIFY_SOCKET and WATCHDOG_USEC; a no-op outside systemd
    >>> n.ready()               # READY=1 once the model, the store and the source are up
    >>> n.watchdog()            # WATCHDOG=1, at most every WATCHDOG_USEC / 2, from the main loop
    >>> n.stopping()            # STOPPING=1 on SIGTERM

An address starting with '@' is in the abstract namespace (a leading NUL byte on Linux).
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to $NOTIFY_SOCKET; False when there is no socket to send to."""
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not addr or addr[0] not in "/@":
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
        return True
    except OSError:
        return False  # systemd gone or socket removed: never a reason to stop deciding


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when no watchdog is set for us."""
    env = env if env is not None else os.environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(int(usec), 1) / 2e6
    except ValueError:
        return None


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = dict(env if env is not None else os.environ)
        self.interval = watchdog_interval(self.env)
        self._last = 0.0
        self.sent: dict[str, int] = {}  # messages sent, by name (READY, WATCHDOG, ...)

    def send(self, state: str) -> bool:
        ok = notify(state, self.env)
        if ok:
            name = state.split("=", 1)[0]
            self.sent[name] = self.sent.get(name, 0) + 1
        return ok

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1 if the interval has passed; call it every loop iteration."""
        now = time.monotonic() if now is None else now
        if self.interval is None or now - self._last < self.interval:
            return False
        self._last = now
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")
