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
    assert "quant_report.json" in b.manifest.files
    backend = OnnxRuntimeBackend(b, precision="quantized")
    h, logits = backend.run_stage(0, np.zeros((2, 3, 32, 32), np.float32))
    assert logits.shape == (2, 4) and np.isfinite(logits).all()
    assert json.loads((path / "quant_report.json").read_text())["mode"] == "mixed"


def _eligible(path) -> set[tuple[int, str]]:
    """(stage, layer) of every INT4-eligible layer of the FP32 stages: the pipeline's own rule (2-D
    MatMul/Gemm weight whose K a block divides), a property of the model and not of any search."""
    from calib.graph import find_layers
    from calib.qdq import load_stage
    from edge_runtime.bundle import Bundle

    b = Bundle.open(path)
    return {(s.index, layer.name) for s in b.stages for layer in find_layers(load_stage(b.path(s.file)))
            if layer.int4_block}


def _weight_source(m, name: str):
    """(layer node, node making its weight input, initializer that node reads) in a quantized stage."""
    node = next(n for n in m.graph.node if n.name == name)
    src = next(n for n in m.graph.node if node.input[1] in n.output)
    inits = {i.name: i for i in m.graph.initializer}
    return node, src, [inits.get(i) for i in src.input]


def _check_int4(m, row) -> None:
    """The layer's weight is INT4, 2-D, read by a MatMul/Gemm through a blocked DequantizeLinear."""
    node, dq, (q, scale, *_) = _weight_source(m, row["name"])
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in dq.attribute}
    assert node.op_type in ("MatMul", "Gemm") and dq.op_type == "DequantizeLinear"
    assert dq.name == f"{row['name']}/weight_dq_int4"
    assert attrs["block_size"] == row["int4"]["block"] and attrs["block_size"] in (32, 64, 128)
    assert q.data_type == onnx.TensorProto.INT4 and len(q.dims) == 2 and len(scale.dims) == 2
    k = attrs.get("axis", 1)
    assert scale.dims[k] == -(-q.dims[k] // attrs["block_size"]) and scale.dims[1 - k] == q.dims[1 - k]


def _opset(m) -> int:
    return max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def test_mixed_plan_follows_sensitivity_and_budget(quantized_bundle):
    """What the plan promises whatever the sensitivities come out as (they move with library versions):
    the most sensitive 10% FP16, INT4 only on eligible layers and, with a budget every plan meets
    (max_drop 100), on every eligible layer not kept in FP16; the rest INT8."""
    path, report = quantized_bundle
    layers = report["layers"]
    precisions = [layer["precision"] for layer in layers]
    assert set(precisions) <= {"fp16", "int8", "int4"}
    assert precisions.count("fp16") == max(1, int(np.ceil(0.1 * len(precisions))))
    fp16 = [layer["sensitivity"] for layer in layers if layer["precision"] == "fp16"]
    rest = [layer["sensitivity"] for layer in layers if layer["precision"] != "fp16"]
    assert min(fp16) >= max(rest)  # the most sensitive ones are the FP16 ones
    eligible = _eligible(path)
    assert {(r["stage"], r["name"]) for r in layers if r["sensitivity_int4"] is not None} == eligible
    assert report["max_drop"] == 100.0
    assert {(r["stage"], r["name"]) for r in layers if r["precision"] == "int4"} == \
        {(r["stage"], r["name"]) for r in layers if (r["stage"], r["name"]) in eligible and r["precision"] != "fp16"}
    for layer in layers:
        if layer["precision"] == "int4":
            assert layer["op"] in ("MatMul", "Gemm")
            assert layer["int4"]["awq_error"] >= 0 and layer["int4"]["rtn_error"] > 0
    assert report["int4_totals"]["layers"] == precisions.count("int4")
    assert max(report["drop_points"].values()) <= report["max_drop"]
    assert report["calibration_method"] in report["calibration_methods"]


def test_int4_stored_as_blocked_dequantize_at_opset_21(int4_bundle):
    """--mode int4 makes every eligible layer INT4 (no search), so the storage is checked there."""
    path, report = int4_bundle
    assert report["opset"] == 21
    eligible = _eligible(path)
    assert eligible  # the tiny student's exit heads (Gemm, K = 32)
    assert {(r["stage"], r["name"]) for r in report["layers"] if r["precision"] == "int4"} == eligible
    assert {r["precision"] for r in report["layers"] if (r["stage"], r["name"]) not in eligible} == {"int8"}
    for k in range(3):
        m = onnx.load(str(path / f"stages/stage{k}.q.onnx"))
        assert _opset(m) == 21
        rows = [r for r in report["layers"] if r["stage"] == k and r["precision"] == "int4"]
        for row in rows:
            _check_int4(m, row)
        dq4 = {n.name for n in m.graph.node if n.op_type == "DequantizeLinear" and n.name.endswith("weight_dq_int4")}
        assert dq4 == {f"{r['name']}/weight_dq_int4" for r in rows}
    assert max(report["drop_points"].values()) <= report["max_drop"]


def test_mixed_stages_store_each_layer_as_the_plan_says(quantized_bundle):
    """Each layer of the mixed plan, whichever precision it got: INT4 as blocked INT4 DequantizeLinear,
    INT8 as an INT8 weight DequantizeLinear, FP16 as an FP16 weight initializer read as it is; opset 21."""
    path, report = quantized_bundle
    assert report["opset"] == 21
    for k in range(3):
        m = onnx.load(str(path / f"stages/stage{k}.q.onnx"))
        assert _opset(m) == 21
        rows = [r for r in report["layers"] if r["stage"] == k]
        for row in (r for r in rows if r["params"]):  # the attention's activation x activation MatMuls have no weight
            if row["precision"] == "int4":
                _check_int4(m, row)
                continue
            if row["precision"] == "int8":
                _, src, (w, *_) = _weight_source(m, row["name"])
                assert src.op_type == "DequantizeLinear" and w.data_type == onnx.TensorProto.INT8
            else:
                node = next(n for n in m.graph.node if n.name == row["name"])
                w = next(i for i in m.graph.initializer if i.name == node.input[1])
                assert w.data_type == onnx.TensorProto.FLOAT16
        dq4 = {n.name for n in m.graph.node if n.op_type == "DequantizeLinear" and n.name.endswith("weight_dq_int4")}
        assert dq4 == {f"{r['name']}/weight_dq_int4" for r in rows if r["precision"] == "int4"}


def _assert_fp16_regions(path, report) -> int:
    """On a strongly typed TensorRT 10 network each layer runs in its inputs' type: every layer the plan puts
    in FP16 or INT4 (W4A16) reads FP16 activations and FP16 weights (INT4 dequantized with FP16 scales),
    gives float back through a Cast, no FP16 weight is Cast to float, and no node mixes types (ONNX strict
    type inference). Returns how many such layers were checked."""
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    checked = 0
    for k in range(3):
        m = onnx.load(str(path / f"stages/stage{k}.q.onnx"))
        g = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True).graph
        types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
        types.update({i.name: i.data_type for i in g.initializer})
        producer = {o: n for n in g.node for o in n.output}
        readers = {}
        for n in g.node:
            for i in n.input:
                readers.setdefault(i, []).append(n)
        for n in g.node:
            if n.op_type == "Cast" and n.input[0] in types and types[n.input[0]] == FLOAT16 \
                    and n.input[0] in {i.name for i in g.initializer}:
                raise AssertionError(f"stage{k}: FP16 weight {n.input[0]} Cast to float ({n.name})")
        for row in (r for r in report["layers"] if r["stage"] == k and r["precision"] in ("fp16", "int4")):
            node = next(n for n in g.node if n.name == row["name"])
            assert [types[i] for i in node.input if i] == [FLOAT16] * len([i for i in node.input if i]), row["name"]
            if row["precision"] == "int4":
                dq = producer[node.input[1]]
                assert dq.op_type == "DequantizeLinear" and types[dq.input[1]] == FLOAT16
            out = node.output[0]  # through the bias Add of a MatMul, then the Cast back to float
            nxt = readers[out]
            if nxt[0].op_type == "Add":
                assert [types[i] for i in nxt[0].input] == [FLOAT16, FLOAT16]
                out, nxt = nxt[0].output[0], readers[nxt[0].output[0]]
            assert types[out] == FLOAT16 and [c.op_type for c in nxt] == ["Cast"] and types[nxt[0].output[0]] == FLOAT
            checked += 1
    return checked


