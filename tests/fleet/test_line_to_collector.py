"""Issue 15's combined acceptance test: a line of two real services publishing to a real Mosquitto broker, one
real collector, one raw subscriber, all processes on loopback.

    the subscriber (paho, QoS 1, persistent session) on <prefix>/+/decisions, started first
    `edge-qwq collect --mqtt ... --store central.db --http ...`                  for the whole test
    `edge-qwq run --device-name line3-cam1 ...` and `... line3-cam2 ...`         live MJPEG sources, own stores

While they run the broker is stopped (20 s in the slow test, 3 s in the short one) and started again, then
service 1 is killed with SIGKILL and restarted on the same store, then both stop cleanly (SIGTERM). Every
decision in each device's store reaches the subscriber (in order per device; QoS 1 re-sends allowed) and the
collector's table exactly once; every stored row is marked sent; the status page lists both devices.

`_run_line` measures and returns; the test functions assert. Run with -s to see the figures.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.edge_runtime.service_helpers import (
    MjpegServer, cli, free_port, frames, http_get, needs_ffmpeg, status, wait_for, write_video)

DEVICES = ("line3-cam1", "line3-cam2")


class DecisionSubscriber:
    """A raw paho subscriber to <prefix>/+/decisions, QoS 1, with a persistent session (clean_session False):
    what the broker queued for it while it reconnected reaches it. Records (device, id) in arrival order."""

    def __init__(self, host: str, port: int, prefix: str):
        import paho.mqtt.client as mqtt

        self.arrivals: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                             clean_session=False, protocol=mqtt.MQTTv311)
        self.c.reconnect_delay_set(0.2, 1)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/+/decisions", qos=1)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(host, port, keepalive=5)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        device = msg.topic.split("/")[-2]
        with self.lock:
            self.arrivals.append((device, int(json.loads(msg.payload)["id"])))

    def ids(self, device: str) -> list[int]:
        """Every arrival of the device's decisions, duplicates included, in arrival order."""
        with self.lock:
            return [i for d, i in self.arrivals if d == device]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def _store_ids(db: Path) -> list[int]:
    with contextlib.closing(_ro(db)) as c:
        return [r[0] for r in c.execute("SELECT id FROM decisions ORDER BY id")]


def _store_unsent(db: Path) -> int:
    with contextlib.closing(_ro(db)) as c:
        return c.execute("SELECT COUNT(*) FROM decisions WHERE sent_at IS NULL").fetchone()[0]


def _central(db: Path, device: str) -> tuple[int, int, list[int]]:
    """(rows, distinct ids, sorted ids) of a device in the collector's decisions table."""
    with contextlib.closing(_ro(db)) as c:
        n, distinct = c.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM decisions WHERE device = ?",
                                (device,)).fetchone()
        ids = [r[0] for r in c.execute("SELECT id FROM decisions WHERE device = ? ORDER BY id", (device,))]
    return n, distinct, ids


def _central_ids(db: Path, device: str) -> set[int]:
    try:
        return set(_central(db, device)[2])
    except sqlite3.Error:  # not created yet
        return set()


@dataclass
class Measured:
    """What one run of the line measured; the test functions assert on it."""
    outage_s: float = 0.0
    during_outage: dict = field(default_factory=dict)  # device -> (stored before, stored after, connected)
    killed_at: int = 0  # rows in service 1's store when it was killed
    returncodes: dict = field(default_factory=dict)  # device -> exit status of its last run (SIGTERM)
    stderr: dict = field(default_factory=dict)
    stored: dict = field(default_factory=dict)  # device -> ids in its store, in order
    unsent: dict = field(default_factory=dict)  # device -> rows with sent_at NULL after the drain
    received: dict = field(default_factory=dict)  # device -> subscriber arrivals (with duplicates), in order
    central: dict = field(default_factory=dict)  # device -> (rows, distinct ids, sorted ids)
    status_json: dict = field(default_factory=dict)
    status_html: str = ""
    collector_rc: int | None = None
    collector_err: str = ""
    wall_s: float = 0.0

    def report(self, label: str) -> str:
        lines = [f"[{label}] broker outage {self.outage_s:.1f} s, service 1 killed (SIGKILL) at {self.killed_at} "
                 f"stored decisions, wall {self.wall_s:.1f} s"]
        for d in DEVICES:
            got = self.received[d]
            rows, distinct, _ = self.central[d]
            before, after, _ = self.during_outage[d]
            lines.append(f"[{label}] {d}: stored {len(self.stored[d])} (+{after - before} during the outage), "
                         f"subscriber {len(set(got))} unique / {len(got)} total ({len(got) - len(set(got))} "
                         f"duplicates), collector {rows} rows / {distinct} distinct, unsent {self.unsent[d]}, "
                         f"state {self.status_json['devices'].get(d, {}).get('online')}")
        return "\n".join(lines)


