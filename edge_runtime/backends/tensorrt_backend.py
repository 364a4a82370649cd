"""TensorRT backend: the bundle's engines for this device, with the hidden state kept on the GPU.

Written against the TensorRT Python API of 8.6 and 10.x (name-based I/O: num_io_tensors, get_tensor_name,
set_input_shape, set_tensor_address, execute_async_v3) and pycuda. Device buffers are allocated once, at the
profile's largest batch; every stage runs on one CUDA stream; stage k writes its hidden state into its own
device buffer, which is bound directly as stage k+1's input, and only the exit logits are copied to the host.
Stage time is measured with CUDA events (`stage_ms`). What TensorRT answers with False (an unknown tensor
name, a shape outside the profile, a failed enqueue) is an error here, never ignored.

Threads and CUDA contexts. One backend belongs to the thread that opened it: its execution contexts, stream,
events and buffers are used from that thread only (TensorRT: one execution context must not be called from
two threads; pycuda: a context is current only in the thread that pushed it). The CUDA context is device 0's
primary context (`Device(0).retain_primary_context()`, what `pycuda.autoprimaryctx` does; the CUDA runtime
inside TensorRT and Polygraphy uses the same one), made current in the opening thread unless a context
already is. Another thread, the health monitor's, calls `for_thread()` there: a backend of its own that
shares the deserialized engines (an ICudaEngine may serve several threads, each with its own execution
contexts) and has its own execution contexts, stream, events and buffers, under the same context pushed in
that thread; `close()` frees them and pops the context, in that thread. Used from another thread, a backend
raises at once rather than let CUDA fail somewhere inside.

Tile mode (per-tile early exit with compaction, edge_runtime.tile_executor): a batch may hold 1 to the
profile's max tiles. `take_rows` keeps the rows still undecided on the GPU: it gathers them, one
device-to-device copy per run of consecutive rows, into a gather buffer (two, used in turn, allocated at the
first compaction), never in place: CUDA's memcpy does not allow the source and destination to overlap, and
moving a run of rows down onto its own neighbours would. An engine with a static profile (min = max: the DLA)
runs every batch at that size: a smaller batch is padded (the rows after it hold zeros or stale finite
values, computed and never read back) and the outputs are cut to the real batch.

Engines built for a DLA core run on that core: the runtime's DLA_core is set from the engine entry's plan
before deserializing (left unset, TensorRT runs them on core 0).

Engines are loaded only from engines/<fingerprint id>/ when the manifest says they match this device, this
precision and these stage files, and passed verification; otherwise `EnginesUnavailable` (a
BackendUnavailable) says which, and the caller may fall back to ONNX Runtime.
"""
from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import BackendUnavailable

