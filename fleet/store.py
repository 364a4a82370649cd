"""The collector's central store: one table of decisions and one of events from every device, plus the last
status each device published. SQLAlchemy Core, one code path for SQLite (a path) and PostgreSQL
(`postgresql://...`, opened with psycopg 3).

    >>> store = CentralStore.open("central.db")          # or "postgresql://user@host/plant"   # doctest: +SKIP
    >>> new = store.write(decisions=[{"device": "line3-a", "id": 1, ...}], events=[])    # doctest: +SKIP

Writes are idempotent: the primary key of a decision or an event is (device, id), where id is the device
store's own row id (stable across the device's restarts), and rows are inserted with
`INSERT ... ON CONFLICT DO NOTHING`, so a decision re-sent after a reconnect is stored once.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        create_engine, event, func, select)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from edge_runtime.errors import EdgeError
from edge_runtime.sources import redact_url

metadata = MetaData()

decisions = Table(
    "decisions", metadata,
    Column("device", String(200), primary_key=True),
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # the device store's row id
    Column("time", Float, nullable=False),  # when the device decided (its clock, unix seconds)
    Column("frame_id", BigInteger),
    Column("source", Text),
    Column("label", String(200), nullable=False),
    Column("confidence", Float),
    Column("exit", Integer),
    Column("latency_ms", Float),
    Column("model_version", String(200)),
    Column("reused", Integer),
    Column("evidence", Text),
    Column("defects", Text),  # JSON, as the device stores it
    Column("tiles", Text),  # JSON
    Column("extra", Text),  # JSON of any other keys the device sent (newer publishers), else NULL
    Column("received", Float, nullable=False),  # when the collector stored it (its clock)
)
Index("decisions_received", decisions.c.received)

events = Table(
    "events", metadata,
    Column("device", String(200), primary_key=True),
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("time", Float, nullable=False),
    Column("kind", String(200), nullable=False),
    Column("detail", Text, nullable=False),  # JSON
    Column("received", Float, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("device", String(200), primary_key=True),
    Column("online", Boolean, nullable=False),
    Column("model_version", String(200)),
    Column("status", Text, nullable=False),  # the last retained status message, JSON
    Column("updated", Float, nullable=False),
)

DECISION_COLUMNS = ("time", "frame_id", "source", "label", "confidence", "exit", "latency_ms", "model_version",
                    "reused", "evidence", "defects", "tiles")


class StoreError(EdgeError):
    """The central store cannot be opened or written."""


def store_url(store: str | os.PathLike) -> str:
    """`--store` as an SQLAlchemy URL: a path is SQLite; postgresql:// without a driver uses psycopg 3."""
    text = str(store)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def _first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _json_text(v) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def _key(payload, what: str, name: str) -> tuple[int, float, str]:
    """(id, time, payload[name]) of a message; ValueError when one is missing or of the wrong type."""
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    try:
        return int(payload["id"]), float(payload["time"]), str(payload[name])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{what} needs integer id, time and {name} ({e})") from None


def decision_row(device: str, payload: dict, received: float) -> dict:
    """A decision message's JSON -> a row of `decisions`; ValueError when it lacks what the table needs."""
    row_id, when, label = _key(payload, "a decision", "label")

    def num(key, kind):
        v = payload.get(key)
        try:
            return None if v is None else kind(v)
        except (TypeError, ValueError):
            return None

    extra = {k: v for k, v in payload.items() if k not in DECISION_COLUMNS and k not in ("id", "device")}
    return {
        "device": device, "id": row_id, "time": when, "frame_id": num("frame_id", int),
        "source": None if payload.get("source") is None else str(payload.get("source")), "label": label,
        "confidence": num("confidence", float), "exit": num("exit", int), "latency_ms": num("latency_ms", float),
        "model_version": None if payload.get("model_version") is None else str(payload["model_version"]),
        "reused": None if payload.get("reused") is None else int(bool(payload["reused"])),
        "evidence": payload.get("evidence") if isinstance(payload.get("evidence"), str) else None,
        "defects": _json_text(payload.get("defects")), "tiles": _json_text(payload.get("tiles")),
        "extra": json.dumps(extra, separators=(",", ":"), default=str) if extra else None,
        "received": received,
    }


def event_row(device: str, payload: dict, received: float) -> dict:
    row_id, when, kind = _key(payload, "an event", "kind")
    detail = payload.get("detail")
    return {"device": device, "id": row_id, "time": when, "kind": kind,
            "detail": _json_text(detail) if detail is not None else "{}", "received": received}


def device_row(device: str, payload: dict, received: float) -> dict:
    if not isinstance(payload, dict) or not isinstance(payload.get("online"), bool):
        raise ValueError('a status needs "online": true or false')
    mv = payload.get("model_version")
    return {"device": device, "online": payload["online"], "model_version": None if mv is None else str(mv),
            "status": json.dumps(payload, separators=(",", ":"), default=str), "updated": received}


