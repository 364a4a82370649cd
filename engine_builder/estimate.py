"""Latency estimate without a device: a roofline per layer, from the ONNX stage graphs.

Each kernel costs max(FLOPs / achievable compute, bytes / achievable bandwidth) + a launch cost, at the
layer's own precision, read from the graph: a Conv/MatMul/Gemm whose activation and weight both come
through DequantizeLinear of INT8 runs on INT8 tensor cores; INT4 weights (blocked DequantizeLinear) are
weight-only, so the layer computes in FP16 but reads half a byte per weight; FP16 tensors run in FP16;
everything else in FP32. FLOPs are multiply-adds x 2, batch 1.

    >>> est = estimate_bundle("bundle/", "orin-nano", budget_ms=15)   # doctest: +SKIP
    >>> est["full_ms"], est["early_exit_ms"], [s["ms"] for s in est["stages"]]   # doctest: +SKIP

Per frame (`estimate_frame`), for tile mode: a frame of H x W is cut into the bundle's tiles
(edge_runtime.tiling.TileGrid: 405 tiles of 96 px at 25 % overlap for 1920x1080); all tiles enter stage 0 as
one batch and exit_rates[k] of all tiles leave at early exit k, so stage k runs on
tiles x (1 - exit_rates[0] - ... - exit_rates[k-1]) tiles (the expected count). A stage on a batch of n
tiles is the same roofline at batch n: FLOPs and activation bytes scale with n, weights are read once per
batch; plus the per-kernel launch cost and the per-stage overhead (`stage_overhead_ms`, logits to the host
and a stream sync) once per stage run. A stage whose expected tile count is above zero is counted in full,
even when it is under one tile. The frame also pays for cutting and normalising its tiles, memory-bound:
the frame read once (uint8 BGR) and the float32 tiles written once (`cut_ms`), plus the host-to-device copy
of that batch, read and written again in the DRAM the Orin's CPU and GPU share (`upload_ms`), both at the
target's bandwidth x `bandwidth_efficiency`. The mean frame uses the exit rates; the worst frame runs every
tile to full depth. Not counted: the compaction copies (the survivors' hidden state, a few hundred KB),
the frame decision on the host, and camera capture; numpy's normalisation makes about three passes over
the float32 tiles on the CPU, so a CPU cut can take 2-3x `cut_ms`: measure with `edge-qwq bench`.

    >>> f = estimate_frame("bundle/", "orin-nano", frame_size=(1080, 1920))      # doctest: +SKIP
    >>> f["tiles"], f["mean_ms"], f["worst_ms"], f["fps_mean"], f["within_budget"]   # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from engine_builder.targets import Target, get_target

COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Kernels TensorRT does not fuse into a neighbouring GEMM/conv; element-wise ops are assumed fused.
KERNEL_OPS = ("Softmax", "LayerNormalization", "GroupNormalization", "ReduceMean", "ReduceSum", "ReduceMax",
              "TopK", "Resize", "MaxPool", "AveragePool", "GlobalAveragePool")
WEIGHT_BYTES = {"int4": 0.5, "int8": 1.0, "fp16": 2.0, "fp32": 4.0}


@dataclass(frozen=True)
class Assumptions:
    compute_efficiency: float = 0.5  # fraction of peak compute small GEMMs reach (batch 1)
    bandwidth_efficiency: float = 0.7  # fraction of peak DRAM bandwidth reached
    launch_us: float = 5.0  # per kernel: launch + scheduling, microseconds
    stage_overhead_ms: float = 0.05  # per stage: logits copy to host + stream sync
    exit_rates: tuple[float, ...] = ()  # fraction of all frames leaving at each early exit
    exit_rates_source: str = "assumed"
    notes: tuple[str, ...] = field(default=(
        "batch 1; FLOPs = multiply-adds x 2 of Conv/MatMul/Gemm",
        ("element-wise ops fused into their neighbours (TensorRT layer fusion); one kernel per "
         "Conv/MatMul/Gemm/Softmax/normalization/reduction"),
        "GPU only, dense (no structured sparsity), module at maximum power mode; DLA not used",
        "preprocessing and camera capture not included",
    ))


FRAME_BYTES_PER_PIXEL = 3  # a camera frame as the runtime gets it: BGR uint8
TILE_BYTES_PER_VALUE = 4  # the stage-0 batch: float32


@dataclass
class Layer:
    name: str
    op: str
    precision: str  # "int8" | "int4" | "fp16" | "fp32"
    flops: int  # at batch 1
    bytes: float  # weights + activations read + written, at batch 1
    weight_bytes: float = 0.0  # the part of `bytes` that is weights (and biases): read once per batch

    def ms(self, target: Target, a: Assumptions, batch: float = 1) -> float:
        """Roofline time of this kernel on `batch` inputs: FLOPs and activation bytes scale with the batch,
        weights are read once."""
        flops = self.flops * batch
        nbytes = self.weight_bytes + (self.bytes - self.weight_bytes) * batch
        compute_s = flops / (target.peak_flops(self.precision) * a.compute_efficiency)
        memory_s = nbytes / (target.bandwidth_gbs * 1e9 * a.bandwidth_efficiency)
        return max(compute_s, memory_s) * 1e3 + a.launch_us * 1e-3


# ---------------- the graph: layers, their precision and bytes ----------------

def graph_layers(model_or_path) -> list[Layer]:
    """The kernels of one stage graph with FLOPs, bytes and precision (batch 1)."""
    from edge_runtime.onnx_cost import load_inferred, node_costs, tensor_shapes

    model = load_inferred(model_or_path)
    g = _GraphInfo(model, tensor_shapes(model))
    costs = node_costs(model)
    layers = []
    for node, cost in zip(model.graph.node, costs):
        if node.op_type in COMPUTE_OPS:
            layers.append(g.compute_layer(node, cost.flops))
        elif node.op_type in KERNEL_OPS:
            layers.append(g.kernel_layer(node))
    return layers


class _GraphInfo:
    """Producers, consumers, element types and initializers of a shape-inferred model."""

    def __init__(self, model, shapes: dict[str, list[int]]):
        from onnx import TensorProto

        self.tp = TensorProto
        self.shapes = shapes
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.types = {vi.name: vi.type.tensor_type.elem_type for vi in
                      list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
        self.types.update({name: init.data_type for name, init in self.inits.items()})

    def elems(self, name: str) -> int:
        return int(np.prod(self.shapes.get(name, [0])))

    def dq_source(self, name: str):
        """The quantized tensor behind `name` if it is a DequantizeLinear output, else None."""
        node = self.producer.get(name)
        return node.input[0] if node is not None and node.op_type == "DequantizeLinear" else None

    def kind(self, name: str) -> str:
        """Storage precision of a tensor as the kernel reads it."""
        src = self.dq_source(name)
        t = self.types.get(src if src is not None else name)
        if t in (self.tp.INT8, self.tp.UINT8):
            return "int8"
        if t in (getattr(self.tp, "INT4", -1), getattr(self.tp, "UINT4", -1)):
            return "int4"
        if t in (self.tp.FLOAT16, self.tp.BFLOAT16):
            return "fp16"
        return "fp32"

    def is_weight(self, name: str) -> bool:
        src = self.dq_source(name)
        return name in self.inits or (src is not None and src in self.inits)

    def out_bytes(self, name: str) -> float:
        """Output written at its own type, or INT8 when only QuantizeLinear reads it (fused)."""
        users = self.consumers.get(name, [])
        if users and all(u.op_type == "QuantizeLinear" for u in users):
            return self.elems(name) * 1.0
        return self.elems(name) * WEIGHT_BYTES[self.kind(name)]

    def compute_layer(self, node, flops: int) -> Layer:
        ins = [i for i in node.input[:2] if i]
        kinds = [self.kind(i) for i in ins]
        if "int4" in kinds:
            precision = "int4"  # weight-only: FP16 math, 0.5-byte weights
        elif kinds and all(k == "int8" for k in kinds):
            precision = "int8"
        elif "fp16" in kinds:
            precision = "fp16"
        else:
            precision = "fp32"
        nbytes = sum(self.elems(i) * WEIGHT_BYTES[k] for i, k in zip(ins, kinds))
        weights = sum(self.elems(i) * WEIGHT_BYTES[k] for i, k in zip(ins, kinds) if self.is_weight(i))
        if len(node.input) > 2 and node.input[2]:  # bias, read once
            nbytes += self.elems(node.input[2]) * 4.0
            weights += self.elems(node.input[2]) * 4.0 if self.is_weight(node.input[2]) else 0.0
        nbytes += self.out_bytes(node.output[0])
        return Layer(node.name or node.op_type, node.op_type, precision, int(flops), float(nbytes), float(weights))

    def kernel_layer(self, node) -> Layer:
        x = node.input[0]
        nbytes = self.elems(x) * WEIGHT_BYTES[self.kind(x)] + self.out_bytes(node.output[0])
        prec = "fp16" if self.kind(x) == "fp16" else "fp32"
        return Layer(node.name or node.op_type, node.op_type, prec, 0, float(nbytes))


# ---------------- per stage, per bundle ----------------

def stage_files(bundle, precision: str = "auto") -> tuple[str, list[str]]:
    """(precision used, stage file per stage): the quantized stages when all exist and precision allows."""
    has_q = all(s.quantized for s in bundle.stages)
    use_q = precision == "quantized" or (precision == "auto" and has_q)
    if use_q and not has_q:
        from edge_runtime.errors import BundleError

        raise BundleError(f"bundle {bundle.root} has no quantized stages; run `edge-qwq quantize` first")
    return ("quantized" if use_q else "fp32"), [s.quantized if use_q else s.file for s in bundle.stages]


def exit_rates_of(bundle, n_early: int, unit: str = "frames") -> tuple[tuple[float, ...], str]:
    """Measured exit rates from the manifest (exit_policy.exit_fraction, written by calib) if present;
    else the assumption that half the frames (or tiles) still running leave at each early exit: far fewer
    than on a textured surface, where most tiles are plainly ok (the demo student: 98 % at the first exit)."""
    frames = bundle.manifest.frames
    if unit == "tiles" and frames is not None:  # measured on whole frames by `frames fit`: the tiles' own rates
        for p in ("quantized", "fp32"):
            tiles = (frames.measured.get(p) or {}).get("tile_exit_rates")
            if tiles and len(tiles) > n_early:
                return tuple(float(r) for r in tiles[:n_early]), f"measured on {p} tiles of the fitting frames"
    measured = bundle.exit_policy.exit_fraction
    if measured and len(measured) >= n_early:
        where = " on single inputs, i.e. per tile" if unit == "tiles" else ""
        return tuple(float(r) for r in measured[:n_early]), f"measured (manifest exit_policy.exit_fraction{where})"
    rates, left = [], 1.0
    for _ in range(n_early):
        rates.append(left * 0.5)
        left *= 0.5
    return tuple(rates), f"assumed: half of the {unit} still running leave at each early exit"


def check_exit_rates(rates, n_early: int) -> tuple[float, ...]:
    """Exit rates as given (`--exit-rates`): one fraction of all inputs per early exit, summing to at most 1."""
    from edge_runtime.errors import EdgeError

    rates = tuple(float(r) for r in rates)
    if len(rates) != n_early:
        raise EdgeError(f"give {n_early} exit rate(s), one per early exit (fraction of all inputs leaving there), "
                        f"not {len(rates)}")
    if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
        raise EdgeError(f"exit rates {list(rates)} must each lie in [0, 1] and sum to at most 1")
    return rates


def estimate_stages(layers_per_stage: list[list[Layer]], target: Target, a: Assumptions) -> list[dict]:
    stages = []
    for k, layers in enumerate(layers_per_stage):
        ms = sum(layer.ms(target, a) for layer in layers) + a.stage_overhead_ms
        mix: dict[str, int] = {}
        for layer in layers:
            mix[layer.precision] = mix.get(layer.precision, 0) + layer.flops
        stages.append({"index": k, "flops": int(sum(x.flops for x in layers)),
                       "bytes": round(sum(x.bytes for x in layers)), "kernels": len(layers),
                       "flops_by_precision": mix, "ms": round(ms, 4)})
    return stages


def mean_latency(stage_ms: list[float], exit_rates: tuple[float, ...]) -> float:
    """Expected latency when exit_rates[k] of all frames stop after stage k; the rest run every stage."""
    cumulative = np.cumsum(stage_ms)
    rest = 1.0 - sum(exit_rates)
    return float(sum(r * cumulative[k] for k, r in enumerate(exit_rates)) + rest * cumulative[-1])


def estimate_bundle(bundle_path: str | os.PathLike, target: str, budget_ms: float = 15.0,
                    precision: str = "auto", assumptions: Assumptions | None = None) -> dict:
    """The latency estimate of a bundle on one target (see module doc). JSON-ready dict:
    {"target", "budget_ms", "precision", "stages": [{"flops", "bytes", "ms", ...}], "full_ms",
     "early_exit_ms", "within_budget", "assumptions"}."""
    from edge_runtime.bundle import Bundle

    bundle = Bundle.open(bundle_path)
    t = get_target(target)
    used, files = stage_files(bundle, precision)
    a = assumptions or Assumptions()
    if not a.exit_rates:
        rates, source = exit_rates_of(bundle, len(files) - 1)
        a = Assumptions(**{**asdict(a), "exit_rates": rates, "exit_rates_source": source})
    stages = estimate_stages([graph_layers(bundle.path(f)) for f in files], t, a)
    for s, f in zip(stages, files):
        s["file"] = f
    stage_ms = [s["ms"] for s in stages]
    full = float(sum(stage_ms))
    early = mean_latency(stage_ms, a.exit_rates)
    est = {"target": t.name, "budget_ms": float(budget_ms), "precision": used, "stages": stages,
           "full_ms": round(full, 4), "early_exit_ms": round(early, 4), "within_budget": full <= budget_ms,
           "assumptions": _assumptions_dict(t, a)}
    pruning = bundle.manifest.student.pruning if bundle.manifest.student else None
    if pruning is not None:
        est["pruning"] = pruning.summary()
        est["pruning_note"] = pruning.describe()
    return est


def stage_ms_at(layers: list[Layer], target: Target, a: Assumptions, batch: float) -> float:
    """One stage run on `batch` inputs (roofline at that batch, + the per-stage overhead); 0 when none enter."""
    if batch <= 0:
        return 0.0
    return sum(layer.ms(target, a, batch) for layer in layers) + a.stage_overhead_ms


def frame_cost(layers_per_stage: list[list[Layer]], target: Target, a: Assumptions, frame_hw: tuple[int, int],
               tile_hw: tuple[int, int], tiles: int, exit_rates: tuple[float, ...]) -> dict:
    """The per-frame arithmetic of tile mode (module doc): tiles entering each stage, each stage at its
    batch, the cut and upload of the tiles; mean (with exit_rates) and worst (all tiles to full depth)."""
    bw = target.bandwidth_gbs * 1e9 * a.bandwidth_efficiency
    tile_bytes = tiles * 3 * tile_hw[0] * tile_hw[1] * TILE_BYTES_PER_VALUE
    cut_ms = (frame_hw[0] * frame_hw[1] * FRAME_BYTES_PER_PIXEL + tile_bytes) / bw * 1e3
    upload_ms = 2 * tile_bytes / bw * 1e3
    stages, left = [], 1.0
    for k, layers in enumerate(layers_per_stage):
        n = tiles * max(0.0, left)
        stages.append({"index": k, "tiles": round(n, 3), "ms": round(stage_ms_at(layers, target, a, n), 4),
                       "worst_ms": round(stage_ms_at(layers, target, a, tiles), 4),
                       "ms_one_tile": round(stage_ms_at(layers, target, a, 1), 4)})
        if k < len(exit_rates):
            left -= exit_rates[k]
    pre = cut_ms + upload_ms
    mean = pre + sum(s["ms"] for s in stages)
    worst = pre + sum(s["worst_ms"] for s in stages)
    return {"tiles": int(tiles), "stages": stages, "cut_ms": round(cut_ms, 4), "upload_ms": round(upload_ms, 4),
            "mean_ms": round(mean, 4), "worst_ms": round(worst, 4),
            "fps_mean": round(1e3 / mean, 1), "fps_worst": round(1e3 / worst, 1)}


def estimate_frame(bundle, target: str, frame_size: tuple[int, int] = (1080, 1920),
                   exit_rates: tuple[float, ...] | None = None, budget_ms: float = 15.0, precision: str = "auto",
                   assumptions: Assumptions | None = None) -> dict:
    """What one camera frame of `frame_size` (height, width) costs on `target` (module doc). bundle: a path
    or an open Bundle. exit_rates: fraction of all tiles leaving at each early exit; default the manifest's
    exit_policy.exit_fraction, else half of the tiles still running at each exit. A resize bundle makes one
    input of each frame (tiles = 1). JSON-ready dict: {"target", "mode", "frame", "frame_size", "tile",
    "overlap", "grid", "tiles", "exit_rates", "exit_rates_source", "stages": [{"index", "tiles", "ms",
    "worst_ms", "ms_one_tile"}], "cut_ms", "upload_ms", "mean_ms", "worst_ms", "fps_mean", "fps_worst",
    "budget_ms", "within_budget", "worst_within_budget", "assumptions"}."""
    from edge_runtime.bundle import Bundle
    from edge_runtime.tiling import TileGrid

    if isinstance(bundle, (str, os.PathLike)):
        bundle = Bundle.open(bundle)
    t = get_target(target)
    spec = bundle.manifest.input
    used, files = stage_files(bundle, precision)
    a = assumptions or Assumptions()
    n_early = len(files) - 1
    tile_mode = spec.mode == "tile"
    if exit_rates is not None:
        rates, source = check_exit_rates(exit_rates, n_early), "given (--exit-rates)"
    else:
        rates, source = exit_rates_of(bundle, n_early, "tiles" if tile_mode else "frames")
    frame_hw = (int(frame_size[0]), int(frame_size[1]))
    tile_hw = (spec.height, spec.width)
    if tile_mode:
        grid = TileGrid.for_frame(frame_hw, tile_hw, spec.tile_overlap)
        tiles, rows_cols = len(grid), [grid.rows, grid.cols]
    else:
        tiles, rows_cols = 1, [1, 1]
    cost = frame_cost([graph_layers(bundle.path(f)) for f in files], t, a, frame_hw, tile_hw, tiles, rates)
    for s, f in zip(cost["stages"], files):
        s["file"] = f
    notes = ["tiles entering stage k = tiles x (1 - exit rates of the exits before k); a stage on n tiles: "
             "FLOPs and activation bytes x n, weights read once, + launch cost per kernel and stage overhead",
             "cut: frame read (uint8 BGR) + float32 tiles written; upload: the float32 tiles read + written "
             "again (host-to-device copy in shared DRAM); both at the target's bandwidth",
             "not counted: compaction copies, the frame decision on the host, camera capture; a numpy cut on "
             "the CPU makes ~3 passes over the tiles (2-3x cut_ms)"]
    return {"target": t.name, "mode": spec.mode, "precision": used, "frame": f"{frame_hw[1]}x{frame_hw[0]}",
            "frame_size": list(frame_hw), "tile": list(tile_hw), "overlap": spec.tile_overlap if tile_mode else 0.0,
            "grid": rows_cols, **cost, "exit_rates": list(rates), "exit_rates_source": source,
            "budget_ms": float(budget_ms), "within_budget": cost["mean_ms"] <= budget_ms,
            "worst_within_budget": cost["worst_ms"] <= budget_ms,
            "assumptions": {**_assumptions_dict(t, a), "frame_notes": notes}}


def estimate_layer_costs(stage_layers, target: str, precision: str = "fp16",
                         exit_rates: tuple[float, ...] = ()) -> dict:
    """The roofline of a model described layer by layer, without a graph (a student shape before it is
    trained: export/shapes.py). Each layer has name, op, flops, weight_elems, in_elems, out_elems; every
    tensor is taken at `precision` ("fp16", "int8" or "fp32"). Returns {"target", "precision", "stages":
    [{"flops", "ms"}], "full_ms", "early_exit_ms", "exit_rates"}."""
    t = get_target(target)
    a = Assumptions(exit_rates=tuple(exit_rates))
    nbytes = WEIGHT_BYTES[precision]
    per_stage = [[Layer(x.name, x.op, precision if x.flops else ("fp32" if precision == "fp32" else "fp16"),
                        int(x.flops), float((x.weight_elems + x.in_elems + x.out_elems) * nbytes)) for x in layers]
                 for layers in stage_layers]
    stages = estimate_stages(per_stage, t, a)
    stage_ms = [st["ms"] for st in stages]
    rates = tuple(exit_rates)[:len(stages) - 1]
    return {"target": t.name, "precision": precision, "stages": stages, "full_ms": round(float(sum(stage_ms)), 4),
            "early_exit_ms": round(mean_latency(stage_ms, rates), 4), "exit_rates": list(rates)}


def _assumptions_dict(t: Target, a: Assumptions) -> dict:
    return {"target": t.description, "peak_int8_tops": t.int8_tops, "peak_fp16_tflops": t.fp16_tflops,
            "peak_fp32_tflops": t.fp32_tflops, "bandwidth_gbs": t.bandwidth_gbs, "source": t.source,
            "compute_efficiency": a.compute_efficiency, "bandwidth_efficiency": a.bandwidth_efficiency,
            "launch_us_per_kernel": a.launch_us, "stage_overhead_ms": a.stage_overhead_ms,
            "exit_rates": list(a.exit_rates), "exit_rates_source": a.exit_rates_source, "notes": list(a.notes)}


def over_budget_message(est: dict) -> str | None:
    """One sentence when even the full-depth estimate exceeds the budget (for `edge-qwq build`), else None."""
    if est["full_ms"] <= est["budget_ms"]:
        return None
    return (f"the estimated full-depth latency on {est['target']} is {est['full_ms']:.2f} ms, over the "
            f"{est['budget_ms']:g} ms budget; use a smaller student or quantize the stages")


def format_estimate(est: dict):
    """A rich renderable (a Table) for one estimate; print it with rich.console.Console().print."""
    from rich.table import Table

    title = (f"{est['target']} ({est['precision']} stages) - budget {est['budget_ms']:g} ms: "
             f"full {est['full_ms']:.3f} ms, early-exit mean {est['early_exit_ms']:.3f} ms "
             f"[{'within' if est['within_budget'] else 'OVER'} budget]")
    table = Table(title=title, title_justify="left")
    for col in ("stage", "MFLOPs", "KB moved", "kernels", "ms", "cumulative ms"):
        table.add_column(col, justify="right")
    total = 0.0
    for s in est["stages"]:
        total += s["ms"]
        table.add_row(str(s["index"]), f"{s['flops'] / 1e6:.3f}", f"{s['bytes'] / 1e3:.1f}", str(s["kernels"]),
                      f"{s['ms']:.4f}", f"{total:.4f}")
    return table


def format_assumptions(ests: dict | list[dict]) -> str:
    """The assumptions behind one or several estimates, each target's peaks once, shared ones once."""
    ests = [ests] if isinstance(ests, dict) else list(ests)
    a = ests[0]["assumptions"]
    lines = ["Assumptions:"]
    for est in ests:
        t = est["assumptions"]
        lines.append(f"  {est['target']}: {t['target']}: peak INT8 {t['peak_int8_tops']} TOPS, FP16 "
                     f"{t['peak_fp16_tflops']} TFLOPS, FP32 {t['peak_fp32_tflops']} TFLOPS, DRAM "
                     f"{t['bandwidth_gbs']} GB/s (source: {t['source']})")
    lines += [(f"  {a['compute_efficiency']:.0%} of peak compute and {a['bandwidth_efficiency']:.0%} of peak "
               f"bandwidth reached; {a['launch_us_per_kernel']} us launch cost per kernel; "
               f"{a['stage_overhead_ms']} ms per stage (logits to host, sync)"),
              f"  exit rates {a['exit_rates']}: {a['exit_rates_source']}"]
    lines += [f"  {n}" for n in a["notes"]]
    return "\n".join(lines)


