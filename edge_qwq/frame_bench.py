"""`edge-qwq bench --frames DIR`: whole frames, scored against their true boxes, in one run.

Each frame is run twice in the same loop, with per-tile early exit and compaction and with every tile to
full depth, so the speed ratio between the two is measured under the same conditions (ms are wall time
here, ONNX Runtime on this machine). The JSON names: `early_exit` and `full_depth` (each the metrics of
edge_runtime.frame_eval.frame_metrics: recall_pct, false_alarm_pct, accuracy_pct, located_pct,
location_hits_pct, false_boxes_per_frame, tiles_per_frame, stage_tiles_per_frame, compute_ratio,
latency_ms{p50, p99}), `speedup` (full depth / early exit, p50 and mean ms), `exit_rates` (share of tiles
leaving at each exit), `threshold`, `precision`, `frame_size`, `estimate` (ms per frame on each Orin at
the measured exit rates, when the estimator can give it), `note`.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.frame_eval import FrameOutcome, frame_metrics, load_frames

NOTE = "frames: real scikit-image texture photographs with synthetic defects (edge-qwq data sample --frames)"


def run_frame_bench(bundle_path, frames_dir, limit: int | None = None, precision: str = "auto",
                    progress=None, log=print) -> dict:
    from edge_runtime.inference import DynamicInference, InferenceConfig

    bundle = Bundle.open(bundle_path)
    frames = load_frames(frames_dir, limit)
    model = DynamicInference(bundle_path, InferenceConfig(precision=precision, tiling="on", reuse_window=0))
    log(f"bench: {len(frames)} frames from {frames_dir}, {model.precision} stages, frame threshold "
        f"{model.frame_threshold:.6f}; each frame with early exit and at full depth")
    early, full = [], []
    for i in range(len(frames)):
        image = frames.image(i)
        for compact, out in ((True, early), (False, full)):
            out.append(FrameOutcome.of(frames.truth[i], model.infer_tiles(image, compact=compact)))
        if progress:
            progress(i + 1, len(frames))
    flops = [s.flops for s in bundle.stages]
    tile_hw = (bundle.input.height, bundle.input.width)
    e, f = frame_metrics(early, tile_hw, flops), frame_metrics(full, tile_hw, flops)
    rates = exit_rates(e["stage_tiles_per_frame"], e["tiles_per_frame"])
    h, w = frames.image(0).shape[:2]
    r = {"frames": len(frames), "frame_size": [w, h], "precision": model.precision,
         "threshold": model.frame_threshold, "tile_overlap": model.tiled.grids.overlap,
         "early_exit": e, "full_depth": f, "exit_rates": rates,
         "speedup": {"p50": round(f["latency_ms"]["p50"] / e["latency_ms"]["p50"], 3),
                     "mean": round(float(np.mean([o.latency_ms for o in full]) /
                                         np.mean([o.latency_ms for o in early])), 3)},
         "accuracy_drop_pct": round(f["accuracy_pct"] - e["accuracy_pct"], 2), "note": NOTE}
    r["estimate"] = _estimate(bundle, rates)
    return r


def exit_rates(stage_tiles: list[float], tiles: float) -> list[float]:
    """Share of tiles leaving at each exit, from the tiles entering each stage."""
    entering = list(stage_tiles) + [0.0]
    return [round((entering[k] - entering[k + 1]) / tiles, 4) if tiles else 0.0 for k in range(len(stage_tiles))]


def _estimate(bundle: Bundle, rates: list[float]) -> dict | None:
    """Estimated ms per frame on each Orin at these exit rates, for 1920x1080 and the bench's frame size."""
    try:
        from engine_builder.estimate import estimate_frame
    except ImportError:
        return None
    out = {}
    for target in ("orin-agx", "orin-nx", "orin-nano"):
        try:
            out[target] = estimate_frame(bundle, target, frame_size=(1080, 1920), exit_rates=rates[:-1])
        except Exception as e:  # noqa: BLE001 - an estimate must not sink a measured bench
            out[target] = {"error": str(e)}
    return out
