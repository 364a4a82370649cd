"""MQTT results that are never lost: the decision store is the outbox, a thread publishes it (paho-mqtt).

    >>> target = parse_mqtt_url("mqtt://broker:1883/edge-qwq/line3")           # doctest: +SKIP
    >>> pub = Publisher("decisions.db", target, device="cam-3", model_version=lambda: "v7").start()
    >>> store.mark_sent("decisions", pub.take_acked()["decisions"])  # the store's writer, in the loop

Topic layout (`<prefix>` is the URL's path, `edge-qwq` when it has none; `<device>` is --device-name, the
host name by default):

    <prefix>/<device>/decisions   one message per stored decision, QoS 1 (--mqtt-qos), not retained:
                                  the store's row as JSON (the same keys as the store and --jsonl, `defects` and
                                  `tiles` as JSON) with "id" (the store's autoincrement id: stable across
                                  restarts, so (device, id) identifies a decision), "device" and "model_version"
    <prefix>/<device>/events      one message per stored event (health actions, rollbacks, start, ...):
                                  {"id", "time", "kind", "detail", "device", "model_version"}
    <prefix>/<device>/status      retained: {"online": true, "device", "model_version", "time"} once connected;
                                  the last will (retained) {"online": false, "device", "reason": "connection
                                  lost"} when the device disappears; {"online": false, "reason": "stopped"} on a
                                  clean shutdown

Delivery: rows are read from committed data only (the publisher's own read connection; WAL), in id order
per table, where `sent_at IS NULL`; a row counts as sent only once the broker acknowledged it (PUBACK,
QoS 1). The acknowledged ids are collected here and written by the service loop through the store's
single writer (`DecisionStore.mark_sent`, batched every `MARK_EVERY_S`): the publisher never takes SQLite's
write lock, so the frame loop's commits never wait on it. At most `max_inflight` messages are unacknowledged
and at most `rate` messages a second are published (a token bucket), so a backlog of hours drains at a
bounded rate from a thread that does little work per message. While the broker is away nothing is read:
the rows wait in the store; paho re-sends the in-flight ones after a reconnect (capped backoff). A kill -9
between an acknowledgement and its `mark_sent` re-sends those rows after the restart: at-least-once, each
with its id, so a collector stores each decision once.

Credentials (a password in the URL, --mqtt-password-file) never appear in any output: the URL is shown
through `redact_url`, the password is only given to paho.
"""
from __future__ import annotations

import json
import socket
import sqlite3
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from edge_runtime.errors import EdgeError
from edge_runtime.sources import redact_url

DEFAULT_PREFIX = "edge-qwq"
MARK_EVERY_S = 0.5  # s: how often the service loop writes the acknowledged ids (one small commit)
CONNECT_GRACE_S = 3.0  # s without a connection at start (or a failed attempt): one line on stderr
_JSON_COLUMNS = ("defects", "tiles")


class MqttError(EdgeError):
    """A malformed --mqtt URL, a missing password or CA file, --mqtt without --store."""


@dataclass
class MqttTarget:
    """Where and how to publish: parsed from --mqtt and its options (`parse_mqtt_url`)."""
    url: str  # as given (may hold a password: never shown; use `shown`)
    host: str
    port: int
    tls: bool
    prefix: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    qos: int = 1

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    def topic(self, device: str, kind: str) -> str:
        return f"{self.prefix}/{device}/{kind}"


