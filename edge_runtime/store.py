"""Decisions that are never lost: SQLite (WAL), one row per frame; events; JPEG evidence within a budget.

    >>> store = DecisionStore("decisions.db", jsonl="decisions.jsonl")   # doctest: +SKIP
    >>> store.add({"time": ..., "frame_id": 7, ...})                    # pending, in the open transaction
    >>> for row in store.maybe_commit(): report(row)                     # committed: now it is "stored"

A row is reported (returned by `maybe_commit`/`flush`, written to the JSON lines file) only after its
transaction committed, so whatever was reported survives a kill -9 or a power cut (synchronous=FULL).
Commits are batched by count and time, which keeps the store off the per-frame critical path.
In tile mode a row also carries `defects` (the boxes) and `tiles` (what the tiles cost): JSON text in
SQLite, plain JSON in the JSON lines; NULL (absent) otherwise. Older stores are migrated in place (`migrate`).

The store is also the outbox of `edge_runtime.mqtt`: `sent_at` (decisions and events) stays NULL until the
broker acknowledged the row, and only this writer sets it (`mark_sent`, called by the service loop with the ids
the publisher thread collected), so the publisher never competes with the writer for SQLite's write lock.
Rows of a store made before the outbox existed are marked `sent_at = 0` by the migration ("predates the
outbox"): enabling --mqtt on an old store sends what comes next, not its whole history.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from edge_runtime.errors import EdgeError

COLUMNS = ("time", "frame_id", "source", "label", "confidence", "exit", "latency_ms", "model_version",
           "reused", "evidence", "defects", "tiles")
JSON_COLUMNS = ("defects", "tiles")  # stored as JSON text; NULL outside tile mode
SCHEMA_VERSION = 4  # PRAGMA user_version. 1 (or 0: stores made before it was kept): no defects, tiles;
#                     2: no sent_at (the MQTT outbox); 3: no rejects table (created by SCHEMA)
SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, frame_id INTEGER NOT NULL,
    source TEXT NOT NULL, label TEXT NOT NULL, confidence REAL NOT NULL, exit INTEGER NOT NULL,
    latency_ms REAL NOT NULL, model_version TEXT NOT NULL, reused INTEGER NOT NULL, evidence TEXT,
    defects TEXT, tiles TEXT, sent_at REAL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
    sent_at REAL);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY, decision_id INTEGER NOT NULL, frame_id INTEGER NOT NULL, output TEXT NOT NULL,
    scheduled_at REAL NOT NULL, fired_at REAL, error_ms REAL, status TEXT NOT NULL, detail TEXT);
"""
# rejects.status: "scheduled" (sent to the reject worker), then "fired" (within LATE_MS of scheduled_at),
# "late" (fired later: the decision came after its due time), "failed" (detail says why), or "unconfirmed"
# (the service stopped before the worker confirmed it: set when the store is opened again).
# Times are wall-clock seconds; error_ms = fired - scheduled (the worker's monotonic clock).
REJECT_COLUMNS = ("id", "decision_id", "frame_id", "output", "scheduled_at", "status")
# the outbox's reading order: unsent rows by id, without scanning what was sent (made after `migrate`)
OUTBOX_INDEXES = """
CREATE INDEX IF NOT EXISTS decisions_unsent ON decisions(id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS events_unsent ON events(id) WHERE sent_at IS NULL;
"""
OUTBOX_TABLES = ("decisions", "events")
# columns added since the first schema: (table, name, SQL type, value for the rows already there)
ADDED_COLUMNS = (("decisions", "defects", "TEXT", None), ("decisions", "tiles", "TEXT", None),
                 ("decisions", "sent_at", "REAL", 0), ("events", "sent_at", "REAL", 0))


class StoreError(EdgeError):
    """The decision store cannot be opened or written (not a database, disk full, read-only)."""


def _db_error(path: Path, e: Exception) -> StoreError:
    msg = str(e)
    if "full" in msg:
        return StoreError(f"{path}: the disk holding the decision store is full; the decisions committed so far "
                          "are kept; free space and restart")
    if "not a database" in msg:
        return StoreError(f"{path}: exists but is not an SQLite decision store; choose another --store path")
    return StoreError(f"{path}: decision store error: {msg}")


