"""HTTP load benchmark: does an abused HTTP API slow the service's decisions? Prints JSON.

    python bench/http_load_bench.py [--bundle B] [--seconds 10] [--half-open 1000] [--clients 200]

`edge-qwq run --store --http 127.0.0.1:PORT` runs in a subprocess on a live MJPEG stream (a generated
640x480 video looped by ffmpeg at 30 fps), with the descriptor limit systemd gives a service (1024 soft).
  * idle: decisions per second over --seconds (from the store's row times), /metrics latency from a probe
    that asks every 100 ms, as a Prometheus scrape would;
  * load: a load generator process pinned to one core (os.sched_setaffinity, its descriptor limit raised to
    the hard limit) keeps --half-open connections open that never send a byte (re-opening those the server
    closes) and runs --clients threads asking GET /status and GET /metrics in a loop, each on a new
    connection; over --seconds: decisions per second, the probe's /metrics latency, the load's requests
    (answered, shed with 503, failed), the service's descriptors (exhausted: within 16 of its limit, or
    "Too many open files" on its stderr).
Pass: decisions/s under load within 10 % of idle, the probe's /metrics p99 within 100 ms, no descriptor
exhausted. Without --bundle it exports a default-size untrained student (96 px; needs torch).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import default_bundle, make_video  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def percentiles_ms(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    a = np.asarray(xs) * 1e3
    return {"n": len(xs), "p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "max": round(float(a.max()), 2)}


# ---------------------------------------------------------------- the load generator (its own process)
def loadgen(port: int, half_open: int, clients: int, cpu: int, reopen: int) -> int:
    os.sched_setaffinity(0, {cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = threading.Event()
    counts = {"ok": 0, "busy_503": 0, "other_status": 0, "failed": 0}
    latency: list[float] = []
    lock = threading.Lock()
    closed = [0]

    def idle_sockets() -> None:
        """Keep `half_open` connections open that never send a byte; re-open those the server closes."""
        def one() -> socket.socket:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            return s

        sel = selectors.DefaultSelector()  # epoll: select() stops at descriptor 1024
        for _ in range(half_open):
            sel.register(one(), selectors.EVENT_READ)
            time.sleep(0.001)  # paced: a burst would sit in SYN retries instead of reaching the server
        while not stop.is_set():
            for key, _ in sel.select(0.2):  # readable: closed by the server (EOF or reset)
                sel.unregister(key.fileobj)
                key.fileobj.close()
                closed[0] += 1
                if reopen:  # the harsher attack: a new idle connection for every one closed
                    sel.register(one(), selectors.EVENT_READ)
        for key in list(sel.get_map().values()):
            key.fileobj.close()

    def client(i: int) -> None:
        paths = ("/status", "/metrics") if i % 2 else ("/metrics", "/status")
        n = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                code, _ = fetch(port, paths[n % 2])
                key = "ok" if code == 200 else "busy_503" if code == 503 else "other_status"
            except OSError:
                key = "failed"
            with lock:
                counts[key] += 1
                if key == "ok":
                    latency.append(time.perf_counter() - t0)
            n += 1

    holder = threading.Thread(target=idle_sockets, daemon=True)
    holder.start()
    time.sleep(half_open * 0.001 + 0.5)
    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in workers:
        t.start()
    print("ready", flush=True)
    t0 = time.perf_counter()
    sys.stdin.readline()  # the bench measured; stop
    stop.set()
    elapsed = time.perf_counter() - t0
    for t in workers:
        t.join(10)
    holder.join(10)
    print(json.dumps({**counts, "per_s": round((counts["ok"] + counts["busy_503"]) / elapsed, 1),
                      "half_open_closed_by_server": closed[0], "latency_ms": percentiles_ms(latency)}), flush=True)
    return 0


# ---------------------------------------------------------------- the bench
class Probe:
    """GET /metrics every `interval` s on a new connection, as a scraper would; latencies and failures."""

    def __init__(self, port: int, interval: float = 0.1):
        self.port, self.interval = port, interval
        self.latency: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                code, _ = fetch(self.port, "/metrics", timeout=5.0)
                if code == 200:
                    self.latency.append(time.perf_counter() - t0)
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def result(self) -> dict:
        return {**percentiles_ms(self.latency), "failed": self.failed}


class FdSampler:
    """The service's open descriptors and threads, sampled every 0.25 s (maxima)."""

    def __init__(self, pid: int):
        self.pid, self.fds, self.threads = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fds = max(self.fds, len(os.listdir(f"/proc/{self.pid}/fd")))
                self.threads = max(self.threads, len(os.listdir(f"/proc/{self.pid}/task")))
            except OSError:
                pass
            self._stop.wait(0.25)

    def __enter__(self) -> "FdSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decisions_per_s(db: Path, t0: float, t1: float) -> float:
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT count(*) FROM decisions WHERE time >= ? AND time < ?", (t0, t1)).fetchone()[0]
    return n / (t1 - t0)


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"http_load_bench: timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase (idle, load)")
    p.add_argument("--half-open", type=int, default=1000)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--service-nofile", type=int, default=1024,
                   help="the service's descriptor limit (systemd's default soft limit)")
    p.add_argument("--reopen", action="store_true",
                   help="harsher: the load generator re-opens every idle connection the server closes")
    p.add_argument("--loadgen", nargs=5, type=int, metavar=("PORT", "HALF_OPEN", "CLIENTS", "CPU", "REOPEN"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.loadgen:
        return loadgen(*args.loadgen)
    if shutil.which("ffmpeg") is None:
        raise SystemExit("http_load_bench: needs ffmpeg to serve the MJPEG stream (make system-deps)")
    cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle or default_bundle(tmp / "bundle")
        video = make_video(tmp / "line.avi", 90, still=1, step=7)
        src_port, port, db = free_port(), free_port(), tmp / "d.db"
        ffmpeg = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
             "-c:v", "copy", "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{src_port}/"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        err_path = tmp / "service.err"
        nofile = args.service_nofile
        with open(err_path, "w") as err_file:
            svc = subprocess.Popen(
                [sys.executable, "-m", "edge_qwq.cli", "run", "--bundle", str(bundle),
                 "--source", f"http://127.0.0.1:{src_port}/", "--store", str(db), "--http", f"127.0.0.1:{port}"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err_file,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                      (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
        gen = None
        try:
            wait_for(lambda: json.loads(fetch(port, "/status")[1])["frames"] >= 30, 60, "the service to decide")
            time.sleep(2.0)  # warm
            with Probe(port) as idle_probe:
                t0, c0 = time.time(), cpu_seconds(svc.pid)
                time.sleep(args.seconds)
                t1, c1 = time.time(), cpu_seconds(svc.pid)
            gen = subprocess.Popen(
                [sys.executable, __file__, "--loadgen", str(port), str(args.half_open), str(args.clients),
                 str(cpus[-1]), str(int(args.reopen))],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if gen.stdout.readline().strip() != "ready":
                raise SystemExit("http_load_bench: the load generator did not start")
            time.sleep(1.0)  # the load settles
            with FdSampler(svc.pid) as fds, Probe(port) as load_probe:
                t2, c2 = time.time(), cpu_seconds(svc.pid)
                time.sleep(args.seconds)
                t3, c3 = time.time(), cpu_seconds(svc.pid)
            gen.stdin.write("\n")
            gen.stdin.flush()
            load = json.loads(gen.stdout.readline())
            gen.wait(20)
            time.sleep(1.0)  # the last decisions committed
            idle_dps, load_dps = decisions_per_s(db, t0, t1), decisions_per_s(db, t2, t3)
        finally:
            if gen is not None and gen.poll() is None:
                gen.kill()
            svc.send_signal(signal.SIGTERM)
            try:
                svc.wait(30)
            except subprocess.TimeoutExpired:
                svc.kill()
            ffmpeg.kill()
            ffmpeg.wait(5)
        stderr = err_path.read_text()
    # accept() failing with EMFILE is silent in some servers (socketserver swallows it): a process that sat at
    # its descriptor limit counts as exhausted too
    exhausted = "Too many open files" in stderr or "EMFILE" in stderr or fds.fds >= nofile - 16
    ratio = load_dps / idle_dps if idle_dps else 0.0
    probe = load_probe.result()
    checks = {"decisions_within_10pct_of_idle": ratio >= 0.9,
              "metrics_p99_within_100ms": probe["p99"] is not None and probe["p99"] <= 100.0 and not probe["failed"],
              "no_descriptor_exhausted": not exhausted}
    out = {
        "machine": {"cpus": os.cpu_count(), "loadgen_cpu": cpus[-1],
                    "note": "service, ffmpeg, probe and load generator share this machine's cores"},
        "bundle": str(args.bundle or "default-size untrained student (96 px), exported by the bench"),
        "source": "MJPEG 640x480 at 30 fps (ffmpeg -re), loopback",
        "seconds": args.seconds, "service_nofile": nofile,
        "idle": {"decisions_per_s": round(idle_dps, 2), "metrics_latency_ms": idle_probe.result(),
                 "service_cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1)},
        "load": {"half_open": args.half_open, "clients": args.clients, "decisions_per_s": round(load_dps, 2),
                 "metrics_latency_ms": probe, "requests": load,
                 "service_cpu_percent": round(100 * (c3 - c2) / (t3 - t2), 1),
                 "service_fds_max": fds.fds, "service_threads_max": fds.threads},
        "ratio_loaded_idle": round(ratio, 4),
        "descriptor_exhausted": exhausted,
        "stderr_tail": stderr.strip().splitlines()[-3:],
        "pass": checks, "ok": all(checks.values()),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
