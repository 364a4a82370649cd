"""A TensorRT rules lint that runs without TensorRT: every op against what the TensorRT ONNX parser of a
version reads, every Q/DQ node against the explicit-quantization rules of DESIGN.md.

Sources: onnx-tensorrt docs/operators.md per release (8.4: opset 13; 8.5 and 8.6: opset 17; 9.x: 19;
10.0: opset 9 to 20 in the op table, 10.15: 9 to 24) and its maintainers' note that block-wise
quantization (DequantizeLinear `block_size`) needs opset 21, which TensorRT 10 reads for INT4
weight-only GEMMs; DequantizeLinear/QuantizeLinear: `zero_point` must be 0. INT4 arrived with 10.0, and
its parser rejects an INT4 weight whose last dimension is odd.

Types, as a strongly typed TensorRT 10 network takes them (it runs each tensor in the type the graph
gives it and converts nothing implicitly; a DequantizeLinear's output type is its scale's): no node reads
two types for one of its type parameters; a layer the bundle's precision plan puts in FP16 reads FP16
inputs only; an FP16 weight Cast to float in front of a Conv/MatMul/Gemm is flagged (the layer would run
in FP32); an INT4 weight-only layer has FP16 scales and FP16 activations (W4A16).

    >>> for f in lint_bundle("bundle/", trt_version="8.6"):   # doctest: +SKIP
    ...     print(f)
    stages/stage1.q.onnx: /blocks.1/fc1/MatMul/weight_dq_int4: INT4 needs TensorRT >= 10 (target 8.6)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# The highest opset each TensorRT ONNX parser reads, by (major, minor) from which it holds.
OPSET_MAX = (((8, 0), 13), ((8, 5), 17), ((9, 0), 19), ((10, 0), 21), ((10, 15), 24))

# Operators the parser supports (onnx-tensorrt operators.md, 8.4 table), then what later versions add.
BASE_OPS = set("""Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear
Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean Min Mul Neg Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform
RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze
Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where Xor""".split())
ADDED_OPS = {
    (8, 5): {"RandomNormal", "RandomNormalLike", "MeanVarianceNormalization", "RoiAlign", "Mod", "Trilu",
             "GridSample", "NonZero", "NonMaxSuppression", "Shrink"},
    (8, 6): {"LayerNormalization", "CastLike"},
    (10, 0): {"Gelu", "GroupNormalization", "IsInf", "Reciprocal", "HardSwish", "Hardmax", "Mish", "BlackmanWindow",
              "HammingWindow", "HannWindow", "DeformConv", "STFT"},
    (10, 14): {"Attention"},
    (10, 15): {"RotaryEmbedding", "RMSNormalization"},
}
WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
INT8, UINT8, INT32, INT4, UINT4 = 3, 2, 6, 22, 21
FLOAT, FLOAT16, DOUBLE, BFLOAT16 = 1, 10, 11, 16
FLOATS = (FLOAT, FLOAT16, DOUBLE, BFLOAT16)
DTYPE_NAMES = {INT8: "INT8", UINT8: "UINT8", INT32: "INT32", INT4: "INT4", UINT4: "UINT4", FLOAT: "FLOAT",
               FLOAT16: "FLOAT16", DOUBLE: "DOUBLE", BFLOAT16: "BFLOAT16"}


@dataclass(frozen=True)
class Finding:
    file: str
    node: str
    op: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.node} ({self.op}): {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


def parse_version(text: str) -> tuple[int, int]:
    from calib.errors import CalibError

    try:
        parts = [int(p) for p in str(text).split(".")[:2]]
    except ValueError:
        raise CalibError(f"--trt-version must look like 10.3 or 8.6, got {text!r}") from None
    return parts[0], (parts + [0])[1]


def max_opset(trt: tuple[int, int]) -> int:
    return max((o for v, o in OPSET_MAX if trt >= v), default=13)


def supported_ops(trt: tuple[int, int]) -> set[str]:
    ops = set(BASE_OPS)
    for v, added in ADDED_OPS.items():
        if trt >= v:
            ops |= added
    return ops


def lint_bundle(bundle_path: str | os.PathLike, trt_version: str = "10.3") -> list[Finding]:
    """Every stage file of the bundle (FP32 and quantized) against TensorRT `trt_version`'s rules."""
    import onnx

    from edge_runtime.bundle import Bundle

    bundle = Bundle.open(bundle_path)
    trt = parse_version(trt_version)
    quant = bundle.manifest.quantization
    findings = []
    for spec in bundle.stages:
        for rel in filter(None, (spec.file, spec.quantized)):
            plan = quant.plan.get(f"stage{spec.index}", {}) if quant is not None and rel == spec.quantized else None
            findings += lint_model(onnx.load(str(Path(bundle.root) / rel)), trt, rel, plan)
    return findings