class DecisionStore:
    def __init__(self, path: str | os.PathLike, jsonl: str | os.PathLike | None = None, commit_every: int = 64,
                 commit_interval_s: float = 0.2, synchronous: str = "FULL"):
        self.path = Path(path)
        self.commit_every, self.commit_interval_s = commit_every, commit_interval_s
        self._lock = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = writer_lock(self.path)  # one writer per store: StoreError names the other one
            self.db = sqlite3.connect(str(self.path), isolation_level="DEFERRED")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.executescript(SCHEMA)
            migrate(self.db)
            self.db.executescript(OUTBOX_INDEXES)
        except sqlite3.Error as e:
            self._unlock()
            raise _db_error(self.path, e) from None
        except OSError as e:
            self._unlock()
            raise StoreError(f"{self.path}: cannot create the decision store ({e.strerror})") from None
        self._jsonl = self._open_jsonl(jsonl)
        self._next_id = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0] + 1
        self._next_reject = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM rejects").fetchone()[0] + 1
        self._pending: list[dict] = []
        self._pending_rejects: list[dict] = []
        self._reject_updates: list[tuple] = []  # (fired_at, error_ms, status, detail, id)
        self._last_commit = time.monotonic()
        self.stored = 0
        self.last_id = 0

    @staticmethod
    def _open_jsonl(jsonl):
        if jsonl is None:
            return None
        return sys.stdout if str(jsonl) == "-" else open(jsonl, "a", buffering=1)

    def add(self, row: dict) -> dict:
        """Queue one decision for the next commit (not yet stored); returns the row with its id. The rows
        are inserted in one executemany at commit: no SQLite call per frame on the hot path."""
        row = {"id": self._next_id, **row}
        self._next_id += 1
        self._pending.append(row)
        return row

    def maybe_commit(self, now: float | None = None) -> list[dict]:
        now = time.monotonic() if now is None else now
        waiting = self._pending or self._reject_updates
        if len(self._pending) >= self.commit_every or (waiting and now - self._last_commit >= self.commit_interval_s):
            return self.flush()
        return []

    def flush(self) -> list[dict]:
        """Commit; returns the rows that are now stored (and writes them to the JSON lines file)."""
        try:
            self.db.executemany(f"INSERT INTO decisions (id, {', '.join(COLUMNS)}) VALUES "
                                f"(?, {', '.join('?' * len(COLUMNS))})",
                                [[r["id"]] + [_value(r, c) for c in COLUMNS] for r in self._pending])
            self.db.executemany(f"INSERT INTO rejects ({', '.join(REJECT_COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(REJECT_COLUMNS))})",
                                [[r[c] for c in REJECT_COLUMNS] for r in self._pending_rejects])
            self.db.executemany("UPDATE rejects SET fired_at = ?, error_ms = ?, status = ?, detail = ? WHERE id = ?",
                                self._reject_updates)
            self.db.commit()
        except sqlite3.Error as e:
            self.db.rollback()  # nothing half-inserted: the pending rows stay pending, ids unique on retry
            raise _db_error(self.path, e) from None
        self._last_commit = time.monotonic()
        self._pending_rejects, self._reject_updates = [], []
        done, self._pending = self._pending, []
        if done:
            self.stored += len(done)
            self.last_id = done[-1]["id"]
        if self._jsonl is not None:
            for row in done:
                self._jsonl.write(json.dumps({**row, "stored": True}) + "\n")
            self._jsonl.flush()
        return done

    def event(self, kind: str, detail: dict, when: float | None = None) -> None:
        """Record an event (health action, rollback, ...) and commit it with the pending decisions."""
        try:
            self.db.execute("INSERT INTO events (time, kind, detail) VALUES (?, ?, ?)",
                            (when or time.time(), kind, json.dumps(detail)))
        except sqlite3.Error as e:
            raise _db_error(self.path, e) from None
        self.flush()

    def mark_sent(self, table: str, ids: list[int], when: float | None = None) -> None:
        """The broker acknowledged these rows (the MQTT outbox): set their sent_at and commit, with the
        pending decisions. Called by the service loop only: the store has one writer."""
        if table not in OUTBOX_TABLES:
            raise ValueError(f"no outbox table {table!r}")
        if not ids:
            return
        t = time.time() if when is None else when
        try:
            self.db.executemany(f"UPDATE {table} SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
                                [(t, i) for i in ids])
        except sqlite3.Error as e:
            self.db.rollback()
            raise _db_error(self.path, e) from None
        self.flush()

    def new_reject_id(self) -> int:
        """An id for a reject about to be scheduled (before its decision is added: timing comes first)."""
        rid, self._next_reject = self._next_reject, self._next_reject + 1
        return rid

    def add_reject(self, row: dict) -> None:
        """Queue a scheduled reject ({id, decision_id, frame_id, output, scheduled_at}) for the next commit,
        in the same transaction as its decision."""
        self._pending_rejects.append({**row, "status": "scheduled"})

    def update_rejects(self, results: list[dict]) -> None:
        """What the reject worker reported (fired, when, how far from its due time; late; failed), applied
        at the next commit, after the inserts (a short delay may confirm a reject before its row is in)."""
        self._reject_updates += [
            (r.get("wall"), None if r.get("error_ms") is None else round(r["error_ms"], 4), r["status"],
             r.get("error"), r["id"])
            for r in results]

    def close_unconfirmed_rejects(self) -> int:
        """Rejects a previous run scheduled but never saw confirmed (it was stopped or killed first):
        marked "unconfirmed"; returns how many."""
        try:
            n = self.db.execute("UPDATE rejects SET status = 'unconfirmed', detail = 'the service stopped before "
                                "the reject worker confirmed it' WHERE status = 'scheduled'").rowcount
            self.db.commit()
        except sqlite3.Error as e:
            self.db.rollback()
            raise _db_error(self.path, e) from None
        return n

    def events(self, limit: int = 100) -> list[dict]:
        rows = self.db.execute("SELECT id, time, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": i, "time": t, "kind": k, "detail": json.loads(d)} for i, t, k, d in rows][::-1]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()
            if self._jsonl not in (None, sys.stdout):
                self._jsonl.close()
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the lock (also when the process dies)
            self._lock = None


