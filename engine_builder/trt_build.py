"""The TensorRT calls that turn one ONNX stage into a serialized engine, following a `BuildPlan`.

Written against the TensorRT Python API of 8.6 and 10.x (the bindings in NVIDIA/TensorRT python/src at
v8.6.1 and v10.3.0: Builder, OnnxParser, IBuilderConfig, IOptimizationProfile, ITimingCache,
IProgressMonitor). Every call used here exists in both except where a branch says otherwise. We call
TensorRT directly rather than through Polygraphy's CreateConfig/EngineFromNetwork so that the FAKE in
tests/engine_builder/fake_tensorrt.py (transcribed from those bindings) can check each setting we make;
Polygraphy is used for the on-device comparison tests.

What TensorRT answers with a False or a None (not an exception) is checked here: a network it cannot create,
a file it cannot parse, a timing cache it refuses (`set_timing_cache` returns False for a cache made on
another device: the build then starts a new cache, and says so), a build that fails.

`trt` is passed in (the real module, or the fake in tests); nothing here imports tensorrt at module load.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine_builder.plan import BuildError, BuildPlan

Progress = Callable[[str], None]


def build_serialized(trt, onnx_path: str | Path, plan: BuildPlan, timing_cache: bytes | None = None,
                     progress: Progress | None = None, logger=None) -> tuple[bytes, bytes]:
    """Build one engine. Returns (serialized engine, serialized timing cache to keep for next time)."""
    logger = logger or trt.Logger(trt.Logger.WARNING)
    emit = progress or _stderr_line
    label = Path(onnx_path).name
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, plan))
    if network is None:
        raise BuildError(f"TensorRT could not create a network for {label} (its log above says why)")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise BuildError(parser_errors(parser, onnx_path))
    config = make_config(trt, builder, plan, timing_cache, note=_note(progress, label))
    with progress_line(trt, config, label, emit):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT could not build an engine for {label} (its log above says why)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def network_flags(trt, plan: BuildPlan) -> int:
    flags = 0
    if plan.explicit_batch:  # required on 8.x for ONNX; deprecated and implied on 10.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:  # 10.x: the Q/DQ nodes and tensor types fix each layer's precision
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def make_config(trt, builder, plan: BuildPlan, timing_cache: bytes | None, note: Progress | None = None):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.clear_flags:  # TF32, on by default, off for FP32 builds
        config.clear_flag(getattr(trt.BuilderFlag, name))
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name, (lo, opt, hi) in plan.profile.items():
        profile = builder.create_optimization_profile()
        profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    if plan.dla_core is not None:
        if plan.dla_core >= builder.num_DLA_cores:
            raise BuildError(f"DLA core {plan.dla_core} was asked for, but this device has "
                             f"{builder.num_DLA_cores} DLA cores (Orin Nano has none)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    set_timing_cache(config, timing_cache, note or (lambda text: None))
    return config


def set_timing_cache(config, timing_cache: bytes | None, note: Progress) -> None:
    """Attach the kept timing cache; one TensorRT refuses (made on another device, or unreadable: it returns
    False or None) is replaced by a new, empty one, and `note` says so."""
    cache = config.create_timing_cache(timing_cache or b"")
    if cache is not None and config.set_timing_cache(cache, False):  # ignore_mismatch=False: strict
        return
    if timing_cache:
        note("TensorRT refused the timing cache kept in the bundle (made on another device or TensorRT); "
             "starting a new one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise BuildError("TensorRT refused a new, empty timing cache (its log above says why)")


def parser_errors(parser, onnx_path) -> str:
    """All parser errors in one message, each with the ONNX node's name and op where TensorRT says."""
    names = _node_names(onnx_path)
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else None  # 10.x
        if not node:
            idx = err.node()  # 8.x: index of the node in the ONNX graph, -1 if none
            node = names[idx] if 0 <= idx < len(names) else None
        op = err.node_operator() if hasattr(err, "node_operator") else None
        where = f"node {node}" + (f" ({op})" if op else "") if node else "the graph"
        lines.append(f"{where}: {err.desc()}")
    return f"TensorRT cannot parse {Path(onnx_path).name}: " + "; ".join(lines or ["unknown parser error"])


def _node_names(onnx_path) -> list[str]:
    try:
        import onnx

        graph = onnx.load(str(onnx_path), load_external_data=False).graph
        return [n.name or f"{n.op_type}#{i}" for i, n in enumerate(graph.node)]
    except Exception:  # noqa: BLE001 - the file itself is what failed to parse
        return []


# ---------------- the progress line ----------------

def _note(progress: Progress | None, label: str) -> Progress:
    """A whole line about one stage's build (not the overwritten progress line)."""
    def note(text: str) -> None:
        if progress is not None:
            progress(f"{label}: {text}\n")
        else:
            sys.stderr.write(f"\n{label}: {text}\n")
    return note


def _stderr_line(text: str) -> None:
    sys.stderr.write(f"\r{text[:110]:<110}")
    sys.stderr.flush()


class progress_line:
    """While TensorRT builds: its own phases (IProgressMonitor, 10.x) or an elapsed-time line (8.x)."""

    def __init__(self, trt, config, label: str, emit: Progress):
        self.trt, self.config, self.label, self.emit = trt, config, label, emit
        self._stop = threading.Event()
        self._thread = None
        self._t0 = time.monotonic()

    def __enter__(self):
        if hasattr(self.trt, "IProgressMonitor"):
            self.config.progress_monitor = make_monitor(self.trt, self.label, self.emit)
        else:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.emit(f"building {self.label}: {time.monotonic() - self._t0:.0f} s")

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.emit(f"built {self.label} in {time.monotonic() - self._t0:.1f} s\n")
        return False


def make_monitor(trt, label: str, emit: Progress):
    """An IProgressMonitor that prints 'building stage0.q.onnx: <phase> 3/10'."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            emit(f"building {label}: {phase_name}")

        def step_complete(self, phase_name, step):
            emit(f"building {label}: {phase_name} {step + 1}/{self.steps.get(phase_name, '?')}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Monitor()
