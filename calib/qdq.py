"""Graph mechanics: INT8 Q/DQ through onnxruntime.quantization, INT4 blocked DequantizeLinear, FP16
weights, AWQ folds, bias edits, and running a graph on the runtime's own ONNX Runtime session.

TensorRT's rules (DESIGN.md) shape every choice here: symmetric (zero-point 0) INT8, per-channel
weights along the output channels, per-tensor activations, Q/DQ only in front of Conv/MatMul/Gemm,
float biases (TensorRT has no INT32 DequantizeLinear); INT4 weight-only on 2-D MatMul/Gemm weights,
blocked along K (DequantizeLinear block_size, opset 21).

A strongly typed TensorRT 10 network runs every tensor in the type the graph gives it, so a layer the
plan puts in FP16 and an INT4 weight-only layer (W4A16, as NVIDIA's Model Optimizer writes it) are FP16
regions: the activation is Cast to FP16 on the way in, the weight is FP16 (an FP16 initializer, or the
INT4 DequantizeLinear with FP16 scales, whose output type is the scale's), the bias is FP16, and the
layer's output is Cast back to float under its old name, so the graph around it is unchanged:

    x -> Cast(FP16) -> MatMul(x16, W16) -> Add(b16) -> Cast(FLOAT) -> out
    INT4 q, FP16 scale -> DequantizeLinear(block_size) -> W16 ----^

ONNX Runtime's CPU provider has no FP16 MatMul/Gemm/Conv kernels: it computes these regions in float and
drops the Cast pairs around them, so the CPU score sees FP16 weights and scales but not FP16 rounding of
activations (relative 5e-4, far below INT8's error).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from calib.awq import Int4Weight
from calib.graph import Layer, inline_identities

QUANT_OPS = ["Conv", "MatMul", "Gemm"]
INT4_OPSET = 21
METHODS = ("MinMax", "Percentile", "Entropy")


def load_stage(path: str | os.PathLike, opset: int | None = None):
    """A stage graph ready for quantization: shared initializers un-shared, converted to `opset`."""
    import onnx

    model = onnx.load(str(path))
    inline_identities(model)
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset and opset > current:
        from onnx import version_converter

        model = version_converter.convert_version(model, opset)
    return model


def _tmpdir() -> str:
    return tempfile.mkdtemp(prefix="edge-qwq-calib.")


def session(model, threads: int = 0):
    """The runtime's own make_session on a ModelProto (saved to a temporary file)."""
    import shutil

    import onnx

    from edge_runtime.backends.onnxruntime_backend import make_session

    d = _tmpdir()
    try:
        path = Path(d) / "m.onnx"
        onnx.save(model, str(path))
        return make_session(path, threads)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(model, x: np.ndarray, extra_outputs: list[str] = (), sess=None) -> dict[str, np.ndarray]:
    """Run `model` (ModelProto) on its single input x; `sess` reuses a session made by `session`."""
    import onnx

    if extra_outputs:
        model = copy.deepcopy(model)
        have = {o.name for o in model.graph.output}
        for name in extra_outputs:
            if name not in have:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = sess if sess is not None and not extra_outputs else session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


class ArrayReader:
    """onnxruntime.quantization.CalibrationDataReader over one array, in batches."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 32):
        self.name, self.x, self.batch, self.pos = name, x, batch, 0

    def get_next(self):
        if self.pos >= len(self.x):
            return None
        b = self.x[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return {self.name: b}

    def rewind(self) -> None:
        self.pos = 0

    def __len__(self) -> int:
        return len(self.x)

    def set_range(self, start_index: int, end_index: int) -> None:  # CalibStridedMinMax
        self.x, self.pos = self.x[start_index:end_index], 0


def make_reader(model, x: np.ndarray):
    """A CalibrationDataReader subclass instance (ORT checks the type) feeding x to model's input."""
    from onnxruntime.quantization import CalibrationDataReader

    cls = type("StageReader", (ArrayReader, CalibrationDataReader), {})
    return cls(model.graph.input[0].name, x, _even_batch(len(x)))


def _even_batch(n: int, most: int = 64) -> int:
    """A batch size that splits n evenly (ORT's histogram calibrators stack batches: they must match)."""
    best = max(b for b in range(1, min(n, most) + 1) if n % b == 0)
    return best if best >= 8 else n


