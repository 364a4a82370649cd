"""Verification before activation: each engine's outputs vs ONNX Runtime on the same stage graph.

Every stage is checked on its own: stage k gets the hidden state ONNX Runtime produced for stage k-1, so
an error is charged to the stage that makes it. An element passes when |engine - ref| <= atol + rtol*|ref|;
the exit logits must also pick the same class on at least `min_argmax_agreement` of the samples. The
tolerances used are written to the manifest next to the result.

    >>> v = compare_stage(0, {"logits": ref}, {"logits": ref + 1e-4}, DEFAULT_TOLERANCES["fp32"])  # doctest: +SKIP
    >>> v.passed, v.worst.name                                                                  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Per build precision. Quantized engines are compared with ONNX Runtime running the same Q/DQ graph, so
# the difference is rounding order and kernel choice, not quantization itself.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"atol": 1e-3, "rtol": 1e-3, "min_argmax_agreement": 1.0},
    "fp16": {"atol": 2e-2, "rtol": 2e-2, "min_argmax_agreement": 0.99},
    "quantized": {"atol": 0.15, "rtol": 0.1, "min_argmax_agreement": 0.97},
}

StageRunner = Callable[[int, np.ndarray], dict]  # (stage k, input batch) -> {output name: array}


@dataclass
class OutputCheck:
    name: str
    max_abs: float  # largest |engine - ref|
    worst_ratio: float  # largest |engine - ref| / (atol + rtol*|ref|); > 1 fails
    argmax_agreement: float | None  # logits only: fraction of samples with the same class
    passed: bool


@dataclass
class StageVerdict:
    stage: int
    outputs: list[OutputCheck]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputCheck:
        failed = [o for o in self.outputs if not o.passed] or self.outputs
        return max(failed, key=lambda o: o.worst_ratio)

    def message(self) -> str:
        w = self.worst
        agree = f", same class on {w.argmax_agreement:.1%} of samples" if w.argmax_agreement is not None else ""
        state = "matches" if self.passed else "does not match"
        return (f"stage {self.stage} engine {state} ONNX Runtime: worst output {w.name!r} differs by up to "
                f"{w.max_abs:.4g} ({w.worst_ratio:.2f}x the tolerance{agree})")

    def to_dict(self) -> dict:
        return {"stage": self.stage, "passed": self.passed, "outputs": [asdict(o) for o in self.outputs]}


def compare_output(name: str, ref: np.ndarray, got: np.ndarray, tol: dict) -> OutputCheck:
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape or not np.all(np.isfinite(got)):
        why = np.inf
        return OutputCheck(name, float(why), float(why), None, False)
    diff = np.abs(got - ref)
    ratio = diff / (tol["atol"] + tol["rtol"] * np.abs(ref))
    agreement = None
    ok = bool(ratio.max(initial=0.0) <= 1.0)
    if name == "logits" and ref.ndim == 2:
        agreement = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
        ok = ok and agreement >= tol["min_argmax_agreement"]
    return OutputCheck(name, float(diff.max(initial=0.0)), float(ratio.max(initial=0.0)), agreement, ok)


def compare_stage(stage: int, ref: dict, got: dict, tol: dict) -> StageVerdict:
    """Compare every reference output of one stage; an output the engine lacks fails."""
    checks = []
    for name, r in ref.items():
        if name not in got:
            checks.append(OutputCheck(name, float("inf"), float("inf"), None, False))
        else:
            checks.append(compare_output(name, r, got[name], tol))
    return StageVerdict(stage, checks)


def onnxruntime_runner(paths: list[str | Path]) -> StageRunner:
    """Reference runner: ONNX Runtime (CPU) on the stage graphs."""
    from edge_runtime.backends.onnxruntime_backend import make_session

    sessions = [make_session(p) for p in paths]

    def run(k: int, x: np.ndarray) -> dict:
        s = sessions[k]
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(names, {s.get_inputs()[0].name: x})))

    return run


def verify_stages(reference: StageRunner, engine: StageRunner, num_stages: int, inputs: np.ndarray,
                  tol: dict) -> list[StageVerdict]:
    """inputs: stage-0 batch (N, 3, H, W) float32. Stage k is fed the reference's hidden of stage k-1."""
    verdicts, x = [], inputs
    for k in range(num_stages):
        ref = reference(k, x)
        got = engine(k, x)
        verdicts.append(compare_stage(k, ref, got, tol))
        x = ref["hidden"]
    return verdicts


def calibration_inputs(bundle, images: str | Path | None = None, n: int = 16,
                       seed: int = 0) -> tuple[np.ndarray, str]:
    """(stage-0 batch (N, 3, H, W) float32, where it came from): images from a folder, else the bundle's
    stored calibration inputs (manifest calibration.samples, written by calib: an .npy of preprocessed
    inputs, hashed like every bundle file), else random normal inputs (said so in the manifest: they check
    the engine's arithmetic, not its accuracy)."""
    from edge_runtime.preprocess import IMAGE_SUFFIXES, preprocess, read_image

    spec = bundle.input
    if images is not None:
        files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
        if files:
            x = np.concatenate([preprocess(read_image(f), spec) for f in files])
            return x, f"{len(files)} images from {images}"
    calib = bundle.manifest.calibration
    if calib is not None and calib.samples:
        x = _stored_samples(bundle, calib.samples)[:n]
        return x, f"{len(x)} stored calibration inputs from {calib.samples}"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, spec.height, spec.width)).astype(np.float32)
    return x, f"{n} random normal inputs (no calibration images in the bundle)"


def _stored_samples(bundle, rel: str) -> np.ndarray:
    """The bundle's stored calibration inputs (N, 3, H, W) float32; BuildError if they are missing or do not
    fit the bundle's input (the sha256 check at open already refused an edited file)."""
    from engine_builder.plan import BuildError

    spec = bundle.input
    try:
        x = np.load(bundle.path(rel), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BuildError(f"bundle {bundle.root}: cannot read the stored calibration inputs {rel} ({e})") from None
    if x.ndim != 4 or x.shape[1:] != (3, spec.height, spec.width):
        raise BuildError(f"bundle {bundle.root}: {rel} holds inputs of shape {x.shape}, not "
                         f"(N, 3, {spec.height}, {spec.width})")
    return x.astype(np.float32, copy=False)
