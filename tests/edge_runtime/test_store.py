"""The decision store (real SQLite, WAL) and the evidence budget (real files)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import numpy as np
import pytest

from edge_runtime.errors import EdgeError
from edge_runtime.store import DecisionStore, EvidenceWriter, StoreError


def _row(i):
    return {"time": 1000.0 + i, "frame_id": i, "source": "cam", "label": "ok", "confidence": 0.9, "exit": 0,
            "latency_ms": 1.0, "model_version": "v1", "reused": 0, "evidence": None}


def test_rows_reported_only_after_commit(tmp_path):
    store = DecisionStore(tmp_path / "d.db", jsonl=tmp_path / "d.jsonl", commit_every=10, commit_interval_s=60)
    for i in range(9):
        store.add(_row(i))
    assert store.maybe_commit() == [] and not (tmp_path / "d.jsonl").read_text()
    with sqlite3.connect(tmp_path / "d.db") as other:  # another reader sees nothing uncommitted
        assert other.execute("SELECT count(*) FROM decisions").fetchone() == (0,)
    store.add(_row(9))
    done = store.maybe_commit()
    assert [r["frame_id"] for r in done] == list(range(10)) and store.stored == 10
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [r["id"] for r in done] and all(x["stored"] for x in lines)
    store.event("thresholds_raised", {"cause": "input_drift"})
    store.add(_row(10))
    store.close()  # flushes the last one
    db = sqlite3.connect(tmp_path / "d.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT count(*) FROM decisions").fetchone() == (11,)
    assert db.execute("SELECT kind FROM events").fetchall() == [("thresholds_raised",)]


def test_time_based_commit(tmp_path):
    store = DecisionStore(tmp_path / "d.db", commit_every=1000, commit_interval_s=0.5)
    store.add(_row(0))
    t = store._last_commit
    assert store.maybe_commit(t + 0.1) == [] and len(store.maybe_commit(t + 0.6)) == 1
    store.close()


def test_not_a_database_is_one_clear_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not sqlite\n" * 100)
    with pytest.raises(StoreError, match="not an SQLite decision store"):
        DecisionStore(bad)
    assert bad.read_text().startswith("hello")  # untouched


def _jpeg_frame(seed):
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_evidence_budget_deletes_oldest_evidence_never_rows(tmp_path):
    store = DecisionStore(tmp_path / "d.db")
    ev = EvidenceWriter(tmp_path / "ev", budget_mb=0.06)  # ~60 KB: a handful of noisy 64x64 JPEGs
    paths = []
    for i in range(30):
        p = ev.save(_jpeg_frame(i), i, "crack")
        paths.append(p)
        store.add({**_row(i), "label": "crack", "evidence": p})
        assert ev.used <= ev.budget
    store.close()
    on_disk = sorted(str(p) for p in (tmp_path / "ev").glob("*.jpg"))
    assert ev.deleted > 0 and on_disk == paths[-len(on_disk):]  # the newest are kept
    assert sum(os.stat(p).st_blocks * 512 for p in on_disk) <= ev.budget
    db = sqlite3.connect(tmp_path / "d.db")
    assert db.execute("SELECT count(*) FROM decisions").fetchone() == (30,)
    # a restart picks up the existing evidence and its size
    assert EvidenceWriter(tmp_path / "ev", budget_mb=0.06).used == ev.used


def test_budget_larger_than_the_disk_is_one_clear_error(tmp_path):
    with pytest.raises(EdgeError, match="does not fit on this disk"):
        EvidenceWriter(tmp_path / "ev", budget_mb=1e12)


def fill_disk(path):
    with open(path, "wb", buffering=0) as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 4096)


def _tmpfs(path):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.decode().strip()}")
    return path


def test_full_evidence_disk_pauses_evidence_and_says_why(tmp_path):
    disk = _tmpfs(tmp_path / "small")
    try:
        ev = EvidenceWriter(disk / "ev", budget_mb=0.05)  # fits the free space at start
        fill_disk(disk / "filler")  # then something else fills the disk
        results = [ev.save(_jpeg_frame(i), i, "crack") for i in range(20)]
        assert None in results and ev.paused_reason and "evidence paused" in ev.paused_reason
        assert ev.save(_jpeg_frame(99), 99, "crack") is None  # stays paused, no exception
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_evidence_resumes_once_the_disk_has_room_again(tmp_path):
    """Issue 11, finding 10: a transient full disk paused evidence for good; now it is retried and resumes."""
    disk = _tmpfs(tmp_path / "small")
    now = [0.0]
    try:
        ev = EvidenceWriter(disk / "ev", budget_mb=0.05, retry_s=5.0, clock=lambda: now[0])
        fill_disk(disk / "filler")
        results = [ev.save(_jpeg_frame(i), i, "crack") for i in range(20)]
        assert None in results and ev.paused_reason
        (disk / "filler").unlink()  # the space comes back
        assert ev.save(_jpeg_frame(50), 50, "crack") is None  # not before the retry time
        now[0] += 5.0
        path = ev.save(_jpeg_frame(51), 51, "crack")
        assert path is not None and ev.paused_reason is None and ev.resumed == 1
        assert all(ev.save(_jpeg_frame(60 + i), 60 + i, "crack") for i in range(5))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_ids_continue_across_reopen_and_pending_rows_are_not_stored_until_commit(tmp_path):
    import sqlite3

    from edge_runtime.store import DecisionStore

    row = {"time": 1.0, "frame_id": 0, "source": "s", "label": "ok", "confidence": 0.9, "exit": 0,
           "latency_ms": 1.0, "model_version": "v", "reused": 0, "evidence": None}
    store = DecisionStore(tmp_path / "d.db")
    ids = [store.add(dict(row, frame_id=i))["id"] for i in range(3)]
    assert sqlite3.connect(tmp_path / "d.db").execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    assert [r["id"] for r in store.flush()] == ids == [1, 2, 3]
    store.close()
    store = DecisionStore(tmp_path / "d.db")
    assert store.add(row)["id"] == 4
    store.close()
    rows = sqlite3.connect(tmp_path / "d.db").execute("SELECT id, frame_id FROM decisions ORDER BY id").fetchall()
    assert rows == [(1, 0), (2, 1), (3, 2), (4, 0)]


def test_a_second_writer_is_refused_with_who_holds_the_store(tmp_path):
    """Issue 11, finding 9: two services on one store; the second says another edge-qwq holds it."""
    import os

    import pytest

    from edge_runtime.store import DecisionStore, StoreError

    first = DecisionStore(tmp_path / "d.db")
    try:
        with pytest.raises(StoreError, match=f"in use by another edge-qwq \\(pid {os.getpid()}\\)"):
            DecisionStore(tmp_path / "d.db")
    finally:
        first.close()
    DecisionStore(tmp_path / "d.db").close()  # released on close: the next service opens it