def ort_int8(model, x: np.ndarray, method: str = "MinMax", exclude: list[str] = (),
             include: list[str] | None = None, cache: str | None = None, defaults: bool = False):
    """onnxruntime.quantization.quantize_static on a ModelProto -> the QDQ ModelProto.

    Ours: symmetric INT8 activations and weights (zero-point 0), per-channel weights, float biases,
    Q/DQ only for Conv/MatMul/Gemm; `cache` reuses one calibration across calls. defaults=True: ORT's
    own defaults (QDQ, per-channel, min-max) for the peer check."""
    import shutil

    d = _tmpdir()
    try:
        with quiet():
            return _quantize_static(model, x, Path(d), method, exclude, include, cache, defaults)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _quantize_static(model, x, d: Path, method, exclude, include, cache, defaults):
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    out, src = d / "q.onnx", d / "in.onnx"
    onnx.save(model, str(src))  # quantize_static rewrites a ModelProto it is given (external data)
    if defaults:
        quantize_static(str(src), str(out), make_reader(model, x), quant_format=QuantFormat.QDQ, per_channel=True)
        return onnx.load(str(out))
    quantize_static(
        str(src), str(out), make_reader(model, x), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=QUANT_OPS,
        nodes_to_exclude=list(exclude), nodes_to_quantize=list(include or []),
        calibrate_method=getattr(CalibrationMethod, method), calibration_cache_path=cache,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                       "CalibTensorRangeSymmetric": True, "CalibPercentile": 99.99,
                       "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                       # outputs stay float: ORT 1.32's QDQ propagation breaks opset-21 graphs otherwise
                       "OpTypesToExcludeOutputQuantization": QUANT_OPS})
    return onnx.load(str(out))


@contextlib.contextmanager
def quiet():
    """ORT's calibrators print to stdout and warn through the root logger; keep the CLI's output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _node_index(model, name: str) -> int:
    return next(i for i, n in enumerate(model.graph.node) if n.name == name)


def _init(model, name: str):
    return next(i for i in model.graph.initializer if i.name == name)


def _drop_unused(model, name: str) -> None:
    if not any(name in n.input for n in model.graph.node):
        model.graph.initializer.remove(_init(model, name))


def _weight_kn(layer: Layer, w: np.ndarray) -> np.ndarray:
    """The layer's 2-D weight as (K, N)."""
    return w if layer.k_axis == 0 else w.T


def weight_array(model, layer: Layer) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(_init(model, layer.weight)).astype(np.float32)


def insert_int4(model, layer: Layer, w4: Int4Weight) -> None:
    """Replace the layer's float weight by DequantizeLinear(INT4 (K or N first), FP16 scales, block_size),
    whose output is FP16, and make the layer an FP16 region (W4A16: FP16 activations, see the module)."""
    import ml_dtypes
    from onnx import helper, numpy_helper

    q, scales = (w4.q, w4.scales) if layer.k_axis == 0 else (w4.q.T, w4.scales.T)  # back to the graph layout
    base = f"{layer.name}/int4"
    q4 = np.ascontiguousarray(q).astype(ml_dtypes.int4)
    model.graph.initializer.extend([numpy_helper.from_array(q4, f"{base}/q"),
                                    numpy_helper.from_array(np.ascontiguousarray(scales).astype(np.float16),
                                                            f"{base}/scale")])
    dq = helper.make_node("DequantizeLinear", [f"{base}/q", f"{base}/scale"], [f"{base}/w"],
                          name=f"{layer.name}/weight_dq_int4", axis=layer.k_axis, block_size=w4.block)
    idx = _node_index(model, layer.name)
    node = model.graph.node[idx]
    old = node.input[1]
    node.input[1] = f"{base}/w"
    model.graph.node.insert(idx, dq)
    _drop_unused(model, old)
    _fp16_region(model, layer)


def fold_norm(model, norm: str, s: np.ndarray) -> None:
    """LayerNorm `norm`: gamma / s and beta / s (new initializers: others may share the old ones)."""
    from onnx import numpy_helper

    node = model.graph.node[_node_index(model, norm)]
    for pos, tag in ((1, "gamma"), (2, "beta")):
        if len(node.input) <= pos or not node.input[pos]:
            continue
        old = node.input[pos]
        v = numpy_helper.to_array(_init(model, old)).astype(np.float32) / s
        model.graph.initializer.append(numpy_helper.from_array(v.astype(np.float32), f"{norm}/awq_{tag}"))
        node.input[pos] = f"{norm}/awq_{tag}"
        _drop_unused(model, old)


def to_fp16(model, layer: Layer) -> None:
    """The layer computes in FP16: FP16 weight initializer (no Cast), FP16 activations and bias, its
    output Cast back to float (see the module). A weightless (activation x activation) MatMul gets both
    inputs in FP16."""
    from onnx import numpy_helper

    if layer.weight:
        node = model.graph.node[_node_index(model, layer.name)]
        old = node.input[1]
        w = numpy_helper.to_array(_init(model, old)).astype(np.float16)
        model.graph.initializer.append(numpy_helper.from_array(w, f"{layer.name}/fp16/w"))
        node.input[1] = f"{layer.name}/fp16/w"
        _drop_unused(model, old)
    _fp16_region(model, layer)


