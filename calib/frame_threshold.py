"""The frame-level threshold of a tile-mode bundle, fitted on defect-free frames.

A 1280x960 frame has 234 tiles: a tile that is wrong 1 % of the time makes about 90 % of good frames
false alarms. So the frame decision gets its own threshold: the smallest tile score (defect probability)
at which at most `target` of the good fitting frames would be flagged, and never under 0.5. It is fitted
per precision (the quantized stages score a little differently from FP32) and stored in the manifest's
`frames` section with what it measured on the fitting frames.

    >>> spec = fit_frame_threshold("bundle/", "data/frames/fit", target=0.02)    # doctest: +SKIP
    >>> spec.threshold                                                          # doctest: +SKIP
    {'fp32': 0.9987, 'quantized': 0.9991}
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_runtime.bundle import Bundle, FrameSpec
from edge_runtime.errors import InputError

TARGET_FALSE_ALARMS = 0.03  # fraction of good fitting frames allowed over the threshold
MIN_GOOD_FRAMES = 20
FLOOR = 0.5  # a tile must at least lean to "defect"


def frame_maxima(bundle_path, frames, precision: str,
                 progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, list[float]]:
    """((n,) the highest tile score of each frame, the share of tiles leaving at each exit). Tiles exit
    early only as ok: a tile that might be a defect always reaches the last stage, so its score does not
    depend on the threshold being fitted."""
    from edge_runtime.inference import DynamicInference, InferenceConfig

    model = DynamicInference(bundle_path, InferenceConfig(precision=precision, tiling="on", frame_threshold=1.0,
                                                          reuse_window=0))
    out, entering = np.empty(len(frames)), np.zeros(model.num_stages + 1)
    for i in range(len(frames)):
        verdict, info = model.tiled.infer(frames.image(i))
        out[i] = verdict.scores.max()
        entering[:len(info.stage_tiles)] += info.stage_tiles
        if progress:
            progress(i + 1, len(frames))
    rates = [round(float((entering[k] - entering[k + 1]) / entering[0]), 5) for k in range(model.num_stages)]
    return out, rates


def choose_threshold(good_maxima: np.ndarray, target: float) -> float:
    """The smallest threshold that flags at most floor(target x good frames) of them (ties count as
    flagged), at least FLOOR; 1.0 when even that cannot be met (the model is certain on good frames)."""
    m = np.sort(np.asarray(good_maxima, np.float64))[::-1]  # descending
    allowed = int(np.floor(target * len(m)))
    if allowed >= len(m):
        return FLOOR
    t = float(np.nextafter(m[allowed], np.inf))
    return float(min(1.0, max(FLOOR, t)))


def tile_bundle(bundle_path) -> Bundle:
    """The bundle, if it is in tile mode; else InputError (one line)."""
    bundle = Bundle.open(bundle_path)
    if bundle.input.mode != "tile":
        raise InputError(f"{bundle_path}: input mode {bundle.input.mode!r}; a frame threshold is for tile-mode "
                         "bundles (export --input-mode tile)")
    return bundle


def fit_frame_threshold(bundle_path, frames_dir, target: float = TARGET_FALSE_ALARMS,
                        precisions: list[str] | None = None,
                        progress: Callable[[str, int, int], None] | None = None,
                        min_good: int = MIN_GOOD_FRAMES) -> FrameSpec:
    """Fit and save the frame threshold for each precision the bundle has; returns the manifest section."""
    from edge_runtime.frame_eval import load_frames

    if not 0.0 <= target < 1.0:
        raise InputError(f"the false-alarm target must lie in [0, 1), got {target}")
    bundle = tile_bundle(bundle_path)
    frames = load_frames(frames_dir)
    defect = np.array([bool(t) for t in frames.truth])
    if (~defect).sum() < min_good:
        raise InputError(f"{frames_dir} has {(~defect).sum()} defect-free frames; fitting needs at least "
                         f"{min_good} (more gives a steadier threshold)")
    if precisions is None:
        precisions = ["fp32"] + (["quantized"] if all(s.quantized for s in bundle.stages) else [])
    thresholds, measured = {}, {}
    for p in precisions:
        maxima, rates = frame_maxima(bundle_path, frames, p, None if progress is None else
                                     (lambda i, n, p=p: progress(p, i, n)))
        t = choose_threshold(maxima[~defect], target)
        thresholds[p] = round(t, 12)
        flagged = maxima >= t
        measured[p] = {"false_alarm_pct": round(100 * flagged[~defect].mean(), 2),
                       "recall_pct": round(100 * flagged[defect].mean(), 2) if defect.any() else None,
                       "tile_exit_rates": rates}
    spec = FrameSpec(thresholds, float(target), "max",
                     {"frames": len(frames), "good_frames": int((~defect).sum()), "source": str(Path(frames_dir)),
                      "tile_overlap": bundle.input.tile_overlap}, measured)
    h, w = frames.image(0).shape[:2]
    spec.fitted_on["frame_size"] = [w, h]
    bundle = Bundle.open(bundle_path)  # re-read: nothing else changed it meanwhile in one process
    bundle.manifest.frames = spec
    bundle.manifest.input = replace(bundle.manifest.input, frame_size=(h, w))  # engines are sized for these
    bundle.save()
    return spec
