"""The service's side of the reject signal: schedules each defect frame's reject in the worker process.

    >>> rejects = RejectScheduler(parse_reject("gpio:gpiochip0:105"), delay_ms=400, pulse_ms=50).start()
    >>> rejects.schedule(reject_id=7, due=frame.mono + 0.4, payload={...})   # from the frame loop: a pipe write
    >>> store.update_rejects(rejects.take_results())                           # in the loop's tick

`start` launches `python -m edge_runtime.reject.worker` and waits for it to open the output: a chip or line
that does not exist is a RejectError (one line) before the first frame. `schedule` costs the frame loop one
short pipe write. The loop's tick reads what the worker reported (fired, when; failed, why; a non-blocking
pipe, no thread to wake per reject) and records it through the store's one writer. A worker that dies is
restarted (at most every RESTART_S); rejects scheduled while it is down are reported failed, never silently
dropped. `close` asks the worker to fire what is still scheduled (those parts are on the belt) and waits for
it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque

from edge_runtime.reject.spec import RejectError, RejectSpec

START_TIMEOUT_S = 20.0  # the worker opens the output (and imports gpiod) within this
RESTART_S = 5.0


class RejectScheduler:
    def __init__(self, spec: RejectSpec, delay_ms: float = 400.0, pulse_ms: float = 50.0):
        self.spec, self.delay_s, self.pulse_s = spec, delay_ms / 1e3, pulse_ms / 1e3
        self.api = self.priority = ""
        self._proc: subprocess.Popen | None = None
        self._results: deque[dict] = deque()
        self._warnings: deque[str] = deque()
        self._restart_at = 0.0
        self._buf = b""  # a partial line from the worker
        self.scheduled = self.fired = self.failed = self.late = 0
        self.restarts = 0
        self.errors_ms: deque[float] = deque(maxlen=1000)  # fired - due, the last 1000

    # ---------------------------------------------------------------- the worker
    def start(self) -> "RejectScheduler":
        self._proc = self._launch()
        return self

    def _launch(self) -> subprocess.Popen:
        """The worker, given its output on its input (an http:// URL may hold a password: never on a command
        line, which every local user can read), once it said it opened it."""
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.reject.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=None)
        proc.stdin.write((json.dumps({"spec": self.spec.value, "pulse_ms": self.pulse_s * 1e3}) + "\n").encode())
        proc.stdin.flush()
        first = _read_line(proc, START_TIMEOUT_S)
        if first is None or "error" in first:
            proc.kill()
            proc.wait()
            why = (first or {}).get("error") or f"the reject worker did not start within {START_TIMEOUT_S:g} s"
            raise RejectError(why)
        self.api = first.get("api", "")
        self.priority = first.get("priority", "")
        os.set_blocking(proc.stdout.fileno(), False)  # read by the loop's tick (`_poll`): no thread to wake
        self._buf = b""
        return proc

    def _poll(self) -> None:
        """What the worker wrote since the last call (never waits)."""
        proc = self._proc
        if proc is None or proc.stdout.closed:
            return
        while True:
            try:
                chunk = os.read(proc.stdout.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                proc.stdout.close()
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "warning" in msg:
                self._warnings.append(msg["warning"])
            elif "id" in msg:
                self._results.append(msg)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---------------------------------------------------------------- the frame loop's calls
    def schedule(self, reject_id: int, due: float, payload: dict | None = None) -> None:
        """Drive the output at monotonic time `due` (s). A worker that is gone: restarted once RESTART_S
        passed; until then the reject is reported failed."""
        self.scheduled += 1
        msg = (json.dumps({"id": reject_id, "due": due, "payload": payload or {}}) + "\n").encode()
        if not self.alive and not self._restart():
            self._fail(reject_id, due, "the reject worker is not running (restarting)")
            return
        try:
            self._proc.stdin.write(msg)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail(reject_id, due, "the reject worker exited")

    def _restart(self) -> bool:
        now = time.monotonic()
        if now < self._restart_at:
            return False
        self._restart_at = now + RESTART_S
        try:
            self._proc = self._launch()
        except RejectError as e:
            self._warnings.append(f"cannot restart the reject worker: {e}")
            return False
        self.restarts += 1
        self._warnings.append(f"the reject worker was restarted ({self.api})")
        return True

    def _fail(self, reject_id: int, due: float, why: str) -> None:
        self._results.append({"id": reject_id, "due": due, "ok": False, "error": why})

    def take_results(self) -> list[dict]:
        """What the worker reported since the last call: {"id", "ok", "status" (fired, late or failed), "on",
        "wall", "error_ms", "late", "error"}."""
        self._poll()
        out = []
        while self._results:
            r = self._results.popleft()
            if r.get("ok"):
                r["error_ms"] = (r["on"] - r["due"]) * 1e3
                r["late"] = r["error_ms"] > LATE_MS
                r["status"] = "late" if r["late"] else "fired"
                self.fired += 1
                self.late += r["late"]
                self.errors_ms.append(r["error_ms"])
            else:
                r["status"] = "failed"
                self.failed += 1
            out.append(r)
        return out

    def take_warnings(self) -> list[str]:
        self._poll()
        out = list(self._warnings)
        self._warnings.clear()
        return out

    def status(self) -> dict:
        import numpy as np

        e = np.abs(np.asarray(self.errors_ms)) if self.errors_ms else None
        return {"output": self.spec.shown, "api": self.api, "delay_ms": self.delay_s * 1e3,
                "pulse_ms": self.pulse_s * 1e3, "worker": "running" if self.alive else "stopped",
                "priority": self.priority,
                "scheduled": self.scheduled, "fired": self.fired, "late": self.late, "failed": self.failed,
                "restarts": self.restarts,
                "timing_error_ms": None if e is None else {"p50": round(float(np.percentile(e, 50)), 3),
                                                           "p99": round(float(np.percentile(e, 99)), 3),
                                                           "max": round(float(e.max()), 3)}}

    def close(self, timeout: float | None = None) -> None:
        """Let the worker fire what is scheduled (at most delay + pulse + 2 s), then stop it."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.write(b'{"stop": true}\n')
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout if timeout is not None else self.delay_s + self.pulse_s + 2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._poll()  # the worker has exited: everything it wrote is in the pipe


LATE_MS = 2.0  # a reject driven more than this after its due time is counted late (the decision came late)


def _read_line(proc: subprocess.Popen, timeout: float) -> dict | None:
    """The worker's first line (ready or error), or None when it says nothing within `timeout` s."""
    import select

    if not select.select([proc.stdout], [], [], timeout)[0]:
        return None
    line = proc.stdout.readline()
    try:
        return json.loads(line) if line else None
    except ValueError:
        return None