def _fp16_region(model, layer: Layer) -> None:
    """Cast the layer's activation input(s) to FP16, make its bias FP16, and Cast its output (after the
    bias) back to float under the output's old name. The weight must already be FP16."""
    from onnx import TensorProto, helper

    node = model.graph.node[_node_index(model, layer.name)]
    for pos in ([0] if layer.weight else [0, 1]):
        node.input[pos] = _fp16_input(model, node.input[pos])
    end, bias = _bias_site(model, node)
    if bias is not None:
        end.input[bias] = _fp16_initializer(model, end.input[bias], end, f"{layer.name}/fp16/b")
    out = end.output[0]
    inner = node.output[0] if end is not node else None  # MatMul's output before the bias Add: now FP16
    end.output[0] = f"{out}/fp16"
    _forget_types(model, {out, inner})
    cast = helper.make_node("Cast", [f"{out}/fp16"], [out], name=f"{end.name or out}/to_fp32", to=TensorProto.FLOAT)
    model.graph.node.insert(_node_index_of(model, end) + 1, cast)
    _drop_dead_qdq(model)


def _bias_site(model, node):
    """(node holding the bias, input position) of a layer node: Gemm/Conv input 2, or the initializer
    input of the Add that alone reads a MatMul's output (as calib.graph.find_layers pairs them);
    (node, None) when the layer has no bias."""
    inits = {i.name for i in model.graph.initializer}
    if node.op_type in ("Gemm", "Conv"):
        return (node, 2) if len(node.input) > 2 and node.input[2] in inits else (node, None)
    readers = [n for n in model.graph.node if node.output[0] in n.input]
    if len(readers) == 1 and readers[0].op_type == "Add":
        add = readers[0]
        pos = [i for i, name in enumerate(add.input) if name != node.output[0]]
        if pos and add.input[pos[0]] in inits and len(_init(model, add.input[pos[0]]).dims) == 1:
            return add, pos[0]
    return node, None


def _fp16_input(model, x: str) -> str:
    """An FP16 version of activation x: one Cast per tensor, shared by every FP16 region reading it, placed
    right after x's producer. An activation Q/DQ pair (Q(t) -> DQ) is looked through: the FP16 region reads
    t itself (TensorRT has no INT8-activation x FP16/INT4-weight layer)."""
    from onnx import TensorProto, helper

    producer = {o: n for n in model.graph.node for o in n.output}
    dq = producer.get(x)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in producer \
            and producer[dq.input[0]].op_type == "QuantizeLinear":
        x = producer[dq.input[0]].input[0]
    name = f"{x}/fp16"
    if name in producer:
        return name
    src = producer.get(x)
    at = _node_index_of(model, src) + 1 if src is not None else 0
    model.graph.node.insert(at, helper.make_node("Cast", [x], [name], name=f"{x}/to_fp16", to=TensorProto.FLOAT16))
    return name


def _fp16_initializer(model, name: str, reader, private: str) -> str:
    """Initializer `name` as FP16 for `reader`: converted in place when only `reader` reads it, else an
    FP16 copy under `private`. Returns the name `reader` must use."""
    from onnx import numpy_helper

    t = _init(model, name)
    v = numpy_helper.to_array(t).astype(np.float16)
    if all(n is reader for n in model.graph.node if name in n.input):
        t.CopyFrom(numpy_helper.from_array(v, name))
        return name
    model.graph.initializer.append(numpy_helper.from_array(v, private))
    return private


def _node_index_of(model, node) -> int:
    return next(i for i, n in enumerate(model.graph.node) if n is node)


def _forget_types(model, names: set) -> None:
    """Drop stale value_info (types recorded before a tensor became FP16 or changed producer)."""
    keep = [v for v in model.graph.value_info if v.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)


def _drop_dead_qdq(model) -> None:
    """Remove DequantizeLinear / QuantizeLinear nodes whose outputs nothing reads any more (an FP16 region
    that looked through an activation Q/DQ pair), and the initializers only they read."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)
        read = {i for n in model.graph.node for i in n.input}
        gone = {i for n in dead for i in n.input if i not in read}
        keep = [t for t in model.graph.initializer if t.name not in gone]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def bias_array(model, layer: Layer) -> np.ndarray:
    """The layer's bias as float32, wherever the graph now keeps it (FP16 in an FP16 region)."""
    from onnx import numpy_helper

    return numpy_helper.to_array(_init(model, _bias_name(model, layer))).astype(np.float32)


def set_bias(model, layer: Layer, value: np.ndarray) -> None:
    """Write the layer's bias in the type the graph stores it in (float, or FP16 in an FP16 region)."""
    from onnx import helper, numpy_helper

    name = _bias_name(model, layer)
    t = _init(model, name)
    t.CopyFrom(numpy_helper.from_array(value.astype(helper.tensor_dtype_to_np_dtype(t.data_type)), name))


def _bias_name(model, layer: Layer) -> str:
    end, pos = _bias_site(model, model.graph.node[_node_index(model, layer.name)])
    if pos is None:
        raise ValueError(f"layer {layer.name} has no bias")
    return end.input[pos]