def parse_mqtt_url(url: str, *, user: str | None = None, password_file: str | None = None,
                   tls_ca: str | None = None, qos: int = 1) -> MqttTarget:
    """mqtt://HOST[:PORT][/PREFIX] or mqtts://... (TLS; --mqtt-tls-ca also turns TLS on); port 1883 (8883
    with TLS). MqttError, one line without the password, for anything else."""
    # a '#' or '?' inside a password would make the parser cut the URL before its '@': show the scheme only
    shown = redact_url(url) if not any(c in url for c in "#?") else url.split("://", 1)[0] + "://***"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise MqttError(f"--mqtt {shown}: not a valid MQTT URL ({e}); expected mqtt://HOST[:PORT]/PREFIX") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttError(f"--mqtt {shown}: the scheme must be mqtt:// or mqtts://, "
                        "e.g. mqtt://broker:1883/edge-qwq/line3")
    if not parts.hostname:
        raise MqttError(f"--mqtt {shown}: no broker host; expected mqtt://HOST[:PORT]/PREFIX")
    if "#" in url or "+" in parts.path:
        raise MqttError(f"--mqtt {shown}: the topic prefix may not hold '+' or '#' (MQTT wildcards)")
    if parts.query or parts.fragment:
        raise MqttError(f"--mqtt {shown}: a query or fragment has no meaning here; expected mqtt://HOST[:PORT]/PREFIX")
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if "\0" in prefix or "//" in prefix:
        raise MqttError(f"--mqtt {shown}: the topic prefix {prefix!r} may not hold empty levels")
    if qos not in (0, 1):
        raise MqttError(f"--mqtt-qos must be 0 or 1, got {qos}")
    tls = parts.scheme == "mqtts" or tls_ca is not None
    if tls_ca is not None and not Path(tls_ca).is_file():
        raise MqttError(f"--mqtt-tls-ca {tls_ca}: no such file")
    password = unquote(parts.password) if parts.password else None
    if password_file is not None:
        try:
            password = Path(password_file).read_text().strip("\r\n")
        except OSError as e:
            raise MqttError(f"--mqtt-password-file {password_file}: cannot read it ({e.strerror})") from None
    user = user or (unquote(parts.username) if parts.username else None)
    if password is not None and user is None:
        raise MqttError("--mqtt-password-file needs --mqtt-user (or a user in the URL)")
    return MqttTarget(url=url, host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls, prefix=prefix,
                      user=user, password=password, tls_ca=tls_ca, qos=qos)


def check_device_name(name: str) -> str:
    if not name or any(c in name for c in "/+#\0"):
        raise MqttError(f"--device-name {name!r}: must be non-empty, without '/', '+' or '#' (it is a topic level)")
    return name