@pytest.mark.parametrize("fixture", ["quantized_bundle", "int4_bundle", "int4_matmul_bundle"])
def test_fp16_and_int4_layers_compute_in_fp16(fixture, request):
    """Issue 13, finding 4: the stages carry FP16 activations where the plan says FP16, INT4 weight-only layers
    take FP16 activations, the lint (TensorRT 10.3) agrees, and ONNX Runtime's CPU provider still runs and
    scores them."""
    from calib.lint import lint_bundle
    from edge_runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_runtime.bundle import Bundle

    path, report = request.getfixturevalue(fixture)
    precisions = {r["precision"] for r in report["layers"]}
    assert "int4" in precisions and ("fp16" in precisions or report["mode"] == "int4")
    assert _assert_fp16_regions(path, report) == sum(r["precision"] in ("fp16", "int4") for r in report["layers"])
    assert lint_bundle(path, "10.3") == []
    backend = OnnxRuntimeBackend(Bundle.open(path), precision="quantized")
    h = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    for k in range(3):
        h, logits = backend.run_stage(k, h)
        assert logits.shape == (2, 4) and np.isfinite(logits).all() and np.isfinite(h).all()
    assert np.isfinite(report["quantized"]["logit_error"])  # scored


def test_int4_matmuls_with_awq_folds_stay_close_to_fp32(int4_matmul_bundle):
    """The dim-32 student: INT4 MatMuls in the blocks (AWQ scale folded into the LayerNorms), FP16 layers,
    bias correction on FP16 biases; the quantized chain's logits stay within a few percent of FP32's."""
    path, report = int4_matmul_bundle
    int4 = [r for r in report["layers"] if r["precision"] == "int4"]
    assert any(r["op"] == "MatMul" for r in int4) and any(r["int4"]["scale_folded_into"] for r in int4)
    assert report["quantized"]["logit_error"] < 0.05
    assert report["quantized"]["fp32_agreement"] >= 90.0