def writer_lock(path: Path):
    """An exclusive lock on `<store>.lock` held while the store is open; StoreError naming the process that
    holds it when another edge-qwq writes to the same store."""
    import fcntl

    f = open(f"{path}.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise StoreError(f"{path}: the decision store is in use by another edge-qwq ({holder}); one service "
                         "writes to a store: stop that one or give this one another --store") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f


def migrate(db: sqlite3.Connection) -> None:
    """Bring a store made by an older edge-qwq to SCHEMA_VERSION: add the columns it lacks (nullable, so
    older readers, which name their columns, still work); its rows keep their values, and sent_at = 0 (they
    predate the MQTT outbox: never published)."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    for table, name, sql_type, old_rows in ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
            if old_rows is not None:
                db.execute(f"UPDATE {table} SET {name} = ?", (old_rows,))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.commit()


def _value(row: dict, column: str):
    v = row.get(column)
    return json.dumps(v) if v is not None and column in JSON_COLUMNS else v


def open_readonly(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection (for tools and tests that inspect a running service's store)."""
    return sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)


class EvidenceWriter:
    """Defect frames as JPEG files under `root`, at most `budget_mb` on disk in all; the oldest go first.

    Files are named <time_ns>_<frame>_<label>.jpg, so name order is age order. A full disk pauses evidence
    (one warning, `paused_reason`); decisions go on being stored regardless. While paused, every `retry_s`
    seconds a defect frame is tried again once the disk has room for it; the first one written resumes
    evidence (`resumed` counts the resumptions, for the service to say so)."""

    def __init__(self, root: str | os.PathLike, budget_mb: float, quality: int = 90, retry_s: float = 5.0,
                 clock=time.monotonic):
        self.root = Path(root)
        self.retry_s, self.clock = retry_s, clock
        self._retry_at = 0.0
        self.resumed = 0
        self.budget = int(budget_mb * 1024 * 1024)
        self.quality = quality
        if self.budget <= 0:
            raise EdgeError(f"--evidence-budget-mb must be positive, got {budget_mb:g}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EdgeError(f"{self.root}: cannot create the evidence folder ({e.strerror})") from None
        self.block = os.statvfs(self.root).f_frsize or 4096
        self._files: deque[tuple[Path, int]] = deque(
            (p, _disk_size(p)) for p in sorted(self.root.glob("*.jpg")))
        self.used = sum(s for _, s in self._files)
        self.saved = self.deleted = 0
        self.paused_reason: str | None = None
        self._check_room()

    def _check_room(self) -> None:
        free = shutil.disk_usage(self.root).free
        if free + self.used < self.budget:
            mb = 1024 * 1024
            raise EdgeError(f"{self.root}: the evidence budget ({self.budget / mb:.0f} MB) does not fit on this "
                            f"disk ({free / mb:.1f} MB free + {self.used / mb:.1f} MB of evidence); "
                            "lower --evidence-budget-mb or free space")

    def save(self, frame_bgr: np.ndarray, frame_id: int, label: str) -> str | None:
        """Write one evidence JPEG; returns its path, or None when evidence is paused or the frame too big."""
        import cv2

        if self.paused_reason and self.clock() < self._retry_at:
            return None
        ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        need = -(-buf.size // self.block) * self.block  # what it takes on disk: whole blocks
        if not ok or need > self.budget:
            return None
        if self.paused_reason and not self._room_for(need):
            self._retry_at = self.clock() + self.retry_s
            return None
        while self._files and self.used + need > self.budget:
            self._delete_oldest()
        path = self.root / f"{time.time_ns()}_{frame_id}_{label}.jpg"
        try:
            _write_atomic(path, buf.tobytes())
        except OSError as e:
            self.paused_reason = f"{self.root}: cannot write evidence ({e.strerror}); evidence paused, " \
                                 f"decisions are still stored (retried every {self.retry_s:g} s)"
            self._retry_at = self.clock() + self.retry_s
            return None
        if self.paused_reason:
            self.paused_reason, self.resumed = None, self.resumed + 1
        size = _disk_size(path)
        self._files.append((path, size))
        self.used += size
        self.saved += 1
        return str(path)

    def _room_for(self, need: int) -> bool:
        """The disk has room for a file of `need` bytes (with a block to spare), or cannot say."""
        try:
            return shutil.disk_usage(self.root).free >= need + self.block
        except OSError:
            return False

    def _delete_oldest(self) -> None:
        path, size = self._files.popleft()
        path.unlink(missing_ok=True)
        self.used -= size
        self.deleted += 1


def _disk_size(path: Path) -> int:
    """Bytes a file takes on its disk (allocated blocks, not its length): what fills a disk."""
    st = path.stat()
    return max(st.st_blocks * 512, st.st_size)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
