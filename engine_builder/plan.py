"""What to build: the decisions, kept apart from the TensorRT calls so they can be tested here.

    >>> g = GraphPrecision(has_qdq=True, has_int4=False, has_fp16=False)
    >>> FP32_GRAPH = GraphPrecision(has_qdq=False, has_int4=False, has_fp16=False)
    >>> plan_build("10.3.0", g, BuildOptions(precision="quantized"), "image", (-1, 3, 96, 96)).strongly_typed
    True
    >>> plan_build("8.6.2", g, BuildOptions(precision="quantized"), "image", (-1, 3, 96, 96)).flags
    ('INT8', 'FP16')

TensorRT 8.6 (JetPack 6.0) is the oldest supported: JetPack 5 (TensorRT 8.5) has Python 3.8, an ONNX parser
without LayerNormalization and a `tensorrt.nptype` that breaks on NumPy >= 1.24.
TensorRT 8.6: a Q/DQ graph is built with the INT8 builder flag (plus FP16 for the layers the plan left
unquantized) on an explicit-batch network.
TensorRT 10.x (JetPack 6.1+): a Q/DQ graph becomes a strongly typed network: the Q/DQ nodes and tensor
types fix every layer's precision, and precision builder flags are not allowed.
FP32 builds clear the TF32 flag, which TensorRT sets by default: TF32 rounds the inputs of every matrix
product to a 10-bit mantissa, far more than the FP32 tolerances of verification (1e-3) allow.
DLA (Orin AGX/NX only) runs FP16 or implicit INT8 (calibration ranges) with static shapes, never a Q/DQ
graph: with GPU fallback its quantized layers would silently run on the GPU, so a Q/DQ graph is refused and
the DLA gets the FP32 graphs built in FP16 (`engine_builder.build` does so for --dla).

    >>> plan_build("10.3.0", FP32_GRAPH, BuildOptions(precision="fp32"), "image", (-1, 3, 96, 96)).clear_flags
    ('TF32',)
    >>> plan_build("10.3.0", FP32_GRAPH, BuildOptions("fp16", dla_core=0), "image", (-1, 3, 96, 96)).flags
    ('FP16', 'GPU_FALLBACK')

The batch profile follows the bundle's input mode (`options_for_input`):
- resize (one input per frame): `BuildOptions.batch`, (1, 1, 4) by default; static at its opt batch on DLA.
- tile (a frame cut into overlapping tiles, edge_runtime.tiling): min 1 (per-tile early exit passes ever
  fewer tiles to the later stages), opt = max = the tile count of the largest frame the engines must take,
  `--frame-size` (1920x1080 by default: 405 tiles of 96x96 at 25 % overlap). A larger frame is refused by
  the runtime with a message naming the frame size the engines were built for.
- tile on the DLA: the DLA has no dynamic shapes (min = opt = max, at most 4096), so every stage is built
  for exactly the tile count of `--frame-size`, and the TensorRT backend pads a smaller batch (a frame
  with fewer tiles, or the tiles left after an early exit) to that size: the padding rows are computed
  and ignored. Correct, but compaction saves no DLA time: every stage runs all of the frame's tiles.

    >>> spec = InputSpec(96, 96, (0.5,) * 3, (0.25,) * 3, mode="tile")
    >>> opts, tiles = options_for_input(spec, BuildOptions())
    >>> opts.batch, tiles["frame"], tiles["tiles"]
    ((1, 405, 405), '1920x1080', 405)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from edge_runtime.bundle import InputSpec
from edge_runtime.errors import EdgeError

MIN_TRT = (8, 6)  # JetPack 6.0; see the module docstring for why not 8.5 (JetPack 5)
DEFAULT_FRAME_HW = (1080, 1920)  # tile bundles: engines take up to the tiles of a 1920x1080 frame
DLA_MAX_BATCH = 4096  # TensorRT "DLA Supported Layers and Restrictions": maximum batch size


DLA_QDQ_REFUSAL = ("--dla cannot take the quantized (Q/DQ) stages: the DLA runs INT8 only from calibration ranges, "
                   "so their quantized layers would silently run on the GPU; build the FP32 stages for the DLA (in "
                   "FP16: `edge-qwq build --dla N` does so) or the quantized stages without --dla")


class BuildError(EdgeError):
    """An engine cannot be built (unsupported TensorRT, graph or option); the message says why."""


@dataclass(frozen=True)
class GraphPrecision:
    has_qdq: bool  # QuantizeLinear/DequantizeLinear present
    has_int4: bool  # INT4 weights (blocked DequantizeLinear)
    has_fp16: bool  # FP16 tensors in the graph


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "quantized"  # "fp32" | "fp16" | "quantized" (the .q.onnx stages)
    workspace_mb: int = 512  # builder scratch memory; Orin Nano shares 8 GB with the CPU
    batch: tuple[int, int, int] = (1, 1, 4)  # optimization profile (min, opt, max) for the batch dim
    dla_core: int | None = None  # None: GPU only
    fp16_fallback: bool = True  # TRT 8.x: let unquantized layers run in FP16
    frame_size: tuple[int, int] | None = None  # tile bundles: the largest frame (height, width); None: 1080x1920


@dataclass(frozen=True)
class BuildPlan:
    trt_version: tuple[int, int]
    explicit_batch: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (8.x; deprecated in 10)
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x)
    flags: tuple[str, ...]  # trt.BuilderFlag member names
    workspace_bytes: int
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max)
    dla_core: int | None
    clear_flags: tuple[str, ...] = ()  # trt.BuilderFlag members TensorRT sets by default, to clear (TF32)

    def to_dict(self) -> dict:
        return {"trt_version": ".".join(map(str, self.trt_version)), "explicit_batch": self.explicit_batch,
                "strongly_typed": self.strongly_typed, "flags": list(self.flags), "clear_flags": list(self.clear_flags),
                "workspace_bytes": self.workspace_bytes, "dla_core": self.dla_core,
                "profile": {k: [list(s) for s in v] for k, v in self.profile.items()}}


def parse_version(version: str) -> tuple[int, int]:
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise BuildError(f"cannot read the TensorRT version {version!r}") from None


def graph_precision(model_or_path) -> GraphPrecision:
    """What precision the ONNX graph itself asks for (Q/DQ, INT4 weights, FP16 tensors)."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    g = model.graph
    int4 = {getattr(onnx.TensorProto, "INT4", -1), getattr(onnx.TensorProto, "UINT4", -1)}
    types = [i.data_type for i in g.initializer]
    types += [v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)]
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)
    return GraphPrecision(qdq, any(t in int4 for t in types), onnx.TensorProto.FLOAT16 in types)


