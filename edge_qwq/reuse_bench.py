"""Changed-tiles-only on a video: tiles inferred with reuse against frames x tiles, and whether the frame
decisions stay the same as without reuse (both runs over the same decoded frames, in one process).

    >>> r = run_reuse_bench("bundle/", "line.avi", window=5)     # doctest: +SKIP
    >>> r["tiles_inferred_fraction"], r["same_decisions_pct"]   # doctest: +SKIP
    (0.21, 100.0)
"""
from __future__ import annotations

import numpy as np


def run_reuse_bench(bundle_path, video, window: int | None = None, threshold: float | None = None,
                    precision: str = "auto", max_frames: int = 0) -> dict:
    from edge_runtime.inference import DynamicInference, InferenceConfig
    from edge_runtime.sources import open_source

    frames = []
    with open_source(video) as src:  # full-size decode: tile mode needs every pixel
        for n, (_, image, _) in enumerate(src):
            if max_frames and n >= max_frames:
                break
            frames.append(image)
    base = DynamicInference(bundle_path, InferenceConfig(precision=precision, tiling="on", reuse_window=0))
    reuse = DynamicInference(bundle_path, InferenceConfig(precision=precision, tiling="on", reuse_window=window,
                                                          reuse_threshold=threshold))
    if reuse.reuse_window <= 0:
        reuse = DynamicInference(bundle_path, InferenceConfig(precision=precision, tiling="on", reuse_window=5,
                                                              reuse_threshold=threshold))
    same, inferred, tiles, ms_base, ms_reuse, reused_rate = 0, 0, 0, [], [], []
    for image in frames:
        a, b = base.infer(image), reuse.infer(image)
        same += (a.is_defect == b.is_defect) and (a.label == b.label)
        inferred += b.tiles["inferred"]
        tiles += b.tiles["tiles"]
        reused_rate.append(b.tiles["reused"] / b.tiles["tiles"])
        ms_base.append(a.latency_ms)
        ms_reuse.append(b.latency_ms)
    n = len(frames)
    return {"video": str(video), "frames": n, "tiles_per_frame": tiles / max(1, n),
            "reuse_window": reuse.reuse_window, "reuse_threshold": reuse.reuse_threshold,
            "tiles_inferred": inferred, "tiles_total": tiles,
            "tiles_inferred_fraction": round(inferred / max(1, tiles), 4),
            "fewer_tiles_factor": round(tiles / max(1, inferred), 2),
            "reuse_rate_per_frame": {"mean": round(float(np.mean(reused_rate)), 4),
                                     "p10": round(float(np.percentile(reused_rate, 10)), 4)},
            "same_decisions_pct": round(100.0 * same / max(1, n), 2),
            "ms_per_frame": {"without_reuse_p50": round(float(np.median(ms_base)), 2),
                             "with_reuse_p50": round(float(np.median(ms_reuse)), 2)}}
