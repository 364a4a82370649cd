"""Build, verify and activate one TensorRT engine per stage, cached in the bundle per device fingerprint.

    >>> print(build_engines_or_explain("bundle/"))   # doctest: +SKIP
    TensorRT is not installed here, so the engines will be built on the device: ...

On the device: the fingerprint picks engines/<id>/; existing verified engines for it are reused; otherwise
each stage is built (reusing the timing cache kept there), every engine is compared with ONNX Runtime on
calibration inputs, and only if all stages pass is the entry marked active in the manifest.

The entry's `precision` names the stage graphs the engines were built from ("fp32": stage{k}.onnx,
"quantized": stage{k}.q.onnx), which is what the runtime's --precision asks for; the builder precision is
in `options` and `plan`. --dla builds the FP32 graphs in FP16 (the DLA cannot run Q/DQ graphs): with
precision "auto" that is what it takes, "quantized" is refused in one line. Without options (the service's
first start) a device whose engines were built for the DLA keeps its DLA core.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from edge_runtime.bundle import EngineEntry, EngineStage
from edge_runtime.errors import EdgeError
from engine_builder.cache import Decision, decide, engine_dir, engine_file, timing_cache_file
from engine_builder.plan import BuildError, BuildOptions, graph_precision, options_for_input, plan_build
from engine_builder.trt_build import build_serialized
from engine_builder.verify import (
    DEFAULT_TOLERANCES,
    StageRunner,
    calibration_inputs,
    onnxruntime_runner,
    verify_stages,
)

ON_DEVICE_HINT = ("run `edge-qwq build --target orin --bundle BUNDLE` on the Orin, or start the service there "
                  "with `--backend tensorrt` and it builds them at its first start")


def build_engines_or_explain(bundle_path: str | os.PathLike, **opts) -> str:
    """Build+verify+activate engines where TensorRT is installed; elsewhere one sentence saying they will
    be built on the device. Never raises for a missing TensorRT; BuildError (an EdgeError) when a build or
    verification fails. opts: see `build_engines`."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return f"TensorRT is not installed here, so the engines will be built on the device: {ON_DEVICE_HINT}."
    return build_engines(bundle_path, **opts)["summary"]


def build_engines(bundle_path: str | os.PathLike, precision: str = "auto", options: BuildOptions | None = None,
                  calib_images: str | os.PathLike | None = None, tolerances: dict | None = None,
                  force: bool = False, progress: Callable[[str], None] | None = None, trt=None,
                  fingerprint=None, engine_runner: Callable[[list[bytes], dict], StageRunner] | None = None) -> dict:
    """Returns {"decision", "summary", "fingerprint", "entry"}. trt, fingerprint and engine_runner are for
    tests (a fake TensorRT module, a made-up device, a runner of crafted outputs)."""
    from edge_runtime.bundle import Bundle
    from edge_runtime.fingerprint import detect
    from engine_builder.estimate import stage_files

    if trt is None:
        import tensorrt as trt
    bundle = Bundle.open(bundle_path)
    fp = fingerprint or detect()
    engines = bundle.manifest.engines
    base = options or _recorded_dla_options(engines.get(fp.id)) or BuildOptions()
    on_dla = base.dla_core is not None
    if on_dla and precision == "auto":
        precision = "fp32"  # the DLA cannot run Q/DQ graphs: the FP32 graphs, built in FP16
    used, files = stage_files(bundle, precision)
    if used == "quantized":
        check_trt_version(bundle, str(trt.__version__))
    build_precision = "fp16" if on_dla and used == "fp32" else used
    opts, tiles = options_for_input(bundle.manifest.input, replace(base, precision=build_precision))
    decision = decide(engines, fp.id, used, files, bundle.manifest.files, trt_available=True, force=force)
    if decision.action == "use" and options is not None and options.frame_size is not None:
        decision = _frame_size_decision(decision, engines.get(fp.id), tiles)
    if decision.action == "use" and options is not None:
        decision = _device_decision(decision, engines.get(fp.id), options.dla_core)
    if decision.action != "build":
        return _result(decision, fp, engines.get(fp.id), decision.reason)
    try:
        entry = _build_all(trt, bundle, fp, files, used, opts, progress)
        if tiles is not None:
            entry.plan["tiles"] = tiles  # the frame size the tile batch profile was sized for
        tol = dict(tolerances or DEFAULT_TOLERANCES[build_precision])
        runner = (engine_runner or polygraphy_runner)(
            [bundle.path(s.file).read_bytes() for s in entry.stages], entry.plan)
        _verify(bundle, entry, files, runner, tol, calib_images)
    except EdgeError:
        raise
    except Exception as e:  # TensorRT, Polygraphy or CUDA: the build failed, the caller may fall back
        raise BuildError(f"the TensorRT build failed ({type(e).__name__}: {e}); the runtime keeps using "
                         "ONNX Runtime") from e
    _record(bundle, fp.id, entry)
    if not entry.active:
        raise BuildError(f"{entry.failure}; the engines for {fp.id} were not activated "
                         "and the runtime keeps using ONNX Runtime")
    what = used if build_precision == used else f"{build_precision} from the {used} stages"
    if on_dla:
        what += f", on DLA core {opts.dla_core}: run them with --precision {used}"
    summary = (f"built and verified {len(files)} TensorRT engines ({what}) for {fp.describe()} "
               f"in {engine_dir(fp.id)}/")
    if tiles is not None:
        lo, _, hi = tiles["batch"]
        summary += (f"; they take {tiles['frame']} frames as {tiles['tiles']} tiles, batch "
                    + (f"fixed at {hi} (DLA: smaller batches are padded)" if tiles["static_batch"] else f"{lo}..{hi}"))
    return _result(decision, fp, entry, summary)


