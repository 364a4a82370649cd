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


# ---------------- issue 13: the paths a first device run must show (jetson/run-device-tests.sh reports each) -------

def _pycuda():
    return pytest.importorskip("pycuda", reason="needs pycuda: run jetson/install.sh on the device")


def test_device_verification_on_the_stored_calibration_inputs(trt, onnx_bundle):
    """FP32 engines, TF32 off, verified at FP32 tolerances on the bundle's stored calibration inputs."""
    from edge_runtime.bundle import Bundle
    from engine_builder.build import build_engines
    from tests.engine_builder.device_bundle import add_calibration_samples

    add_calibration_samples(onnx_bundle)
    res = build_engines(onnx_bundle, precision="fp32", progress=lambda s: None)
    entry = Bundle.open(onnx_bundle).manifest.engines[res["fingerprint"]["id"]]
    assert entry.active, entry.failure
    assert "stored calibration inputs" in entry.verification["inputs"]
    assert entry.plan["clear_flags"] == ["TF32"] and entry.tolerances["atol"] == 1e-3
    print("verification:", "; ".join(f"stage {s['stage']} worst ratio "
                                      f"{max(o['worst_ratio'] for o in s['outputs']):.3f}"
                                      for s in entry.verification["stages"]))


@pytest.mark.parametrize("mode", ["int8", "mixed"], ids=["int8", "fp16-int4"])
def test_device_quantized_engines_build_verify_and_run(trt, onnx_bundle, mode):
    """INT8 Q/DQ stages (8.6 and 10.x); on 10.x also the W4A16 INT4 stage and the FP16 stage, strongly typed."""
    _pycuda()
    from edge_runtime.backends import open_backend
    from edge_runtime.bundle import Bundle
    from engine_builder.build import build_engines
    from tests.engine_builder.device_bundle import add_calibration_samples, add_quantized_stages

    if mode == "mixed" and int(trt.__version__.split(".")[0]) < 10:
        pytest.skip(f"INT4 needs TensorRT 10 (JetPack 6.1+); this device has {trt.__version__}")
    add_quantized_stages(add_calibration_samples(onnx_bundle), mode=mode)
    res = build_engines(onnx_bundle, precision="quantized", progress=lambda s: None)
    bundle = Bundle.open(onnx_bundle)
    entry = bundle.manifest.engines[res["fingerprint"]["id"]]
    assert entry.active and entry.precision == "quantized", entry.failure
    assert entry.plan["strongly_typed"] == (int(trt.__version__.split(".")[0]) >= 10)
    trt_b = open_backend("tensorrt", bundle, precision="quantized")
    ort_b = open_backend("onnxruntime", bundle, precision="quantized")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    h_t, h_o, worst = x, x, 0.0
    for k in range(trt_b.num_stages):
        h_t, l_t = trt_b.run_stage(k, h_t)
        h_o, l_o = ort_b.run_stage(k, h_o)
        np.testing.assert_allclose(l_t, l_o, atol=0.15, rtol=0.1)
        worst = max(worst, float(np.abs(l_t - l_o).max()))
    trt_b.close()
    print(f"{mode}: {entry.plan['flags'] or 'strongly typed'}; worst logit difference vs ONNX Runtime on the same "
          f"graphs {worst:.4f}")


def test_device_dla_builds_fp16_from_the_fp32_stages_and_runs_on_its_core(trt, onnx_bundle):
    _pycuda()
    from edge_runtime.backends import open_backend
    from edge_runtime.bundle import Bundle
    from engine_builder.build import build_engines
    from engine_builder.plan import BuildError, BuildOptions
    from tests.engine_builder.device_bundle import add_calibration_samples, add_quantized_stages

    cores = trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores
    if cores == 0:
        pytest.skip("this device has no DLA (Orin Nano)")
    add_quantized_stages(add_calibration_samples(onnx_bundle), mode="int8")
    core = cores - 1
    with pytest.raises(BuildError, match="--dla cannot take the quantized"):
        build_engines(onnx_bundle, precision="quantized", options=BuildOptions(dla_core=core), progress=lambda s: None)
    res = build_engines(onnx_bundle, options=BuildOptions(dla_core=core), progress=lambda s: None)
    bundle = Bundle.open(onnx_bundle)
    entry = bundle.manifest.engines[res["fingerprint"]["id"]]
    assert entry.active and entry.precision == "fp32" and entry.plan["dla_core"] == core, entry.failure
    trt_b = open_backend("tensorrt", bundle, precision="fp32")
    assert trt_b.runtime.DLA_core == core
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    _, logits = trt_b.run_stage(0, x)
    assert logits.shape == (1, 4) and np.all(np.isfinite(logits))
    trt_b.close()
    print(f"DLA core {core} of {cores}: {res['summary']}")
