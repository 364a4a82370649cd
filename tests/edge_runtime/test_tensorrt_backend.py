"""The TensorRT backend: without TensorRT it says so and how to get it; on a device (marked tests) it runs
the same decisions as ONNX Runtime with the hidden state on the GPU."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.tensorrt_backend import EnginesUnavailable, usable_engines
from edge_runtime.bundle import Bundle, EngineEntry
from edge_runtime.errors import BackendUnavailable


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(_has_tensorrt(), reason="checks the message shown where TensorRT is absent")
def test_open_backend_without_tensorrt_says_what_is_missing(tiny_bundle):
    from edge_runtime.backends import open_backend

    with pytest.raises(BackendUnavailable) as e:
        open_backend("tensorrt", Bundle.open(tiny_bundle))
    assert "TensorRT is not installed" in str(e.value) and "jetson/install.sh" in str(e.value)


@pytest.mark.skipif(_has_tensorrt(), reason="checks the message shown where TensorRT is absent")
def test_run_with_tensorrt_backend_exits_nonzero_without_traceback(tiny_bundle, tmp_path, capsys):
    import cv2

    from edge_qwq.cli import main

    img = tmp_path / "part.png"
    cv2.imwrite(str(img), np.full((32, 32, 3), 128, np.uint8))
    code = main(["run", "--bundle", str(tiny_bundle), "--source", str(img), "--backend", "tensorrt"])
    err = capsys.readouterr().err
    assert code != 0
    assert "TensorRT is not installed" in err and "jetson/install.sh" in err and "--backend onnxruntime" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_engines_for_another_device_are_never_loaded(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    with pytest.raises(EnginesUnavailable) as e:
        usable_engines(b, "fp32", "sm87-trt10.3.0-cuda12.6-abc")
    assert e.value.status == "missing" and "edge-qwq build --target orin" in str(e.value)
    b.manifest.engines["sm72-trt8.5.2-cuda11.4-old"] = EngineEntry("fp32", [], active=True)
    with pytest.raises(EnginesUnavailable) as e:
        usable_engines(b, "fp32", "sm87-trt10.3.0-cuda12.6-abc")
    assert e.value.status == "other-device" and "sm72-trt8.5.2-cuda11.4-old" in str(e.value)
    assert isinstance(e.value, BackendUnavailable)  # the caller's fall-back-to-ONNX-Runtime path


# ---------------- on the device (jetson/run-device-tests.sh) ----------------

@pytest.mark.tensorrt
def test_device_load_and_run_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU: run jetson/run-device-tests.sh on an Orin")
    pytest.importorskip("pycuda", reason="needs pycuda: run jetson/install.sh on the device")
    from edge_runtime.backends import open_backend
    from edge_runtime.executor import EarlyExitExecutor, ExitPolicy, simulate_exits
    from engine_builder.build import build_engines
    from tests.engine_builder.device_bundle import make_onnx_bundle

    root = make_onnx_bundle(tmp_path / "bundle")  # torch-free: torch is not installed on the device
    build_engines(root, progress=lambda s: None)
    bundle = Bundle.open(root)
    trt_backend = open_backend("tensorrt", bundle)
    ort_backend = open_backend("onnxruntime", bundle)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    h_trt, h_ort = x, x
    for k in range(trt_backend.num_stages):
        h_trt, logits_trt = trt_backend.run_stage(k, h_trt)
        h_ort, logits_ort = ort_backend.run_stage(k, h_ort)
        np.testing.assert_allclose(logits_trt, logits_ort, atol=1e-3, rtol=1e-3)
        assert not isinstance(h_trt, np.ndarray)  # the hidden state stayed on the GPU
        np.testing.assert_allclose(trt_backend.hidden_to_host(h_trt), h_ort, atol=1e-3, rtol=1e-3)
        assert trt_backend.stage_ms[k] > 0  # CUDA-event timing
    policy = ExitPolicy.build(trt_backend.num_stages - 1, [0.5, 0.6])
    frames = np.random.default_rng(1).standard_normal((8, 1, 3, 32, 32)).astype(np.float32)
    trt_exec = EarlyExitExecutor(trt_backend, policy, bundle.ok_index)
    ort_logits = [np.concatenate(z) for z in zip(*[EarlyExitExecutor(ort_backend, policy, bundle.ok_index)
                                                   .run_all(f) for f in frames])]
    pred, exit_at = simulate_exits(ort_logits, policy, bundle.ok_index)
    for i, f in enumerate(frames):
        r = trt_exec.run(f)
        assert (r.label_index, r.exit_index) == (pred[i], exit_at[i])
