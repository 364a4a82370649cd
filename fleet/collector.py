"""The many-device collector: subscribes to every device's MQTT topics with a persistent session and writes
what arrives into the central store, idempotently.

    >>> c = Collector(parse_mqtt_url("mqtt://broker:1883/edge-qwq/line3"), CentralStore.open("central.db"))
    >>> c.start(); ...; c.close()                                                    # doctest: +SKIP

Topics (the device publisher's layout, QoS 1): `<prefix>/<device>/decisions`, `<prefix>/<device>/events`,
`<prefix>/<device>/status` (retained; the last will sets "online": false). The device name is the topic level
before the kind.

Nothing queued for the collector is lost:
* the session is persistent: a fixed client id, MQTT v5 with clean_start=False and a session expiry
  (7 days by default), so while the collector is down (or restarting, or the broker restarts with
  persistence on) the broker keeps its subscriptions and queues its QoS 1 messages;
* acknowledgements are manual: paho receives a message, a writer thread stores it (one transaction per
  batch) and only after the commit is the PUBACK sent. A crash between receipt and commit leaves the
  message unacknowledged, and the broker sends it again at the next connect;
* an acknowledgement is only sent on the connection that received the message (packet ids belong to a
  connection); a message committed after a reconnect is left to the broker's resend, which the store's
  ON CONFLICT DO NOTHING absorbs.
"""
from __future__ import annotations

import collections
import json
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from edge_runtime.errors import EdgeError
from fleet.store import CentralStore, decision_row, device_row, event_row

KINDS = ("decisions", "events", "status")
SESSION_EXPIRY_S = 7 * 24 * 3600
FPS_WINDOW_S = 60.0
RECEIVE_MAXIMUM = 1000  # unacknowledged messages the broker may send us at once (they wait for one commit)