INSTALL_HINT = ("the tensorrt backend runs on a Jetson with JetPack 6.0 or newer: run jetson/install.sh there "
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
        import pycuda.driver as cuda
    except ImportError:
        raise BackendUnavailable(f"pycuda is not installed here; {INSTALL_HINT}") from None
    return trt, cuda  # the backend makes device 0's primary context current itself (see the module docstring)


def usable_engines(bundle, precision: str, fingerprint_id: str) -> list[str]:
    """The engine files for this device, in stage order; EnginesUnavailable when there are none to trust."""
    from edge_runtime.fingerprint import engine_status

    sources = [(s.quantized if precision == "quantized" else s.file) for s in bundle.stages]
    engines = bundle.manifest.engines
    status, why = engine_status(engines, fingerprint_id, precision, sources, bundle.manifest.files)
    entry = engines.get(fingerprint_id)
    if status == "stale" and entry is not None and entry.precision != precision:
        raise EnginesUnavailable(f"cannot use TensorRT: {why}; run with --precision {entry.precision}, or build "
                                 f"{precision} engines with `edge-qwq build --target orin`", status)
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


def row_runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs of consecutive indices in ascending `rows`: (first output row, first source row, count).

    >>> row_runs(np.array([0, 1, 2, 5, 6, 9]))
    [(0, 0, 3), (3, 5, 2), (5, 9, 1)]
    """
    rows = np.asarray(rows, np.int64)
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [rows.size]])
    return [(int(a), int(rows[a]), int(b - a)) for a, b in zip(starts, ends)]


def _alloc_zeroed(cuda, nbytes: int):
    buf = cuda.mem_alloc(max(1, nbytes))
    cuda.memset_d8(buf, 0, max(1, nbytes))  # padding rows of a static batch read finite values, never garbage
    return buf


class _Stage:
    """One engine's execution context, its input name, its output device buffers (allocated once)."""

    def __init__(self, trt, cuda, engine, max_batch: int):
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = [n for n in names if n != self.input]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.buffers = {}
        for n in names:
            dims = tuple(engine.get_tensor_shape(n))
            elems = max_batch * int(np.prod([d for d in dims[1:]]))  # (B, ...) at the largest batch
            self.buffers[n] = _alloc_zeroed(cuda, elems * self.dtypes[n].itemsize)


class _CudaContext:
    """The CUDA context a backend's thread works in: the one current there, else device 0's primary context,
    pushed here (and popped by `release`, in the same thread)."""

    def __init__(self, cuda, context=None):
        self.cuda, self.pushed = cuda, False
        current = cuda.Context.get_current()  # None when no context is current in this thread
        if context is None:
            context = current if current is not None else cuda.Device(0).retain_primary_context()
        if current is None or current != context:
            context.push()
            self.pushed = True
            if threading.current_thread() is threading.main_thread():  # as pycuda.autoprimaryctx does at exit
                atexit.register(self.release)
        self.context = context

    def release(self) -> None:
        if self.pushed:
            self.cuda.Context.pop()
            self.pushed = False


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, bundle, precision: str = "fp32", fingerprint=None, trt=None, cuda=None, **_options):
        """trt, cuda: the modules to use (tests pass fakes); by default tensorrt and pycuda.driver."""
        if trt is None or cuda is None:
            trt, cuda = require_tensorrt()
        from edge_runtime.fingerprint import detect

        self.trt, self.cuda, self.precision = trt, cuda, precision
        fp = fingerprint or detect()
        files = usable_engines(bundle, precision, fp.id)
        entry = bundle.manifest.engines[fp.id]
        profile = next(iter(entry.plan.get("profile", {}).values()), None)
        self.max_batch = int(profile[2][0]) if profile else 1
        # a static profile (DLA) runs every batch at its one size: smaller batches are padded to it
        self.pad_to = self.max_batch if profile and int(profile[0][0]) == self.max_batch > 1 else None
        self.tiles = entry.plan.get("tiles")  # tile bundles: the frame size the profile was sized for
        self.dla_core = entry.plan.get("dla_core")
        cuda.init()  # idempotent
        self._cuda_context = _CudaContext(cuda)
        try:
            self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            if self.dla_core is not None:
                self.runtime.DLA_core = int(self.dla_core)  # left unset, TensorRT runs DLA engines on core 0
            self.engines = [self._load(bundle.path(f)) for f in files]
            self.num_stages = len(self.engines)
            self._open_thread_state()
        except BaseException:
            self._cuda_context.release()
            raise

    def for_thread(self, max_batch: int | None = None) -> "TensorRTBackend":
        """A backend for the calling thread (another than this one's): the same engines, with execution
        contexts, a stream, events and buffers of its own, under this backend's CUDA context made current in
        the calling thread. max_batch: the largest batch it will run (its buffers are sized for it; a static
        DLA profile keeps its size). Close it in the same thread."""
        clone = object.__new__(type(self))
        clone.__dict__.update({k: self.__dict__[k] for k in (
            "trt", "cuda", "precision", "max_batch", "pad_to", "tiles", "dla_core", "runtime", "engines",
            "num_stages")})
        if max_batch is not None and clone.pad_to is None:
            clone.max_batch = max(1, min(int(max_batch), self.max_batch))
        clone._cuda_context = _CudaContext(self.cuda, self._cuda_context.context)
        try:
            clone._open_thread_state()
        except BaseException:
            clone._cuda_context.release()
            raise
        return clone

    def _open_thread_state(self) -> None:
        """Execution contexts, stream, events and buffers: this thread's, and used from it only."""
        cuda = self.cuda
        self._thread = threading.get_ident()
        self._gather: list = [None, None]  # take_rows' device buffers: (allocation, bytes), used in turn
        self.stages = [_Stage(self.trt, cuda, e, self.max_batch) for e in self.engines]
        self.stream = cuda.Stream()
        self.events = [(cuda.Event(), cuda.Event()) for _ in self.stages]
        self.stage_ms = [0.0] * self.num_stages  # CUDA-event time of each stage's last run
        self._logits_host = {}  # stage -> page-locked (max_batch, classes)

    def close(self) -> None:
        """Free this thread's buffers and execution contexts, and pop the CUDA context it pushed (call it in
        the thread that opened this backend; the engines stay with the backends that share them)."""
        if getattr(self, "stages", None) is None:
            return
        self._same_thread("close")
        self.stream.synchronize()
        for st in self.stages:
            for buf in st.buffers.values():
                getattr(buf, "free", lambda: None)()
            st.context = None
        for g in self._gather:
            if g is not None:
                getattr(g[0], "free", lambda: None)()
        self.stages, self._gather, self._logits_host = None, [None, None], {}
        self._cuda_context.release()

    def _same_thread(self, what: str) -> None:
        if threading.get_ident() != self._thread:
            raise RuntimeError(f"TensorRT backend: {what} called from thread {threading.get_ident()}, but this "
                               f"backend belongs to thread {self._thread} (its CUDA context and TensorRT execution "
                               "contexts are used from one thread); open one with backend.for_thread() there")

    def _load(self, path):
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EnginesUnavailable(f"TensorRT could not load {path} (built by another TensorRT?); rebuild it "
                                     "with `edge-qwq build --target orin`", "stale")
        return engine

    def run_stage(self, k: int, x: Any) -> tuple[DeviceTensor, np.ndarray]:
        """Stage k on x: a host image batch (stage 0) or the previous stage's DeviceTensor."""
        self._same_thread("run_stage")
        st, cuda, stream = self.stages[k], self.cuda, self.stream
        shape = tuple(x.shape)
        batch = shape[0]
        if not 1 <= batch <= self.max_batch:
            raise ValueError(self._batch_message(batch))
        if isinstance(x, DeviceTensor):
            in_buf = x.buffer  # stays on the GPU: bind the previous stage's output directly
        else:
            in_buf = st.buffers[st.input]
            cuda.memcpy_htod_async(in_buf, np.ascontiguousarray(x, dtype=st.dtypes[st.input]), stream)
        run_shape = (self.pad_to or batch,) + shape[1:]
        if not st.context.set_input_shape(st.input, run_shape):
            raise RuntimeError(f"TensorRT refused input shape {run_shape} for {st.input!r} of stage {k} "
                               "(outside the engine's profile; its log above says why)")
        for n, buf in [(st.input, in_buf)] + [(n, st.buffers[n]) for n in st.outputs]:
            if not st.context.set_tensor_address(n, int(buf)):
                raise RuntimeError(f"TensorRT refused the address of tensor {n!r} of stage {k}")
        start, end = self.events[k]
        start.record(stream)
        if not st.context.execute_async_v3(stream.handle):
            raise RuntimeError(f"TensorRT failed to run stage {k}")
        end.record(stream)
        logits = self._copy_logits(k, st, batch)
        stream.synchronize()
        self.stage_ms[k] = end.time_since(start)
        hidden_shape = (batch,) + tuple(st.context.get_tensor_shape("hidden"))[1:]  # padding rows dropped
        return DeviceTensor(st.buffers["hidden"], hidden_shape, st.dtypes["hidden"]), logits.copy()

    def _batch_message(self, batch: int) -> str:
        if batch < 1:
            return f"batch {batch}: a stage needs at least one input"
        msg = f"batch {batch} exceeds the engine profile's max batch {self.max_batch}"
        if self.tiles:
            msg += (f" ({self.tiles['tiles']} tiles: the engines were built for {self.tiles['frame']} frames; "
                    "rebuild them with `edge-qwq build --bundle BUNDLE --frame-size WIDTHxHEIGHT --force`)")
        return msg

    def _copy_logits(self, k: int, st: _Stage, batch: int) -> np.ndarray:
        """The first `batch` rows of stage k's logits (the rest, if any, are a static batch's padding)."""
        shape = tuple(st.context.get_tensor_shape("logits"))  # (B or pad_to, classes)
        host = self._logits_host.get(k)
        if host is None:
            host = self._logits_host[k] = self.cuda.pagelocked_empty(
                (self.max_batch,) + shape[1:], st.dtypes["logits"])
        out = host[:batch]
        self.cuda.memcpy_dtoh_async(out, st.buffers["logits"], self.stream)  # copies out.nbytes: `batch` rows
        return out

    def hidden_to_host(self, hidden: DeviceTensor) -> np.ndarray:
        self._same_thread("hidden_to_host")
        out = np.empty(hidden.shape, hidden.dtype)
        self.stream.synchronize()  # a take_rows gather may still be running on the stream
        self.cuda.memcpy_dtoh(out, hidden.buffer)
        return out

    def take_rows(self, hidden: DeviceTensor, rows: np.ndarray) -> DeviceTensor:
        """The hidden state of batch rows `rows` (ascending, distinct), still on the GPU: each run of
        consecutive rows is one device-to-device copy on the backend's stream (ordered before the next
        stage) into a gather buffer; rows 0..n-1 (a prefix) need no copy. `hidden` is left as it was; the
        handle returned lives in a gather buffer that a later take_rows may reuse, so run the next stage on it
        first (as run_tiles does)."""
        self._same_thread("take_rows")
        rows = np.asarray(rows, np.int64).ravel()
        n = hidden.shape[0]
        if rows.size == 0:
            raise ValueError("take_rows needs at least one row (a stage cannot run on an empty batch)")
        if rows[0] < 0 or rows[-1] >= n or np.any(np.diff(rows) <= 0):
            raise ValueError(f"rows must be ascending, distinct indices into the batch of {n}")
        shape = (int(rows.size),) + tuple(hidden.shape[1:])
        if rows[-1] == rows.size - 1:  # rows 0..n-1: already in place
            return DeviceTensor(hidden.buffer, shape, hidden.dtype)
        row_bytes = int(np.prod(hidden.shape[1:], dtype=np.int64)) * np.dtype(hidden.dtype).itemsize
        dst = self._gather_buffer(hidden.buffer, self.max_batch * row_bytes)
        src0, dst0 = int(hidden.buffer), int(dst)
        for out_row, src_row, count in row_runs(rows):
            self.cuda.memcpy_dtod_async(dst0 + out_row * row_bytes, src0 + src_row * row_bytes, count * row_bytes,
                                        self.stream)
        return DeviceTensor(dst, shape, hidden.dtype)

    def _gather_buffer(self, src, nbytes: int):
        """A gather buffer of at least `nbytes` that is not `src` (two are kept and used in turn)."""
        first = self._gather[0]
        slot = 1 if first is not None and int(first[0]) == int(src) else 0
        cur = self._gather[slot]
        if cur is None or cur[1] < nbytes:
            if cur is not None:
                getattr(cur[0], "free", lambda: None)()
            cur = self._gather[slot] = (_alloc_zeroed(self.cuda, nbytes), nbytes)
        return cur[0]
