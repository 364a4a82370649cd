"""Backends run one stage graph at a time. The executor never sees more than `StageBackend`.

    >>> backend = open_backend("onnxruntime", bundle)   # doctest: +SKIP
"""
from __future__ import annotations

from edge_runtime.backends.base import BackendKind, StageBackend
from edge_runtime.errors import BackendUnavailable, EdgeError

__all__ = ["BackendKind", "StageBackend", "open_backend"]


def open_backend(kind: str, bundle, precision: str = "fp32", **options) -> StageBackend:
    """Open the stages of `bundle` on backend `kind` ("onnxruntime" or "tensorrt").

    precision: "fp32" runs stages/stage{k}.onnx, "quantized" the .q.onnx files calib wrote.
    """
    if kind == BackendKind.ONNXRUNTIME:
        from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, precision=precision, **options)
    if kind == BackendKind.TENSORRT:
        try:
            from edge_runtime.backends.tensorrt_backend import TensorRTBackend
        except ImportError as e:  # tensorrt / pycuda absent
            raise BackendUnavailable(
                f"the tensorrt backend needs TensorRT and pycuda, which are not installed here ({e.name}); "
                "on a Jetson run jetson/install.sh (JetPack 6 ships TensorRT), or use --backend onnxruntime"
            ) from None
        return TensorRTBackend(bundle, precision=precision, **options)
    raise EdgeError(f"unknown backend {kind!r}; choose one of: {', '.join(k.value for k in BackendKind)}")