def _recorded_dla_options(entry: EngineEntry | None) -> BuildOptions | None:
    """The DLA core (and workspace) this device's engines were built with, when they were built for a DLA."""
    recorded = (entry.options if entry is not None else None) or {}
    if recorded.get("dla_core") is None:
        return None
    return BuildOptions(dla_core=int(recorded["dla_core"]), workspace_mb=int(recorded.get("workspace_mb", 512)))


def _device_decision(decision: Decision, entry: EngineEntry | None, dla_core: int | None) -> Decision:
    """Engines that match but run on another device than the one asked for (GPU or a DLA core) are rebuilt."""
    built = ((entry.options if entry else None) or {}).get("dla_core")

    def where(core):
        return "the GPU" if core is None else f"DLA core {core}"

    if built == dla_core:
        return decision
    return Decision("build", f"the engines run on {where(built)}, {where(dla_core)} was asked")


def installed_trt_version() -> str | None:
    """The version of the TensorRT installed here (the Python bindings), None without it."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


def _frame_size_decision(decision: Decision, entry: EngineEntry | None, tiles: dict | None) -> Decision:
    """Engines that match but were sized for another frame than the one asked for (--frame-size) are rebuilt."""
    built = ((entry.plan if entry else {}).get("tiles") or {}).get("frame")
    if tiles is None or built == tiles["frame"]:
        return decision
    return Decision("build", f"the engines take the tiles of {built or 'an unknown'} frame, "
                             f"{tiles['frame']} was asked ({tiles['tiles']} tiles)")


def _result(decision: Decision, fp, entry: EngineEntry | None, summary: str) -> dict:
    return {"decision": asdict(decision), "summary": summary, "fingerprint": fp.to_dict(),
            "entry": entry.to_dict() if entry is not None else None}


def check_trt_version(bundle, trt_version: str) -> None:
    """BuildError when the quantized graphs need a newer TensorRT than this device has (INT4 needs 10)."""
    q = bundle.manifest.quantization
    if q is None or not q.has_int4:
        return
    major = int(str(trt_version).split(".")[0])
    if major < 10:
        raise BuildError(f"the bundle's quantized stages hold INT4 weights (made for TensorRT {q.trt_version}), "
                         f"which TensorRT {trt_version} cannot build; re-quantize with --trt-version "
                         f"{trt_version} or use --precision fp32")


def _build_all(trt, bundle, fp, files: list[str], graphs: str, opts: BuildOptions, progress) -> EngineEntry:
    """Build every stage into engines/<id>/, reusing and updating the timing cache kept there. graphs: which
    stage graphs ("fp32" or "quantized"), the entry's precision."""
    folder = bundle.path(engine_dir(fp.id))
    folder.mkdir(parents=True, exist_ok=True)
    cache_path = bundle.path(timing_cache_file(fp.id))
    cache = cache_path.read_bytes() if cache_path.is_file() else None
    stages, plan = [], None
    for k, rel in enumerate(files):
        name, shape = _input_of(bundle.path(rel))
        plan = plan_build(str(trt.__version__), graph_precision(bundle.path(rel)), opts, name, shape)
        engine, cache = build_serialized(trt, bundle.path(rel), plan, cache, progress)
        _atomic_write(bundle.path(engine_file(fp.id, k)), engine)
        stages.append(EngineStage(engine_file(fp.id, k), rel, bundle.manifest.files.get(rel)))
    _atomic_write(cache_path, cache)
    return EngineEntry(graphs, stages, active=False, device=fp.to_dict(), plan=plan.to_dict() if plan else {},
                       options=asdict(opts), timing_cache=timing_cache_file(fp.id))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _input_of(path: Path) -> tuple[str, tuple[int, ...]]:
    """The stage graph's input name and shape, -1 for symbolic dims (the batch)."""
    import onnx

    inp = onnx.load(str(path), load_external_data=False).graph.input[0]
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)
    return inp.name, dims