class CentralStore:
    def __init__(self, engine: Engine, shown: str):
        self.engine = engine
        self.shown = shown  # the URL fit to show (no password)
        self.dialect = engine.dialect.name
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise StoreError(f"--store {shown}: only SQLite (a path) and PostgreSQL (postgresql://...) are supported")
        self._insert = insert

    @classmethod
    def open(cls, store: str | os.PathLike, connect_timeout: float = 10.0) -> "CentralStore":
        """Open (and create the tables in) the store; StoreError, one line, when it cannot be reached."""
        shown = redact_url(str(store))
        try:
            url = make_url(store_url(store))
        except ArgumentError:
            raise StoreError(f"--store {shown}: not a path nor a database URL (e.g. central.db or "
                             "postgresql://user@host/plant)") from None
        kwargs: dict = {"pool_pre_ping": True}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:" and not Path(url.database).parent.is_dir():
                raise StoreError(f"--store {shown}: the folder {Path(url.database).parent} does not exist")
            kwargs["connect_args"] = {"timeout": 30}
        elif url.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
        try:
            engine = create_engine(url, **kwargs)
        except (ArgumentError, ImportError, SQLAlchemyError) as e:
            raise StoreError(f"--store {shown}: {_first_line(e)}") from None
        if engine.dialect.name == "sqlite":
            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a crash of the process
                cur.close()
        self = cls(engine, shown)
        try:
            metadata.create_all(engine)
        except SQLAlchemyError as e:
            engine.dispose()
            raise StoreError(f"--store {shown}: cannot open the database ({_first_line(e)})") from None
        return self

    def close(self) -> None:
        self.engine.dispose()

    def write(self, decisions_rows=(), events_rows=(), device_rows=()) -> tuple[list[tuple], list[tuple]]:
        """Insert in one transaction; rows already there are skipped. Returns the (device, id) keys of the
        decisions and of the events that were new. Raises SQLAlchemyError (the caller retries)."""
        new_d: list[tuple] = []
        new_e: list[tuple] = []
        with self.engine.begin() as conn:
            if decisions_rows:
                stmt = (self._insert(decisions).on_conflict_do_nothing(index_elements=["device", "id"])
                        .returning(decisions.c.device, decisions.c.id))
                new_d = [tuple(r) for r in conn.execute(stmt, list(decisions_rows))]
            if events_rows:
                stmt = (self._insert(events).on_conflict_do_nothing(index_elements=["device", "id"])
                        .returning(events.c.device, events.c.id))
                new_e = [tuple(r) for r in conn.execute(stmt, list(events_rows))]
            latest: dict[str, dict] = {}
            for r in device_rows:  # the last of a batch wins
                latest[r["device"]] = r
            for r in latest.values():
                stmt = self._insert(devices).values(**r)
                stmt = stmt.on_conflict_do_update(index_elements=["device"], set_={  # an offline will has no
                    "online": stmt.excluded.online, "status": stmt.excluded.status,  # model version: keep it
                    "updated": stmt.excluded.updated,
                    "model_version": func.coalesce(stmt.excluded.model_version, devices.c.model_version)})
                conn.execute(stmt)
        return new_d, new_e

    # ------------------------------------------------------------------ reading (status page, tests)
    def summary(self) -> dict[str, dict]:
        """Per device: decisions, defects, last received, last event, last status (from the tables)."""
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            defects = func.sum((func.lower(decisions.c.label) != "ok").cast(Integer))
            q = (select(decisions.c.device, func.count(), defects, func.max(decisions.c.received))
                 .group_by(decisions.c.device))
            for dev, n, bad, last in conn.execute(q):
                out.setdefault(dev, {}).update(decisions=int(n), defects=int(bad or 0), last_seen=last)
            last_ids = (select(events.c.device, func.max(events.c.id).label("mid"))
                        .group_by(events.c.device).subquery())
            q = select(events).join(last_ids, (events.c.device == last_ids.c.device) & (events.c.id == last_ids.c.mid))
            for r in conn.execute(q).mappings():
                out.setdefault(r["device"], {})["last_event"] = _event_dict(r)
            for r in conn.execute(select(devices)).mappings():
                d = out.setdefault(r["device"], {})
                d.update(online=bool(r["online"]), model_version=r["model_version"], status_updated=r["updated"])
                try:
                    d["status"] = json.loads(r["status"])
                except ValueError:
                    d["status"] = {}
        return out

    def count(self, table: str = "decisions", device: str | None = None) -> int:
        t = {"decisions": decisions, "events": events, "devices": devices}[table]
        q = select(func.count()).select_from(t)
        if device is not None:
            q = q.where(t.c.device == device)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def rows(self, table: str = "decisions", device: str | None = None) -> list[dict]:
        t = {"decisions": decisions, "events": events, "devices": devices}[table]
        q = select(t).order_by(*t.primary_key.columns)
        if device is not None:
            q = q.where(t.c.device == device)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


def _event_dict(r) -> dict:
    try:
        detail = json.loads(r["detail"])
    except ValueError:
        detail = r["detail"]
    return {"id": r["id"], "time": r["time"], "kind": r["kind"], "detail": detail, "received": r["received"]}