class Publisher:
    """The outbox's publisher thread. `start()`, then from the service loop `take_acked()` (ids to mark
    sent), `status()` for /status, `close()` at the end (a clean offline status, then disconnect)."""

    def __init__(self, store_path: str | Path, target: MqttTarget, device: str | None = None,
                 model_version: Callable[[], str | None] = lambda: None, max_inflight: int = 20,
                 rate: float = 200.0, poll_s: float = 0.2, client_id: str | None = None):
        self.path, self.target = Path(store_path), target
        self.device = check_device_name(device or socket.gethostname().split(".")[0] or "edge-qwq")
        self.model_version = model_version
        self.max_inflight, self.rate, self.poll_s = max_inflight, float(rate), poll_s
        self.client_id = client_id or f"edge-qwq-{self.device}"
        self.topics = {t: target.topic(self.device, t) for t in ("decisions", "events", "status")}
        self._acks: deque[int] = deque()  # mids acknowledged (paho's thread appends, ours pops)
        self._inflight: dict[int, tuple[str, int]] = {}  # mid -> (table, row id)
        self._acked: dict[str, list[int]] = {"decisions": [], "events": []}
        self._acked_lock = threading.Lock()
        self._cursor = {"decisions": 0, "events": 0}  # the last id handed to paho, per table
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._ever_connected = False
        self._said_unreachable = False
        self.last_error: str | None = None
        self.sent = {"decisions": 0, "events": 0}
        self.backlog = 0
        self._thread: threading.Thread | None = None
        self._client = self._make_client()

    # ---------------------------------------------------------------- paho
    def _make_client(self):
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True,
                        protocol=mqtt.MQTTv311)
        if self.target.user is not None:
            c.username_pw_set(self.target.user, self.target.password)
        if self.target.tls:
            try:
                c.tls_set(ca_certs=self.target.tls_ca)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError: a CA file that is not a certificate
                raise MqttError(f"--mqtt-tls-ca {self.target.tls_ca}: not a usable CA certificate ({e})") from None
        c.max_inflight_messages_set(self.max_inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.will_set(self.topics["status"], json.dumps({"online": False, "device": self.device,
                                                      "reason": "connection lost"}), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_connect_fail = self._on_connect_fail
        return c

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"refused: {reason_code}"
            return
        self.last_error = None
        client.publish(self.topics["status"], json.dumps(
            {"online": True, "device": self.device, "model_version": self._version(), "time": time.time()}),
            qos=1, retain=True)
        if self._said_unreachable or self._ever_connected:
            print(f"edge-qwq: MQTT connected to {self.target.shown}; sending the {self.backlog} decisions and "
                  "events kept in the store", file=sys.stderr, flush=True)
        self._said_unreachable = False
        self._ever_connected = True
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stop.is_set():
            self.last_error = f"disconnected: {reason_code}"
            print(f"edge-qwq: warning: MQTT connection to {self.target.shown} lost ({reason_code}); decisions "
                  "are kept in the store and sent when it returns", file=sys.stderr, flush=True)

    def _on_connect_fail(self, client, userdata) -> None:
        self.last_error = "cannot connect"
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append(mid)
        self._wake.set()

    def _version(self):
        try:
            return self.model_version()
        except Exception:  # noqa: BLE001 - the status message must not fail for a model being switched
            return None

    # ---------------------------------------------------------------- start, stop
    def start(self) -> "Publisher":
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._started = time.monotonic()
        self._client.connect_async(self.target.host, self.target.port, keepalive=30)
        self._client.loop_start()  # paho's network thread: connects, reconnects with backoff
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._thread.start()
        return self

    def close(self, drain_s: float = 3.0) -> None:
        """Stop the thread; for at most `drain_s`, send what is still unsent (the store's last commit
        included) and wait for its acknowledgements (take_acked then has them); publish the retained
        offline status and disconnect. What is left stays in the store for the next start."""
        deadline = time.monotonic() + drain_s
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=drain_s + 1)
        self._connected.wait(max(0.0, deadline - time.monotonic()))
        try:
            while self._connected.is_set() and time.monotonic() < deadline:
                self._resolve_acks()
                room = self.max_inflight - len(self._inflight)
                sent = self._publish_some(room) if room > 0 else 0
                if not sent and not self._inflight:
                    break
                self._wake.wait(0.05)
                self._wake.clear()
        except sqlite3.Error:
            pass
        self._resolve_acks()
        try:
            if self._connected.is_set():
                info = self._client.publish(self.topics["status"], json.dumps(
                    {"online": False, "device": self.device, "reason": "stopped", "time": time.time()}),
                    qos=1, retain=True)
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            self._client.disconnect()
        except Exception:  # noqa: BLE001 - already gone: the will says offline
            pass
        self._client.loop_stop()
        try:
            left = self._count_unsent() - sum(len(v) for v in self._acked.values())
        except sqlite3.Error:
            left = 0
        self._db.close()
        if left > 0:
            why = "unreachable" if not self._ever_connected else "not connected" if not self.connected else "busy"
            print(f"edge-qwq: MQTT broker {self.target.shown} {why}: {left} decisions and events not yet "
                  "acknowledged are kept in the store and sent at the next start", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        tokens, last = float(self.max_inflight), time.monotonic()
        next_count = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            now = time.monotonic()
            tokens = min(float(self.max_inflight), tokens + (now - last) * self.rate)
            last = now
            try:
                self._resolve_acks()
                if now >= next_count:
                    self.backlog = self._count_unsent()
                    next_count = now + 1.0
                self._say_unreachable(now)
                if not self._connected.is_set():
                    continue
                room = min(self.max_inflight - len(self._inflight), int(tokens))
                if room > 0:
                    tokens -= self._publish_some(room)
            except sqlite3.Error as e:  # the store is the service's: a transient read error is retried
                self.last_error = f"store read: {e}"
                time.sleep(self.poll_s)

    def _say_unreachable(self, now: float) -> None:
        if (not self._ever_connected and not self._said_unreachable and not self._connected.is_set()
                and (self.last_error is not None or now - self._started >= CONNECT_GRACE_S)):
            self._said_unreachable = True
            why = f" ({self.last_error})" if self.last_error else ""
            print(f"edge-qwq: warning: MQTT broker {self.target.shown} unreachable{why}; decisions and events are "
                  "kept in the store and sent when it is back (retrying, at most 30 s apart)",
                  file=sys.stderr, flush=True)

    def _publish_some(self, room: int) -> int:
        """Publish up to `room` unsent rows, events first (few), then decisions, each table in id order."""
        n = 0
        for table in ("events", "decisions"):
            if n >= room:
                break
            for row in self._unsent(table, room - n):
                payload = json.dumps({**row, "device": self.device,
                                      "model_version": row.get("model_version") or self._version()})
                info = self._client.publish(self.topics[table], payload, qos=self.target.qos)
                self._inflight[info.mid] = (table, row["id"])
                self._cursor[table] = row["id"]
                n += 1
        return n

    def _unsent(self, table: str, limit: int) -> list[dict]:
        if table == "decisions":
            cur = self._db.execute("SELECT * FROM decisions WHERE sent_at IS NULL AND id > ? ORDER BY id LIMIT ?",
                                   (self._cursor[table], limit))
            names = [d[0] for d in cur.description]
            rows = []
            for values in cur.fetchall():
                row = {k: v for k, v in zip(names, values) if k != "sent_at"}
                for k in _JSON_COLUMNS:
                    if row.get(k) is not None:
                        row[k] = json.loads(row[k])
                    else:
                        row.pop(k, None)
                rows.append(row)
            return rows
        cur = self._db.execute("SELECT id, time, kind, detail FROM events WHERE sent_at IS NULL AND id > ? "
                               "ORDER BY id LIMIT ?", (self._cursor[table], limit))
        return [{"id": i, "time": t, "kind": k, "detail": json.loads(d)} for i, t, k, d in cur.fetchall()]

    def _count_unsent(self) -> int:
        return sum(self._db.execute(f"SELECT COUNT(*) FROM {t} WHERE sent_at IS NULL").fetchone()[0]
                   for t in ("decisions", "events"))

    def _resolve_acks(self) -> None:
        """Acknowledged mids -> row ids, for the service loop's `take_acked` (this thread, or close())."""
        done: dict[str, list[int]] = {"decisions": [], "events": []}
        while self._acks:
            mid = self._acks.popleft()
            entry = self._inflight.pop(mid, None)
            if entry is not None:  # None: the status message
                done[entry[0]].append(entry[1])
        if done["decisions"] or done["events"]:
            with self._acked_lock:
                for t, ids in done.items():
                    self._acked[t].extend(ids)
                    self.sent[t] += len(ids)

    # ---------------------------------------------------------------- what the service reads
    def take_acked(self) -> dict[str, list[int]]:
        """The ids acknowledged since the last call, per table (any thread)."""
        with self._acked_lock:
            out, self._acked = self._acked, {"decisions": [], "events": []}
        return out

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def status(self) -> dict:
        return {"url": self.target.shown, "device": self.device, "topics": dict(self.topics),
                "connected": self.connected, "backlog": self.backlog, "inflight": len(self._inflight),
                "sent": dict(self.sent), "qos": self.target.qos, "rate": self.rate, "last_error": self.last_error}
