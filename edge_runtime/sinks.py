"""Where the service's decisions and events go: the `Sink` protocol, and `StdoutSink` (no --store).

    >>> sink = StdoutSink()
    >>> sink.add({"frame_id": 0, "label": "ok"})        # doctest: +SKIP
    {"frame_id": 0, "label": "ok"}

`edge_runtime.store.DecisionStore` satisfies the same protocol (rows are stored once committed); a new
output to the plant (MQTT, a reject signal) is one more class with these methods, in a module of its own.
"""
from __future__ import annotations

import json
import sys
from typing import Protocol, TextIO


class Sink(Protocol):
    stored: int  # decisions committed so far
    last_id: int  # id of the last committed decision (0: none, or the sink has no ids)

    def add(self, row: dict) -> dict: ...  # one decision; returns the row (with its id where it has one)
    def maybe_commit(self, now: float | None = None) -> list[dict]: ...  # rows committed by this call
    def flush(self) -> list[dict]: ...  # commit whatever is pending
    def event(self, kind: str, detail: dict, when: float | None = None) -> None: ...
    def close(self) -> None: ...


class StdoutSink:
    """No --store: each decision is printed as a JSON line at once (nothing is kept)."""

    stored = last_id = 0

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def add(self, row: dict) -> dict:
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()
        return row

    def maybe_commit(self, now: float | None = None) -> list[dict]:
        return []

    flush = maybe_commit

    def event(self, kind: str, detail: dict, when: float | None = None) -> None:
        print(f"edge-qwq: event {kind}: {json.dumps(detail)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.out.flush()
