"""The demo: every step of the job on sample data, on ONNX Runtime on the CPU, then one summary table.

The sample data are real texture photographs shipped with scikit-image, with synthetic defects.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_qwq.console import console
from edge_qwq.pipeline import distill_student, export_student, lint, quantize, step


def run_demo(workdir, per_class: int = 250, teacher_epochs: int = 10, distill_epochs: int = 45,
             quantize_stages: bool = True, fresh: bool = False) -> dict:
    work = Path(workdir)
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    data, teacher, student, bundle = work / "data", work / "teacher", work / "student", work / "bundle"
    timings: dict[str, float] = {}

    with step("1. sample data (real scikit-image textures, synthetic defects)", timings):
        _sample(data, per_class)
    with step("2. teacher (transformers ResNet, trained from a config)", timings):
        _teacher(data, teacher, teacher_epochs)
    with step("3. distil the early-exit student", timings):
        if not (student / "model.safetensors").is_file():
            distill_student(teacher, data, student, distill_epochs)
        else:
            console.print(f"reusing {student}")
    with step("4. export staged ONNX", timings):
        export_student(student, bundle, force=True)
    if quantize_stages:
        with step("5. quantize (mixed INT8 / AWQ INT4 / FP16) and lint for TensorRT", timings):
            quantize(bundle, data, mode="mixed")
            lint(bundle)
    with step("6. bench: student vs teacher, one run", timings):
        bench = _bench(bundle, data, teacher, work / "bench.json")
    with step("7. run on a video made from val images", timings):
        video = _video(data, work / "line.avi")
        run = _run(bundle, video, work / "decisions.jsonl")
    summary = _summary(bench, run, timings, _shape(bundle))
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _sample(data: Path, per_class: int) -> None:
    from export.sample_data import make_sample

    if (data / "val").is_dir():
        console.print(f"reusing {data}")
        return
    counts = make_sample(data, per_class=per_class)
    console.print(f"{sum(counts.values())} images: {counts}")


def _teacher(data: Path, teacher: Path, epochs: int) -> None:
    from export.teacher_train import train_teacher

    if (teacher / "config.json").is_file():
        console.print(f"reusing {teacher}")
        return
    r = train_teacher(data, teacher, arch="resnet", epochs=epochs)
    console.print(f"teacher val accuracy {100 * r['val_accuracy']:.2f}%")


DEMO_BENCH_FRAMES = 300


def _bench(bundle: Path, data: Path, teacher: Path, out: Path) -> dict:
    from edge_qwq.bench import run_bench
    from edge_qwq.tables import bench_table

    # 300 frames per path keeps the demo inside its 10 minutes; `edge-qwq bench` (1000 by default) and
    # bench/model_bench.py give the tail figures
    r = run_bench(bundle, data, teacher, frames=DEMO_BENCH_FRAMES, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    out.write_text(json.dumps(r, indent=2) + "\n")
    console.print(bench_table(r))
    return r


def _video(data: Path, out: Path, frames: int = 120, fps: int = 15) -> Path:
    """An MJPEG .avi of val images, as a camera on the line would see them (JPEG-compressed)."""
    import cv2

    from edge_runtime.image_folder import open_split
    from edge_runtime.preprocess import read_image

    folder = open_split(data, "val")
    paths = folder.paths[:: max(1, len(folder.paths) // frames)][:frames]
    first = read_image(paths[0])
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]))
    for p in paths:
        writer.write(read_image(p))
    writer.release()
    (out.with_suffix(".labels.json")).write_text(json.dumps([p.parent.name for p in paths]) + "\n")
    return out


def _run(bundle: Path, video: Path, out: Path) -> dict:
    from edge_runtime.inference import DynamicInference
    from edge_runtime.sources import open_source

    model = DynamicInference(bundle)
    labels = json.loads(video.with_suffix(".labels.json").read_text())
    decisions = []
    with out.open("w") as f:
        for frame_id, frame, origin in open_source(video):
            d = model.infer(frame)
            f.write(json.dumps({"frame": frame_id, "source": origin, **d.to_dict()}) + "\n")
            decisions.append(d)
    correct = sum(d.label == lab for d, lab in zip(decisions, labels))
    lat = sorted(d.latency_ms for d in decisions)
    console.print(f"{len(decisions)} decisions written to {out} ({model.precision} stages)")
    return {"frames": len(decisions), "accuracy": round(100 * correct / max(1, len(decisions)), 2),
            "precision": model.precision, "p50_ms": round(lat[len(lat) // 2], 3),
            "defects_flagged": sum(d.is_defect for d in decisions)}


def _shape(bundle: Path) -> str:
    """The student's shape as the bundle records it (chosen by the default budget, export/sizing.py)."""
    from edge_runtime.bundle import Bundle

    s = Bundle.open(bundle).manifest.student
    return f"{s.patch} px tokens, dim {s.dim}, depth {s.depth}, heads {s.heads}, exits after {s.exits}"


def _summary(bench: dict, run: dict, timings: dict, shape: str = "") -> dict:
    from rich.table import Table

    acc, flops, lat = bench["accuracy"], bench["flops"], bench["latency_ms"]
    rows = [
        ("student shape (default budget: min(10 % of the teacher, 60 MFLOPs))", shape),
        ("teacher accuracy (ResNet-18 trained here, from scratch)", f"{acc['teacher']:.2f}%"),
        ("student accuracy (full depth)", f"{acc['student_full']:.2f}%"),
        ("student accuracy (early exit)", f"{acc['early_exit']:.2f}%"),
        ("student FLOPs / teacher FLOPs", f"{flops['student_full'] / flops['teacher']:.3f}"),
        ("early-exit compute ratio", f"{bench['compute_ratio']:.3f}"),
        ("mean compute per frame, early exit", f"{flops['student_full'] * bench['compute_ratio'] / 1e6:.1f} MFLOPs"),
        ("exit rates", " / ".join(f"{r:.2f}" for r in bench["exit_rate"])),
        ("p50 latency teacher (its fastest) / early exit",
         f"{_fastest_teacher_p50(bench):.2f} ms / {lat['early_exit']['p50']:.2f} ms"),
    ]
    if "quantized" in bench:
        q = bench["quantized"]["accuracy"]
        rows.append(("quantized accuracy (full / early exit)", f"{q['student_full']:.2f}% / {q['early_exit']:.2f}%"))
        if "weight_bytes" in bench:
            wb = bench["weight_bytes"]
            rows.append(("quantized weight bytes / FP32", f"{wb['quantized'] / wb['fp32']:.3f}"))
    rows += [(f"video: {run['frames']} frames ({run['precision']})",
              f"{run['accuracy']:.1f}% correct, p50 {run['p50_ms']:.2f} ms"),
             ("total time", f"{sum(timings.values()):.0f} s")]
    t = Table(title="edge-qwq demo (ONNX Runtime, CPU; sample data: real textures, synthetic defects)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    return {"bench": bench, "video": run, "timings_s": timings, "student_shape": shape}


def _fastest_teacher_p50(bench: dict) -> float:
    """The teacher's p50 at its fastest setting (the bundle's per-frame thread policy or ORT's defaults):
    the student is compared with the teacher as the teacher would best be run."""
    runs = [bench["latency_ms"]["teacher"], (bench.get("teacher_ort_default") or {}).get("latency_ms")]
    return min(r["p50"] for r in runs if r)
