"""`edge-qwq bench`: one run that measures the student (FP32 and quantized) and its teacher side by side.

The JSON names are a contract (issue 2 and 3): accuracy{teacher, student_full, early_exit, exits},
exit_rate, compute_ratio, flops{teacher, student_full}, latency_ms{teacher, student_full, early_exit},
backend; and for a quantized bundle `quantized`, `weight_bytes`, `ort_default_int8_accuracy`.
Accuracies are in percent.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.backends import open_backend
from edge_runtime.bundle import Bundle
from edge_runtime.evaluate import accuracy_report, exit_logits, latency_report, percentiles, time_per_frame
from edge_runtime.executor import EarlyExitExecutor, ExitPolicy
from edge_runtime.image_folder import open_split
from edge_runtime.preprocess import normalize_rgb


def run_bench(bundle_path, data, teacher_dir=None, frames: int = 200, split: str = "val", log=print) -> dict:
    bundle = Bundle.open(bundle_path)
    spec = bundle.input
    folder = open_split(data, split, bundle.classes, allow_empty_classes=True)
    rgb = folder.load_rgb(spec.height, spec.width)  # (N, H, W, 3) uint8
    x, y = normalize_rgb(rgb, spec), folder.labels  # (N, 3, H, W) float32, (N,)
    flops = [s.flops for s in bundle.stages]
    policy = _policy(bundle)

    log(f"bench: {len(y)} {split} images, {bundle.root}")
    result = _measure(bundle, "fp32", x, y, policy, flops, frames)
    result["flops"] = {"student_full": int(sum(flops)), "student_stages": flops, "teacher": None}
    result["accuracy"]["teacher"] = None
    result["latency_ms"]["teacher"] = None
    if teacher_dir is not None:
        log("bench: exporting the teacher to ONNX to time it on the same backend")
        _bench_teacher(teacher_dir, rgb, y, frames, result, bundle.classes)
    if all(s.quantized for s in bundle.stages):
        log("bench: quantized stages")
        result.update(_bench_quantized(bundle, data, x, y, policy, flops, frames))
    result["backend"] = "onnxruntime-cpu"
    result["images"] = int(len(y))
    result["exit_policy"] = {"early_exit": list(policy.thresholds), "early_exit_ok": list(policy.ok_thresholds)}
    return result


def _policy(bundle: Bundle) -> ExitPolicy:
    p = bundle.exit_policy
    return ExitPolicy.build(len(bundle.stages) - 1, p.get("early_exit"), p.get("early_exit_ok"))


def _measure(bundle, precision: str, x, y, policy, flops, frames) -> dict:
    executor = EarlyExitExecutor(open_backend("onnxruntime", bundle, precision=precision), policy, bundle.ok_index)
    report = accuracy_report(exit_logits(executor, x), y, policy, bundle.ok_index, flops)
    report["latency_ms"] = latency_report(executor, x, frames)
    return report


def _bench_teacher(teacher_dir, rgb: np.ndarray, y: np.ndarray, frames: int, result: dict,
                   classes: list[str]) -> None:
    from edge_runtime.backends.onnxruntime_backend import make_session
    from edge_runtime.bundle import InputSpec
    from edge_runtime.onnx_cost import graph_flops
    from export.teacher_onnx import export_teacher_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.onnx"
        teacher = export_teacher_onnx(teacher_dir, path)
        spec = InputSpec(teacher.image_size, teacher.image_size, teacher.mean, teacher.std)
        tx = normalize_rgb(_resize_all(rgb, teacher.image_size), spec)
        sess = make_session(path)
        order = [teacher.classes.index(c) for c in classes]  # teacher label order -> bundle order
        logits = np.concatenate([sess.run(None, {"pixel_values": tx[i:i + 64]})[0] for i in range(0, len(tx), 64)])
        logits = logits[:, order]
        result["accuracy"]["teacher"] = round(100.0 * float((logits.argmax(1) == y).mean()), 3)
        result["flops"]["teacher"] = int(graph_flops(path))
        result["latency_ms"]["teacher"] = percentiles(time_per_frame(lambda xi: sess.run(None, {"pixel_values": xi}),
                                                                     tx, frames))


def _resize_all(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if rgb.shape[1] == side and rgb.shape[2] == side:
        return rgb
    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in rgb])


def _bench_quantized(bundle, data, x, y, policy, flops, frames) -> dict:
    q = _measure(bundle, "quantized", x, y, policy, flops, frames)
    out = {"quantized": {"accuracy": q["accuracy"], "latency_ms": q["latency_ms"], "exit_rate": q["exit_rate"],
                         "compute_ratio": q["compute_ratio"]}}
    import calib
    from calib.peer import ort_default_int8

    out["weight_bytes"] = calib.weight_bytes(bundle.root)
    with tempfile.TemporaryDirectory() as tmp:
        paths = ort_default_int8(bundle.root, Path(data) / "calib", tmp)
        backend = open_backend("onnxruntime", bundle, files=paths)
        executor = EarlyExitExecutor(backend, policy, bundle.ok_index)
        peer = accuracy_report(exit_logits(executor, x), y, policy, bundle.ok_index, flops)
    out["ort_default_int8_accuracy"] = peer["accuracy"]
    return out
