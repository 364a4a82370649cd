import json
import shutil

import numpy as np
import onnx
import pytest

from calib.errors import CalibError


def test_writes_quantized_stages_that_the_runtime_runs(quantized_bundle):
    from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_runtime.bundle import Bundle

    path, report = quantized_bundle
    b = Bundle.open(path)  # verifies every sha256, the new files included
    assert all(s.quantized == f"stages/stage{s.index}.q.onnx" for s in b.stages)
    assert "quant_report.json" in b.manifest["files"]
    backend = OnnxRuntimeBackend(b, precision="quantized")
    h, logits = backend.run_stage(0, np.zeros((2, 3, 32, 32), np.float32))
    assert logits.shape == (2, 4) and np.isfinite(logits).all()
    assert json.loads((path / "quant_report.json").read_text())["mode"] == "mixed"


def test_plan_mixes_precisions_and_reports_each_layer(quantized_bundle):
    _, report = quantized_bundle
    precisions = [layer["precision"] for layer in report["layers"]]
    assert set(precisions) == {"fp16", "int8", "int4"}
    assert precisions.count("fp16") == max(1, int(np.ceil(0.1 * len(precisions))))
    fp16 = [layer["sensitivity"] for layer in report["layers"] if layer["precision"] == "fp16"]
    rest = [layer["sensitivity"] for layer in report["layers"] if layer["precision"] != "fp16"]
    assert min(fp16) >= max(rest)  # the most sensitive ones are the FP16 ones
    for layer in report["layers"]:
        if layer["precision"] == "int4":
            assert layer["op"] in ("MatMul", "Gemm")
            assert layer["int4"]["awq_error"] >= 0 and layer["int4"]["rtn_error"] > 0
    assert report["calibration_method"] in report["calibration_methods"]


def test_int4_stored_as_blocked_dequantize_at_opset_21(quantized_bundle):
    path, _ = quantized_bundle
    m = onnx.load(str(path / "stages/stage0.q.onnx"))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 21
    dq4 = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.name.endswith("weight_dq_int4")]
    assert dq4 and all(any(a.name == "block_size" and a.i in (32, 64, 128) for a in n.attribute) for n in dq4)


def test_manifest_sections_for_the_health_monitor(quantized_bundle):
    from edge_runtime.bundle import Bundle

    b = Bundle.open(quantized_bundle[0])
    cal, quant = b.section("calibration"), b.section("quantization")
    assert set(cal["input_stats"]) == {"brightness", "contrast", "sharpness"}
    assert all(set(v) == {"mean", "std"} for v in cal["input_stats"].values())
    assert [h["stage"] for h in cal["hidden"]] == [0, 1, 2]
    assert all(h["min"] <= h["max"] and h["abs_p99_9"] > 0 for h in cal["hidden"])
    assert cal["hidden_range"] == [[h["min"], h["max"]] for h in cal["hidden"]]
    assert set(quant["plan"]) == {"stage0", "stage1", "stage2"}
    assert 50.0 <= quant["fp32_agreement"] <= 100.0
    # and the device's health monitor takes its references from them
    from edge_runtime.health import HealthMonitor
    from edge_runtime.inference import DynamicInference

    monitor = HealthMonitor(DynamicInference(quantized_bundle[0]))
    try:
        assert monitor.input_ref_source == "manifest calibration statistics"
        assert monitor.hidden_range_source == "manifest" and len(monitor.hidden_range) == 3
    finally:
        monitor.close()


def test_weight_bytes_counts_int4_and_int8(quantized_bundle):
    from calib import weight_bytes

    path, report = quantized_bundle
    wb = weight_bytes(path)
    assert 0 < wb["quantized"] < 0.5 * wb["fp32"]
    assert wb == {k: report["weight_bytes"][k] for k in ("fp32", "quantized")}


def test_trt_86_has_no_int4_and_stays_at_opset_17(tiny_bundle, calib_dir):
    from calib import quantize_bundle
    from calib.lint import lint_bundle

    report = quantize_bundle(tiny_bundle, calib_dir, mode="int4", trt_version="8.6", max_drop=100)
    assert {layer["precision"] for layer in report["layers"]} == {"int8"}
    assert any("no INT4" in n for n in report["notes"])
    assert lint_bundle(tiny_bundle, "8.6") == []


def _manifest(path):
    return (path / "manifest.json").read_bytes()


def test_empty_calibration_folder_is_one_clear_error(tiny_bundle, tmp_path):
    from calib import quantize_bundle

    (tmp_path / "data" / "calib" / "ok").mkdir(parents=True)
    before = _manifest(tiny_bundle)
    with pytest.raises(CalibError, match="has 0 images"):
        quantize_bundle(tiny_bundle, tmp_path / "data")
    assert _manifest(tiny_bundle) == before and not (tiny_bundle / "stages/stage0.q.onnx").exists()


def test_unreadable_image_names_the_file(tiny_bundle, tmp_path, calib_dir):
    from calib import quantize_bundle

    data = tmp_path / "data"
    shutil.copytree(calib_dir, data)
    (data / "calib" / "ok" / "broken.png").write_bytes(b"not a png")
    before = _manifest(tiny_bundle)
    with pytest.raises(CalibError, match="broken.png"):
        quantize_bundle(tiny_bundle, data)
    assert _manifest(tiny_bundle) == before


def test_images_of_another_size_are_resized_like_the_runtime(tiny_bundle, tmp_path):
    from calib.data import load_calib
    from tests.calib.conftest import write_images
    from edge_runtime.bundle import Bundle
    from edge_runtime.preprocess import preprocess, read_image

    write_images(tmp_path, per_class=2, size=48)
    cs = load_calib(tmp_path, Bundle.open(tiny_bundle))
    assert cs.resized == len(cs) == 8 and cs.x.shape == (8, 3, 32, 32)
    first = sorted((tmp_path / "calib" / "crack").iterdir())[0]
    np.testing.assert_array_equal(cs.x[0], preprocess(read_image(first), Bundle.open(tiny_bundle).input)[0])


def test_unmeetable_budget_leaves_the_bundle_intact(tiny_bundle, calib_dir, monkeypatch):
    from calib import pipeline
    from calib.evaluate import Scores

    real = pipeline.Quantizer.evaluate
    monkeypatch.setattr(pipeline.Quantizer, "evaluate",  # every quantized candidate loses 5 points
                        lambda self, models: Scores(self.fp32.full - 5, self.fp32.early - 5, 1.0, [0, 0, 1]))
    before = _manifest(tiny_bundle)
    with pytest.raises(CalibError, match="--max-drop 0.3 cannot be met"):
        pipeline.quantize_bundle(tiny_bundle, calib_dir)
    assert _manifest(tiny_bundle) == before and not (tiny_bundle / "quant_report.json").exists()
    assert real is not pipeline.Quantizer.evaluate


def test_bad_arguments(tiny_bundle, calib_dir):
    from calib import quantize_bundle

    with pytest.raises(CalibError, match="--mode"):
        quantize_bundle(tiny_bundle, calib_dir, mode="int2")
    with pytest.raises(CalibError, match="--trt-version"):
        quantize_bundle(tiny_bundle, calib_dir, trt_version="ten")
