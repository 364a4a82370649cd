"""The on-device runtime: bundle loading, backends, the early-exit executor, sources and sinks.

Runs with numpy, onnxruntime (or tensorrt) and opencv; never imports torch or anything else of the repo.

    >>> from edge_runtime import DynamicInference
    >>> model = DynamicInference("bundle/")            # doctest: +SKIP
    >>> model.infer(frame_bgr)                          # doctest: +SKIP
    Decision(label='ok', confidence=0.97, exit_index=0, latency_ms=1.8, ...)
"""
from edge_runtime.errors import BundleError, EdgeError

__all__ = ["BundleError", "EdgeError", "DynamicInference", "InferenceConfig", "Decision"]


def __getattr__(name: str):
    # Lazy, so `import edge_runtime.bundle` stays cheap for build-time packages.
    if name in ("DynamicInference", "InferenceConfig", "Decision"):
        from edge_runtime import inference

        return getattr(inference, name)
    raise AttributeError(name)