def plan_build(trt_version: str, graph: GraphPrecision, options: BuildOptions, input_name: str,
               input_shape: tuple[int, ...]) -> BuildPlan:
    """The builder settings for one stage. input_shape: the graph's input, -1 (or 0) for dynamic dims."""
    v = parse_version(trt_version)
    _check_supported(v, graph, options)
    trt10 = v[0] >= 10
    on_dla = options.dla_core is not None
    # Strong typing needs the graph to carry the precision (Q/DQ); the DLA never gets a Q/DQ graph.
    strongly_typed = trt10 and options.precision == "quantized"
    flags: list[str] = []
    if not strongly_typed:
        if options.precision == "quantized":
            flags.append("INT8")
        if options.precision == "fp16" or (options.precision == "quantized" and options.fp16_fallback):
            flags.append("FP16")
    if on_dla:
        flags.append("GPU_FALLBACK")  # layers the DLA lacks run on the GPU, in FP16
    return BuildPlan(v, explicit_batch=not trt10, strongly_typed=strongly_typed, flags=tuple(flags),
                     workspace_bytes=int(options.workspace_mb) << 20,
                     profile=_profile(input_name, input_shape, options.batch, static=on_dla),
                     dla_core=options.dla_core, clear_flags=("TF32",) if options.precision == "fp32" else ())