def lint_model(model, trt: tuple[int, int], file: str = "model.onnx",
               plan: dict[str, str] | None = None) -> list[Finding]:
    """Findings for one graph; `plan` is its stage's precision plan ({layer node: "int8" | "int4" | "fp16"},
    the manifest's quantization.plan) when the graph is a quantized stage."""
    g = _Graph(model)
    out = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > max_opset(trt):
        out.append(Finding(file, "(model)", "-", "opset", f"opset {opset} is newer than TensorRT "
                           f"{trt[0]}.{trt[1]} reads (up to {max_opset(trt)})"))
    ops = supported_ops(trt)
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx") or n.op_type not in ops:
            dom = f"{n.domain}." if n.domain else ""
            out.append(Finding(file, n.name or n.output[0], n.op_type, "unsupported-op",
                               f"{dom}{n.op_type} is not supported by the TensorRT {trt[0]}.{trt[1]} ONNX parser"))
        elif n.op_type == "QuantizeLinear":
            out += [Finding(file, n.name or n.output[0], n.op_type, r, m) for r, m in _check_q(n, g)]
        elif n.op_type == "DequantizeLinear":
            out += [Finding(file, n.name or n.output[0], n.op_type, r, m) for r, m in _check_dq(n, g, trt, opset)]
    return out + _check_types(model, g, trt, opset, plan or {}, file)


class _Graph:
    def __init__(self, model):
        from onnx import numpy_helper

        self.inits = {i.name: i for i in model.graph.initializer}
        self.np = lambda name: numpy_helper.to_array(self.inits[name])
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        for n in model.graph.node:  # Constant nodes count as initializers
            if n.op_type == "Constant":
                val = next((a.t for a in n.attribute if a.name == "value"), None)
                if val is not None:
                    self.inits[n.output[0]] = val

    def dtype(self, name: str) -> int | None:
        return self.inits[name].data_type if name in self.inits else None


def _attr(n, name: str, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in n.attribute if a.name == name), default)


def _zero_point_problems(n, g: _Graph, qtype: int | None) -> list[tuple[str, str]]:
    out = []
    if len(n.input) > 2 and n.input[2]:
        zp = n.input[2]
        if zp in g.inits and np.any(g.np(zp).astype(np.int64) != 0):
            out.append(("zero-point", f"zero-point {zp} is not 0: TensorRT takes symmetric quantization only"))
        elif zp not in g.inits:
            out.append(("zero-point", f"zero-point {zp} is not a constant"))
    if qtype not in (INT8, INT4):
        out.append(("dtype", f"quantized type {DTYPE_NAMES.get(qtype, qtype)} is not INT8 or INT4 "
                             "(TensorRT has no UINT8/INT32 Q/DQ; keep biases float)"))
    return out


def _q_type(n, g: _Graph) -> int:
    if len(n.input) > 2 and n.input[2] and g.dtype(n.input[2]) is not None:
        return g.dtype(n.input[2])
    return _attr(n, "output_dtype", 0) or UINT8  # ONNX default: uint8


def _check_q(n, g: _Graph) -> list[tuple[str, str]]:
    out = _zero_point_problems(n, g, _q_type(n, g))
    if n.input[1] in g.inits and g.np(n.input[1]).size != 1:
        out.append(("per-tensor-activations", "QuantizeLinear of an activation must be per-tensor (one scale)"))
    for c in g.consumers.get(n.output[0], []):
        if c.op_type != "DequantizeLinear":
            out.append(("qdq-pair", f"QuantizeLinear output feeds {c.op_type} {c.name}; TensorRT needs Q -> DQ pairs"))
    return out


def _check_dq(n, g: _Graph, trt: tuple[int, int], opset: int) -> list[tuple[str, str]]:
    x = n.input[0]
    if x not in g.inits:  # activation: the DQ of a Q/DQ pair
        prod = g.producer.get(x)
        out = _zero_point_problems(n, g, _q_type(prod, g) if prod is not None and prod.op_type == "QuantizeLinear"
                                   else INT8)
        if prod is None or prod.op_type != "QuantizeLinear":
            out.append(("qdq-pair", "DequantizeLinear of an activation must follow a QuantizeLinear"))
        if n.input[1] in g.inits and g.np(n.input[1]).size != 1:
            out.append(("per-tensor-activations", "activations must be quantized per-tensor (one scale)"))
        return out
    qtype = g.dtype(x)
    out = _zero_point_problems(n, g, qtype)
    users = g.consumers.get(n.output[0], [])
    weighted = [(u, list(u.input).index(n.output[0])) for u in users if u.op_type in WEIGHTED]
    if qtype in (INT4, UINT4):
        out += _check_int4(n, g, trt, opset, users, weighted)
    elif qtype == INT8:
        out += _check_int8_weight(n, g, weighted)
    return out


