"""TensorRT backend: the bundle's engines for this device, with the hidden state kept on the GPU.

Written against the TensorRT Python API (8.5+ name-based I/O: num_io_tensors, get_tensor_name,
set_input_shape, set_tensor_address, execute_async_v3) and pycuda. Device buffers are allocated once, at the
profile's largest batch; every stage runs on one CUDA stream; stage k writes its hidden state into its own
device buffer, which is bound directly as stage k+1's input, and only the exit logits are copied to the host.
Stage time is measured with CUDA events (`stage_ms`).

Engines are loaded only from engines/<fingerprint id>/ when the manifest says they match this device, this
precision and these stage files, and passed verification; otherwise `EnginesUnavailable` (a
BackendUnavailable) says which, and the caller may fall back to ONNX Runtime.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import BackendUnavailable

INSTALL_HINT = ("the tensorrt backend runs on a Jetson with JetPack 6: run jetson/install.sh there "
                "(jetson/README.md, 'On the device'), or use --backend onnxruntime")


class EnginesUnavailable(BackendUnavailable):
    """TensorRT is here but the bundle has no usable engines for this device; `status` says why
    ("missing", "other-device", "stale", "rejected")."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


def require_tensorrt():
    """(tensorrt, pycuda.driver), or BackendUnavailable naming what is missing and how to get it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable(f"TensorRT is not installed here (no Python module 'tensorrt'); "
                                 f"{INSTALL_HINT}") from None
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context on device 0)
        import pycuda.driver as cuda
    except ImportError:
        raise BackendUnavailable(f"pycuda is not installed here; {INSTALL_HINT}") from None
    return trt, cuda


def usable_engines(bundle, precision: str, fingerprint_id: str) -> list[str]:
    """The engine files for this device, in stage order; EnginesUnavailable when there are none to trust."""
    from edge_runtime.fingerprint import engine_status

    sources = [(s.quantized if precision == "quantized" else s.file) for s in bundle.stages]
    engines = bundle.manifest.engines
    status, why = engine_status(engines, fingerprint_id, precision, sources, bundle.manifest.files)
    if status != "ok":
        raise EnginesUnavailable(f"cannot use TensorRT: {why}; build them on this device with "
                                 "`edge-qwq build --target orin`, or use --backend onnxruntime", status)
    return [s.file for s in engines[fingerprint_id].stages]


@dataclass
class DeviceTensor:
    """The hidden-state handle: a device buffer and the shape written into it."""

    buffer: Any  # pycuda DeviceAllocation
    shape: tuple[int, ...]
    dtype: np.dtype


class _Stage:
    """One engine: its context, its input name, its output device buffers (allocated once)."""

    def __init__(self, trt, cuda, engine, max_batch: int):
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = [n for n in names if n != self.input]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.buffers = {}
        for n in names:
            dims = tuple(engine.get_tensor_shape(n))
            elems = max_batch * int(np.prod([d for d in dims[1:]]))  # (B, ...) at the largest batch
            self.buffers[n] = cuda.mem_alloc(elems * self.dtypes[n].itemsize)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, bundle, precision: str = "fp32", fingerprint=None, **_options):
        trt, cuda = require_tensorrt()
        from edge_runtime.fingerprint import detect

        self.trt, self.cuda, self.precision = trt, cuda, precision
        fp = fingerprint or detect()
        files = usable_engines(bundle, precision, fp.id)
        entry = bundle.manifest.engines[fp.id]
        profile = next(iter(entry.plan.get("profile", {}).values()), None)
        self.max_batch = int(profile[2][0]) if profile else 1
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.stages = [self._load(bundle.path(f)) for f in files]
        self.num_stages = len(self.stages)
        self.stream = cuda.Stream()
        self.events = [(cuda.Event(), cuda.Event()) for _ in self.stages]
        self.stage_ms = [0.0] * self.num_stages  # CUDA-event time of each stage's last run
        self._logits_host = {}  # stage -> page-locked (max_batch, classes)

    def _load(self, path):
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EnginesUnavailable(f"TensorRT could not load {path} (built by another TensorRT?); rebuild it "
                                     "with `edge-qwq build --target orin`", "stale")
        return _Stage(self.trt, self.cuda, engine, self.max_batch)

    def run_stage(self, k: int, x: Any) -> tuple[DeviceTensor, np.ndarray]:
        """Stage k on x: a host image batch (stage 0) or the previous stage's DeviceTensor."""
        st, cuda, stream = self.stages[k], self.cuda, self.stream
        shape = tuple(x.shape)
        if shape[0] > self.max_batch:
            raise ValueError(f"batch {shape[0]} exceeds the engine profile's max batch {self.max_batch}")
        if isinstance(x, DeviceTensor):
            in_buf = x.buffer  # stays on the GPU: bind the previous stage's output directly
        else:
            in_buf = st.buffers[st.input]
            cuda.memcpy_htod_async(in_buf, np.ascontiguousarray(x, dtype=st.dtypes[st.input]), stream)
        st.context.set_input_shape(st.input, shape)
        st.context.set_tensor_address(st.input, int(in_buf))
        for n in st.outputs:
            st.context.set_tensor_address(n, int(st.buffers[n]))
        start, end = self.events[k]
        start.record(stream)
        if not st.context.execute_async_v3(stream.handle):
            raise RuntimeError(f"TensorRT failed to run stage {k}")
        end.record(stream)
        logits = self._copy_logits(k, st)
        stream.synchronize()
        self.stage_ms[k] = end.time_since(start)
        hidden_shape = tuple(st.context.get_tensor_shape("hidden"))
        return DeviceTensor(st.buffers["hidden"], hidden_shape, st.dtypes["hidden"]), logits.copy()

    def _copy_logits(self, k: int, st: _Stage) -> np.ndarray:
        shape = tuple(st.context.get_tensor_shape("logits"))  # (B, classes)
        host = self._logits_host.get(k)
        if host is None or host.size < int(np.prod(shape)):
            host = self._logits_host[k] = self.cuda.pagelocked_empty(
                (self.max_batch,) + shape[1:], st.dtypes["logits"])
        out = host[: shape[0]]
        self.cuda.memcpy_dtoh_async(out, st.buffers["logits"], self.stream)
        return out

    def hidden_to_host(self, hidden: DeviceTensor) -> np.ndarray:
        out = np.empty(hidden.shape, hidden.dtype)
        self.cuda.memcpy_dtoh(out, hidden.buffer)
        return out
