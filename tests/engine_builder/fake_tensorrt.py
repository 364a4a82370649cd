"""A FAKE of the `tensorrt` module that records the calls our builder makes.

It checks OUR decisions (which flags, which network type, which profile, the timing cache we pass back),
never TensorRT's behaviour: it builds nothing, and its "engine" is a byte string naming the file. The real
calls are exercised on a device by the tests marked `tensorrt`.
"""
from __future__ import annotations

import types
from enum import IntEnum


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


def make_fake_tensorrt(version: str = "10.3.0", dla_cores: int = 2, parse_errors: list | None = None,
                       build_fails: bool = False) -> types.ModuleType:
    """A fake `tensorrt` of the given version; `trt.calls` lists (what, args) in order."""
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
        def set_shape(self, name, lo, opt, hi):
            record(("profile.set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class Config:
        def __init__(self):
            self._cache = None
            self.progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            record(("config.set_memory_pool_limit", pool.name, size))

        def set_flag(self, flag):
            record(("config.set_flag", flag.name))

        def add_optimization_profile(self, profile):
            record(("config.add_optimization_profile",))

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
        pass

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
            return None if build_fails else b"fake-engine"

    class OnnxParser:
        def __init__(self, network, logger):
            errors = parse_errors or []
            self.num_errors = len(errors)
            self._errors = errors

        def parse_from_file(self, path):
            record(("parse_from_file", str(path)))
            return not self._errors

        def get_error(self, i):
            return self._errors[i]

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.NetworkDefinitionCreationFlag, trt.BuilderFlag = _NetworkFlag, _BuilderFlag
    trt.MemoryPoolType, trt.DeviceType = _Pool, _Device
    if major >= 10:  # IProgressMonitor arrived in TensorRT 10.0
        class IProgressMonitor:
            def __init__(self):
                pass

        trt.IProgressMonitor = IProgressMonitor
    return trt