class MqttUrlError(EdgeError):
    pass


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    prefix: str  # without leading or trailing "/"; may be "" and may hold "+" levels
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def topic(self, kind: str) -> str:
        return f"{self.prefix}/+/{kind}" if self.prefix else f"+/{kind}"

    @property
    def shown(self) -> str:
        """The broker as it may be printed (never the password)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username and self.password else (
            f"{self.username}@" if self.username else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.prefix}"


def parse_mqtt_url(url: str, username: str | None = None, password: str | None = None) -> MqttTarget:
    """`mqtt://host[:port]/<prefix>` or `mqtts://...` -> MqttTarget; MqttUrlError (one line) otherwise.
    A user and password in the URL are accepted; --mqtt-user / --mqtt-password-file win over them."""
    from edge_runtime.sources import redact_url

    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise MqttUrlError(f"--mqtt {shown}: malformed URL ({e}); expected mqtt://HOST[:PORT]/PREFIX") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise MqttUrlError(f"--mqtt {shown}: expected mqtt://HOST[:PORT]/PREFIX or mqtts://..., "
                           "e.g. mqtt://broker:1883/edge-qwq/line3")
    if "#" in url or "?" in url:
        raise MqttUrlError(f"--mqtt {shown}: the topic prefix cannot hold '#' or '?' (no wildcard '#', no query)")
    prefix = unquote(parts.path).strip("/")
    if "#" in prefix or "//" in prefix or any(("+" in lv and lv != "+") for lv in prefix.split("/")):
        raise MqttUrlError(f"--mqtt {shown}: the topic prefix {prefix!r} is not valid (no '#', no empty "
                           "levels, '+' only as a whole level)")
    tls = parts.scheme == "mqtts"
    return MqttTarget(host=parts.hostname, port=port or (8883 if tls else 1883), prefix=prefix, tls=tls,
                      username=username or (unquote(parts.username) if parts.username else None),
                      password=password or (unquote(parts.password) if parts.password else None))


def read_password_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(4097).strip()
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeError(f"--mqtt-password-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not text or "\n" in text:
        raise EdgeError(f"--mqtt-password-file {path}: expected the password alone on one line")
    return text


def default_client_id() -> str:
    return f"edge-qwq-collector-{socket.gethostname()}"


class DeviceState:
    """What the status page shows of one device; updated by the writer thread after each commit."""

    __slots__ = ("name", "online", "model_version", "status", "last_seen", "decisions", "defects", "recent",
                 "last_event")

    def __init__(self, name: str):
        self.name = name
        self.online: bool | None = None
        self.model_version: str | None = None
        self.status: dict = {}
        self.last_seen: float | None = None
        self.decisions = 0
        self.defects = 0
        self.recent: collections.deque = collections.deque()  # (received, is_defect) over FPS_WINDOW_S
        self.last_event: dict | None = None  # the device's last event (its service's health events)

    def trim(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - FPS_WINDOW_S:
            self.recent.popleft()

    def as_dict(self, now: float) -> dict:
        self.trim(now)
        n = len(self.recent)
        span = FPS_WINDOW_S
        return {
            "online": self.online, "model_version": self.model_version,
            "last_seen": self.last_seen,
            "last_seen_s_ago": None if self.last_seen is None else round(now - self.last_seen, 1),
            "fps": round(n / span, 3), "decisions": self.decisions, "defects": self.defects,
            "defect_rate": round(self.defects / self.decisions, 5) if self.decisions else None,
            "defect_rate_1m": round(sum(d for _, d in self.recent) / n, 5) if n else None,
            "health": self.status.get("health", self.last_event["kind"] if self.last_event else None),
            "last_event": self.last_event,
        }


def is_defect(label: str) -> bool:
    return label.lower() != "ok"


class Collector:
    def __init__(self, target: MqttTarget, store: CentralStore, *, client_id: str | None = None,
                 tls_ca: str | None = None, batch: int = 500, keepalive: int = 30,
                 session_expiry_s: int = SESSION_EXPIRY_S, log=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes

        self.target, self.store = target, store
        self.client_id = client_id or default_client_id()
        self.batch = batch
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._gen = 0  # connection generation: an ack only goes out on the connection that received it
        self._stopping = threading.Event()
        self.connected = False
        self.ever_connected = False
        self.subscribed = threading.Event()
        self.devices: dict[str, DeviceState] = {}
        self.started = time.time()
        self.stats = collections.Counter()
        self.last_db_error: str | None = None
        self._warned: dict[str, float] = {}
        self._seed()

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        if target.username:
            c.username_pw_set(target.username, target.password)
        if target.tls:
            try:
                c.tls_set(ca_certs=tls_ca)
            except (OSError, ValueError) as e:
                why = getattr(e, "strerror", None) or e
                raise EdgeError(f"--mqtt-tls-ca {tls_ca}: cannot use it ({why})") from None
        elif tls_ca:
            raise EdgeError("--mqtt-tls-ca needs an mqtts:// URL")
        c.reconnect_delay_set(1, 10)
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = int(session_expiry_s)
        self._props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._keepalive = keepalive
        self.client = c
        self._writer = threading.Thread(target=self._write_loop, name="fleet-writer", daemon=True)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "Collector":
        self._writer.start()
        try:
            self.client.connect_async(self.target.host, self.target.port, self._keepalive, clean_start=False,
                                      properties=self._props)
        except (OSError, ValueError) as e:
            raise EdgeError(f"--mqtt {self.target.shown}: {e}") from None
        self.client.loop_start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Store what was received (and acknowledge it while still connected), then disconnect."""
        self._stopping.set()
        self._writer.join(timeout)
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()

    def crash(self) -> None:
        """For tests: drop the connection without storing or acknowledging what is queued (like kill -9)."""
        with self._lock:
            self._gen += 1
        self._stopping.set()
        try:
            self.client._sock_close()  # no DISCONNECT: the broker keeps the session and the unacked messages
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()
        self._writer.join(5)

    def wait_subscribed(self, timeout: float = 30.0) -> bool:
        return self.subscribed.wait(timeout)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._warn("connect", f"edge-qwq: warning: collect: broker {self.target.shown} refused the connection "
                                  f"({reason_code}); retrying")
            return
        with self._lock:
            self._gen += 1
            self.connected = True
        first = not self.ever_connected
        self.ever_connected = True
        self.log(f"edge-qwq: collect: connected to {self.target.shown} as {self.client_id} "
                 f"(session {'resumed' if flags.session_present else 'new'})" + ("" if first else "; reconnected"))
        client.subscribe([(self.target.topic(k), 1) for k in KINDS])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            self.log(f"edge-qwq: warning: collect: the broker refused a subscription ({bad[0]})")
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self.connected = False
            self._gen += 1
        if not self._stopping.is_set():
            self._warn("disconnect", f"edge-qwq: warning: collect: lost the broker {self.target.shown} "
                                     f"({reason_code}); reconnecting, nothing queued for us is lost")

    def _on_connect_fail(self, client, userdata) -> None:
        self._warn("connect", f"edge-qwq: warning: collect: broker {self.target.shown} unreachable; retrying "
                              "(devices' messages wait in the broker for this collector's session)")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            gen = self._gen
        self._q.put((gen, msg, time.time()))

    # ------------------------------------------------------------------ the writer thread
    def _write_loop(self) -> None:
        while True:
            items = self._take()
            if not items:
                if self._stopping.is_set():
                    return
                continue
            d_rows, e_rows, s_rows = [], [], []
            for _gen, msg, received in items:
                kind, device = self._classify(msg.topic)
                try:
                    payload = json.loads(msg.payload.decode("utf-8")) if msg.payload else None
                    if kind == "decisions":
                        d_rows.append(decision_row(device, payload, received))
                    elif kind == "events":
                        e_rows.append(event_row(device, payload, received))
                    elif kind == "status":
                        if payload is None:  # a cleared retained status: nothing to record
                            continue
                        s_rows.append(device_row(device, payload, received))
                    else:
                        raise ValueError("unexpected topic")
                except ValueError as e:  # (json errors and UnicodeDecodeError are ValueErrors)
                    self.stats["rejected"] += 1
                    self._warn(f"bad-{kind}", f"edge-qwq: warning: collect: ignored a message on {msg.topic}: {e}")
            while True:
                try:
                    new_d, new_e = self.store.write(d_rows, e_rows, s_rows)
                    if self.last_db_error:
                        self.log("edge-qwq: collect: the store is writable again")
                    self.last_db_error = None
                    break
                except Exception as e:  # noqa: BLE001 - a database error: keep the batch, retry, never ack it
                    from fleet.store import _first_line

                    self.last_db_error = _first_line(e)
                    self._warn("db", f"edge-qwq: warning: collect: cannot write to {self.store.shown} "
                                     f"({self.last_db_error}); retrying, the broker keeps what is not stored")
                    if self._stopping.wait(1.0):
                        return  # unacked: the broker sends it again to the next collector with this id
            self._account(d_rows, e_rows, s_rows, new_d, new_e)
            with self._lock:  # held while acking: a reconnect cannot slip in between the check and the PUBACK
                for gen, msg, _ in items:
                    if msg.qos > 0 and gen == self._gen:
                        self.client.ack(msg.mid, msg.qos)

    def _take(self) -> list:
        try:
            first = self._q.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        while len(items) < self.batch:
            try:
                items.append(self._q.get_nowait())
            except queue.Empty:
                break
        return items

    def _classify(self, topic: str) -> tuple[str, str]:
        levels = topic.split("/")
        if len(levels) < 2:
            return "", ""
        return levels[-1], levels[-2]

    def _account(self, d_rows, e_rows, s_rows, new_d, new_e) -> None:
        new_d, new_e = set(new_d), set(new_e)
        self.stats["decisions"] += len(new_d)
        self.stats["duplicates"] += len(d_rows) - len(new_d) + len(e_rows) - len(new_e)
        self.stats["events"] += len(new_e)
        self.stats["status"] += len(s_rows)
        with self._lock:
            for r in d_rows:
                if (r["device"], r["id"]) not in new_d:
                    continue
                new_d.discard((r["device"], r["id"]))  # a batch may hold the same decision twice: count it once
                d = self._device(r["device"])
                bad = is_defect(r["label"])
                d.decisions += 1
                d.defects += bad
                d.recent.append((r["received"], bad))
                d.last_seen = r["received"]
                if r["model_version"]:
                    d.model_version = r["model_version"]
            for r in e_rows:
                if (r["device"], r["id"]) not in new_e:
                    continue
                new_e.discard((r["device"], r["id"]))
                d = self._device(r["device"])
                d.last_seen = max(d.last_seen or 0.0, r["received"])
                ev = {"id": r["id"], "time": r["time"], "kind": r["kind"], "detail": _loads(r["detail"])}
                if d.last_event is None or ev["id"] >= d.last_event["id"]:
                    d.last_event = ev
            for r in s_rows:
                d = self._device(r["device"])
                d.online = r["online"]
                d.status = _loads(r["status"])
                if r["model_version"]:
                    d.model_version = r["model_version"]

    def _device(self, name: str) -> DeviceState:
        d = self.devices.get(name)
        if d is None:
            d = self.devices[name] = DeviceState(name)
        return d

    def _seed(self) -> None:
        """The status page after a restart: totals, last event and last status from the store."""
        for name, s in self.store.summary().items():
            d = self._device(name)
            d.decisions, d.defects = s.get("decisions", 0), s.get("defects", 0)
            d.last_seen = s.get("last_seen")
            d.last_event = s.get("last_event")
            d.online, d.model_version, d.status = s.get("online"), s.get("model_version"), s.get("status", {})

    def _warn(self, key: str, line: str, every: float = 60.0) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= every:
            self._warned[key] = now
            self.log(line)

    # ------------------------------------------------------------------ what the status page reads
    def snapshot(self) -> dict:
        now = time.time()
        with self._lock:
            devs = {name: d.as_dict(now) for name, d in sorted(self.devices.items())}
            connected = self.connected
        return {"broker": self.target.shown, "client_id": self.client_id, "connected": connected,
                "store": self.store.shown, "store_error": self.last_db_error, "queued": self._q.qsize(),
                "uptime_s": round(now - self.started, 1), "stored": dict(self.stats), "devices": devs}


def _loads(text):
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text
