import shutil

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from calib.lint import lint_bundle, lint_model


def _copy(quantized_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(quantized_bundle[0], dst)
    return dst


def _rewrite(bundle, rel, edit):
    from edge_runtime.bundle import Bundle

    path = bundle / rel
    m = onnx.load(str(path))
    edit(m)
    onnx.save(m, str(path))
    b = Bundle.open(bundle, verify=False)
    b.add_file(rel)
    b.save()


def test_pipeline_output_is_clean(quantized_bundle):
    assert lint_bundle(quantized_bundle[0], "10.3") == []


def test_non_zero_zero_point_names_the_node(quantized_bundle, tmp_path):
    bundle = _copy(quantized_bundle, tmp_path)
    state = {}

    def edit(m):
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
        zp = next(i for i in m.graph.initializer if i.name == q.input[2])
        zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
        state["node"] = q.name

    _rewrite(bundle, "stages/stage1.q.onnx", edit)
    found = lint_bundle(bundle, "10.3")
    assert any(f.rule == "zero-point" and f.node == state["node"] and f.file == "stages/stage1.q.onnx" for f in found)
    assert state["node"] in str(found[0]) or any(state["node"] in str(f) for f in found)


def test_int4_with_trt_86_names_the_node(int4_bundle):
    # the int4-mode bundle: it has INT4 layers whatever a mixed plan's search would choose
    found = lint_bundle(int4_bundle[0], "8.6")
    int4 = [f for f in found if f.rule == "int4-version"]
    assert int4 and all(f.node.endswith("weight_dq_int4") for f in int4)
    assert any(f.rule == "opset" for f in found)


def _conv_int4_model():
    import ml_dtypes

    w = np.ones((4, 3, 2, 2), np.int8).astype(ml_dtypes.int4)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.ones((4, 3, 1, 2), np.float32), "w_s")]
    dq = helper.make_node("DequantizeLinear", ["w_q", "w_s"], ["w"], name="conv_w_dq", axis=3, block_size=2)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv")
    g = helper.make_graph([dq, conv], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_int4_conv_weight_names_the_node():
    found = lint_model(_conv_int4_model(), (10, 3), "x.onnx")
    assert [f.node for f in found if f.rule == "int4-op"] == ["conv_w_dq"]
    assert any("the_conv" in f.message for f in found)
    assert any(f.rule == "int4-2d" for f in found)


def test_unsupported_op_and_per_tensor_weight():
    w = numpy_helper.from_array(np.ones((3, 5), np.int8), "w_q")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "w_s")
    dq = helper.make_node("DequantizeLinear", ["w_q", "w_s"], ["w"], name="w_dq")
    mm = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    nb = helper.make_node("MatMulNBits", ["y"], ["z"], name="ms_op", domain="com.microsoft")
    g = helper.make_graph([dq, mm, nb], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)], [w, s])
    found = lint_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), (10, 3))
    assert {(f.node, f.rule) for f in found} == {("w_dq", "per-channel-weights"), ("ms_op", "unsupported-op")}


def test_cli_lint_exit_code(quantized_bundle):
    from edge_qwq.cli import main

    assert main(["lint", "--bundle", str(quantized_bundle[0])]) == 0
    assert main(["lint", "--bundle", str(quantized_bundle[0]), "--trt-version", "8.6"]) == 2


@pytest.mark.parametrize("version,opset", [("8.6", 17), ("10.3", 21), ("9.2", 19)])
def test_max_opset_per_version(version, opset):
    from calib.lint import max_opset, parse_version

    assert max_opset(parse_version(version)) == opset
