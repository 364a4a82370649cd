"""The interface every backend implements."""
from __future__ import annotations

from enum import Enum
from typing import Any, Protocol

import numpy as np


class BackendKind(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"


class StageBackend(Protocol):
    """Runs stage graphs. The hidden state is an opaque handle: a numpy array on ONNX Runtime, a
    device buffer on TensorRT (it stays on the GPU between stages); only logits come to the host."""

    name: str
    num_stages: int

    def run_stage(self, k: int, x: Any) -> tuple[Any, np.ndarray]:
        """Stage k on `x` (stage 0: image (B, 3, H, W) float32; else the hidden handle of stage k-1).
        Returns (hidden handle, logits (B, classes) float32 on the host)."""
        ...

    def hidden_to_host(self, hidden: Any) -> np.ndarray:
        """The hidden state (B, tokens, dim) as a host array (health checks only; not on the hot path)."""
        ...

    def take_rows(self, hidden: Any, rows: np.ndarray) -> Any:
        """The hidden handle of batch rows `rows` (ascending indices) only, where it lives (host or device):
        per-tile early exit passes only the tiles still undecided to the next stage (compaction)."""
        ...
