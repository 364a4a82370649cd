"""When to reuse engines, rebuild them, or fall back to ONNX Runtime; and where they live in the bundle.

    engines/<fingerprint id>/stage{k}.engine
    engines/<fingerprint id>/timing.cache     TensorRT's tactic timings, reused by the next build there

The manifest's "engines" section maps each fingerprint id to an `EngineEntry` (edge_runtime.bundle.sections):
    device, precision, plan, options, stages [EngineStage(file, source, source_sha256)], timing_cache,
    tolerances, verification {"inputs", "stages": [...], "failure"?}, active
"""
from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.fingerprint import engine_status

ENGINES_DIR = "engines"
SECTION = "engines"


@dataclass(frozen=True)
class Decision:
    action: str  # "use" | "build" | "fallback"
    reason: str


def engine_dir(fingerprint_id: str) -> str:
    return f"{ENGINES_DIR}/{fingerprint_id}"


def engine_file(fingerprint_id: str, k: int) -> str:
    return f"{engine_dir(fingerprint_id)}/stage{k}.engine"


def timing_cache_file(fingerprint_id: str) -> str:
    return f"{engine_dir(fingerprint_id)}/timing.cache"


def decide(engines: dict, fingerprint_id: str, precision: str, stage_sources: list[str],
           digests: dict[str, str], trt_available: bool, allow_build: bool = True,
           force: bool = False) -> Decision:
    """What to do with this bundle's engines on this device.

    - no TensorRT: fall back to ONNX Runtime;
    - engines for this device, this precision and these stage files, verified: use them (unless force);
    - engines that failed verification here: fall back (a rebuild would fail the same way) unless force;
    - none for this device, or built from older stage files or another precision: rebuild (or fall back
      when building is not allowed, e.g. a read-only bundle).
    """
    if not trt_available:
        return Decision("fallback", "TensorRT is not installed here; running on ONNX Runtime")
    status, why = engine_status(engines, fingerprint_id, precision, stage_sources, digests)
    if force:
        return Decision("build", f"rebuild requested ({why})")
    if status == "ok":
        return Decision("use", why)
    if status == "rejected":
        return Decision("fallback", f"{why}; running on ONNX Runtime (rebuild with --force to try again)")
    if allow_build:
        return Decision("build", why)
    return Decision("fallback", f"{why}; running on ONNX Runtime")