def _k_axis(user, shape) -> int:
    if user.op_type == "Gemm":
        return 1 if _attr(user, "transB", 0) else 0
    return len(shape) - 2 if user.op_type == "MatMul" else 1


def _out_axis(user, shape) -> int:
    if user.op_type == "Gemm":
        return 0 if _attr(user, "transB", 0) else 1
    return len(shape) - 1 if user.op_type == "MatMul" else (1 if user.op_type == "ConvTranspose" else 0)


def _check_int4(n, g: _Graph, trt, opset, users, weighted) -> list[tuple[str, str]]:
    out = []
    if trt < (10, 0):
        out.append(("int4-version", f"INT4 needs TensorRT >= 10 (target {trt[0]}.{trt[1]}); use INT8"))
    bad = [u for u in users if u.op_type not in ("MatMul", "Gemm")]
    if bad:
        out.append(("int4-op", f"INT4 weights feed {bad[0].op_type} {bad[0].name}: TensorRT takes INT4 only as "
                               "MatMul/Gemm weights (weight-only)"))
    shape = list(g.inits[n.input[0]].dims)
    if len(shape) != 2:
        out.append(("int4-2d", f"INT4 weight {n.input[0]} is {len(shape)}-D; TensorRT takes 2-D only"))
    if len(shape) == 2 and shape[-1] % 2:
        out.append(("int4-odd", f"INT4 weight {n.input[0]} has an odd last dimension ({shape[-1]}); TensorRT packs "
                                "INT4 in pairs and rejects it"))
    block = _attr(n, "block_size", 0)
    if not block:
        out.append(("int4-blocked", "INT4 weights must be blocked (DequantizeLinear block_size)"))
    if opset < 21:
        out.append(("int4-opset", f"blocked DequantizeLinear needs opset 21 (graph is opset {opset})"))
    good = [(u, i) for u, i in weighted if i == 1 and u.op_type in ("MatMul", "Gemm")]
    if block and len(shape) == 2 and good:
        k = _k_axis(good[0][0], shape)
        axis = _attr(n, "axis", 1) % 2
        if axis != k:
            out.append(("int4-axis", f"INT4 blocks must run along the input dimension K (axis {k}), not axis {axis}"))
        elif shape[k] % block:
            out.append(("int4-blocked", f"block_size {block} does not divide K = {shape[k]}"))
    return out


def _check_int8_weight(n, g: _Graph, weighted) -> list[tuple[str, str]]:
    if not weighted:
        return []
    user, pos = weighted[0]
    if pos != 1:
        return []
    shape = list(g.inits[n.input[0]].dims)
    scale = g.np(n.input[1])
    axis = _out_axis(user, shape)
    if scale.size == 1 and shape[axis] > 1:
        return [("per-channel-weights", f"weight {n.input[0]} is quantized per-tensor; TensorRT's rules here: "
                                        "per-channel weights")]
    if scale.size != shape[axis] or (_attr(n, "axis", 1) % len(shape)) != axis:
        return [("per-channel-weights", f"weight {n.input[0]} scales must run along its output channels "
                                        f"(axis {axis}, {shape[axis]} scales)")]
    return []


# ---------------- types (strongly typed networks) ----------------

