"""ONNX Runtime backend: the embedded default (CPU), also CUDA where onnxruntime-gpu is installed."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import BundleError


def make_session(path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None):
    """An InferenceSession for one ONNX file; BundleError (one line) if the file is not a valid graph."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # ORT raises Fail/InvalidGraph/InvalidProtobuf/NoSuchFile with long texts
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{path}: ONNX Runtime cannot load it ({first[:200]})") from None


def _stage_files(bundle, precision: str) -> list[Path]:
    files = []
    for stage in bundle.stages:
        if precision == "quantized" and not stage.quantized:
            raise BundleError(f"bundle {bundle.root} has no quantized stages; run `edge-qwq quantize` first")
        files.append(Path(bundle.root) / (stage.quantized if precision == "quantized" else stage.file))
    return files


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, bundle, precision: str = "fp32", threads: int = 0, providers: list[str] | None = None,
                 files: list[Path] | None = None):
        """The bundle's FP32 or quantized stages, or explicit stage `files` (e.g. another quantizer's)."""
        self.precision = precision
        self.sessions = [make_session(p, threads, providers) for p in (files or _stage_files(bundle, precision))]
        self.num_stages = len(self.sessions)
        self._inputs = [s.get_inputs()[0].name for s in self.sessions]
        self._outputs = [[o.name for o in s.get_outputs()] for s in self.sessions]

    def run_stage(self, k: int, x: Any) -> tuple[np.ndarray, np.ndarray]:
        hidden, logits = self.sessions[k].run(self._outputs[k], {self._inputs[k]: x})
        return hidden, logits  # (B, tokens, dim), (B, classes)

    def hidden_to_host(self, hidden: np.ndarray) -> np.ndarray:
        return hidden
