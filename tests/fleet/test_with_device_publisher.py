"""The collector with the device's own publisher (edge_runtime.mqtt, issue 15 part 1): two device stores, two
publishers with different device names, one collector; counts equal, each (device, id) once, the status page
lists both, and a clean stop of a device shows it offline."""
from __future__ import annotations

import time
import uuid

import pytest

from fleet.collector import Collector
from fleet.collector import parse_mqtt_url as collector_url
from fleet.store import CentralStore
from tests.edge_runtime.service_helpers import wait_for

mqtt = pytest.importorskip("edge_runtime.mqtt", reason="the device publisher (edge_runtime/mqtt.py) is not here")
pytestmark = pytest.mark.timeout(90)


def _row(i: int, label: str) -> dict:
    return {"time": time.time(), "frame_id": i, "source": "test", "label": label, "confidence": 0.9, "exit": 0,
            "latency_ms": 1.0, "model_version": "v7", "reused": 0, "evidence": None}


def _wait(cond, timeout=30.0, what="condition"):
    return wait_for(cond, timeout, what=what)


def test_two_device_publishers_one_collector(mosquitto_url, tmp_path):
    from edge_runtime.store import DecisionStore

    prefix = f"edge-qwq/t{uuid.uuid4().hex[:8]}"
    central = CentralStore.open(tmp_path / "central.db")
    col = Collector(collector_url(f"{mosquitto_url}/{prefix}"), central, client_id=f"col-{uuid.uuid4().hex[:6]}",
                    log=lambda _l: None).start()
    assert col.wait_subscribed(20)
    devices = {}
    try:
        for name, n in (("line3-a", 120), ("line3-b", 80)):
            db = tmp_path / f"{name}.db"
            store = DecisionStore(db, commit_every=8)
            for i in range(n):
                store.add(_row(i, "crack" if i % 10 == 0 else "ok"))
            store.event("started", {"device": name})
            store.flush()
            pub = mqtt.Publisher(db, mqtt.parse_mqtt_url(f"{mosquitto_url}/{prefix}"), device=name,
                                 model_version=lambda: "v7", rate=1000).start()
            devices[name] = (store, pub, n)

        def done():
            for store, pub, _ in devices.values():
                for table, ids in pub.take_acked().items():
                    store.mark_sent(table, ids)
            return (central.count("decisions", "line3-a") == 120 and central.count("decisions", "line3-b") == 80
                    and central.count("events") == 2)

        _wait(done, what="every decision of both devices")
        for name, (_, _, n) in devices.items():
            assert [r["id"] for r in central.rows("decisions", name)] == list(range(1, n + 1))
        snap = col.snapshot()["devices"]
        assert snap["line3-a"]["online"] is True and snap["line3-b"]["model_version"] == "v7"
        assert snap["line3-a"]["defects"] == 12 and snap["line3-b"]["defects"] == 8
        store, pub, _ = devices.pop("line3-b")
        pub.close()
        store.close()
        _wait(lambda: col.snapshot()["devices"]["line3-b"]["online"] is False, what="line3-b offline")
        assert col.snapshot()["devices"]["line3-b"]["model_version"] == "v7"
        assert central.rows("devices", "line3-b")[0]["model_version"] == "v7"  # the offline status had none
    finally:
        for store, pub, _ in devices.values():
            pub.close()
            store.close()
        col.close()
        central.close()
