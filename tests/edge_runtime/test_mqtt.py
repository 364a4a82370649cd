"""MQTT results that are never lost (issue 15, part 1): against a real Mosquitto (tests/servers.py), with a
real paho subscriber holding a persistent session, and the service run as `edge-qwq run` in a subprocess."""
from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import uuid

import pytest

from edge_runtime.mqtt import MqttError, Publisher, parse_mqtt_url
from edge_runtime.store import SCHEMA_VERSION, DecisionStore
from tests.edge_runtime.service_helpers import (
    MjpegServer, cli, cli_run, free_port, frames, needs_ffmpeg, status, wait_for, write_video)

PASSWORD = "hunter2-s3cret"


class Subscriber:
    """A paho subscriber to PREFIX/# with a persistent session (clean_session False, QoS 1): what the broker
    queued for it while it was away (the broker down and back, with persistence) reaches it."""

    def __init__(self, broker, prefix: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.prefix = prefix
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
                             clean_session=False, protocol=mqtt.MQTTv311)
        self.c.reconnect_delay_set(0.2, 1)
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=1)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, keepalive=5)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def ids(self, kind: str = "decisions", device: str | None = None) -> list[int]:
        with self.lock:
            return [m["id"] for t, m, _ in self.messages if t.endswith("/" + kind)
                    and (device is None or m["device"] == device)]

    def statuses(self) -> list[dict]:
        with self.lock:
            return [m for t, m, _ in self.messages if t.endswith("/status")]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def prefix():
    return f"edge-qwq/t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def subscriber(mosquitto_broker, prefix):
    s = Subscriber(mosquitto_broker, prefix)
    yield s
    s.close()


def _store_ids(db, table: str = "decisions", unsent: bool = False) -> list[int]:
    with sqlite3.connect(db) as c:
        where = " WHERE sent_at IS NULL" if unsent else ""
        return [r[0] for r in c.execute(f"SELECT id FROM {table}{where} ORDER BY id")]


def _row(i: int) -> dict:
    return {"time": time.time(), "frame_id": i, "source": "test", "label": "ok", "confidence": 0.9, "exit": 0,
            "latency_ms": 1.0, "model_version": "v1", "reused": 0, "evidence": None}


# ------------------------------------------------------------------------------------------- URL, options
@pytest.mark.parametrize("url, match", [
    ("http://broker/x", "scheme must be mqtt"), ("mqtt:///x", "no broker host"),
    ("mqtt://broker:notaport/x", "not a valid MQTT URL"), ("mqtt://broker/line/#", "may not hold"),
    ("mqtt://u:pw@broker:99999/x", "not a valid MQTT URL")])
def test_malformed_urls_are_one_clear_error_without_the_password(url, match):
    with pytest.raises(MqttError, match=match) as e:
        parse_mqtt_url(url)
    assert "pw" not in str(e.value).replace("expected", "") and "\n" not in str(e.value)


def test_url_defaults(tmp_path):
    t = parse_mqtt_url("mqtt://broker")
    assert (t.host, t.port, t.tls, t.prefix, t.qos) == ("broker", 1883, False, "edge-qwq", 1)
    t = parse_mqtt_url("mqtts://broker/edge-qwq/line3/")
    assert (t.port, t.tls, t.prefix, t.topic("cam1", "status")) == (8883, True, "edge-qwq/line3",
                                                                    "edge-qwq/line3/cam1/status")
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    t = parse_mqtt_url("mqtt://broker:1884/p", user="u", password_file=str(tmp_path / "pw"))
    assert (t.port, t.user, t.password) == (1884, "u", PASSWORD) and PASSWORD not in repr(t)


def test_cli_malformed_url_and_missing_store_are_one_line(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(3))
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(tmp_path / "d.db"),
                "--mqtt", f"http://user:{PASSWORD}@broker/x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "mqtt:// or mqtts://" in r.stderr and PASSWORD not in r.stderr + r.stdout
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--mqtt", "mqtt://broker/x")
    assert r.returncode == 2 and "--mqtt needs --store" in r.stderr


