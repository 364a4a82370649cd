"""Real TensorRT: build, load, run, compare. Marked `tensorrt`; they skip here (no TensorRT, no GPU) and run
on an Orin with jetson/run-device-tests.sh."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tensorrt
REASON = "needs TensorRT and a CUDA GPU: run jetson/run-device-tests.sh on an Orin"


@pytest.fixture
def onnx_bundle(tmp_path):
    """A torch-free 3-stage bundle (torch is not installed on the device)."""
    from tests.engine_builder.device_bundle import make_onnx_bundle

    return make_onnx_bundle(tmp_path / "bundle")


@pytest.fixture
def trt():
    return pytest.importorskip("tensorrt", reason=REASON)


def test_device_fingerprint_sees_tensorrt_and_the_gpu(trt):
    from edge_runtime.fingerprint import detect

    fp = detect()
    assert fp.tensorrt == trt.__version__
    assert fp.compute_capability is not None and fp.cuda is not None, "pycuda missing: run jetson/install.sh"


def test_device_build_verifies_activates_then_reuses(trt, onnx_bundle):
    from edge_runtime.bundle import Bundle
    from engine_builder.build import build_engines

    first = build_engines(onnx_bundle, progress=lambda s: None)
    assert first["decision"]["action"] == "build"
    fp_id = first["fingerprint"]["id"]
    entry = Bundle.open(onnx_bundle).manifest.engines[fp_id]  # opening re-checks every sha256
    assert entry.active and all(s["passed"] for s in entry.verification["stages"])
    assert (onnx_bundle / entry.timing_cache).stat().st_size > 0
    assert build_engines(onnx_bundle, progress=lambda s: None)["decision"]["action"] == "use"


def test_device_load_engines_and_run_a_batch(trt, onnx_bundle):
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from edge_runtime.bundle import Bundle
    from engine_builder.build import build_engines

    entry = build_engines(onnx_bundle, progress=lambda s: None)["entry"]
    bundle = Bundle.open(onnx_bundle)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with TrtRunner(EngineFromBytes(bundle.path(entry["stages"][0]["file"]).read_bytes())) as runner:
        out = runner.infer({"image": x})
    assert out["logits"].shape == (2, len(bundle.classes))


def test_device_compare_engine_with_onnxruntime_via_polygraphy(trt, onnx_bundle):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc, DataLoader

    from edge_runtime.bundle import Bundle
    from engine_builder.build import build_engines

    entry = build_engines(onnx_bundle, progress=lambda s: None)["entry"]
    bundle = Bundle.open(onnx_bundle)
    for k, stage in enumerate(entry["stages"]):
        runners = [OnnxrtRunner(SessionFromOnnx(str(bundle.path(stage["source"])))),
                   TrtRunner(EngineFromBytes(bundle.path(stage["file"]).read_bytes()))]
        results = Comparator.run(runners, data_loader=DataLoader(iterations=4, input_metadata=None))
        ok = Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=1e-3, rtol=1e-3))
        assert bool(ok), f"stage {k}"
