"""The on-device runtime: bundle loading, backends, the early-exit executor, sources and sinks.

Runs with numpy, onnxruntime (or tensorrt) and opencv; never imports torch or anything else of the repo.

    >>> from edge_runtime import DynamicInference
    >>> model = DynamicInference("bundle/")            # doctest: +SKIP
    >>> model.infer(frame_bgr)                          # doctest: +SKIP
    Decision(label='ok', confidence=0.97, exit_index=0, latency_ms=1.8, ...)
"""
import os

from edge_runtime.errors import BundleError, EdgeError

# Image decoding has a pixel limit: a 0.9 MB PNG of 30000x30000 would otherwise take 5.4 GB. OpenCV reads
# this once, when it is loaded, and every cv2 import in the runtime comes after this one (they are lazy).
MAX_IMAGE_PIXELS = 100_000_000  # 100 MP: above any line camera (2448x2048 is 5 MP)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

__all__ = ["BundleError", "EdgeError", "DynamicInference", "InferenceConfig", "Decision"]


def __getattr__(name: str):
    # Lazy, so `import edge_runtime.bundle` stays cheap for build-time packages.
    if name in ("DynamicInference", "InferenceConfig", "Decision"):
        from edge_runtime import inference

        return getattr(inference, name)
    raise AttributeError(name)