def _verify(bundle, entry: EngineEntry, files: list[str], engine: StageRunner, tol: dict, calib_images) -> None:
    x, source = calibration_inputs(bundle, calib_images)  # (N, 3, H, W): the stored calibration inputs
    reference = onnxruntime_runner([bundle.path(f) for f in files])
    verdicts = verify_stages(reference, engine, len(files), x, tol)
    failed = [v for v in verdicts if not v.passed]
    entry.tolerances = tol
    entry.verification = {"inputs": source, "stages": [v.to_dict() for v in verdicts]}
    if failed:
        entry.verification["failure"] = failed[0].message()
    entry.active = not failed


def _record(bundle, fp_id: str, entry: EngineEntry) -> None:
    """Write the entry and the sha256 of its files into the manifest (atomically, via Bundle.save)."""
    engines = bundle.manifest.engines
    old = engines.get(fp_id)
    for s in old.stages if old else []:
        bundle.remove_file(s.file)
    for s in entry.stages:
        bundle.add_file(s.file)
    bundle.add_file(entry.timing_cache)
    engines[fp_id] = entry
    bundle.save()


def polygraphy_runner(engines: list[bytes], plan: dict) -> StageRunner:
    """Engine runner for verification: Polygraphy's TrtRunner per stage, in chunks of the profile's max batch;
    a static profile (DLA: min = max) gets each chunk padded to its batch, and the padding rows dropped."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    max_batch, pad_to = profile_batch(plan)

    def runtime():
        import tensorrt as trt

        rt = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if plan.get("dla_core") is not None:
            rt.DLA_core = int(plan["dla_core"])  # else TensorRT runs a DLA engine on core 0
        return rt

    def run(k: int, x: np.ndarray) -> dict:
        outs: dict[str, list] = {}
        with TrtRunner(EngineFromBytes(engines[k], runtime=runtime)) as runner:
            name = next(iter(runner.get_input_metadata().keys()))
            for i in range(0, len(x), max_batch):
                chunk = padded(x[i:i + max_batch], pad_to)
                n = min(max_batch, len(x) - i)
                for out, val in runner.infer({name: chunk}).items():
                    outs.setdefault(out, []).append(np.array(val)[:n])
        return {k_: np.concatenate(v) for k_, v in outs.items()}

    return run


def profile_batch(plan: dict) -> tuple[int, int | None]:
    """(max batch, the batch to pad to when the profile is static (min = max > 1), else None) of a plan dict."""
    profile = next(iter(plan.get("profile", {}).values()), None)
    if not profile:
        return 1, None
    lo, hi = int(profile[0][0]), int(profile[2][0])
    return hi, (hi if lo == hi and hi > 1 else None)


def padded(x: np.ndarray, pad_to: int | None) -> np.ndarray:
    """x (n, ...) as a contiguous batch of pad_to rows (zeros after row n); x itself when no padding is needed."""
    x = np.ascontiguousarray(x)
    if pad_to is None or len(x) >= pad_to:
        return x
    out = np.zeros((pad_to,) + x.shape[1:], x.dtype)
    out[:len(x)] = x
    return out