def _check_supported(v: tuple[int, int], graph: GraphPrecision, options: BuildOptions) -> None:
    if v < MIN_TRT:
        raise BuildError(f"TensorRT {v[0]}.{v[1]} is too old: edge-qwq needs TensorRT 8.6 or newer (JetPack 6.0+)")
    if options.precision not in ("fp32", "fp16", "quantized"):
        raise BuildError(f"unknown precision {options.precision!r}; choose fp32, fp16 or quantized")
    if options.precision == "quantized" and not (graph.has_qdq or graph.has_fp16):  # a stage may be all FP16
        raise BuildError("precision 'quantized' needs a Q/DQ graph (stage{k}.q.onnx); run `edge-qwq quantize`")
    if options.precision != "quantized" and graph.has_qdq:
        raise BuildError(f"this stage graph is quantized (Q/DQ) but precision {options.precision!r} was asked")
    if graph.has_int4 and v[0] < 10:
        raise BuildError(f"INT4 weights need TensorRT 10 or newer (JetPack 6.1+); this device has "
                         f"{v[0]}.{v[1]}: re-quantize the bundle with INT8 only")
    if options.dla_core is not None:
        if graph.has_qdq:
            raise BuildError(DLA_QDQ_REFUSAL)
        if options.precision == "fp32":
            raise BuildError("the DLA runs FP16 or INT8 layers, not FP32: build the FP32 stages with precision fp16")
    lo, opt, hi = options.batch
    if not 1 <= lo <= opt <= hi:
        raise BuildError(f"batch profile must satisfy 1 <= min <= opt <= max, got {options.batch}")


def _profile(name: str, shape: tuple[int, ...], batch: tuple[int, int, int], static: bool) -> dict:
    """Optimization profile for the dynamic batch dim (dim 0); {} when the input shape is fully static.
    On the DLA shapes must be static: min = opt = max = the opt batch."""
    dims = list(shape)
    if all(d > 0 for d in dims):
        return {}
    if any(d <= 0 for d in dims[1:]):
        raise BuildError(f"input {name} has dynamic dims other than the batch: {dims}")
    lo, opt, hi = (batch[1],) * 3 if static else batch
    return {name: tuple((b, *dims[1:]) for b in (lo, opt, hi))}


# ---------------- the batch profile of a bundle's input mode ----------------

def frame_label(frame_hw: tuple[int, int]) -> str:
    return f"{int(frame_hw[1])}x{int(frame_hw[0])}"


def tile_batch(spec: InputSpec, frame_hw: tuple[int, int]) -> dict:
    """How a frame of `frame_hw` (height, width) is tiled for this bundle's input: tile count and grid."""
    from edge_runtime.tiling import TileGrid

    grid = TileGrid.for_frame(frame_hw, (spec.height, spec.width), spec.tile_overlap)
    return {"frame_size": [int(frame_hw[0]), int(frame_hw[1])], "frame": frame_label(frame_hw),
            "tile": [spec.height, spec.width], "overlap": spec.tile_overlap, "grid": [grid.rows, grid.cols],
            "tiles": len(grid)}


def options_for_input(spec: InputSpec, options: BuildOptions) -> tuple[BuildOptions, dict | None]:
    """The build options for a bundle's input mode, and (tile mode) what the profile was sized for, to be
    recorded in the engine entry's plan under "tiles". See the module docstring."""
    if spec.mode != "tile":
        if options.frame_size is not None:
            raise BuildError(f"--frame-size is for tile bundles; this bundle resizes each frame to one "
                             f"{spec.width}x{spec.height} input (input.mode {spec.mode!r})")
        return options, None
    # given; else the larger of the frames it was fitted on and 1920x1080 (a profile too small fails at run time)
    frame_hw = tuple(options.frame_size or max(spec.frame_size or DEFAULT_FRAME_HW, DEFAULT_FRAME_HW,
                                                key=lambda hw: hw[0] * hw[1]))
    tiles = tile_batch(spec, frame_hw)
    n = tiles["tiles"]
    on_dla = options.dla_core is not None
    if on_dla and n > DLA_MAX_BATCH:
        raise BuildError(f"the DLA takes at most {DLA_MAX_BATCH} tiles per batch, but a {tiles['frame']} frame has "
                         f"{n} tiles of {spec.width}x{spec.height}: give a smaller --frame-size or build without --dla")
    tiles.update(batch=[1, n, n] if not on_dla else [n, n, n], static_batch=on_dla)
    return replace(options, batch=(1, n, n), frame_size=frame_hw), tiles