def test_manifest_sections_for_the_health_monitor(quantized_bundle):
    from edge_runtime.bundle import Bundle

    path, report = quantized_bundle
    b = Bundle.open(path)
    cal, quant = b.manifest.calibration, b.manifest.quantization
    assert set(cal.input_stats) == {"brightness", "contrast", "sharpness"}
    assert all(np.isfinite([s.mean, s.std]).all() and s.std >= 0 for s in cal.input_stats.values())
    assert len(cal.hidden_range) == 3 and all(lo <= hi for lo, hi in cal.hidden_range)
    assert quant.plan == {f"stage{k}": {r["name"]: r["precision"] for r in report["layers"] if r["stage"] == k}
                          for k in range(3)}
    # the quantized stages' agreement with FP32 as measured (max_drop 100 bounds no value of it)
    assert 0.0 <= quant.fp32_agreement_pct <= 100.0
    assert quant.fp32_agreement_pct == report["quantized"]["fp32_agreement"]
    # and the device's health monitor takes its references from them
    from edge_runtime.health import HealthMonitor
    from edge_runtime.inference import DynamicInference

    monitor = HealthMonitor(DynamicInference(quantized_bundle[0]))
    try:
        assert monitor.input_ref_source == "manifest calibration statistics"
        assert monitor.input.ref == {k: (v.mean, v.std) for k, v in cal.input_stats.items()}
        assert monitor.hidden_range_source == "manifest" and monitor.hidden_range == cal.hidden_range
        assert monitor.shadow.baseline == quant.fp32_agreement_pct / 100  # one unit: percent in, fraction used
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
