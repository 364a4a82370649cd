"""Pipeline benchmark on a video source; prints JSON.

    python bench/pipeline_bench.py [--bundle B] [--video V] [--frames 600] [--threads 0]

Measured in one run, on the same frames:
  * inference-only throughput (best of --repeats, alternating with the pipeline runs): the early-exit
    executor on preprocessed tensors already in memory;
  * pipeline throughput: the service loop on the video file (decode in its thread, preprocess, infer,
    SQLite store), reuse and shadow checks off; ratio = pipeline / inference-only (target >= 0.9);
  * full-depth overhead: DynamicInference's executor forced to the last exit vs bare onnxruntime
    `session.run` chained over the same stage sessions (target <= 5 %), interleaved rounds, medians;
  * reuse: the service loop again with --reuse-window, on the same video: reuse rate and throughput.
Without --bundle it exports a default-size student (96 px, 12 x 12 tokens; needs torch).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import default_bundle, make_video  # noqa: E402  (bench/ is on sys.path: run as a script)


def decoded(video: Path) -> list[np.ndarray]:
    from edge_runtime.sources import open_source

    return [img for _, img, _ in open_source(video)]


def inference_only(model, xs: list[np.ndarray]) -> float:
    run = model.executor.run
    for x in xs[:20]:
        run(x)
    t0 = time.perf_counter()
    for x in xs:
        run(x)
    return len(xs) / (time.perf_counter() - t0)


def pipeline(bundle: Path, video: Path, threads: int, reuse_window: int = 0) -> dict:
    from edge_runtime.service import Service, ServiceConfig

    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(ServiceConfig(bundle=str(bundle), source=str(video), store=f"{tmp}/d.db", shadow_rate=0.0,
                                    reuse_window=reuse_window, threads=threads, handle_signals=False,
                                    jsonl=None))
        t0 = time.perf_counter()
        svc.run()
        wall = time.perf_counter() - t0
    return {"frames": svc.frames, "fps": svc.fps(), "wall_s": wall, "reuse_rate": svc.reuse.rate}


def full_depth_overhead(model, xs: list[np.ndarray], rounds: int = 3) -> dict:
    from edge_runtime.executor import ExitPolicy

    n_exits = model.executor.num_stages - 1
    model.set_policy(ExitPolicy.build(n_exits, [1.0] * n_exits, [1.0] * n_exits))  # never exit early
    sessions = model.backend.sessions
    names = [(s.get_inputs()[0].name, [o.name for o in s.get_outputs()]) for s in sessions]

    def bare(x):
        h = x
        for s, (inp, outs) in zip(sessions, names):
            h, _ = s.run(outs, {inp: h})

    def runtime(x):
        r = model.executor.run(x)
        assert r.exit_index == n_exits

    per = {"bare": [], "runtime": []}
    for fn in (bare, runtime):  # warm-up
        for x in xs[:20]:
            fn(x)
    clock = time.perf_counter
    pair = (("bare", bare), ("runtime", runtime))
    for _ in range(rounds):  # frame by frame, alternating, so load from other processes hits both alike
        for i, x in enumerate(xs):
            for name, fn in (pair if i % 2 else pair[::-1]):  # ABBA: neither always runs second
                t0 = clock()
                fn(x)
                per[name].append((clock() - t0) * 1e3)
    b, r = statistics.median(per["bare"]), statistics.median(per["runtime"])
    return {"bare_ms": round(b, 4), "runtime_ms": round(r, 4), "overhead": round(r / b - 1, 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path)
    p.add_argument("--video", type=Path)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads (0: the bundle's thread policy, see onnxruntime_backend)")
    p.add_argument("--reuse-window", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the best counts")
    args = p.parse_args(argv)
    from edge_runtime.inference import DynamicInference, InferenceConfig
    from edge_runtime.preprocess import preprocess

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or default_bundle(Path(tmp) / "bundle")
        video = args.video or make_video(Path(tmp) / "bench.avi", args.frames)
        model = DynamicInference(bundle, InferenceConfig(threads=args.threads))
        xs = [preprocess(f, model.spec) for f in decoded(video)]
        infer, pipes = [], []
        for _ in range(args.repeats):  # alternate, best of each: the machine may be shared
            infer.append(inference_only(model, xs))
            pipes.append(pipeline(bundle, video, args.threads))
        infer_fps, pipe = max(infer), max(pipes, key=lambda r: r["fps"])
        reuse = pipeline(bundle, video, args.threads, reuse_window=args.reuse_window)
        overhead = full_depth_overhead(model, xs[:200])
    out = {
        "bundle": str(args.bundle or "default student (exported here)"), "model_version": model.bundle.version,
        "video": str(args.video or f"generated 640x480 MJPG, {args.frames} frames"), "frames": len(xs),
        "ort_threads": args.threads, "thread_policy": model.backend.thread_policy.to_dict(),
        "inference_only_fps": round(infer_fps, 1),
        "pipeline_fps": round(pipe["fps"], 1),
        "runs_fps": {"inference_only": [round(f, 1) for f in infer], "pipeline": [round(r["fps"], 1) for r in pipes]},
        "pipeline_ratio": round(pipe["fps"] / infer_fps, 4),
        "pipeline_ratio_ok": pipe["fps"] / infer_fps >= 0.9,
        "full_depth": {**overhead, "overhead_ok": overhead["overhead"] <= 0.05},
        "reuse": {"window": args.reuse_window, "rate": round(reuse["reuse_rate"], 4),
                  "pipeline_fps": round(reuse["fps"], 1)},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
