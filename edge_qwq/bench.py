"""`edge-qwq bench`: one run that measures the student (FP32 and quantized) and its teacher side by side.

The JSON names are a contract (issue 2 and 3): accuracy{teacher, student_full, early_exit, exits},
exit_rate, compute_ratio, flops{teacher, student_full}, latency_ms{teacher, student_full, early_exit},
backend; and for a quantized bundle `quantized`, `weight_bytes`, `ort_default_int8_accuracy`.
Accuracies are in percent. Every latency entry is {p50, p95, p99} in ms per single frame (issue 8), over
`frames` timed frames (default FRAMES). Also: `thread_policy` (the backend's ONNX Runtime thread policy,
the same for every session timed here, the teacher's included), with a teacher also `teacher_ort_default`
(the teacher timed again with ONNX Runtime's default options, its best as a single session), and
`pruning` (for a pruned student: threshold, heads kept, attention and full-depth FLOPs before and after),
`runtime_overhead` (the executor at full depth vs bare `session.run` chained over the same FP32 stage
sessions, same options: bare_ms, runtime_ms, overhead_pct), `frames`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.backends import open_backend
from edge_runtime.bundle import Bundle
from edge_runtime.evaluate import (
    accuracy_report,
    exit_logits,
    full_depth,
    latency_report,
    overhead_report,
    percentiles,
    time_per_frame,
)
from edge_runtime.executor import EarlyExitExecutor, ExitPolicy
from edge_runtime.image_folder import open_split
from edge_runtime.preprocess import normalize_rgb


FRAMES = 1000  # single frames timed per latency path


def run_bench(bundle_path, data, teacher_dir=None, frames: int = FRAMES, split: str = "val", log=print) -> dict:
    bundle = Bundle.open(bundle_path)
    spec = bundle.input
    folder = open_split(data, split, bundle.classes, allow_empty_classes=True)
    rgb = folder.load_rgb(spec.height, spec.width)  # (N, H, W, 3) uint8
    x, y = normalize_rgb(rgb, spec), folder.labels  # (N, 3, H, W) float32, (N,)
    flops = [s.flops for s in bundle.stages]
    policy = _policy(bundle)

    log(f"bench: {len(y)} {split} images, {bundle.root}; {frames} frames timed per path")
    result, backend = _measure(bundle, "fp32", x, y, policy, flops, frames)
    result["bundle_version"] = bundle.version  # the manifest's digest: `report` checks it is this bundle's
    result["runtime_overhead"] = _overhead(backend, policy, bundle.ok_index, x, frames)
    result["flops"] = {"student_full": int(sum(flops)), "student_stages": flops, "teacher": None}
    result["accuracy"]["teacher"] = None
    result["latency_ms"]["teacher"] = None
    if teacher_dir is not None:
        log("bench: exporting the teacher to ONNX to time it on the same backend")
        _bench_teacher(teacher_dir, rgb, y, frames, result, bundle.classes, backend.thread_policy)
    if all(s.quantized for s in bundle.stages):
        log("bench: quantized stages")
        result.update(_bench_quantized(bundle, data, x, y, policy, flops, frames))
    pruning = bundle.manifest.student.pruning if bundle.manifest.student else None
    if pruning is not None:
        result["pruning"] = pruning.summary()
    result["backend"] = "onnxruntime-cpu"
    result["thread_policy"] = backend.thread_policy.to_dict()
    result["frames"] = frames
    result["images"] = int(len(y))
    result["exit_policy"] = {"early_exit": list(policy.thresholds), "early_exit_ok": list(policy.ok_thresholds)}
    return result


def _policy(bundle: Bundle) -> ExitPolicy:
    return ExitPolicy.from_spec(bundle.exit_policy, len(bundle.stages) - 1)


def _measure(bundle, precision: str, x, y, policy, flops, frames):
    backend = open_backend("onnxruntime", bundle, precision=precision)
    executor = EarlyExitExecutor(backend, policy, bundle.ok_index)
    report = accuracy_report(exit_logits(executor, x), y, policy, bundle.ok_index, flops)
    report["latency_ms"] = latency_report(executor, x, frames)
    return report, backend


def _overhead(backend, policy, ok_index: int, x: np.ndarray, frames: int) -> dict:
    """The executor at full depth vs the same per-frame sessions (same options) chained by hand."""
    runtime = full_depth(EarlyExitExecutor(backend, policy, ok_index)).run
    chain = [(s.run, [o.name for o in s.get_outputs()], s.get_inputs()[0].name) for s in backend.sessions]

    def bare(xi):
        h = xi
        for run, outs, inp in chain:
            h, _ = run(outs, {inp: h})

    return overhead_report(runtime, bare, x, frames)


def _bench_teacher(teacher_dir, rgb: np.ndarray, y: np.ndarray, frames: int, result: dict,
                   classes: list[str], thread_policy) -> None:
    from edge_runtime.backends.onnxruntime_backend import make_session
    from edge_runtime.bundle import InputSpec
    from edge_runtime.onnx_cost import graph_flops
    from export.teacher_onnx import export_teacher_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.onnx"
        teacher = export_teacher_onnx(teacher_dir, path)
        spec = InputSpec(teacher.image_size, teacher.image_size, teacher.mean, teacher.std)
        tx = normalize_rgb(_resize_all(rgb, teacher.image_size), spec)
        batch = make_session(path, policy=thread_policy, role="batch")
        order = [teacher.classes.index(c) for c in classes]  # teacher label order -> bundle order
        logits = np.concatenate([batch.run(None, {"pixel_values": tx[i:i + 64]})[0] for i in range(0, len(tx), 64)])
        logits = logits[:, order]
        result["accuracy"]["teacher"] = round(100.0 * float((logits.argmax(1) == y).mean()), 3)
        result["flops"]["teacher"] = int(graph_flops(path))
        sess = make_session(path, policy=thread_policy, role="frame")  # the stages' per-frame options
        result["latency_ms"]["teacher"] = percentiles(time_per_frame(lambda xi: sess.run(None, {"pixel_values": xi}),
                                                                     tx, frames))
        # One session has no other stage to fight, so ONNX Runtime's defaults are the teacher's best: report it
        # there too, so a student-vs-teacher ratio is not flattered by the student's thread policy.
        import onnxruntime as ort

        own = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        result["teacher_ort_default"] = {
            "latency_ms": percentiles(time_per_frame(lambda xi: own.run(None, {"pixel_values": xi}), tx, frames)),
            "options": "onnxruntime defaults (intra-op threads: one per core, spinning on)"}


def _resize_all(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if rgb.shape[1] == side and rgb.shape[2] == side:
        return rgb
    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in rgb])


def _bench_quantized(bundle, data, x, y, policy, flops, frames) -> dict:
    q, _ = _measure(bundle, "quantized", x, y, policy, flops, frames)
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
