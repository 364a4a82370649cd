"""The reject worker: a small process of its own that owns the output and keeps the time.

    python -m edge_runtime.reject.worker        (started by RejectScheduler; its first input line configures it)

Why a process: the frame loop's process runs Python in several threads (decode, HTTP, MQTT, health); a thread
waiting for its due time there waits for the GIL too, up to the interpreter's switch interval (5 ms). Here
nothing else runs, so the output moves within the kernel's wake-up latency of its due time, however slow or
busy inference is. The due time is absolute (CLOCK_MONOTONIC, which is system-wide): the frame's capture time
plus the delay, so a slow decision shortens the wait instead of moving the reject.

Protocol, JSON lines. In (stdin): first {"spec": the --reject value, "pulse_ms"}; then {"id", "due": monotonic
s, "payload": {...}} per reject; {"stop": true} or the end of stdin: the rejects already scheduled still fire
(their parts are on the belt), then the line goes inactive and the worker exits. Out (stdout): first {"ready":
true, "api": ...} or {"error": "one line"} (then exit 3); then per reject {"id", "due", "on": monotonic s when
the output was driven, "wall": the same instant in wall-clock time, "ok": true} or {"id", ..., "ok": false,
"error": why}.

A GPIO reject drives the line active at its due time and inactive `pulse` later; a reject due while the line
is still active from the previous one writes active again and lengthens the pulse (one longer push). An HTTP
reject is posted at its due time from a small pool of threads (a slow gateway never delays the next one)."""
from __future__ import annotations

import heapq
import json
import os
import select
import signal
import sys
import threading
import time

POLL_S = 0.05  # s: with rejects scheduled, what arrived is read at least this often
RT_PRIORITY = 10  # SCHED_FIFO priority where the worker may (see raise_priority); below the kernel's own
NICE = -10  # else its niceness where it may


class Worker:
    def __init__(self, output, pulse_s: float, out=sys.stdout):
        self.output, self.pulse_s, self.out = output, pulse_s, out
        self._due: list[tuple[float, int, dict]] = []  # heap of (due, id, message)
        self._off_at: float | None = None  # the active line goes inactive then
        self._write_lock = threading.Lock()
        self._pool = None
        if hasattr(output, "post"):
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reject-post")

    def say(self, msg: dict) -> None:
        """Report to the service; a service that is gone (killed) hears nothing, and the rejects go on."""
        with self._write_lock:
            if self.out is None:
                return
            try:
                self.out.write(json.dumps(msg) + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.out = None

    def add(self, msg: dict) -> None:
        heapq.heappush(self._due, (float(msg["due"]), int(msg["id"]), msg))

    def next_time(self) -> float | None:
        times = [t for t in (self._due[0][0] if self._due else None, self._off_at) if t is not None]
        return min(times) if times else None

    def run_due(self, now: float) -> None:
        """Fire every reject due by `now`, then end a pulse that is over."""
        while self._due and self._due[0][0] <= now:
            due, rid, msg = heapq.heappop(self._due)
            self._fire(rid, due, msg)
        if self._off_at is not None and time.monotonic() >= self._off_at:
            self._off_at = None
            try:
                self.output.set(False)
            except OSError as e:
                self.say({"warning": f"cannot drive the line inactive: {e.strerror or e}"})

    def _fire(self, rid: int, due: float, msg: dict) -> None:
        if self._pool is not None:
            on, wall = time.monotonic(), time.time()
            self._pool.submit(self._post, rid, due, on, wall, msg.get("payload") or {})
            return
        try:
            self.output.set(True)
        except OSError as e:
            self.say({"id": rid, "due": due, "ok": False, "error": f"cannot drive the line: {e.strerror or e}"})
            return
        on, wall = time.monotonic(), time.time()
        self._off_at = max(self._off_at or 0.0, on + self.pulse_s)
        self.say({"id": rid, "due": due, "on": on, "wall": wall, "ok": True})

    def _post(self, rid: int, due: float, on: float, wall: float, payload: dict) -> None:
        error = self.output.post({**payload, "reject_id": rid})
        self.say({"id": rid, "due": due, "on": on, "wall": wall, "ok": error is None,
                  **({"error": error} if error else {})})

    def finish(self) -> None:
        """Fire what is still scheduled at its time, end the pulse, release the output."""
        while (t := self.next_time()) is not None:
            wait_until(t)
            self.run_due(time.monotonic())
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.output.close()


def wait_until(t: float) -> None:
    """Sleep until monotonic time `t` (the kernel's timer: within ~0.1 ms at real-time priority)."""
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


def serve(worker: Worker, fd: int, buf: bytes = b"") -> None:
    """Read schedule messages from `fd` (after `buf`, already read) and fire them on time, until {"stop"} or
    the end of the input.

    While a reject is scheduled the worker sleeps until its due time without watching `fd`: rejects arrive in
    due order (capture order plus one delay), so a new one is never due before the one awaited, and a wake-up
    per arriving message would take a core from inference for nothing. What arrived is read at every wake-up,
    and at least every POLL_S (a bound for any reject that would come out of order)."""
    os.set_blocking(fd, False)
    while True:
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("stop"):
                return
            worker.add(msg)
        worker.run_due(time.monotonic())
        t = worker.next_time()
        if t is None:
            select.select([fd], [], [])  # nothing scheduled: wait for the next message
        else:
            wait_until(min(t, time.monotonic() + POLL_S))
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return
        buf += chunk


def main() -> int:
    """Its configuration comes as the first line of its input ({"spec", "pulse_ms"}): a PLC gateway's URL
    may hold a password, which must not be on a command line."""
    from edge_runtime.reject.outputs import open_output
    from edge_runtime.reject.spec import RejectError, parse_reject

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol on the pipe
    # systemd's SIGTERM reaches the whole service; the worker ends when the service closes its input, after
    # the rejects already scheduled fired (a kill -9 of the service closes it too)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    priority = raise_priority()
    fd = sys.stdin.fileno()
    config = _first_line(fd)
    try:
        if config is None:
            raise RejectError("the reject worker got no configuration")
        output = open_output(parse_reject(config[0]["spec"]))
    except RejectError as e:
        out.write(json.dumps({"error": str(e)}) + "\n")
        out.flush()
        return 3
    worker = Worker(output, float(config[0].get("pulse_ms", 50.0)) / 1e3, out)
    worker.say({"ready": True, "api": output.api, "priority": priority})
    try:
        serve(worker, fd, config[1])
    finally:
        worker.finish()
    return 0


def raise_priority(rt: int = RT_PRIORITY, nice: int = NICE) -> str:
    """Ask the kernel to run this process ahead of the inference threads when its time comes: real-time
    (SCHED_FIFO at `rt`) where the process may (root, CAP_SYS_NICE, or RLIMIT_RTPRIO: systemd's LimitRTPRIO=,
    which the unit's reject drop-in sets), else niceness `nice` where it may (LimitNICE=), else as it is.
    Returns what it got, for /status. Real time matters: measured on a loaded 2-core machine, a nice -10
    worker fired with p99 3.5 ms of error, a SCHED_FIFO one with p99 0.1 ms."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt))
        return f"SCHED_FIFO {rt}"
    except (OSError, AttributeError):
        pass
    current = os.nice(0)
    for n in range(nice, current):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, n)
            return f"nice {n}"
        except OSError:
            continue
    return f"nice {current} (no real-time priority: expect milliseconds of jitter when the CPU is busy)"


def _first_line(fd: int) -> tuple[dict, bytes] | None:
    """The first JSON line of `fd` and what was read after it."""
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    try:
        return json.loads(line), rest
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
