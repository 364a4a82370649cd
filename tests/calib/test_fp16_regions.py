"""FP16 regions (calib.qdq.to_fp16, insert_int4): on a strongly typed TensorRT 10 network a layer runs in the
type its inputs have, so a layer the plan puts in FP16 and an INT4 weight-only layer (W4A16) must read FP16
activations and FP16 weights. Checked on small hand-made graphs: types (ONNX strict type inference and the
lint), what ONNX Runtime's CPU provider computes, and the lint's verdict on the form calib wrote before."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calib import awq
from calib.graph import find_layers
from calib.lint import lint_model
from calib.qdq import bias_array, insert_int4, run, set_bias, to_fp16

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
K = 32


def _graph(shared_qdq: bool = True):
    """x (2, 4, 32) -> MatMul W1 + b1 ("/l1/MatMul") -> Relu -> r; r @ r^T ("/att/MatMul", weightless);
    Q/DQ(r) read by "/l3/MatMul" (W3) and, with shared_qdq, by "/l4/MatMul" (W4, stays INT8-like)."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal((K, K)).astype(np.float32) * 0.2, "W1"),
            numpy_helper.from_array(rng.standard_normal(K).astype(np.float32), "b1"),
            numpy_helper.from_array(rng.standard_normal((K, 16)).astype(np.float32) * 0.2, "W3"),
            numpy_helper.from_array(rng.standard_normal((K, 16)).astype(np.float32) * 0.2, "W4"),
            numpy_helper.from_array(np.array(0.05, np.float32), "r_s"),
            numpy_helper.from_array(np.array(0, np.int8), "r_zp")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["a"], name="/l1/MatMul"),
             helper.make_node("Add", ["b1", "a"], ["a1"], name="/l1/Add"),
             helper.make_node("Relu", ["a1"], ["r"], name="/relu/Relu"),
             helper.make_node("Transpose", ["r"], ["rt"], name="/att/Transpose", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["r", "rt"], ["s"], name="/att/MatMul"),
             helper.make_node("QuantizeLinear", ["r", "r_s", "r_zp"], ["rq"], name="/r/Q"),
             helper.make_node("DequantizeLinear", ["rq", "r_s", "r_zp"], ["rd"], name="/r/DQ"),
             helper.make_node("MatMul", ["rd", "W3"], ["c"], name="/l3/MatMul")]
    outputs = [helper.make_tensor_value_info(n, FLOAT, shape) for n, shape in (("s", [2, 4, 4]), ("c", [2, 4, 16]))]
    if shared_qdq:
        nodes.append(helper.make_node("MatMul", ["rd", "W4"], ["d"], name="/l4/MatMul"))
        outputs.append(helper.make_tensor_value_info("d", FLOAT, [2, 4, 16]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [2, 4, K])], outputs, init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def _x(n=2):
    return np.random.default_rng(1).standard_normal((n, 4, K)).astype(np.float32)


def _layers(m):
    return {layer.name: layer for layer in find_layers(m)}


def _types(m):
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)  # raises on mixed types
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def _node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def _reads_fp16(m, name) -> None:
    types = _types(m)
    node = _node(m, name)
    assert [types[i] for i in node.input if i] == [FLOAT16] * len([i for i in node.input if i]), name


def _reference(m, x):
    """What the graph computes, in numpy, from the initializers it now holds (FP16 where it stores FP16)."""
    w = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in m.graph.initializer}
    l1 = next(k for k in w if k.startswith("/l1/"))
    r = np.maximum(x @ w[l1] + w["b1"], 0)
    rd = np.clip(np.rint(r / 0.05), -128, 127) * 0.05
    w3 = next(k for k in w if k.startswith("/l3/"))
    return {"s": r @ r.transpose(0, 2, 1), "c": r @ w[w3], "d": rd @ w["W4"]}


def test_fp16_layers_read_fp16_and_give_float_back():
    m = _graph()
    layers = _layers(m)
    for name in ("/l1/MatMul", "/att/MatMul", "/l3/MatMul"):
        to_fp16(m, layers[name])
    onnx.checker.check_model(m, full_check=True)
    types = _types(m)
    for name in ("/l1/MatMul", "/att/MatMul", "/l3/MatMul"):
        _reads_fp16(m, name)
    assert types["b1"] == FLOAT16 and [types[i] for i in _node(m, "/l1/Add").input] == [FLOAT16, FLOAT16]
    # the outputs keep their names and float type, so the graph around a region is unchanged
    assert all(types[o] == FLOAT for o in ("a1", "s", "c", "d"))
    assert [n.op_type for n in m.graph.node if "a1" in n.output] == ["Cast"]
    # one Cast of r, shared; /l3/MatMul reads r itself, not the INT8 Q/DQ pair that /l4/MatMul still reads
    assert _node(m, "/l3/MatMul").input[0] == _node(m, "/att/MatMul").input[0] == "r/fp16"
    assert _node(m, "/l4/MatMul").input[0] == "rd"
    assert sum(1 for n in m.graph.node if n.op_type == "Cast" and n.input[0] == "r") == 1
    assert lint_model(m, (10, 3), "g.onnx", {"/l1/MatMul": "fp16", "/att/MatMul": "fp16", "/l3/MatMul": "fp16",
                                             "/l4/MatMul": "int8"}) == []
    x = _x()
    out, ref = run(m, x), _reference(m, x)  # ONNX Runtime's CPU provider runs it (in float: no FP16 MatMul)
    for k in ("s", "c"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(out["d"], ref["d"], atol=0.05)  # through the INT8 Q/DQ pair


def test_a_qdq_pair_no_one_else_reads_is_removed():
    m = _graph(shared_qdq=False)
    to_fp16(m, _layers(m)["/l3/MatMul"])
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)
    assert not {"r_s", "r_zp"} & {i.name for i in m.graph.initializer}
    _reads_fp16(m, "/l3/MatMul")


