"""The builder's choices per TensorRT version and per plan, checked against the FAKE tensorrt
(tests/engine_builder/fake_tensorrt.py: the real bindings' names per version, and what TensorRT refuses)."""
from __future__ import annotations

import onnx
import pytest

from engine_builder.plan import BuildError, BuildOptions, GraphPrecision, graph_precision, plan_build
from engine_builder.trt_build import build_serialized, parser_errors
from tests.engine_builder.fake_tensorrt import FakeParserError, FakeParserError10, make_fake_tensorrt
from tests.engine_builder.graphs import fp32_graph, qdq_graph

QDQ = GraphPrecision(has_qdq=True, has_int4=False, has_fp16=False)
QDQ_INT4 = GraphPrecision(has_qdq=True, has_int4=True, has_fp16=False)
FP32 = GraphPrecision(has_qdq=False, has_int4=False, has_fp16=False)
SHAPE = (-1, 3, 32, 32)


def test_graph_precision_reads_qdq_and_int4():
    assert graph_precision(fp32_graph()) == FP32
    assert graph_precision(qdq_graph()) == QDQ_INT4


@pytest.mark.parametrize("version", ["8.6.1", "8.6.2.3"])
def test_trt8_quantized_uses_int8_and_fp16_flags_on_explicit_batch(version):
    plan = plan_build(version, QDQ, BuildOptions("quantized"), "image", SHAPE)
    assert plan.explicit_batch and not plan.strongly_typed
    assert plan.flags == ("INT8", "FP16")
    no_fp16 = plan_build(version, QDQ, BuildOptions("quantized", fp16_fallback=False), "image", SHAPE)
    assert no_fp16.flags == ("INT8",)


@pytest.mark.parametrize("version", ["10.3.0.30", "10.7.0"])
def test_trt10_quantized_is_strongly_typed_without_precision_flags(version):
    plan = plan_build(version, QDQ_INT4, BuildOptions("quantized"), "image", SHAPE)
    assert plan.strongly_typed and not plan.explicit_batch
    assert plan.flags == ()


def test_fp16_and_fp32_plans():
    assert plan_build("10.3.0", FP32, BuildOptions("fp16"), "x", SHAPE).flags == ("FP16",)
    assert plan_build("8.6.2", FP32, BuildOptions("fp16"), "x", SHAPE).flags == ("FP16",)
    p = plan_build("10.3.0", FP32, BuildOptions("fp32"), "x", SHAPE)
    assert p.flags == () and not p.strongly_typed


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_finding2_fp32_plans_clear_tf32_and_only_they(version):
    """TensorRT sets TF32 by default; an FP32 build is verified at 1e-3, which TF32 arithmetic does not meet."""
    assert plan_build(version, FP32, BuildOptions("fp32"), "x", SHAPE).clear_flags == ("TF32",)
    assert plan_build(version, FP32, BuildOptions("fp32"), "x", SHAPE).to_dict()["clear_flags"] == ["TF32"]
    assert plan_build(version, FP32, BuildOptions("fp16"), "x", SHAPE).clear_flags == ()
    assert plan_build(version, QDQ, BuildOptions("quantized"), "x", SHAPE).clear_flags == ()


def test_workspace_and_batch_profile():
    plan = plan_build("10.3.0", QDQ, BuildOptions("quantized", workspace_mb=256, batch=(1, 2, 8)), "image", SHAPE)
    assert plan.workspace_bytes == 256 * 1024 * 1024
    assert plan.profile == {"image": ((1, 3, 32, 32), (2, 3, 32, 32), (8, 3, 32, 32))}
    assert plan_build("10.3.0", QDQ, BuildOptions("quantized"), "image", (1, 3, 32, 32)).profile == {}


