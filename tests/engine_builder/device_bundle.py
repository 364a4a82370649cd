"""A 3-stage FP32 bundle made with onnx.helper alone (no torch), for the device tests: torch is not
installed on the Jetson. Stage 0: image (B,3,32,32) -> 8x8 patches -> hidden (B,16,16); stage k: hidden ->
hidden; every stage: logits (B,4) = mean over tokens @ W."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ["crack", "ok", "scratch", "spot"]


def _stage(k: int, rng) -> onnx.ModelProto:
    def f(*s):
        return rng.standard_normal(s).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(f(16, 4), "w_head")]
    if k == 0:
        nodes = [helper.make_node("Conv", ["image", "w_patch"], ["p"], strides=[8, 8]),  # (B,16,4,4)
                 helper.make_node("Reshape", ["p", "shape"], ["pr"]),  # (B,16,16) channels x tokens
                 helper.make_node("Transpose", ["pr"], ["hidden"], perm=[0, 2, 1])]  # (B,tokens,dim)
        inits += [numpy_helper.from_array(f(16, 3, 8, 8), "w_patch"),
                  numpy_helper.from_array(np.array([0, 16, 16], np.int64), "shape")]
        inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])
    else:
        nodes = [helper.make_node("MatMul", ["hidden_in", "w_block"], ["m"]),
                 helper.make_node("Relu", ["m"], ["r"]),
                 helper.make_node("Add", ["hidden_in", "r"], ["hidden"])]
        inits += [numpy_helper.from_array(f(16, 16), "w_block")]
        inp = helper.make_tensor_value_info("hidden_in", TensorProto.FLOAT, ["batch", 16, 16])
    nodes += [helper.make_node("ReduceMean", ["hidden"], ["pooled"], axes=[1], keepdims=0),
              helper.make_node("MatMul", ["pooled", "w_head"], ["logits"])]
    graph = helper.make_graph(nodes, f"stage{k}", [inp],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", 16, 16]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def make_onnx_bundle(root: Path) -> Path:
    from edge_runtime.bundle import Bundle, ExitPolicySpec, InputSpec, Manifest, StageSpec
    from edge_runtime.onnx_cost import graph_flops

    rng = np.random.default_rng(0)
    (root / "stages").mkdir(parents=True)
    stages = []
    for k in range(3):
        rel = f"stages/stage{k}.onnx"
        onnx.save(_stage(k, rng), root / rel)
        stages.append(StageSpec(k, rel, "image" if k == 0 else "hidden_in", graph_flops(root / rel)))
    b = Bundle.create(root, Manifest(CLASSES, "ok", InputSpec(32, 32, (0.5,) * 3, (0.25,) * 3), stages,
                                     ExitPolicySpec([0.85, 0.92], [0.85, 0.92])))
    for s in stages:
        b.add_file(s.file)
    b.save()
    return root