class Service:
    """One `edge-qwq run` with a live MJPEG source, its own store and --http port (for its /status)."""

    def __init__(self, name: str, bundle: Path, video: Path, store: Path, mqtt_url: str, stack: contextlib.ExitStack):
        self.name, self.bundle, self.video, self.store, self.mqtt_url = name, bundle, video, store, mqtt_url
        self.stack = stack
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "Service":
        server = self.stack.enter_context(MjpegServer(self.video))  # ffmpeg serves one client: one per run
        self.port = free_port()
        self.proc = cli("run", "--bundle", str(self.bundle), "--source", server.url, "--store", str(self.store),
                        "--mqtt", self.mqtt_url, "--device-name", self.name, "--http", f"127.0.0.1:{self.port}")
        self.stack.callback(self._reap, self.proc)
        return self

    def status(self) -> dict:
        return status(self.port) or {}

    def mqtt(self) -> dict:
        return self.status().get("mqtt") or {}

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no clean shutdown; acknowledged ids not yet marked are re-sent later
        self.proc.communicate(timeout=10)

    def terminate(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err

    @staticmethod
    def _reap(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def _run_line(broker, bundle: Path, tmp_path: Path, *, down_s: float, warmup: int, after_restart: int) -> Measured:
    """The whole line, measured: `warmup` decisions per device reach the subscriber before the outage;
    service 1 is killed once it has sent decisions after the broker came back, and restarted; the restarted
    one publishes at least `after_restart` new decisions before both are stopped."""
    t0 = time.monotonic()
    m = Measured()
    prefix = f"edge-qwq/t{uuid.uuid4().hex[:8]}"
    url = f"{broker.url}/{prefix}"
    video = write_video(tmp_path / "v.avi", frames(60))
    central, http_port = tmp_path / "central.db", free_port()
    stores = {d: tmp_path / f"{d}.db" for d in DEVICES}

    sub = DecisionSubscriber(broker.host, broker.port, prefix)
    with contextlib.ExitStack() as stack:
        stack.callback(sub.close)
        assert sub.subscribed.wait(10), "the subscriber did not subscribe"
        col = cli("collect", "--mqtt", url, "--store", str(central), "--http", f"127.0.0.1:{http_port}",
                  "--client-id", f"col-{uuid.uuid4().hex[:8]}")
        stack.callback(Service._reap, col)
        wait_for(lambda: _ready(http_port), 30, what="the collector's /readyz")
        time.sleep(0.5)  # its subscriptions follow the connect
        services = {d: Service(d, bundle, video, stores[d], url, stack).start() for d in DEVICES}
        wait_for(lambda: all(len(set(sub.ids(d))) >= warmup for d in DEVICES), 60,
                 what=f"{warmup} decisions per device before the outage")

        # the broker away: decisions keep going into the stores
        before = {d: len(_store_ids(stores[d])) for d in DEVICES}
        t_down = time.monotonic()
        broker.stop()
        try:
            time.sleep(down_s)
            after = {d: len(_store_ids(stores[d])) for d in DEVICES}
            connected = {d: services[d].mqtt().get("connected") for d in DEVICES}
        finally:
            broker.start()
            m.outage_s = time.monotonic() - t_down
        m.during_outage = {d: (before[d], after[d], connected[d]) for d in DEVICES}

        # service 1 killed (SIGKILL) once it is sending again, then restarted on the same store
        s1 = services[DEVICES[0]]
        wait_for(lambda: s1.mqtt().get("connected"), 60, what="service 1 reconnected")
        sent0 = s1.mqtt().get("sent", {}).get("decisions", 0)
        wait_for(lambda: s1.mqtt().get("sent", {}).get("decisions", 0) >= sent0 + 10, 30,
                 what="service 1 sending after the reconnect")
        s1.kill()
        m.killed_at = len(_store_ids(stores[DEVICES[0]]))
        s1.start()
        wait_for(lambda: len(_store_ids(stores[DEVICES[0]])) >= m.killed_at + after_restart, 60,
                 what=f"{after_restart} new decisions from the restarted service 1")

        # both drained, then stopped cleanly
        for d in DEVICES:
            wait_for(lambda d=d: (st := services[d].mqtt()).get("connected") and st.get("backlog", 1e9) < 30, 60,
                     what=f"{d}'s backlog drained")
        for d in DEVICES:
            m.returncodes[d], m.stderr[d] = services[d].terminate()

        m.stored = {d: _store_ids(stores[d]) for d in DEVICES}
        m.unsent = {d: _store_unsent(stores[d]) for d in DEVICES}
        wait_for(lambda: all(set(sub.ids(d)) >= set(m.stored[d]) for d in DEVICES), 60,
                 what="every stored decision at the subscriber")
        wait_for(lambda: all(_central_ids(central, d) >= set(m.stored[d]) for d in DEVICES), 60,
                 what="every stored decision in the collector's table")
        wait_for(lambda: all((_status_of(http_port)["devices"].get(d) or {}).get("online") is False
                             for d in DEVICES), 10, what="both devices offline on the status page")
        time.sleep(1.0)  # anything late (a duplicate) has a chance to arrive and be counted
        m.received = {d: sub.ids(d) for d in DEVICES}
        m.status_json = _status_of(http_port)
        m.status_html = http_get(f"http://127.0.0.1:{http_port}/")[1].decode()
        col.send_signal(signal.SIGTERM)
        _, m.collector_err = col.communicate(timeout=30)
        m.collector_rc = col.returncode
        m.central = {d: _central(central, d) for d in DEVICES}
    m.wall_s = time.monotonic() - t0
    return m


def _ready(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    except OSError:  # not listening yet
        return False


def _status_of(port: int) -> dict:
    code, body = http_get(f"http://127.0.0.1:{port}/status")
    assert code == 200, body
    return json.loads(body)


def _first_arrivals(got: list[int]) -> list[int]:
    seen, out = set(), []
    for i in got:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


@needs_ffmpeg
@pytest.mark.parametrize("down_s, warmup, after_restart", [
    pytest.param(3, 10, 15, marks=pytest.mark.timeout(150), id="broker-down-3s"),
    pytest.param(20, 30, 60, marks=[pytest.mark.slow, pytest.mark.timeout(240)], id="broker-down-20s"),
])
def test_line_to_collector_loses_nothing(tiny_bundle, mosquitto_broker, tmp_path, down_s, warmup, after_restart):
    m = _run_line(mosquitto_broker, tiny_bundle, tmp_path, down_s=down_s, warmup=warmup, after_restart=after_restart)
    print("\n" + m.report(f"broker down {down_s} s"))

    assert m.outage_s >= down_s
    for d in DEVICES:
        before, after, connected = m.during_outage[d]
        assert after > before and connected is False, (d, m.during_outage[d])  # the store grew, offline
        assert m.returncodes[d] == 0, m.stderr[d]
    assert "lost" in m.stderr[DEVICES[1]] and "MQTT connected" in m.stderr[DEVICES[1]]
    assert len(m.stored[DEVICES[0]]) > m.killed_at > 0  # the restarted service went on on the same store
    for d in DEVICES:
        stored, got = m.stored[d], m.received[d]
        assert stored == list(range(1, len(stored) + 1)), d  # the store's ids: no gap
        assert m.unsent[d] == 0, (d, m.unsent[d])  # every stored row marked sent after the drain
        assert set(got) == set(stored), (d, sorted(set(stored) ^ set(got))[:20])  # every one, nothing else
        first = _first_arrivals(got)
        assert first == sorted(first), d  # in order; a duplicate (QoS 1 re-send) repeats an id seen before
        rows, distinct, ids = m.central[d]
        assert rows == distinct == len(stored) and ids == stored, (d, rows, distinct, len(stored))  # each once
    assert m.collector_rc == 0, m.collector_err
    listed = m.status_json["devices"]
    assert set(DEVICES) <= set(listed), listed
    for d in DEVICES:
        assert listed[d]["decisions"] == len(m.stored[d]) and listed[d]["online"] is False, (d, listed[d])
        assert f"<td>{d}</td>" in m.status_html