def test_dla_gets_fp16_static_shapes_and_gpu_fallback():
    plan = plan_build("10.3.0", FP32, BuildOptions("fp16", dla_core=0, batch=(1, 2, 8)), "image", SHAPE)
    assert not plan.strongly_typed and plan.flags == ("FP16", "GPU_FALLBACK")
    assert plan.profile["image"] == ((2, 3, 32, 32),) * 3
    with pytest.raises(BuildError, match="not FP32: build the FP32 stages with precision fp16"):
        plan_build("10.3.0", FP32, BuildOptions("fp32", dla_core=0), "x", SHAPE)


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
@pytest.mark.parametrize("graph", [QDQ, QDQ_INT4], ids=["int8", "int4"])
def test_finding5_dla_refuses_a_qdq_graph_in_one_line(version, graph):
    """The DLA runs INT8 only from calibration ranges: a Q/DQ graph's quantized layers would run on the GPU."""
    if graph.has_int4 and version.startswith("8."):
        pytest.skip("INT4 is refused on 8.6 before the DLA is considered")
    with pytest.raises(BuildError) as e:
        plan_build(version, graph, BuildOptions("quantized", dla_core=0), "image", SHAPE)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--dla cannot take the quantized (Q/DQ) stages")
    assert "would silently run on the GPU" in msg and "FP16" in msg


@pytest.mark.parametrize("version,graph,opts,match", [
    ("8.6.2", QDQ_INT4, BuildOptions("quantized"), "INT4 weights need TensorRT 10"),
    ("8.4.1", QDQ, BuildOptions("quantized"), "too old"),
    ("8.5.2.2", QDQ, BuildOptions("quantized"), r"too old: edge-qwq needs TensorRT 8.6 or newer \(JetPack 6.0\+\)"),
    ("10.3.0", FP32, BuildOptions("quantized"), "needs a Q/DQ graph"),
    ("10.3.0", QDQ, BuildOptions("fp16"), "is quantized"),
    ("10.3.0", QDQ_INT4, BuildOptions("quantized", dla_core=0), "--dla cannot take the quantized"),
    ("10.3.0", QDQ, BuildOptions("quantized", batch=(4, 2, 8)), "min <= opt <= max"),
])
def test_refusals_say_why(version, graph, opts, match):
    with pytest.raises(BuildError, match=match):
        plan_build(version, graph, opts, "image", SHAPE)


def _calls(trt, what):
    return [c for c in trt.calls if c[0] == what]


def _onnx(tmp_path, model, name):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _qdq_int8_graph():
    """qdq_graph without its INT4 MatMul (what TensorRT 8.6 can parse)."""
    m = qdq_graph()
    g = m.graph
    keep = [n for n in g.node if n.name not in ("dq_w_mm", "matmul_int4")]
    del g.node[:]
    g.node.extend(keep)
    for coll, names in ((g.initializer, {"wq_mm", "sw_mm"}), (g.input, {"a"}), (g.output, {"b"})):
        kept = [x for x in coll if x.name not in names]
        del coll[:]
        coll.extend(kept)
    return m


def test_fake_trt10_records_a_strongly_typed_build_with_cache_and_progress(tmp_path):
    trt = make_fake_tensorrt("10.3.0")
    path = _onnx(tmp_path, qdq_graph(), "stage0.q.onnx")
    plan = plan_build(trt.__version__, QDQ_INT4, BuildOptions("quantized", workspace_mb=64), "x", (-1, 3, 8, 8))
    plan = plan.__class__(**{**plan.__dict__, "profile": {**plan.profile, "a": ((1, 16, 32),) * 3}})
    lines = []
    old_cache = make_fake_tensorrt("10.3.0").Builder(None).create_builder_config().create_timing_cache(b"").serialize()
    engine, cache = build_serialized(trt, path, plan, old_cache, progress=lines.append)
    assert engine.startswith(b"fake-engine")
    assert _calls(trt, "create_network") == [("create_network", 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))]
    assert _calls(trt, "config.set_flag") == []
    assert _calls(trt, "config.set_memory_pool_limit") == [("config.set_memory_pool_limit", "WORKSPACE", 64 << 20)]
    assert _calls(trt, "profile.set_shape")[0] == ("profile.set_shape", "x", (1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))
    assert _calls(trt, "config.create_timing_cache") == [("config.create_timing_cache", old_cache)]
    assert _calls(trt, "config.set_timing_cache") == [("config.set_timing_cache", False)]
    assert cache != old_cache and b"timings of" in cache  # what TensorRT learnt is handed back to be kept
    assert _calls(trt, "build_serialized_network") == [("build_serialized_network", True)]  # monitor attached
    assert lines[-1].startswith("built stage0.q.onnx") and not trt.errors