def test_bias_correction_reads_and_writes_the_fp16_bias():
    m = _graph()
    layer = _layers(m)["/l1/MatMul"]
    to_fp16(m, layer)
    b = bias_array(m, layer)
    assert b.dtype == np.float32
    set_bias(m, layer, b + 0.5)
    t = next(i for i in m.graph.initializer if i.name == "b1")
    assert t.data_type == FLOAT16
    np.testing.assert_allclose(numpy_helper.to_array(t).astype(np.float32), b + 0.5, atol=1e-2)


@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_int4_weight_only_is_w4a16(op):
    """INT4 DequantizeLinear with FP16 scales (its output, the weight, is FP16), FP16 activation and bias, the
    output Cast back to float; ONNX Runtime's CPU provider computes x @ dequant(W) + b."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((K, 6)).astype(np.float32) * 0.3  # (K, N)
    b = rng.standard_normal(6).astype(np.float32)
    if op == "MatMul":
        nodes = [helper.make_node("MatMul", ["x", "W"], ["y0"], name="/fc/MatMul"),
                 helper.make_node("Add", ["y0", "B"], ["y"], name="/fc/Add")]
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    else:
        nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="/fc/Gemm", transB=1)]
        inits = [numpy_helper.from_array(w.T.copy(), "W"), numpy_helper.from_array(b, "B")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, ["n", K])],
                          [helper.make_tensor_value_info("y", FLOAT, ["n", 6])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    layer = find_layers(m)[0]
    w4 = awq.rtn(w, K)
    insert_int4(m, layer, w4)
    onnx.checker.check_model(m, full_check=True)
    types = _types(m)
    dq = _node(m, f"{layer.name}/weight_dq_int4")
    assert types[dq.input[0]] == TensorProto.INT4 and types[dq.input[1]] == FLOAT16 and types[dq.output[0]] == FLOAT16
    _reads_fp16(m, layer.name)
    assert types["y"] == FLOAT
    assert lint_model(m, (10, 3), "g.onnx", {layer.name: "int4"}) == []
    x = rng.standard_normal((5, K)).astype(np.float32)
    b16 = b.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(_run_exact(m, x), x @ w4.dequant() + b16, rtol=1e-3, atol=1e-3)
    # calib's own session (the runtime's make_session) runs it too; ORT fuses DequantizeLinear + MatMul into
    # MatMulNBits, whose default accuracy level quantizes activations to INT8 on the CPU: a looser match
    np.testing.assert_allclose(run(m, x)["y"], x @ w4.dequant() + b16, rtol=5e-2, atol=5e-2)


def _run_exact(m, x):
    """ONNX Runtime CPU with MatMulNBits at accuracy level 0 (float activations): the graph's own semantics."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _old_form():
    """What calib wrote before: the FP16 layer's weight an FP16 initializer Cast to float, the INT4 weight
    dequantized with float scales; both layers read float activations."""
    import ml_dtypes

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((K, K)).astype(np.float16), "w16"),
             numpy_helper.from_array(rng.integers(-8, 8, (K, 6)).astype(np.int8).astype(ml_dtypes.int4), "q"),
             numpy_helper.from_array(np.full((1, 6), 0.1, np.float32), "s")]
    nodes = [helper.make_node("Cast", ["w16"], ["w32"], name="/fc1/MatMul/weight_cast", to=FLOAT),
             helper.make_node("MatMul", ["x", "w32"], ["h"], name="/fc1/MatMul"),
             helper.make_node("DequantizeLinear", ["q", "s"], ["w4"], name="/fc2/MatMul/weight_dq_int4", axis=0,
                              block_size=K),
             helper.make_node("MatMul", ["h", "w4"], ["y"], name="/fc2/MatMul")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, ["n", K])],
                          [helper.make_tensor_value_info("y", FLOAT, ["n", 6])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_lint_flags_the_old_form_on_strongly_typed_trt():
    found = lint_model(_old_form(), (10, 3), "g.onnx", {"/fc1/MatMul": "fp16", "/fc2/MatMul": "int4"})
    rules = {(f.rule, f.node) for f in found}
    assert ("fp16-weight-cast", "/fc1/MatMul") in rules
    assert ("fp16-plan", "/fc1/MatMul") in rules
    int4 = [f for f in found if f.rule == "int4-activation"]
    assert {f.node for f in int4} == {"/fc2/MatMul/weight_dq_int4"}
    assert any("FLOAT scales" in f.message for f in int4) and any("FP16 activations" in f.message for f in int4)
    run(_old_form(), np.ones((1, K), np.float32))  # a valid graph all the same: ONNX Runtime runs it


def test_lint_flags_mixed_types_and_plan_nodes_the_graph_lacks():
    inits = [numpy_helper.from_array(np.ones((K, 4), np.float32), "w")]
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=FLOAT16, name="c"),
             helper.make_node("MatMul", ["x16", "w"], ["y"], name="mm")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [2, K])],
                          [helper.make_tensor_value_info("y", FLOAT16, [2, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    found = lint_model(m, (10, 3), "g.onnx", {"mm": "fp16", "gone": "int8"})
    assert {(f.rule, f.node) for f in found} == {("mixed-types", "mm"), ("fp16-plan", "mm"), ("plan-node", "gone")}
    assert "x16 as FLOAT16 and w as FLOAT" in next(f.message for f in found if f.rule == "mixed-types")