def test_a_ca_file_that_is_not_a_certificate_is_one_clear_error(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    target = parse_mqtt_url("mqtt://127.0.0.1:1/x", tls_ca=str(ca))
    assert target.tls and target.port == 1
    with pytest.raises(MqttError, match="not a usable CA certificate"):
        Publisher(tmp_path / "d.db", target, device="cam1")


# ------------------------------------------------------------------------------------------- the store
def test_a_store_from_before_the_outbox_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)  # a schema-2 store: no sent_at
    db.executescript("""
        CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, frame_id INTEGER NOT NULL,
            source TEXT NOT NULL, label TEXT NOT NULL, confidence REAL NOT NULL, exit INTEGER NOT NULL,
            latency_ms REAL NOT NULL, model_version TEXT NOT NULL, reused INTEGER NOT NULL, evidence TEXT,
            defects TEXT, tiles TEXT);
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL,
            detail TEXT NOT NULL);
        INSERT INTO decisions (time, frame_id, source, label, confidence, exit, latency_ms, model_version, reused)
            VALUES (1, 0, 's', 'ok', 0.9, 0, 1, 'v0', 0);
        INSERT INTO events (time, kind, detail) VALUES (1, 'started', '{}');
        PRAGMA user_version = 2;""")
    db.close()
    store = DecisionStore(path)
    store.add(_row(1))
    store.flush()
    assert _store_ids(path, unsent=True) == [2] and _store_ids(path, "events", unsent=True) == []  # old: sent_at 0
    store.mark_sent("decisions", [2])
    assert _store_ids(path, unsent=True) == []
    store.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT sent_at FROM decisions ORDER BY id").fetchall()[0] == (0,)


# ------------------------------------------------------------------------------------------- the publisher
def _drive(store: DecisionStore, pub: Publisher, until, timeout: float, add_every: float = 0.0, n: list | None = None):
    """What the service loop does: add rows (optionally), commit, mark what the broker acknowledged; until
    `until()` (AssertionError after `timeout`), or for `timeout` s when `until` is None."""
    deadline = time.monotonic() + timeout
    next_add = time.monotonic()
    while time.monotonic() < deadline:
        if add_every and time.monotonic() >= next_add:
            store.add(_row(len(n)))
            n.append(1)
            next_add += add_every
        store.maybe_commit()
        for table, ids in pub.take_acked().items():
            store.mark_sent(table, ids)
        if until is not None and until():
            return
        time.sleep(0.01)
    if until is not None:
        raise AssertionError("timed out")


def test_publisher_sends_every_row_in_order_once_and_marks_it_sent(mosquitto_broker, subscriber, prefix, tmp_path):
    db = tmp_path / "d.db"
    store = DecisionStore(db, commit_every=16)
    for i in range(300):
        store.add(_row(i))
    store.event("started", {"x": 1})
    pub = Publisher(db, parse_mqtt_url(f"{mosquitto_broker.url}/{prefix}"), device="cam1",
                    model_version=lambda: "v1", rate=1000).start()
    try:
        _drive(store, pub, lambda: not _store_ids(db, unsent=True) and len(subscriber.ids()) >= 300, 30)
        wait_for(lambda: subscriber.ids("events"), 5, what="the event")
        s = pub.status()
        assert s["connected"] and s["sent"] == {"decisions": 300, "events": 1}
    finally:
        pub.close()
    store.close()
    assert subscriber.ids() == list(range(1, 301))  # every one, in order, once
    first = next(m for t, m, _ in subscriber.messages if t == f"{prefix}/cam1/decisions")
    assert first["device"] == "cam1" and first["model_version"] == "v1" and first["frame_id"] == 0
    wait_for(lambda: subscriber.statuses() and not subscriber.statuses()[-1]["online"], 5, what="offline")
    assert subscriber.statuses()[0]["online"] is True and subscriber.statuses()[-1]["reason"] == "stopped"


