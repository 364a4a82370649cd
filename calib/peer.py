"""The peer check: ONNX Runtime's quantize_static with its defaults (QDQ, per-channel, min-max), fed by
the same calibration images and reader as ours, so `edge-qwq bench` can compare accuracies."""
from __future__ import annotations

import os
from pathlib import Path


def ort_default_int8(bundle_path: str | os.PathLike, calib_dir: str | os.PathLike,
                     out_dir: str | os.PathLike) -> list[Path]:
    """Write out_dir/stage{k}.onnx, each stage quantized by quantize_static's defaults; returns the paths.

    Stage k is calibrated on the FP32 hidden states stage k-1 produces for the calibration images."""
    import onnx

    from calib.data import load_calib
    from calib.qdq import load_stage, ort_int8, run
    from edge_runtime.bundle import Bundle

    bundle = Bundle.open(bundle_path)
    cs = load_calib(calib_dir, bundle)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, x = [], cs.x
    for spec in bundle.stages:
        base = load_stage(bundle.path(spec.file))
        path = out_dir / f"stage{spec.index}.onnx"
        onnx.save(ort_int8(base, x, defaults=True), str(path))
        paths.append(path)
        x = run(base, x)["hidden"]
    return paths