def test_fake_trt8_records_explicit_batch_and_int8_flags(tmp_path):
    trt = make_fake_tensorrt("8.6.2")
    path = _onnx(tmp_path, _qdq_int8_graph(), "s.q.onnx")
    plan = plan_build(trt.__version__, QDQ, BuildOptions("quantized"), "x", (-1, 3, 8, 8))
    build_serialized(trt, path, plan, None, progress=lambda s: None)
    assert _calls(trt, "create_network") == [("create_network", 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))]
    assert [c[1] for c in _calls(trt, "config.set_flag")] == ["INT8", "FP16"]
    assert _calls(trt, "config.create_timing_cache") == [("config.create_timing_cache", b"")]  # first build
    assert _calls(trt, "build_serialized_network") == [("build_serialized_network", False)]  # 8.x: no monitor


def test_fake_trt8_cannot_parse_int4(tmp_path):
    trt = make_fake_tensorrt("8.6.2")
    path = _onnx(tmp_path, qdq_graph(), "s.q.onnx")
    plan = plan_build("8.6.2", QDQ, BuildOptions("quantized"), "x", (-1, 3, 8, 8))
    with pytest.raises(BuildError, match=r"cannot parse s.q.onnx: .*(block quantization|INT4)"):
        build_serialized(trt, path, plan, None, progress=lambda s: None)


def test_fake_dla_settings_and_missing_dla(tmp_path):
    path = _onnx(tmp_path, fp32_graph(), "s.onnx")
    trt = make_fake_tensorrt("10.3.0", dla_cores=2)
    plan = plan_build(trt.__version__, FP32, BuildOptions("fp16", dla_core=1), "x", (-1, 3, 8, 8))
    plan = plan.__class__(**{**plan.__dict__, "profile": {**plan.profile, "a": ((1, 16, 32),) * 3,
                                                           "g": ((4, 10),) * 3}})
    build_serialized(trt, path, plan, None, progress=lambda s: None)
    assert ("config.default_device_type", "DLA") in trt.calls and ("config.DLA_core", 1) in trt.calls
    assert [c[1] for c in _calls(trt, "config.set_flag")] == ["FP16", "GPU_FALLBACK"]
    nano = make_fake_tensorrt("10.3.0", dla_cores=0)
    with pytest.raises(BuildError, match="has 0 DLA cores"):
        build_serialized(nano, path, plan, None, progress=lambda s: None)


def test_parser_errors_name_the_node(tmp_path):
    path = tmp_path / "g.onnx"
    onnx.save(fp32_graph(), path)
    trt8 = make_fake_tensorrt("8.6.2", parse_errors=[FakeParserError("Unsupported attribute", node=1)])
    with pytest.raises(BuildError, match=r"cannot parse g.onnx: node matmul: Unsupported attribute"):
        build_serialized(trt8, path, plan_build("8.6.2", FP32, BuildOptions("fp32"), "x", SHAPE), None)
    err10 = FakeParserError10("INT4 needs block_size", node=-1, node_name="dq_w_mm", op="DequantizeLinear")
    trt10 = make_fake_tensorrt("10.3.0", parse_errors=[err10])
    msg = parser_errors(trt10.OnnxParser(None, None), path)
    assert "node dq_w_mm (DequantizeLinear): INT4 needs block_size" in msg


def test_failed_build_is_a_build_error(tmp_path):
    path = _onnx(tmp_path, fp32_graph(), "s.onnx")
    plan = plan_build("10.3.0", FP32, BuildOptions("fp32"), "x", (-1, 3, 8, 8))
    plan = plan.__class__(**{**plan.__dict__, "profile": {**plan.profile, "a": ((1, 16, 32),) * 3, "g": ((4, 10),) * 3}})
    trt = make_fake_tensorrt("10.3.0", build_fails=True)
    with pytest.raises(BuildError, match="could not build an engine for s.onnx"):
        build_serialized(trt, path, plan, None, progress=lambda s: None)
    with pytest.raises(BuildError, match=r"cannot parse missing.onnx: the graph: Failed to parse ONNX file"):
        build_serialized(make_fake_tensorrt("10.3.0"), tmp_path / "missing.onnx", plan, None, progress=lambda s: None)