def _broker_outage(mosquitto_broker, subscriber, prefix, tmp_path, down_s: float):
    """Rows keep coming (20 a second) while the broker is down for `down_s`: (ids the subscriber got, rows
    stored)."""
    db = tmp_path / "d.db"
    store, n = DecisionStore(db, commit_every=8, commit_interval_s=0.1), []
    pub = Publisher(db, parse_mqtt_url(f"{mosquitto_broker.url}/{prefix}"), device="cam1", rate=500).start()
    try:
        _drive(store, pub, lambda: len(subscriber.ids()) >= 20, 20, add_every=0.05, n=n)
        mosquitto_broker.stop()
        try:
            _drive(store, pub, None, down_s, add_every=0.05, n=n)  # the frame loop goes on, into the store
            assert not pub.connected and pub.status()["backlog"] > 0
        finally:
            mosquitto_broker.start()
        _drive(store, pub, lambda: len(n) > 0 and pub.connected, 40, add_every=0.05, n=n)
        store.flush()
        total = len(n)
        _drive(store, pub, lambda: not _store_ids(db, unsent=True), 40)
        wait_for(lambda: set(subscriber.ids()) >= set(range(1, total + 1)), 40, what="every decision")
    finally:
        pub.close()
        store.close()
    return subscriber.ids(), total


def test_broker_down_and_back_loses_nothing(mosquitto_broker, subscriber, prefix, tmp_path):
    got, total = _broker_outage(mosquitto_broker, subscriber, prefix, tmp_path, down_s=4)
    assert sorted(set(got)) == list(range(1, total + 1))
    first = sorted(set(got), key=got.index)
    assert first == sorted(first)  # in order (re-sends after the reconnect are duplicates, allowed at QoS 1)


@needs_ffmpeg
@pytest.mark.parametrize("down_s", [4, pytest.param(20, marks=pytest.mark.slow)])
def test_service_goes_on_while_the_broker_is_down_and_loses_nothing(tiny_bundle, mosquitto_broker, subscriber,
                                                                    prefix, tmp_path, down_s):
    video = write_video(tmp_path / "v.avi", frames(60))
    db, port = tmp_path / "d.db", free_port()
    p = None
    with MjpegServer(video) as server:
        try:
            p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(db),
                    "--mqtt", f"{mosquitto_broker.url}/{prefix}", "--device-name", "cam1",
                    "--http", f"127.0.0.1:{port}")
            wait_for(lambda: len(subscriber.ids()) >= 20, 30, what="decisions before the outage")
            mosquitto_broker.stop()
            try:
                frames_before = status(port)["frames"]
                time.sleep(down_s)
                s = status(port)
                assert not s["mqtt"]["connected"] and s["mqtt"]["backlog"] > 0
                assert s["frames"] > frames_before + 10 * down_s  # the frame loop never waited for the broker
            finally:
                mosquitto_broker.start()
            wait_for(lambda: (st := status(port)["mqtt"])["connected"] and st["backlog"] < 30, 40,
                     what="the backlog drained")
        finally:
            if p is not None:
                p.send_signal(signal.SIGTERM)
                out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "connection to" in err and "lost" in err and "MQTT connected" in err
    stored = _store_ids(db)
    assert _store_ids(db, unsent=True) == []
    wait_for(lambda: set(subscriber.ids()) >= set(stored), 30, what="every stored decision")
    got = subscriber.ids()
    assert sorted(set(got), key=got.index) == stored  # every one, in order (re-sends allowed at QoS 1)


# ------------------------------------------------------------------------------------------- the service
def test_service_publishes_its_decisions_and_events_without_credentials(tiny_bundle, mosquitto_broker, subscriber,
                                                                       prefix, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(40))
    db, pw = tmp_path / "d.db", tmp_path / "pw"
    pw.write_text(PASSWORD)
    host = f"{mosquitto_broker.host}:{mosquitto_broker.port}"
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db), "--jsonl", "-",
                "--mqtt", f"mqtt://{host}/{prefix}", "--device-name", "cam7", "--mqtt-user", "op",
                "--mqtt-password-file", str(pw))
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr and f"{prefix}/cam7" in r.stderr
    assert _store_ids(db, unsent=True) == [] and _store_ids(db, "events", unsent=True) == []  # drained at the end
    wait_for(lambda: len(subscriber.ids(device="cam7")) >= 40, 10, what="40 decisions")
    assert subscriber.ids() == _store_ids(db) == list(range(1, 41))
    assert "started" in [m["kind"] for t, m, _ in subscriber.messages if t.endswith("/events")]
    with sqlite3.connect(db) as c:
        for table in ("decisions", "events"):
            assert PASSWORD not in json.dumps(c.execute(f"SELECT * FROM {table}").fetchall())