def _types(model) -> dict[str, int]:
    """Element type of every tensor ONNX shape inference can type (inputs, outputs, initializers, Constants,
    intermediate values)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a malformed graph: type what is declared
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)
             if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
    types.update({i.name: i.data_type for i in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            val = next((a.t for a in n.attribute if a.name == "value"), None)
            if val is not None:
                types[n.output[0]] = val.data_type
    return types


def _name(t: int | None) -> str:
    return DTYPE_NAMES.get(t, str(t))


def _check_types(model, g: _Graph, trt: tuple[int, int], opset: int, plan: dict[str, str],
                 file: str) -> list[Finding]:
    types = _types(model)
    nodes = {n.name: n for n in model.graph.node if n.name}
    out = [Finding(file, n.name or n.output[0], n.op_type, "mixed-types", m) for n in model.graph.node
           for m in _mixed_types(n, types, opset)]
    for name, precision in plan.items():
        node = nodes.get(name)
        if node is None:
            out.append(Finding(file, name, "-", "plan-node", f"the precision plan names {name}, which the graph "
                                                               "lacks"))
        elif precision == "fp16":
            wrong = [(i, types.get(i)) for i in node.input if i and types.get(i) in FLOATS and types[i] != FLOAT16]
            if wrong:
                i, t = wrong[0]
                out.append(Finding(file, name, node.op_type, "fp16-plan",
                                   f"the precision plan puts {name} in FP16 but it reads {i} as {_name(t)}: it runs "
                                   "in FP32 (Cast the activation to FP16, store the weight and bias in FP16)"))
    for n in model.graph.node:
        if n.op_type in WEIGHTED:
            out += _weight_cast(n, g, types, trt, file)
        elif n.op_type == "DequantizeLinear" and g.dtype(n.input[0]) in (INT4, UINT4):
            out += [Finding(file, n.name or n.output[0], n.op_type, "int4-activation", m)
                    for m in _int4_activation(n, g, types)]
    return out


def _mixed_types(n, types: dict[str, int], opset: int) -> list[str]:
    """A type parameter of n's schema (T of MatMul, Add, Concat, ...) bound to more than one type: ONNX
    forbids it and a strongly typed network has no implicit conversion to settle it."""
    from onnx import defs

    try:
        schema = defs.get_schema(n.op_type, opset, n.domain or "")
    except Exception:  # not an ONNX op: reported as unsupported elsewhere
        return []
    formals = list(schema.inputs)
    if not formals:
        return []
    bound: dict[str, dict[int, str]] = {}
    for pos, name in enumerate(n.input):
        if not name or name not in types:
            continue
        formal = formals[min(pos, len(formals) - 1)]
        variadic = formal.option == defs.OpSchema.FormalParameterOption.Variadic
        if (pos >= len(formals) and not variadic) or (variadic and not formal.is_homogeneous):
            continue
        bound.setdefault(formal.type_str, {}).setdefault(types[name], name)
    return [f"{n.op_type} reads {' and '.join(f'{i} as {_name(t)}' for t, i in seen.items())} for one type "
            f"({param}): a strongly typed TensorRT network converts nothing implicitly"
            for param, seen in bound.items() if len(seen) > 1]


def _weight_cast(n, g: _Graph, types: dict[str, int], trt: tuple[int, int], file: str) -> list[Finding]:
    """An FP16 constant Cast to float in front of a Conv/MatMul/Gemm: TensorRT 10 (strongly typed) runs
    the layer in FP32 on it."""
    if trt < (10, 0):
        return []  # weakly typed: the FP16 builder flag lets TensorRT fold the Cast and choose FP16
    out = []
    for i in n.input[1:]:
        cast = g.producer.get(i)
        if cast is None or cast.op_type != "Cast" or _attr(cast, "to") != FLOAT:
            continue
        if cast.input[0] in g.inits and g.dtype(cast.input[0]) in (FLOAT16, BFLOAT16):
            out.append(Finding(file, n.name or n.output[0], n.op_type, "fp16-weight-cast",
                               f"FP16 weight {cast.input[0]} is Cast to FLOAT ({cast.name}): a strongly typed "
                               f"TensorRT network runs {n.name or n.op_type} in FP32; give it FP16 inputs instead"))
    return out


def _int4_activation(n, g: _Graph, types: dict[str, int]) -> list[str]:
    """W4A16: the INT4 DequantizeLinear yields FP16 (FP16 scales) and its MatMul/Gemm reads FP16 activations."""
    out = []
    scale = types.get(n.input[1])
    if scale not in (FLOAT16, BFLOAT16):
        out.append(f"INT4 weight {n.input[0]} has {_name(scale)} scales, so it dequantizes to {_name(scale)} and "
                   "the layer runs in FP32; INT4 weight-only layers take FP16 scales (W4A16)")
    for u in g.consumers.get(n.output[0], []):
        if u.op_type not in ("MatMul", "Gemm"):
            continue
        acts = [i for i in u.input[:2] if i and i != n.output[0]]
        bad = [(i, types.get(i)) for i in acts if types.get(i) not in (FLOAT16, BFLOAT16)]
        if bad:
            i, t = bad[0]
            out.append(f"{u.op_type} {u.name} multiplies INT4 weights with {i} as {_name(t)}: INT4 weight-only "
                       "layers take FP16 activations (W4A16)")
    return out
