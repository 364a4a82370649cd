"""Before a bundle becomes `current`: load it as the service would and run every stage on a few inputs.

`install` calls `trial_run` on the verified copy, so a bundle that cannot run on this machine (a stage that
does not load, a manifest that does not fit its graphs, an input size the stages do not take, outputs that
are not finite) is refused with one line and the running bundle stays current; the service never restarts
into it. The inputs are the bundle's stored calibration inputs (preprocessed frames, hashed like every file)
or, for a bundle without them, a mid-grey frame; both precisions the service may load (quantized, and FP32
for a fallback) are tried, on ONNX Runtime (the embedded default, present everywhere the runtime is).

    >>> trial_run("bundles/abc-2026.../")     # doctest: +SKIP
    'ran 4 stored calibration inputs through 3 stages (quantized, fp32): all finite'
"""
from __future__ import annotations

import os

import numpy as np

from edge_runtime.errors import EdgeError

TRIAL_INPUTS = 4


def trial_inputs(bundle) -> tuple[np.ndarray, str]:
    """(N, 3, H, W) float32 inputs for the trial and where they came from."""
    from edge_runtime.preprocess import preprocess

    spec, calib = bundle.input, bundle.manifest.calibration
    if calib is not None and calib.samples:
        try:
            x = np.load(bundle.path(calib.samples), allow_pickle=False)[:TRIAL_INPUTS]
        except (OSError, ValueError) as e:
            raise EdgeError(f"its stored calibration inputs {calib.samples} cannot be read ({e})") from None
        if x.ndim != 4 or x.shape[1:] != (3, spec.height, spec.width):
            raise EdgeError(f"its stored calibration inputs have shape {tuple(x.shape)}, not the manifest's "
                            f"input (N, 3, {spec.height}, {spec.width})")
        return x.astype(np.float32, copy=False), f"{len(x)} stored calibration inputs"
    grey = np.full((spec.height, spec.width, 3), 128, np.uint8)  # (H, W, 3) BGR
    return preprocess(grey, spec), "a mid-grey frame (the bundle stores no calibration inputs)"


def trial_run(bundle_dir: str | os.PathLike, trusted_key: str | None = None) -> str:
    """Load the bundle at every precision it offers and run all its stages on the trial inputs; a one-line
    summary, or EdgeError saying what failed."""
    from edge_runtime.inference import DynamicInference, InferenceConfig

    precisions = ["fp32"]
    model = DynamicInference(bundle_dir, InferenceConfig(threads=1, precision="auto", trusted_key=trusted_key))
    if model.precision != "fp32":
        precisions.insert(0, model.precision)
    x, source = trial_inputs(model.bundle)
    for precision in precisions:
        if precision != model.precision:
            model = DynamicInference(bundle_dir, InferenceConfig(threads=1, precision=precision,
                                                                 trusted_key=trusted_key))
        for i in range(len(x)):
            try:
                logits, _ = model.run_all_stages(x[i:i + 1])  # [(1, classes)] per exit
            except Exception as e:  # the backend's own error types (ONNX Runtime's, TensorRT's)
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise EdgeError(f"its stages fail on {source} ({precision}): {first[:200]}") from None
            for k, lg in enumerate(logits):
                if lg.shape != (1, len(model.classes)) or not np.isfinite(lg).all():
                    what = "non-finite" if lg.shape == (1, len(model.classes)) else "wrongly shaped"
                    raise EdgeError(f"stage {k} ({precision}) gives {what} scores {tuple(lg.shape)} on {source}")
    return (f"ran {source} through {model.num_stages} stages ({', '.join(precisions)}): all finite")
