"""FAKES of the `tensorrt` and `pycuda.driver` modules, for tests without TensorRT or a GPU.

`make_fake_tensorrt` records the calls our builder makes. It checks OUR decisions (which flags, which
network type, which profile, the timing cache we pass back), never TensorRT's behaviour: it builds
nothing, and its "engine" is a byte string naming the ONNX file and the profile it was "built" with.

For the runtime side (edge_runtime/backends/tensorrt_backend.py), `make_fake_tensorrt(..., cuda=...)` also
has a `Runtime` whose "engines" replay their ONNX file with ONNX Runtime on the fake device memory of
`make_fake_cuda()`, a FAKE pycuda.driver: device buffers are host bytes at made-up addresses, copies are
immediate, and a copy out of bounds or between overlapping ranges fails loudly (CUDA leaves the latter
undefined). An input shape outside the engine's profile fails too (a static DLA profile takes one batch).

The real calls are exercised on a device by the tests marked `tensorrt`.
"""
from __future__ import annotations

import json
import types
from enum import IntEnum

import numpy as np


class _NetworkFlag(IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class _BuilderFlag(IntEnum):
    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 3
    TF32 = 7


class _Pool(IntEnum):
    WORKSPACE = 0


class _Device(IntEnum):
    GPU = 0
    DLA = 1


class FakeParserError:
    def __init__(self, desc: str, node: int, node_name: str | None = None, op: str | None = None):
        self._desc, self._node, self._name, self._op = desc, node, node_name, op

    def desc(self):
        return self._desc

    def node(self):
        return self._node


class FakeParserError10(FakeParserError):
    """TensorRT 10's IParserError also names the node and its operator."""

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


class _IOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class _DataType(IntEnum):
    FLOAT = 0
    HALF = 1


FAKE_ENGINE = b"fake-engine "


def make_fake_tensorrt(version: str = "10.3.0", dla_cores: int = 2, parse_errors: list | None = None,
                       build_fails: bool = False, cuda=None) -> types.ModuleType:
    """A fake `tensorrt` of the given version; `trt.calls` lists (what, args) in order. `cuda`: a
    `make_fake_cuda()` whose memory the fake Runtime's engines read and write."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    major = int(version.split(".")[0])
    record = trt.calls.append

    class Logger:
        WARNING = 2

        def __init__(self, severity=2):
            record(("Logger", severity))

    class TimingCache:
        def __init__(self, data: bytes):
            self.data = data

        def serialize(self):
            return self.data + b"+timings"

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            record(("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class Config:
        def __init__(self):
            self._cache = None
            self.progress_monitor = None
            self.profiles = []

        def set_memory_pool_limit(self, pool, size):
            record(("config.set_memory_pool_limit", pool.name, size))

        def set_flag(self, flag):
            record(("config.set_flag", flag.name))

        def add_optimization_profile(self, profile):
            record(("config.add_optimization_profile",))
            self.profiles.append(profile)

        def __setattr__(self, name, value):
            if name in ("default_device_type", "DLA_core"):
                record((f"config.{name}", getattr(value, "name", value)))
            object.__setattr__(self, name, value)

        def create_timing_cache(self, data):
            record(("config.create_timing_cache", bytes(data)))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            record(("config.set_timing_cache", ignore_mismatch))
            self._cache = cache

        def get_timing_cache(self):
            return self._cache

    class Network:
        source = None  # the ONNX file parsed into it

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            record(("Builder",))

        def create_network(self, flags):
            record(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            record(("build_serialized_network", config.progress_monitor is not None))
            if build_fails:
                return None
            profile = {k: v for p in config.profiles for k, v in p.shapes.items()}
            return FAKE_ENGINE + json.dumps({"onnx": network.source, "profile": profile}).encode()

    class OnnxParser:
        def __init__(self, network, logger):
            errors = parse_errors or []
            self.num_errors = len(errors)
            self._errors = errors
            self._network = network

        def parse_from_file(self, path):
            record(("parse_from_file", str(path)))
            if self._network is not None:
                self._network.source = str(path)
            return not self._errors

        def get_error(self, i):
            return self._errors[i]

    class Runtime:
        def __init__(self, logger):
            record(("Runtime",))

        def deserialize_cuda_engine(self, data: bytes):
            if not data.startswith(FAKE_ENGINE):
                return None  # TensorRT returns None for an engine it cannot read
            return FakeEngine(json.loads(data[len(FAKE_ENGINE):]), cuda, record)

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.NetworkDefinitionCreationFlag, trt.BuilderFlag = _NetworkFlag, _BuilderFlag
    trt.MemoryPoolType, trt.DeviceType = _Pool, _Device
    trt.TensorIOMode, trt.DataType = _IOMode, _DataType
    trt.nptype = lambda dtype: {_DataType.FLOAT: np.float32, _DataType.HALF: np.float16}[dtype]
    if major >= 10:  # IProgressMonitor arrived in TensorRT 10.0
        class IProgressMonitor:
            def __init__(self):
                pass

        trt.IProgressMonitor = IProgressMonitor
    return trt


# ---------------- the runtime side: engines that replay ONNX Runtime on fake device memory ----------------

class FakeEngine:
    """A deserialized fake engine: its ONNX file run by ONNX Runtime, its profile enforced."""

    def __init__(self, spec: dict, cuda, record):
        import onnxruntime as ort

        if cuda is None:
            raise RuntimeError("make_fake_tensorrt(cuda=make_fake_cuda()) is needed to run fake engines")
        self.cuda, self.record, self.profile = cuda, record, spec["profile"]
        self.session = ort.InferenceSession(spec["onnx"], providers=["CPUExecutionProvider"])
        ios = [(i, _IOMode.INPUT) for i in self.session.get_inputs()]
        ios += [(o, _IOMode.OUTPUT) for o in self.session.get_outputs()]
        self._io = {v.name: (mode, [d if isinstance(d, int) else -1 for d in v.shape]) for v, mode in ios}
        self._names = [v.name for v, _ in ios]
        self.num_io_tensors = len(self._names)

    def get_tensor_name(self, i):
        return self._names[i]

    def get_tensor_mode(self, name):
        return self._io[name][0]

    def get_tensor_dtype(self, name):
        return _DataType.FLOAT

    def get_tensor_shape(self, name):
        return tuple(self._io[name][1])

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self.engine.profile.get(name, [self.engine.get_tensor_shape(name)] * 3)
        if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            raise AssertionError(f"input shape {shape} outside the engine profile {lo}..{hi}")
        self.engine.record(("context.set_input_shape", name, shape))
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle):
        cuda = self.engine.cuda
        inp = self.engine.session.get_inputs()[0].name
        shape = self.shapes[inp]
        x = cuda.read(self.addresses[inp], shape, np.float32)
        names = [o.name for o in self.engine.session.get_outputs()]
        for name, value in zip(names, self.engine.session.run(names, {inp: x})):
            value = np.ascontiguousarray(value, np.float32)
            self.shapes[name] = value.shape
            cuda.write(self.addresses[name], value)
        return True

    def get_tensor_shape(self, name):
        return self.shapes[name]


class FakeAllocation:
    def __init__(self, address: int, nbytes: int):
        self.address, self.nbytes = address, nbytes

    def __int__(self):
        return self.address

    __index__ = __int__


def make_fake_cuda() -> types.SimpleNamespace:
    """A FAKE pycuda.driver on host memory. `cuda.calls` records the copies; `cuda.read(ptr, shape, dtype)`
    and `cuda.write(ptr, array)` are the fake engines' access to it."""
    memory: dict[int, np.ndarray] = {}  # base address -> bytes
    calls: list = []
    next_address = [0x10000]

    def locate(ptr: int, nbytes: int) -> np.ndarray:
        ptr = int(ptr)
        for base, buf in memory.items():
            if base <= ptr and ptr + nbytes <= base + buf.size:
                return buf[ptr - base:ptr - base + nbytes]
        raise AssertionError(f"device access of {nbytes} bytes at {ptr:#x} is outside every allocation")

    def mem_alloc(nbytes):
        address = next_address[0]
        next_address[0] += (int(nbytes) + 0xFFFF) // 0x10000 * 0x10000 + 0x10000  # a gap: no allocation abuts
        memory[address] = np.full(int(nbytes), 0xFF, np.uint8)  # NaN bytes until written, as real memory may be
        return FakeAllocation(address, int(nbytes))

    def memset_d8(dest, value, count):
        locate(dest, count)[:] = value

    def write(ptr, array):
        a = np.ascontiguousarray(array)
        locate(ptr, a.nbytes)[:] = a.view(np.uint8).ravel()

    def read(ptr, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return locate(ptr, n).copy().view(dtype).reshape(shape)

    def memcpy_htod_async(dest, src, stream=None):
        calls.append(("htod", int(dest), src.nbytes))
        write(dest, src)

    def memcpy_dtoh_async(dest, src, stream=None):
        calls.append(("dtoh", int(src), dest.nbytes))
        dest.view(np.uint8).reshape(-1)[:] = locate(src, dest.nbytes)

    def memcpy_dtod_async(dest, src, size, stream=None):
        d, s_, n = int(dest), int(src), int(size)
        if d < s_ + n and s_ < d + n:
            raise AssertionError(f"overlapping device-to-device copy ({s_:#x} -> {d:#x}, {n} bytes): "
                                 "undefined in CUDA")
        calls.append(("dtod", d, s_, n))
        locate(dest, n)[:] = locate(src, n).copy()

    class Stream:
        handle = 1

        def synchronize(self):
            pass

    class Event:
        def record(self, stream=None):
            return self

        def time_since(self, other):
            return 0.25

    return types.SimpleNamespace(
        mem_alloc=mem_alloc, memset_d8=memset_d8, memcpy_htod_async=memcpy_htod_async,
        memcpy_dtoh_async=memcpy_dtoh_async, memcpy_dtoh=memcpy_dtoh_async, memcpy_dtod_async=memcpy_dtod_async,
        pagelocked_empty=lambda shape, dtype: np.empty(shape, dtype), Stream=Stream, Event=Event,
        read=read, write=write, calls=calls, memory=memory)
