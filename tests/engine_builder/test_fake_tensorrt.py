"""Issue 13, finding 8: the FAKE tensorrt and pycuda.driver are no more lenient than the real ones.

The facts checked here (enum members and values, method names per version, what TensorRT refuses) are
transcribed from NVIDIA/TensorRT's bindings and headers at v8.6.1 and v10.3.0; see the fake's docstring.
"""
from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest

from engine_builder.plan import BuildOptions, GraphPrecision, plan_build
from engine_builder.trt_build import network_flags
from tests.engine_builder.fake_tensorrt import (
    API,
    LogicError,
    _Binding,
    check_api,
    make_fake_cuda,
    make_fake_tensorrt,
    primary_context_current,
)
from tests.engine_builder.graphs import fp32_graph

QDQ = GraphPrecision(has_qdq=True, has_int4=False, has_fp16=False)


def test_enums_per_version_are_the_real_ones():
    t8, t10 = make_fake_tensorrt("8.6.1"), make_fake_tensorrt("10.3.0")
    assert [m.name for m in t8.NetworkDefinitionCreationFlag] == ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"]
    assert not hasattr(t8.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")  # 10.0 added it
    assert int(t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    # values differ between versions: 10.0 dropped STRICT_TYPES and ENABLE_TACTIC_HEURISTIC, renumbering
    assert (int(t8.BuilderFlag.TF32), int(t10.BuilderFlag.TF32)) == (7, 6)
    assert not hasattr(t8.BuilderFlag, "INT4") and int(t10.BuilderFlag.INT4) == 22
    assert not hasattr(t8.DataType, "INT64") and int(t10.DataType.INT64) == 8
    assert t8.Logger.WARNING == 2 and t10.Logger.VERBOSE == 4
    assert t8.nptype(t8.DataType.BOOL) is np.bool_  # 8.5's np.bool broke on NumPy >= 1.24; 8.6 has np.bool_


def test_methods_per_version_are_the_real_ones():
    t8, t10 = make_fake_tensorrt("8.6.1"), make_fake_tensorrt("10.3.0")
    assert hasattr(t10, "IProgressMonitor") and not hasattr(t8, "IProgressMonitor")
    config8 = t8.Builder(t8.Logger()).create_builder_config()
    with pytest.raises(AttributeError, match="progress_monitor"):
        config8.progress_monitor = object()  # IBuilderConfig.progress_monitor is 10.x only
    with pytest.raises(AttributeError, match="no attribute 'no_such_setting'"):
        config8.no_such_setting = 1  # pybind11 objects refuse unknown attributes
    assert "build_engine" in API[(8, 6)]["classes"]["Builder"] and "build_engine" not in API[(10, 3)]["classes"]["Builder"]
    assert "node_name" in API[(10, 3)]["classes"]["ParserError"] and "node_name" not in API[(8, 6)]["classes"]["ParserError"]

    class Lenient(_Binding):
        _api = "IBuilderConfig"

        def set_anything(self):
            pass

    with pytest.raises(AssertionError, match="set_anything"):  # a fake cannot grow a method TensorRT lacks
        check_api(Lenient, frozenset(API[(10, 3)]["classes"]["IBuilderConfig"].split()))


def test_only_the_supported_versions_exist():
    with pytest.raises(ValueError, match="8.5"):
        make_fake_tensorrt("8.5.2.2")  # JetPack 5: not supported
    assert make_fake_tensorrt("10.7.0").__version__ == "10.7.0"  # later 10.x: the 10.3 table


def test_strongly_typed_does_not_exist_on_8_6():
    t8 = make_fake_tensorrt("8.6.1")
    plan = plan_build("10.3.0", QDQ, BuildOptions("quantized"), "x", (-1, 3, 8, 8))  # a 10.x plan
    with pytest.raises(AttributeError, match="STRONGLY_TYPED"):
        network_flags(t8, plan)


def test_parse_from_file_reads_the_file(tmp_path):
    t = make_fake_tensorrt("10.3.0")
    b = t.Builder(t.Logger())
    parser = t.OnnxParser(b.create_network(0), t.Logger())
    assert parser.parse_from_file(str(tmp_path / "missing.onnx")) is False and parser.num_errors == 1
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    parser = t.OnnxParser(b.create_network(0), t.Logger())
    assert parser.parse_from_file(str(tmp_path / "junk.onnx")) is False
    onnx.save(fp32_graph(), tmp_path / "g.onnx")
    net = b.create_network(0)
    assert t.OnnxParser(net, t.Logger()).parse_from_file(str(tmp_path / "g.onnx"))
    assert [(net.get_input(i).name, net.get_input(i).shape) for i in range(net.num_inputs)][0] == ("x", (-1, 3, 8, 8))
    # 8.6's parser needs an explicit-batch network
    t8 = make_fake_tensorrt("8.6.1")
    p8 = t8.OnnxParser(t8.Builder(t8.Logger()).create_network(0), t8.Logger())
    assert not p8.parse_from_file(str(tmp_path / "g.onnx")) and "explicit batch" in p8.get_error(0).desc()


def test_profile_set_shape_refuses_what_tensorrt_refuses():
    t = make_fake_tensorrt("10.3.0")
    p = t.Builder(t.Logger()).create_optimization_profile()
    with pytest.raises(RuntimeError, match="inconsistent with other shapes"):
        p.set_shape("x", (1, 3, 8), (1, 3, 8, 8), (4, 3, 8, 8))  # ranks differ
    with pytest.raises(RuntimeError, match="inconsistent with other shapes"):
        p.set_shape("x", (4, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8))  # min > opt > max
    with pytest.raises(RuntimeError, match="inconsistent with other shapes"):
        p.set_shape("x", (-1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))
    p.set_shape("x", (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))
    assert p.get_shape("x") == [[1, 3, 8, 8], [2, 3, 8, 8], [4, 3, 8, 8]]


def test_build_refuses_a_profile_that_does_not_fit_the_network(tmp_path):
    t = make_fake_tensorrt("10.3.0")
    onnx.save(fp32_graph(), tmp_path / "g.onnx")
    b = t.Builder(t.Logger())
    net = b.create_network(0)
    t.OnnxParser(net, t.Logger()).parse_from_file(str(tmp_path / "g.onnx"))
    config = b.create_builder_config()
    assert b.build_serialized_network(net, config) is None and "no optimization profile" in t.errors[-1]
    p = b.create_optimization_profile()
    p.set_shape("image", (1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))  # not this network's input
    config.add_optimization_profile(p)
    assert b.build_serialized_network(net, config) is None and "not a network input" in t.errors[-1]


def test_precision_flags_on_a_strongly_typed_network_fail_the_build(tmp_path):
    t = make_fake_tensorrt("10.3.0")
    onnx.save(fp32_graph(), tmp_path / "g.onnx")
    b = t.Builder(t.Logger())
    net = b.create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    t.OnnxParser(net, t.Logger()).parse_from_file(str(tmp_path / "g.onnx"))
    config = b.create_builder_config()
    p = b.create_optimization_profile()
    p.set_shape("x", (1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))
    config.add_optimization_profile(p)
    config.set_flag(t.BuilderFlag.FP16)
    assert b.build_serialized_network(net, config) is None and "strongly typed" in t.errors[-1]


def test_set_timing_cache_returns_a_bool():
    here, other = make_fake_tensorrt("10.3.0"), make_fake_tensorrt("10.3.0", device="Orin Nano sm87 other")
    config = here.Builder(here.Logger()).create_builder_config()
    theirs = other.Builder(other.Logger()).create_builder_config().create_timing_cache(b"").serialize()
    assert config.set_timing_cache(config.create_timing_cache(b""), False) is True
    fresh = here.Builder(here.Logger()).create_builder_config()
    assert fresh.set_timing_cache(fresh.create_timing_cache(theirs), False) is False
    assert fresh.get_timing_cache() is None  # nothing attached
    assert fresh.set_timing_cache(fresh.create_timing_cache(theirs), True) is True  # ignore_mismatch


def test_pycuda_calls_need_a_current_context():
    cuda = make_fake_cuda()
    cuda.init()
    with pytest.raises(LogicError, match="cuMemAlloc failed: invalid device context"):
        cuda.mem_alloc(16)
    primary_context_current(cuda)
    buf = cuda.mem_alloc(16)
    errors = []

    def other_thread():
        try:
            cuda.memcpy_htod_async(buf, np.zeros(4, np.float32))
        except LogicError as e:
            errors.append(str(e))

    th = threading.Thread(target=other_thread)
    th.start()
    th.join()
    assert errors and "invalid device context" in errors[0]  # pycuda.autoinit's context is not current there


def _engine(tmp_path, t, cuda):
    from tests.engine_builder.device_bundle import _fp32_stage

    onnx.save(_fp32_stage(1), tmp_path / "s1.onnx")
    b = t.Builder(t.Logger())
    net = b.create_network(0)
    assert t.OnnxParser(net, t.Logger()).parse_from_file(str(tmp_path / "s1.onnx"))
    config = b.create_builder_config()
    p = b.create_optimization_profile()
    p.set_shape("hidden_in", (1, 16, 16), (2, 16, 16), (4, 16, 16))
    config.add_optimization_profile(p)
    config.clear_flag(t.BuilderFlag.TF32)
    primary_context_current(cuda)
    return t.Runtime(t.Logger()).deserialize_cuda_engine(b.build_serialized_network(net, config))


def test_runtime_engine_and_context_check_the_calls(tmp_path):
    cuda = make_fake_cuda()
    t = make_fake_tensorrt("10.3.0", cuda=cuda)
    engine = _engine(tmp_path, t, cuda)
    ctx = engine.create_execution_context()
    assert ctx.set_input_shape("nope", (1, 16, 16)) is False  # unknown name: False, as TensorRT answers
    assert ctx.set_input_shape("hidden_in", (5, 16, 16)) is False  # outside the profile
    assert ctx.set_tensor_address("nope", 0x1000) is False
    assert ctx.set_input_shape("hidden_in", (2, 16, 16)) and ctx.get_tensor_shape("logits") == (2, 4)
    stream = cuda.Stream()
    assert ctx.execute_async_v3(stream.handle) is False and "address" in t.errors[-1]  # addresses not set
    bufs = {n: cuda.mem_alloc(2 * 16 * 16 * 4) for n in ("hidden_in", "hidden", "logits")}
    for n, buf in bufs.items():
        assert ctx.set_tensor_address(n, int(buf))
    assert ctx.execute_async_v3(stream.handle)
    assert ctx.execute_async_v3(12345) is False  # not a stream
    small = cuda.mem_alloc(8)
    ctx.set_tensor_address("logits", int(small))
    with pytest.raises(AssertionError, match="outside every allocation"):
        ctx.execute_async_v3(stream.handle)  # the output does not fit its buffer
    errors = []
    th = threading.Thread(target=lambda: errors.append(_call(lambda: ctx.set_input_shape("hidden_in", (1, 16, 16)))))
    th.start()
    th.join()
    assert "must not be used from two threads" in errors[0]


def test_a_stream_of_another_context_is_refused(tmp_path):
    cuda = make_fake_cuda()
    t = make_fake_tensorrt("10.3.0", cuda=cuda)
    engine = _engine(tmp_path, t, cuda)  # deserialized under the primary context
    ctx = engine.create_execution_context()
    ctx.set_input_shape("hidden_in", (1, 16, 16))
    for n in ("hidden_in", "hidden", "logits"):
        ctx.set_tensor_address(n, int(cuda.mem_alloc(16 * 16 * 4)))
    cuda.Device(0).make_context()  # what pycuda.autoinit does: a context of its own, current here
    assert ctx.execute_async_v3(cuda.Stream().handle) is False and "invalid resource handle" in t.errors[-1]


def _call(fn):
    try:
        fn()
        return "ok"
    except AssertionError as e:
        return str(e)
