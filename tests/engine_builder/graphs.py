"""Small ONNX graphs built by hand for the estimator and plan tests (FP32, INT8 Q/DQ, INT4 blocked)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def fp32_graph() -> onnx.ModelProto:
    """Conv (1,3,8,8)*(8,3,3,3) pad 1 -> (1,8,8,8); MatMul (1,16,32)x(32,24); Gemm (4,10)x(10,6)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["a", "w_mm"], ["b"], name="matmul"),
        helper.make_node("Gemm", ["g", "w_gemm"], ["h"], name="gemm"),
        helper.make_node("Relu", ["y"], ["y_relu"], name="relu"),  # element-wise: no FLOPs, fused
    ]
    inits = [_init("w_conv", rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
             _init("w_mm", rng.standard_normal((32, 24)).astype(np.float32)),
             _init("w_gemm", rng.standard_normal((10, 6)).astype(np.float32))]
    graph = helper.make_graph(
        nodes, "fp32",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
         helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 16, 32]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [4, 10])],
        [helper.make_tensor_value_info("y_relu", TensorProto.FLOAT, ["batch", 8, 8, 8]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 16, 24]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [4, 6])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def qdq_graph() -> onnx.ModelProto:
    """INT8 Q/DQ Conv (activation + per-channel weight) and an INT4 weight-only MatMul (block 16), opset 21."""
    rng = np.random.default_rng(0)
    w_int4 = rng.integers(-8, 8, size=(32, 24))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xdq"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["wq_conv", "sw_conv"], ["w_conv"], name="dq_w_conv", axis=0),
        helper.make_node("Conv", ["xdq", "w_conv"], ["y"], name="conv_int8", pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["wq_mm", "sw_mm"], ["w_mm"], name="dq_w_mm", axis=0,
                         block_size=16),
        helper.make_node("MatMul", ["a", "w_mm"], ["b"], name="matmul_int4"),
    ]
    inits = [_init("sx", np.float32(0.05)), _init("zx", np.int8(0)),
             _init("wq_conv", rng.integers(-127, 128, size=(8, 3, 3, 3)).astype(np.int8)),
             _init("sw_conv", np.full(8, 0.01, np.float32)),
             helper.make_tensor("wq_mm", TensorProto.INT4, [32, 24], w_int4.flatten().tolist()),
             _init("sw_mm", np.full((2, 24), 0.02, np.float32))]
    graph = helper.make_graph(
        nodes, "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
         helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 16, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 8, 8]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 16, 24])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