def test_unreachable_broker_at_start_buffers_and_drains_at_the_next_start(tiny_bundle, mosquitto_broker,
                                                                          subscriber, prefix, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(20))
    db = tmp_path / "d.db"
    closed = free_port()
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
                "--mqtt", f"mqtt://user:{PASSWORD}@127.0.0.1:{closed}/{prefix}", "--device-name", "cam1")
    assert r.returncode == 0, r.stderr  # the service ran: every decision is in the store
    assert "unreachable" in r.stderr and "kept in the store" in r.stderr and PASSWORD not in r.stderr + r.stdout
    assert _store_ids(db, unsent=True) == list(range(1, 21))
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
                "--mqtt", f"{mosquitto_broker.url}/{prefix}", "--device-name", "cam1")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(subscriber.ids()) >= 40, 10, what="both runs' decisions")
    assert subscriber.ids() == list(range(1, 41)) and _store_ids(db, unsent=True) == []


@needs_ffmpeg
def test_unreachable_broker_service_runs_says_so_in_status_and_drains_when_it_comes(
        tiny_bundle, mosquitto_broker, subscriber, prefix, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    db, port, pw = tmp_path / "d.db", free_port(), tmp_path / "pw"
    pw.write_text(PASSWORD)
    mosquitto_broker.stop()
    p = None
    try:
        with MjpegServer(video) as server:
            p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(db),
                    "--mqtt", f"{mosquitto_broker.url}/{prefix}", "--device-name", "cam1",
                    "--mqtt-user", "op", "--mqtt-password-file", str(pw), "--http", f"127.0.0.1:{port}")
            s = wait_for(lambda: (st := status(port)) and st["frames"] >= 30 and st["mqtt"]["backlog"] > 0 and st,
                         30, what="decisions buffered")
            assert s["mqtt"]["connected"] is False and p.poll() is None and PASSWORD not in json.dumps(s)
            mosquitto_broker.start()
            wait_for(lambda: status(port)["mqtt"]["connected"], 40, what="the reconnect")
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=20)
    finally:
        mosquitto_broker.start()
        if p is not None and p.poll() is None:
            p.kill()
    assert p.returncode == 0 and err.count("unreachable") == 1, err
    assert PASSWORD not in out + err
    stored = _store_ids(db)
    wait_for(lambda: set(subscriber.ids()) >= set(stored), 20, what="every stored decision")


@needs_ffmpeg
def test_kill_9_and_restart_on_the_same_store_loses_nothing(tiny_bundle, mosquitto_broker, subscriber, prefix,
                                                            tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    db, port = tmp_path / "d.db", free_port()
    with MjpegServer(video) as server:
        p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(db),
                "--mqtt", f"{mosquitto_broker.url}/{prefix}", "--device-name", "cam1", "--http", f"127.0.0.1:{port}")
        try:
            wait_for(lambda: (status(port) or {}).get("frames", 0) >= 40, 30, what="decisions before the kill")
        finally:
            p.kill()  # SIGKILL: no clean shutdown, acknowledged ids not yet marked are re-sent
            p.communicate(timeout=10)
    before = _store_ids(db)
    assert before
    wait_for(lambda: [s for s in subscriber.statuses() if s["online"] is False], 30, what="the last will")
    assert subscriber.statuses()[-1]["reason"] == "connection lost"
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
                "--mqtt", f"{mosquitto_broker.url}/{prefix}", "--device-name", "cam1")
    assert r.returncode == 0, r.stderr
    stored = _store_ids(db)
    assert len(stored) == len(before) + 60 and _store_ids(db, unsent=True) == []
    wait_for(lambda: set(subscriber.ids()) >= set(stored), 20, what="every stored decision")
    got = subscriber.ids()
    first = sorted(set(got), key=got.index)
    assert first == stored  # in order; duplicates (at QoS 1) only of what was acknowledged but not yet marked
