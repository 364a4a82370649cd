"""calib: calibration images, activation statistics, AWQ, sensitivity, precision plan, Q/DQ.

Public functions (heavy imports happen inside them):

    quantize_bundle(bundle, calib_dir, mode="mixed", trt_version="10.3", max_drop=0.3) -> report dict
    weight_bytes(bundle) -> {"fp32": int, "quantized": int}
    calib.lint.lint_bundle(bundle, trt_version="10.3") -> [Finding]
    calib.peer.ort_default_int8(bundle, calib_dir, out_dir) -> [Path]
"""
from __future__ import annotations


def quantize_bundle(*args, **kwargs) -> dict:
    from calib.pipeline import quantize_bundle as _q

    return _q(*args, **kwargs)


def weight_bytes(bundle_path) -> dict[str, int]:
    from calib.report import weight_bytes as _w

    return _w(bundle_path)


quantize_bundle.__doc__ = "See calib.pipeline.quantize_bundle."
__all__ = ["quantize_bundle", "weight_bytes"]