def format_frames(frames: list[dict]):
    """A rich Table: the per-frame estimate of one bundle on each target (see `estimate_frame`)."""
    from rich.table import Table

    f0 = frames[0]
    what = (f"{f0['tiles']} tiles of {f0['tile'][1]}x{f0['tile'][0]} ({f0['overlap']:.0%} overlap)"
            if f0["mode"] == "tile" else "one resized input")
    title = (f"Per {f0['frame']} frame: {what}, exit rates {f0['exit_rates']} ({f0['exit_rates_source']}), "
             f"budget {f0['budget_ms']:g} ms")
    table = Table(title=title, title_justify="left")
    for col in ("target", "tiles/stage", "cut+upload", "mean ms", "worst ms", "fps", "budget"):
        table.add_column(col, justify="right")
    for f in frames:
        table.add_row(f["target"], "/".join(_count(s["tiles"]) for s in f["stages"]),
                      f"{f['cut_ms'] + f['upload_ms']:.2f}", f"{f['mean_ms']:.2f}", f"{f['worst_ms']:.2f}",
                      f"{f['fps_mean']:g}", frame_verdict(f))
    return table


def frame_verdict(f: dict) -> str:
    """Whether the budget holds for the mean and the worst frame; where not, the frames per second that fit."""
    if f["worst_within_budget"]:
        return "holds"
    if f["within_budget"]:
        return f"mean holds (worst: {f['fps_worst']:g} fps)"
    return f"OVER: {f['fps_mean']:g} fps fit"


def _count(n: float) -> str:
    return f"{n:.0f}" if n >= 100 else f"{n:.3g}"
