"""A 3-stage bundle made with onnx.helper alone (no torch), for the device tests: torch is not installed on the
Jetson. Stage 0: image (B,3,32,32) -> 8x8 patches -> hidden (B,16,16); stage k: hidden -> hidden; every stage:
logits (B,4) = mean over tokens @ W.

`add_quantized_stages` gives it the kinds of quantized stages calib writes, each in the form a strongly typed
TensorRT 10 network builds and ONNX Runtime runs on the CPU:
  stage 0  INT8: per-tensor activation Q/DQ on the image, per-channel INT8 patch weights (Conv)
  stage 1  INT4 weight-only: the block MatMul with blocked INT4 weights (DequantizeLinear block_size 16,
           opset 21) and FP16 activations and scales (Cast to FP16 before, to FP32 after): W4A16
  stage 2  FP16: the block MatMul in FP16 (FP16 weights, Cast around it)
`mode="int8"` quantizes every stage like stage 0 (activation Q/DQ on the stage input, per-channel INT8
weights): what TensorRT 8.6 builds too. `damage` > 0 multiplies the weights by (1 + damage * N(0, 1)) before
quantizing, as a broken quantizer might.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ["crack", "ok", "scratch", "spot"]
FP32_OPSET = 17
Q_OPSET = 21  # blocked DequantizeLinear (INT4)


def _weights(k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + k)

    def f(*s):
        return rng.standard_normal(s).astype(np.float32) * 0.3
    w = {"w_head": f(16, 4)}
    if k == 0:
        w["w_patch"] = f(16, 3, 8, 8)
    else:
        w["w_block"] = f(16, 16)
    return w


def _tail(opset: int) -> tuple[list, list]:
    """hidden -> logits: mean over tokens, then the head."""
    if opset >= 18:  # ReduceMean takes its axes as an input from opset 18
        nodes = [helper.make_node("ReduceMean", ["hidden", "axes1"], ["pooled"], keepdims=0)]
        inits = [numpy_helper.from_array(np.array([1], np.int64), "axes1")]
    else:
        nodes = [helper.make_node("ReduceMean", ["hidden"], ["pooled"], axes=[1], keepdims=0)]
        inits = []
    return nodes + [helper.make_node("MatMul", ["pooled", "w_head"], ["logits"])], inits


def _graph(k: int, nodes: list, inits: list, opset: int, name: str) -> onnx.ModelProto:
    inp = (helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32]) if k == 0
           else helper.make_tensor_value_info("hidden_in", TensorProto.FLOAT, ["batch", 16, 16]))
    tail, tail_inits = _tail(opset)
    graph = helper.make_graph(nodes + tail, name, [inp],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", 16, 16]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
                              inits + tail_inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _body(k: int, patch_out: str = "p", block_out: str = "m") -> list:
    if k == 0:
        return [helper.make_node("Reshape", [patch_out, "shape"], ["pr"]),  # (B,16,16) channels x tokens
                helper.make_node("Transpose", ["pr"], ["hidden"], perm=[0, 2, 1])]  # (B,tokens,dim)
    return [helper.make_node("Relu", [block_out], ["r"]),
            helper.make_node("Add", ["hidden_in", "r"], ["hidden"])]


def _fp32_stage(k: int) -> onnx.ModelProto:
    w = _weights(k)
    inits = [numpy_helper.from_array(v, n) for n, v in w.items()]
    if k == 0:
        nodes = [helper.make_node("Conv", ["image", "w_patch"], ["p"], strides=[8, 8])]  # (B,16,4,4)
        inits.append(numpy_helper.from_array(np.array([0, 16, 16], np.int64), "shape"))
    else:
        nodes = [helper.make_node("MatMul", ["hidden_in", "w_block"], ["m"])]
    return _graph(k, nodes + _body(k), inits, FP32_OPSET, f"stage{k}")


def make_onnx_bundle(root: Path) -> Path:
    from edge_runtime.bundle import Bundle, ExitPolicySpec, InputSpec, Manifest, StageSpec
    from edge_runtime.onnx_cost import graph_flops

    (root / "stages").mkdir(parents=True)
    stages = []
    for k in range(3):
        rel = f"stages/stage{k}.onnx"
        onnx.save(_fp32_stage(k), root / rel)
        stages.append(StageSpec(k, rel, "image" if k == 0 else "hidden_in", graph_flops(root / rel)))
    b = Bundle.create(root, Manifest(CLASSES, "ok", InputSpec(32, 32, (0.5,) * 3, (0.25,) * 3), stages,
                                     ExitPolicySpec([0.85, 0.92], [0.85, 0.92])))
    for s in stages:
        b.add_file(s.file)
    b.save()
    return root


# ---------------- quantized stages ----------------

def _int8_per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scale = np.maximum(amax, 1e-8) / 127.0
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def _act_qdq(x: str, amax: float) -> tuple[list, list]:
    """Per-tensor symmetric INT8 Q/DQ of activation x (zero point 0): x -> x_dq."""
    nodes = [helper.make_node("QuantizeLinear", [x, f"{x}_s", f"{x}_z"], [f"{x}_q"]),
             helper.make_node("DequantizeLinear", [f"{x}_q", f"{x}_s", f"{x}_z"], [f"{x}_dq"])]
    inits = [numpy_helper.from_array(np.array(amax / 127.0, np.float32), f"{x}_s"),
             numpy_helper.from_array(np.array(0, np.int8), f"{x}_z")]
    return nodes, inits


def _int8_stage(k: int, w: dict) -> onnx.ModelProto:
    x = "image" if k == 0 else "hidden_in"
    nodes, inits = _act_qdq(x, 4.0 if k == 0 else 8.0)
    name = "w_patch" if k == 0 else "w_block"
    axis = 0 if k == 0 else 1  # Conv: output channels; MatMul (K, N): the N columns
    q, s = _int8_per_channel(w[name], axis)
    nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s"], [f"{name}_dq"], axis=axis))
    inits += [numpy_helper.from_array(q, f"{name}_q"), numpy_helper.from_array(s, f"{name}_s"),
              numpy_helper.from_array(w["w_head"], "w_head")]
    if k == 0:
        nodes.append(helper.make_node("Conv", [f"{x}_dq", f"{name}_dq"], ["p"], strides=[8, 8]))
        inits.append(numpy_helper.from_array(np.array([0, 16, 16], np.int64), "shape"))
    else:
        nodes.append(helper.make_node("MatMul", [f"{x}_dq", f"{name}_dq"], ["m"]))
    return _graph(k, nodes + _body(k), inits, Q_OPSET, f"stage{k}_int8")


def _int4_fp16_stage(k: int, w: dict) -> onnx.ModelProto:
    """W4A16: FP16 activations into a MatMul whose weights are blocked INT4 (block 16 along K), FP16 scales."""
    wb = w["w_block"]  # (K=16, N=16)
    block = 16
    amax = np.abs(wb.reshape(wb.shape[0] // block, block, wb.shape[1])).max(axis=1)  # (K/block, N)
    scale = (np.maximum(amax, 1e-8) / 7.0).astype(np.float16)
    q = np.clip(np.round(wb / np.repeat(scale.astype(np.float32), block, axis=0)), -8, 7).astype(np.int64)
    nodes = [helper.make_node("Cast", ["hidden_in"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("DequantizeLinear", ["w_block_q", "w_block_s"], ["w_block16"], axis=0,
                              block_size=block),
             helper.make_node("MatMul", ["x16", "w_block16"], ["m16"]),
             helper.make_node("Cast", ["m16"], ["m"], to=TensorProto.FLOAT)]
    inits = [helper.make_tensor("w_block_q", TensorProto.INT4, list(wb.shape), q.flatten().tolist()),
             numpy_helper.from_array(scale, "w_block_s"), numpy_helper.from_array(w["w_head"], "w_head")]
    return _graph(k, nodes + _body(k), inits, Q_OPSET, f"stage{k}_int4_fp16")


def _fp16_stage(k: int, w: dict) -> onnx.ModelProto:
    nodes = [helper.make_node("Cast", ["hidden_in"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("MatMul", ["x16", "w_block16"], ["m16"]),
             helper.make_node("Cast", ["m16"], ["m"], to=TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(w["w_block"].astype(np.float16), "w_block16"),
             numpy_helper.from_array(w["w_head"], "w_head")]
    return _graph(k, nodes + _body(k), inits, Q_OPSET, f"stage{k}_fp16")


def quantized_plan(mode: str) -> dict[str, dict[str, str]]:
    if mode == "int8":
        return {f"stage{k}": {"Conv" if k == 0 else "MatMul": "int8"} for k in range(3)}
    return {"stage0": {"Conv": "int8"}, "stage1": {"MatMul": "int4"}, "stage2": {"MatMul": "fp16"}}


def add_quantized_stages(root: Path, mode: str = "mixed", damage: float = 0.0, seed: int = 0) -> Path:
    """stages/stage{k}.q.onnx for the bundle at root (made by make_onnx_bundle), recorded in the manifest
    with a quantization section as calib writes it. mode: "mixed" (INT8, INT4 W4A16, FP16) or "int8"."""
    from edge_runtime.bundle import Bundle, QuantizationSpec

    b = Bundle.open(root)
    rng = np.random.default_rng(seed)
    for st in b.stages:
        w = _weights(st.index)
        if damage:
            w = {n: (v * (1 + damage * rng.standard_normal(v.shape))).astype(np.float32) for n, v in w.items()}
        k = st.index
        model = (_int8_stage(k, w) if mode == "int8" or k == 0 else
                 _int4_fp16_stage(k, w) if k == 1 else _fp16_stage(k, w))
        rel = st.file.replace(".onnx", ".q.onnx")
        onnx.save(model, root / rel)
        st.quantized = rel
        b.add_file(rel)
    b.manifest.quantization = QuantizationSpec(
        mode=mode, trt_version="8.6" if mode == "int8" else "10.3", calibration_method="max (test bundle)",
        plan=quantized_plan(mode), eval_images=0, fp32_accuracy_pct=0.0, fp32_accuracy_early_exit_pct=0.0,
        accuracy_pct=0.0, accuracy_early_exit_pct=0.0, fp32_agreement_pct=100.0, weight_bytes_fp32=0,
        weight_bytes_quantized=0, opset=Q_OPSET)
    b.save()
    return root


def add_calibration_samples(root: Path, n: int = 16, seed: int = 0) -> Path:
    """Stored calibration inputs (calibration.samples), as calib keeps them for verification on the device."""
    from edge_runtime.bundle import Bundle, CalibrationSpec

    b = Bundle.open(root)
    x = np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)
    (root / "calib").mkdir(exist_ok=True)
    np.save(root / "calib" / "samples.npy", x)
    b.add_file("calib/samples.npy")
    b.manifest.calibration = CalibrationSpec(images=n, source="test inputs", resized_images=0, input_stats={},
                                             hidden_range=[], samples="calib/samples.npy", samples_count=n)
    b.save()
    return root
