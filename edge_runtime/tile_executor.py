"""Per-tile early exit with compaction: all tiles enter stage 0 as one batch; the confident ones leave, and
only the rest go on to the next stage, as a smaller batch.

    >>> r = run_tiles(backend, tiles, policy, ok_index)   # tiles: (N, 3, T, T)   # doctest: +SKIP
    >>> r.stage_tiles                                       # tiles that entered each stage  # doctest: +SKIP
    [234, 11, 3]

On a textured surface most tiles are plainly ok and leave at stage 0, so a frame costs little more than
stage 0 over its tiles. `compact=False` runs every tile to full depth (the reference it is measured against).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.executor import ExitPolicy, softmax


@dataclass
class TileResults:
    """What each of N tiles decided. `probs` are the softmax of the exit each tile took."""

    labels: np.ndarray  # (N,) int64: top-1 class
    confidence: np.ndarray  # (N,) float32: its probability
    exit_at: np.ndarray  # (N,) int64: exit taken
    probs: np.ndarray  # (N, classes) float64
    stage_ms: list[float] = field(default_factory=list)  # wall time of each stage that ran
    stage_tiles: list[int] = field(default_factory=list)  # tiles that entered each stage

    @classmethod
    def empty(cls, n: int, classes: int) -> "TileResults":
        return cls(np.zeros(n, np.int64), np.zeros(n, np.float32), np.zeros(n, np.int64),
                   np.zeros((n, classes), np.float64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def put(self, rows: np.ndarray, other: "TileResults") -> None:
        """Write `other` (len(rows) tiles) into rows `rows` of self."""
        self.labels[rows], self.confidence[rows] = other.labels, other.confidence
        self.exit_at[rows], self.probs[rows] = other.exit_at, other.probs

    def take(self, rows: np.ndarray) -> "TileResults":
        return TileResults(self.labels[rows], self.confidence[rows], self.exit_at[rows], self.probs[rows])

    def defect_score(self, ok_index: int) -> np.ndarray:
        """(N,) each tile's defect probability, 1 - p(ok), at the exit it took."""
        return 1.0 - self.probs[:, ok_index]


def leaving(probs: np.ndarray, k: int, policy: ExitPolicy, ok_index: int) -> np.ndarray:
    """(n,) bool: the tiles confident enough to stop at early exit k (the executor's rule, vectorised)."""
    labels = probs.argmax(axis=1)
    conf = probs[np.arange(len(labels)), labels]
    need = np.where(labels == ok_index, policy.ok_thresholds[k], policy.thresholds[k])
    return (conf >= need) & (need < 1.0)


def run_tiles(backend, tiles: np.ndarray, policy: ExitPolicy, ok_index: int, compact: bool = True) -> TileResults:
    """Tiles (N, 3, T, T) through the stages of `backend`. With `compact`, tiles that exit leave the batch
    (the backend's `take_rows` keeps the hidden state of the rest where it lives); without, all N tiles run
    every stage and answer at the last exit."""
    n, last = tiles.shape[0], backend.num_stages - 1
    out: TileResults | None = None
    rows = np.arange(n)  # original index of each tile still in the batch
    h, stage_ms, stage_tiles = tiles, [], []
    for k in range(last + 1):
        t0 = time.perf_counter()
        h, logits = backend.run_stage(k, h)  # logits (len(rows), classes)
        probs = softmax(np.asarray(logits, np.float64))  # float64: scores near 1 stay apart
        stage_ms.append((time.perf_counter() - t0) * 1e3)
        stage_tiles.append(len(rows))
        if out is None:
            out = TileResults.empty(n, probs.shape[1])
        go = np.ones(len(rows), bool) if k == last else (
            leaving(probs, k, policy, ok_index) if compact else np.zeros(len(rows), bool))
        if go.any():
            labels = probs[go].argmax(axis=1)
            out.put(rows[go], TileResults(labels, probs[go][np.arange(len(labels)), labels],
                                          np.full(len(labels), k, np.int64), probs[go]))
        if go.all():
            break
        stay = np.flatnonzero(~go)
        if len(stay) < len(rows):
            h = backend.take_rows(h, stay)  # compaction: (len(stay), tokens, dim)
            rows = rows[stay]
    out.stage_ms, out.stage_tiles = stage_ms, stage_tiles
    return out
