"""FAKES of the `tensorrt` and `pycuda.driver` modules, for tests on machines without TensorRT or a GPU.

Nothing here is TensorRT or CUDA. These fakes stand in for what cannot exist here, and they are written to be
no more lenient than the real ones where our code's calls are concerned:

- `make_fake_tensorrt(version)` has, for TensorRT 8.6 and 10.3, exactly the enum members (with their values)
  and the method/property names of the real Python bindings, transcribed from NVIDIA's sources (table
  below; `API`). A fake class may implement fewer members than the real one, never a member the real one
  lacks (`check_api` asserts it when the module is made), and setting an attribute the binding does not
  have raises AttributeError, as pybind11 objects do. Versions other than 8.6.x and 10.x (10.x uses the 10.3
  table) are refused: 8.5 and older are not supported (JetPack 5).
- It rejects what TensorRT rejects, in TensorRT's way (a False/None return and a logged error, or the
  binding's RuntimeError): a file the ONNX parser cannot read; an 8.6 network without EXPLICIT_BATCH; INT4
  in an 8.6 graph; `IOptimizationProfile.set_shape` shapes of different rank, negative, or not
  min <= opt <= max (the binding's RuntimeError); a profile that names no network input or does not fit
  its shape, or a dynamic input without one (at build); builder precision flags on a strongly typed
  network; a DLA core the device lacks; `set_timing_cache` of a cache from another device with
  ignore_mismatch=False (returns False; `get_timing_cache` is then None); an engine of another TensorRT
  version (deserialize returns None); unknown tensor names and shapes outside the profile
  (`set_input_shape` / `set_tensor_address` return False); `execute_async_v3` with an input shape or an
  address not set, or an engine, stream or buffer of another CUDA context (returns False).
- What it models of TensorRT's numerics, so that verification sees what a device would show: TF32 is on by
  default (BuilderFlag.TF32, "Enabled by default", NvInfer.h): an engine built with it rounds the inputs of
  its Conv/MatMul/Gemm (the stage input and FP32 weights) to TF32's 10-bit mantissa; the FP16 flag without
  strong typing rounds them to FP16. A DLA engine runs on `Runtime.DLA_core`, and on core 0 when the runtime
  never set it (TensorRT's behaviour, reported in microsoft/onnxruntime#26680); Q/DQ layers of a DLA build
  with GPU_FALLBACK are recorded as run on the GPU (the DLA takes implicit INT8 only).
- Stricter than TensorRT, on purpose, and said so: an execution context may be called only from the thread
  that created it (TensorRT forbids concurrent calls; our backend's rule is one thread per context), and
  device accesses out of bounds (a buffer too small for its tensor) or copies between overlapping ranges
  fail at once with an AssertionError (CUDA: undefined behaviour, or an error some calls later).

The "engine" a fake build returns is a byte string holding the ONNX model and the build settings; the fake
Runtime's engines run that model with ONNX Runtime on the memory of `make_fake_cuda()`, a FAKE
pycuda.driver: a per-thread stack of current contexts as pycuda keeps (`Device.retain_primary_context`,
`Context.push/pop/get_current`); every pycuda call needs a current context (else `LogicError`, as pycuda
raises), while TensorRT calls without one use the primary context (the CUDA runtime's rule); device buffers
are host bytes at made-up addresses, tagged with the context that allocated them; copies are immediate.

Where each fact comes from (NVIDIA/TensorRT repository at the tags v8.6.1 and v10.3.0; inducer/pycuda):

| fact | source file | tag |
| --- | --- | --- |
| enum member names | python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp | v8.6.1, v10.3.0 |
| enum values | include/NvInfer.h, include/NvInferRuntime.h | v8.6.1, v10.3.0 |
| Builder, IBuilderConfig, IOptimizationProfile, ITimingCache, Runtime, ICudaEngine, IExecutionContext, Logger, IProgressMonitor (10.3 only) members | python/src/infer/pyCore.cpp | v8.6.1, v10.3.0 |
| INetworkDefinition, ITensor members | python/src/infer/pyGraph.cpp | v8.6.1, v10.3.0 |
| OnnxParser, ParserError members | python/src/parsers/pyOnnx.cpp | v8.6.1, v10.3.0 |
| set_shape raises RuntimeError "Shape provided for min is inconsistent with other shapes." | python/src/infer/pyCore.cpp (opt_profile_set_shape) | v8.6.1, v10.3.0 |
| setDimensions rules (same rank, 0 <= min <= opt <= max, static dims fixed) | include/NvInferRuntime.h | v10.3.0 |
| set_timing_cache returns bool; get_timing_cache may be None | include/NvInfer.h (setTimingCache, getTimingCache) | v8.6.1, v10.3.0 |
| TF32 enabled by default, inputs rounded to 10-bit mantissas | include/NvInfer.h (BuilderFlag::kTF32) | v8.6.1, v10.3.0 |
| nptype mapping (np.bool_; int64 from 10) | python/packaging/bindings_wheel/tensorrt/__init__.py | v8.6.1, v10.3.0 |
| Logger.WARNING etc. (Severity exported onto Logger) | python/packaging/bindings_wheel/tensorrt/__init__.py | v8.6.1, v10.3.0 |
| pycuda: context stack per thread, get_current() None when empty, autoprimaryctx | src/cpp/cuda.hpp, pycuda/autoprimaryctx.py | pycuda v2021.1+ |

The real calls are exercised on a device by the tests marked `tensorrt` (jetson/run-device-tests.sh).
"""
from __future__ import annotations

import base64
import json
import threading
import types
from enum import IntEnum
from pathlib import Path

import numpy as np

# ---------------- the real bindings' names, per version (generated from the sources named above) ----------------

API = {
    (8, 6): {  # tag v8.6.1
        "enums": {  # include/NvInfer.h (values), python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp (names)
            "NetworkDefinitionCreationFlag": """EXPLICIT_BATCH=0 EXPLICIT_PRECISION=1""",
            "BuilderFlag": """FP16=0 INT8=1 DEBUG=2 GPU_FALLBACK=3 STRICT_TYPES=4 REFIT=5 DISABLE_TIMING_CACHE=6
            TF32=7 SPARSE_WEIGHTS=8 SAFETY_SCOPE=9 OBEY_PRECISION_CONSTRAINTS=10 PREFER_PRECISION_CONSTRAINTS=11
            DIRECT_IO=12 REJECT_EMPTY_ALGORITHMS=13 ENABLE_TACTIC_HEURISTIC=14 VERSION_COMPATIBLE=15
            EXCLUDE_LEAN_RUNTIME=16 FP8=17""",
            "MemoryPoolType": """WORKSPACE=0 DLA_MANAGED_SRAM=1 DLA_LOCAL_DRAM=2 DLA_GLOBAL_DRAM=3
            TACTIC_DRAM=4""",
            "DeviceType": """GPU=0 DLA=1""",
            "TensorIOMode": """NONE=0 INPUT=1 OUTPUT=2""",
            "DataType": """FLOAT=0 HALF=1 INT8=2 INT32=3 BOOL=4 UINT8=5 FP8=6""",
            "Severity": """INTERNAL_ERROR=0 ERROR=1 WARNING=2 INFO=3 VERBOSE=4""",
        },
        "classes": {  # python/src/infer/pyCore.cpp, pyGraph.cpp; python/src/parsers/pyOnnx.cpp
            "Builder": """build_engine build_serialized_network create_builder_config create_network
            create_optimization_profile error_recorder get_plugin_registry gpu_allocator is_network_supported
            logger max_DLA_batch_size max_batch_size max_threads num_DLA_cores platform_has_fast_fp16
            platform_has_fast_int8 platform_has_tf32 reset""",
            "IBuilderConfig": """DLA_core add_optimization_profile algorithm_selector avg_timing_iterations
            builder_optimization_level can_run_on_DLA clear_flag clear_quantization_flag create_timing_cache
            default_device_type engine_capability flags get_calibration_profile get_device_type get_flag
            get_memory_pool_limit get_preview_feature get_quantization_flag get_tactic_sources get_timing_cache
            hardware_compatibility_level int8_calibrator is_device_type_set max_aux_streams max_workspace_size
            min_timing_iterations num_optimization_profiles plugins_to_serialize profile_stream
            profiling_verbosity quantization_flags reset reset_device_type set_calibration_profile
            set_device_type set_flag set_memory_pool_limit set_preview_feature set_quantization_flag
            set_tactic_sources set_timing_cache""",
            "IOptimizationProfile": """extra_memory_target get_shape get_shape_input set_shape
            set_shape_input""",
            "ITimingCache": """combine reset serialize""",
            "INetworkDefinition": """add_activation add_assertion add_cast add_concatenation add_constant
            add_convolution add_convolution_nd add_deconvolution add_deconvolution_nd add_dequantize add_einsum
            add_elementwise add_fill add_fully_connected add_gather add_gather_v2 add_grid_sample add_identity
            add_if_conditional add_input add_loop add_lrn add_matrix_multiply add_nms add_non_zero
            add_normalization add_one_hot add_padding add_padding_nd add_parametric_relu add_plugin_v2
            add_pooling add_pooling_nd add_quantize add_ragged_softmax add_reduce add_resize
            add_reverse_sequence add_rnn_v2 add_scale add_scale_nd add_scatter add_select add_shape add_shuffle
            add_slice add_softmax add_topk add_unary builder error_recorder get_input get_layer get_output
            has_explicit_precision has_implicit_batch_dimension mark_output mark_output_for_shapes name
            num_inputs num_layers num_outputs remove_tensor serialize set_weights_name unmark_output
            unmark_output_for_shapes""",
            "ITensor": """allowed_formats broadcast_across_batch dtype dynamic_range get_dimension_name
            is_execution_tensor is_network_input is_network_output is_shape_tensor location name
            reset_dynamic_range set_dimension_name set_dynamic_range shape""",
            "OnnxParser": """clear_errors clear_flag flags get_error get_flag get_used_vc_plugin_libraries
            num_errors parse parse_from_file parse_with_weight_descriptors set_flag supports_model
            supports_operator""",
            "ParserError": """code desc file func line node""",
            "Runtime": """DLA_core deserialize_cuda_engine engine_host_code_allowed error_recorder
            get_plugin_registry gpu_allocator load_runtime logger max_threads num_DLA_cores
            tempfile_control_flags temporary_directory""",
            "ICudaEngine": """binding_is_input create_engine_inspector create_execution_context
            create_execution_context_without_device_memory device_memory_size engine_capability error_recorder
            get_binding_bytes_per_component get_binding_components_per_element get_binding_dtype
            get_binding_format get_binding_format_desc get_binding_index get_binding_name get_binding_shape
            get_binding_vectorized_dim get_location get_profile_shape get_profile_shape_input
            get_tensor_bytes_per_component get_tensor_components_per_element get_tensor_dtype get_tensor_format
            get_tensor_format_desc get_tensor_location get_tensor_mode get_tensor_name get_tensor_profile_shape
            get_tensor_shape get_tensor_vectorized_dim hardware_compatibility_level has_implicit_batch_dimension
            is_execution_binding is_shape_binding is_shape_inference_io max_batch_size name num_aux_streams
            num_bindings num_io_tensors num_layers num_optimization_profiles profiling_verbosity refittable
            serialize tactic_sources""",
            "IExecutionContext": """active_optimization_profile all_binding_shapes_specified
            all_shape_inputs_specified debug_sync device_memory engine enqueue_emits_profile error_recorder
            execute execute_async execute_async_v2 execute_async_v3 execute_v2 get_binding_shape
            get_input_consumed_event get_max_output_size get_output_allocator get_shape get_strides
            get_tensor_address get_tensor_shape get_tensor_strides infer_shapes name nvtx_verbosity
            persistent_cache_limit profiler report_to_profiler set_aux_streams set_binding_shape
            set_input_consumed_event set_input_shape set_optimization_profile_async set_output_allocator
            set_shape_input set_tensor_address temporary_allocator""",
            "Logger": """log min_severity""",
        },
    },
    (10, 3): {  # tag v10.3.0
        "enums": {  # include/NvInfer.h (values), python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp (names)
            "NetworkDefinitionCreationFlag": """EXPLICIT_BATCH=0 STRONGLY_TYPED=1""",
            "BuilderFlag": """FP16=0 BF16=17 INT8=1 DEBUG=2 GPU_FALLBACK=3 REFIT=4 DISABLE_TIMING_CACHE=5 TF32=6
            SPARSE_WEIGHTS=7 SAFETY_SCOPE=8 OBEY_PRECISION_CONSTRAINTS=9 PREFER_PRECISION_CONSTRAINTS=10
            DIRECT_IO=11 REJECT_EMPTY_ALGORITHMS=12 VERSION_COMPATIBLE=13 EXCLUDE_LEAN_RUNTIME=14 FP8=15
            ERROR_ON_TIMING_CACHE_MISS=16 DISABLE_COMPILATION_CACHE=18 WEIGHTLESS=19 STRIP_PLAN=19
            REFIT_IDENTICAL=20 WEIGHT_STREAMING=21 INT4=22 REFIT_INDIVIDUAL=23""",
            "MemoryPoolType": """WORKSPACE=0 DLA_MANAGED_SRAM=1 DLA_LOCAL_DRAM=2 DLA_GLOBAL_DRAM=3 TACTIC_DRAM=4
            TACTIC_SHARED_MEMORY=5""",
            "DeviceType": """GPU=0 DLA=1""",
            "TensorIOMode": """NONE=0 INPUT=1 OUTPUT=2""",
            "DataType": """FLOAT=0 HALF=1 BF16=7 INT8=2 INT32=3 INT64=8 BOOL=4 UINT8=5 FP8=6 INT4=9""",
            "Severity": """INTERNAL_ERROR=0 ERROR=1 WARNING=2 INFO=3 VERBOSE=4""",
        },
        "classes": {  # python/src/infer/pyCore.cpp, pyGraph.cpp; python/src/parsers/pyOnnx.cpp
            "Builder": """build_serialized_network create_builder_config create_network
            create_optimization_profile error_recorder get_plugin_registry gpu_allocator is_network_supported
            logger max_DLA_batch_size max_threads num_DLA_cores platform_has_fast_fp16 platform_has_fast_int8
            platform_has_tf32 reset""",
            "IBuilderConfig": """DLA_core add_optimization_profile algorithm_selector avg_timing_iterations
            builder_optimization_level can_run_on_DLA clear_flag clear_quantization_flag create_timing_cache
            default_device_type engine_capability flags get_calibration_profile get_device_type get_flag
            get_memory_pool_limit get_preview_feature get_quantization_flag get_tactic_sources get_timing_cache
            hardware_compatibility_level int8_calibrator is_device_type_set max_aux_streams
            num_optimization_profiles plugins_to_serialize profile_stream profiling_verbosity progress_monitor
            quantization_flags reset reset_device_type runtime_platform set_calibration_profile set_device_type
            set_flag set_memory_pool_limit set_preview_feature set_quantization_flag set_tactic_sources
            set_timing_cache""",
            "IOptimizationProfile": """extra_memory_target get_shape get_shape_input set_shape
            set_shape_input""",
            "ITimingCache": """combine reset serialize""",
            "INetworkDefinition": """add_activation add_assertion add_cast add_concatenation add_constant
            add_convolution_nd add_deconvolution_nd add_dequantize add_einsum add_elementwise add_fill
            add_gather add_gather_v2 add_grid_sample add_identity add_if_conditional add_input add_loop add_lrn
            add_matrix_multiply add_nms add_non_zero add_normalization add_one_hot add_padding_nd
            add_parametric_relu add_plugin_v2 add_plugin_v3 add_pooling_nd add_quantize add_ragged_softmax
            add_reduce add_resize add_reverse_sequence add_scale add_scale_nd add_scatter add_select add_shape
            add_shuffle add_slice add_softmax add_topk add_unary are_weights_marked_refittable builder
            error_recorder flags get_flag get_input get_layer get_output has_implicit_batch_dimension
            is_debug_tensor mark_debug mark_output mark_output_for_shapes mark_weights_refittable name
            num_inputs num_layers num_outputs remove_tensor serialize set_weights_name unmark_debug
            unmark_output unmark_output_for_shapes unmark_weights_refittable""",
            "ITensor": """allowed_formats broadcast_across_batch dtype dynamic_range get_dimension_name
            is_execution_tensor is_network_input is_network_output is_shape_tensor location name
            reset_dynamic_range set_dimension_name set_dynamic_range shape""",
            "OnnxParser": """clear_errors clear_flag flags get_error get_flag get_layer_output_tensor
            get_subgraph_nodes get_used_vc_plugin_libraries is_subgraph_supported num_errors num_subgraphs parse
            parse_from_file parse_with_weight_descriptors set_flag supports_model supports_model_v2
            supports_operator""",
            "ParserError": """code desc file func line local_function_stack local_function_stack_size node
            node_name node_operator""",
            "Runtime": """DLA_core deserialize_cuda_engine engine_host_code_allowed error_recorder
            get_plugin_registry gpu_allocator load_runtime logger max_threads num_DLA_cores
            tempfile_control_flags temporary_directory""",
            "ICudaEngine": """create_engine_inspector create_execution_context
            create_execution_context_without_device_memory create_serialization_config device_memory_size
            device_memory_size_v2 engine_capability error_recorder get_device_memory_size_for_profile
            get_device_memory_size_for_profile_v2 get_tensor_bytes_per_component
            get_tensor_components_per_element get_tensor_dtype get_tensor_format get_tensor_format_desc
            get_tensor_location get_tensor_mode get_tensor_name get_tensor_profile_shape
            get_tensor_profile_values get_tensor_shape get_tensor_vectorized_dim
            get_weight_streaming_automatic_budget hardware_compatibility_level has_implicit_batch_dimension
            is_debug_tensor is_shape_inference_io minimum_weight_streaming_budget name num_aux_streams
            num_io_tensors num_layers num_optimization_profiles profiling_verbosity refittable serialize
            serialize_with_config streamable_weights_size tactic_sources weight_streaming_budget
            weight_streaming_budget_v2 weight_streaming_scratch_memory_size""",
            "IExecutionContext": """active_optimization_profile all_binding_shapes_specified
            all_shape_inputs_specified debug_sync device_memory engine enqueue_emits_profile error_recorder
            execute_async_v3 execute_v2 get_debug_listener get_debug_state get_input_consumed_event
            get_max_output_size get_output_allocator get_tensor_address get_tensor_shape get_tensor_strides
            infer_shapes name nvtx_verbosity persistent_cache_limit profiler report_to_profiler
            set_all_tensors_debug_state set_aux_streams set_debug_listener set_device_memory
            set_input_consumed_event set_input_shape set_optimization_profile_async set_output_allocator
            set_tensor_address set_tensor_debug_state temporary_allocator
            update_device_memory_size_for_shapes""",
            "Logger": """log min_severity""",
            "IProgressMonitor": """phase_finish phase_start step_complete""",
        },
    },
}
# trt.nptype per version (python/packaging/bindings_wheel/tensorrt/__init__.py)
NPTYPE = {(8, 6): {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
                   "UINT8": np.uint8},
          (10, 3): {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                    "BOOL": np.bool_, "UINT8": np.uint8}}
ONNX_DTYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}  # onnx.TensorProto
PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4")  # not allowed on a strongly typed network
FAKE_ENGINE = b"fake-engine "
TIMING_CACHE = b"fake-timing-cache|"


def api_key(version: str) -> tuple[int, int]:
    """The transcribed table a TensorRT version uses: 8.6.x -> (8, 6), 10.x (x >= 3) -> (10, 3)."""
    parts = [int(p) for p in str(version).split(".")[:2]]
    major, minor = parts[0], (parts + [0])[1]
    if (major, minor) == (8, 6):
        return 8, 6
    if major == 10 and minor >= 3:
        return 10, 3
    raise ValueError(f"no transcribed TensorRT {version} API in this fake (8.6 and 10.3+ are supported)")


def api_names(version: str, cls: str) -> frozenset[str]:
    return frozenset(API[api_key(version)]["classes"].get(cls, "").split())


def api_enum(version: str, name: str) -> dict[str, int]:
    return {k: int(v) for k, v in (item.split("=") for item in API[api_key(version)]["enums"][name].split())}


class _Binding:
    """Base of the fake binding classes: public attributes must be members of the real binding (`_names`)."""

    _api = ""
    _names: frozenset = frozenset()
    _extra: frozenset = frozenset()  # Python-level additions of the tensorrt package (Logger.WARNING, ...)

    def __setattr__(self, name, value):
        if not name.startswith("_") and name not in self._names:
            raise AttributeError(f"'tensorrt.{self._api}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def check_api(cls: type, names: frozenset) -> None:
    """Every public member the fake class defines must exist in the real binding of that version."""
    own = {n for klass in cls.__mro__ if klass not in (object, _Binding) for n in vars(klass)
           if not n.startswith("_")}
    extra = own - names - cls._extra
    assert not extra, f"fake {cls._api} has members real TensorRT lacks: {sorted(extra)}"


class FakeParserError:
    """TensorRT 8.6's ParserError (code desc file func line node); `FakeParserError10` adds 10.x's node_name and
    node_operator."""

    def __init__(self, desc: str, node: int, node_name: str | None = None, op: str | None = None):
        self._desc, self._node, self._name, self._op = desc, node, node_name, op

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def code(self):
        return 1

    def __str__(self):
        return self._desc


class FakeParserError10(FakeParserError):
    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


# ---------------- numerics the engines model ----------------

def round_tf32(x: np.ndarray) -> np.ndarray:
    """float32 rounded to TF32's 10-bit mantissa (round to nearest even), kept in float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    u = (u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return u.view(np.float32)


def round_fp16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def _reduced_precision_model(model_bytes: bytes, rounding) -> bytes:
    """The model with the FP32 weights of its Conv/MatMul/Gemm rounded (TF32 or FP16 arithmetic)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    weights = {i for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") for i in n.input[1:]}
    for init in model.graph.initializer:
        if init.name in weights and init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(rounding(numpy_helper.to_array(init)), init.name))
    return model.SerializeToString()


# ---------------- the fake tensorrt ----------------

def make_fake_tensorrt(version: str = "10.3.0", dla_cores: int = 2, parse_errors: list | None = None,
                       build_fails: bool = False, cuda=None, device: str = "Orin sm87") -> types.ModuleType:
    """A FAKE `tensorrt` of the given version (8.6.x or 10.x). `trt.calls` lists (what, args) in order;
    `trt.errors` the errors TensorRT would have logged. `cuda`: a `make_fake_cuda()` whose memory the fake
    Runtime's engines read and write. `device`: what the timing caches are tagged with (a cache from another
    device is refused by set_timing_cache(cache, ignore_mismatch=False))."""
    key = api_key(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__fake__ = True
    trt.calls, trt.errors = [], []
    record = trt.calls.append

    def error(msg: str):
        trt.errors.append(msg)

    for name in ("NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "DeviceType", "TensorIOMode",
                 "DataType"):
        setattr(trt, name, IntEnum(name, api_enum(version, name)))
    severity = IntEnum("Severity", api_enum(version, "Severity"))
    flag_bits = {int(m): m.name for m in trt.NetworkDefinitionCreationFlag}

    def binding(api: str, extra: tuple = ()):
        def wrap(cls):
            cls._api, cls._names, cls._extra = api, api_names(version, api), frozenset(extra)
            cls.__name__ = api
            check_api(cls, cls._names)
            return cls
        return wrap

    @binding("Logger", extra=tuple(severity.__members__) + ("Severity",))
    class Logger(_Binding):
        Severity = severity

        def __init__(self, min_severity=2):  # Severity.WARNING
            record(("Logger", int(min_severity)))
            self.min_severity = min_severity

        def log(self, sev, msg):
            if int(sev) <= int(severity.ERROR):
                error(msg)

    for _name, _member in severity.__members__.items():  # tensorrt/__init__.py: setattr(Logger, attr, value)
        setattr(Logger, _name, _member)

    @binding("ITimingCache")
    class TimingCache(_Binding):
        def __init__(self, device_tag: str, entries: list[str]):
            self._device, self._entries = device_tag, list(entries)

        def serialize(self):
            return TIMING_CACHE + json.dumps({"device": self._device, "entries": self._entries}).encode()

    def parse_cache(blob: bytes):
        blob = bytes(blob)
        if not blob:
            return TimingCache(device, [])
        if not blob.startswith(TIMING_CACHE):
            error("createTimingCache: the blob is not a timing cache")
            return None
        d = json.loads(blob[len(TIMING_CACHE):])
        return TimingCache(d["device"], d["entries"])

    @binding("IOptimizationProfile")
    class Profile(_Binding):
        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - the binding's argument names
            lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            record(("profile.set_shape", input, lo, mid, hi))
            if not (len(lo) == len(mid) == len(hi)) or any(d < 0 for d in lo + mid + hi):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            if not all(a <= b <= c for a, b, c in zip(lo, mid, hi)):
                raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
            self._shapes[input] = (lo, mid, hi)

        def get_shape(self, input):  # noqa: A002
            return [list(s) for s in self._shapes.get(input, ())]

    @binding("IBuilderConfig")
    class Config(_Binding):
        def __init__(self):
            self._flags = {"TF32"}  # BuilderFlag::kTF32: "Enabled by default"
            self._cache = None
            self._profiles = []
            self._dla = -1
            self._device_type = trt.DeviceType.GPU
            self._monitor = None

        def set_memory_pool_limit(self, pool, pool_size):
            record(("config.set_memory_pool_limit", trt.MemoryPoolType(pool).name, int(pool_size)))

        def set_flag(self, flag):
            name = trt.BuilderFlag(flag).name
            record(("config.set_flag", name))
            self._flags.add(name)

        def clear_flag(self, flag):
            name = trt.BuilderFlag(flag).name
            record(("config.clear_flag", name))
            self._flags.discard(name)

        def get_flag(self, flag):
            return trt.BuilderFlag(flag).name in self._flags

        def add_optimization_profile(self, profile):
            record(("config.add_optimization_profile",))
            if not profile._shapes:
                error("addOptimizationProfile: the profile sets no shape")
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def num_optimization_profiles(self):
            return len(self._profiles)

        @property
        def default_device_type(self):
            return self._device_type

        @default_device_type.setter
        def default_device_type(self, value):
            self._device_type = trt.DeviceType(value)
            record(("config.default_device_type", self._device_type.name))

        @property
        def DLA_core(self):  # noqa: N802 - the binding's name
            return self._dla

        @DLA_core.setter
        def DLA_core(self, value):  # noqa: N802
            self._dla = int(value)
            record(("config.DLA_core", self._dla))

        def create_timing_cache(self, serialized_timing_cache):
            record(("config.create_timing_cache", bytes(serialized_timing_cache)))
            return parse_cache(serialized_timing_cache)

        def set_timing_cache(self, cache, ignore_mismatch):
            record(("config.set_timing_cache", bool(ignore_mismatch)))
            if cache._device != device and not ignore_mismatch:
                error(f"setTimingCache: the cache was made on {cache._device!r}, this device is {device!r}")
                return False
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

    if key >= (10, 3):  # IBuilderConfig.progress_monitor and IProgressMonitor arrived in TensorRT 10.0
        def _get_monitor(self):
            return self._monitor

        def _set_monitor(self, value):
            self._monitor = value

        Config.progress_monitor = property(_get_monitor, _set_monitor)

        @binding("IProgressMonitor")
        class IProgressMonitor:
            def __init__(self):
                pass

        trt.IProgressMonitor = IProgressMonitor

    @binding("ITensor")
    class Tensor(_Binding):
        def __init__(self, name, shape, dtype):
            self._name, self._shape, self._dtype = name, tuple(shape), dtype

        name = property(lambda self: self._name)
        shape = property(lambda self: self._shape)
        dtype = property(lambda self: self._dtype)

    @binding("INetworkDefinition")
    class Network(_Binding):
        def __init__(self, flags: int):
            self._flags, self._inputs, self._outputs, self._model, self._ops = flags, [], [], None, []

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, index):
            return self._inputs[index]

        def get_output(self, index):
            return self._outputs[index]

        def _flag(self, name):
            member = getattr(trt.NetworkDefinitionCreationFlag, name, None)
            return member is not None and bool(self._flags & (1 << int(member)))

    @binding("OnnxParser")
    class OnnxParser(_Binding):
        def __init__(self, network, logger):
            self._network, self._errors = network, list(parse_errors or [])

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index):
            return self._errors[index]

        def clear_errors(self):
            self._errors = []

        def parse_from_file(self, model):
            import onnx

            record(("parse_from_file", str(model)))
            if self._errors:
                return False
            err = FakeParserError10 if key >= (10, 0) else FakeParserError
            try:
                data = Path(model).read_bytes()
                proto = onnx.load_from_string(data)
            except Exception as e:  # noqa: BLE001 - what TensorRT reports: it could not read it
                self._errors.append(err(f"Failed to parse ONNX file {model}: {type(e).__name__}", -1))
                return False
            net, g = self._network, proto.graph
            if key < (10, 0) and not net._flag("EXPLICIT_BATCH"):
                self._errors.append(err("ONNX parser only supports networks with an explicit batch dimension", -1))
                return False
            int4 = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}
            if key < (10, 0):
                for i, n in enumerate(g.node):
                    if n.op_type == "DequantizeLinear" and any(a.name == "block_size" for a in n.attribute):
                        self._errors.append(err("DequantizeLinear: block quantization is not supported", i))
                if any(t.data_type in int4 for t in g.initializer):
                    self._errors.append(err("Unsupported ONNX data type: INT4", -1))
                if self._errors:
                    return False
            inits = {t.name for t in g.initializer}

            def tensor(v):
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                return Tensor(v.name, dims, trt.DataType[ONNX_DTYPES.get(v.type.tensor_type.elem_type, "FLOAT")])

            net._inputs = [tensor(v) for v in g.input if v.name not in inits]
            net._outputs = [tensor(v) for v in g.output]
            net._model, net._ops = data, [n.op_type for n in g.node]
            return True

    @binding("Builder")
    class Builder(_Binding):
        def __init__(self, logger):
            record(("Builder",))

        num_DLA_cores = property(lambda self: dla_cores)

        def create_network(self, flags=0):
            record(("create_network", int(flags)))
            unknown = [b for b in range(32) if int(flags) & (1 << b) and b not in flag_bits]
            if unknown:
                error(f"createNetworkV2: unknown NetworkDefinitionCreationFlag bits {unknown}")
                return None
            return Network(int(flags))

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            record(("build_serialized_network", getattr(config, "_monitor", None) is not None))
            why = _build_refusal(network, config)
            if why or build_fails:
                error(why or "build failed (build_fails=True)")
                return None
            if config._cache is not None:
                config._cache._entries.append(f"timings of {len(network._ops)} layers")
            on_dla = config._device_type == trt.DeviceType.DLA
            qdq = [op for op in network._ops if op in ("QuantizeLinear", "DequantizeLinear")]
            spec = {"trt": version, "model": base64.b64encode(network._model).decode(),
                    "profile": {k: [list(s) for s in v] for p in config._profiles for k, v in p._shapes.items()},
                    "flags": sorted(config._flags), "strongly_typed": network._flag("STRONGLY_TYPED"),
                    "device_type": config._device_type.name, "dla_core": config._dla if on_dla else None,
                    # the DLA takes implicit (calibration-range) INT8 only: Q/DQ layers fall back to the GPU
                    "gpu_fallback_layers": qdq if on_dla else []}
            return FAKE_ENGINE + json.dumps(spec).encode()

    def _build_refusal(network, config) -> str | None:
        """What TensorRT would log (and return None for) when building this network with this config."""
        if network._model is None:
            return "the network is empty (nothing was parsed into it)"
        if network._flag("STRONGLY_TYPED"):
            bad = sorted(set(PRECISION_FLAGS) & config._flags)
            if bad:
                return f"precision flags {bad} are not allowed on a strongly typed network"
        profiles = {k: v for p in config._profiles for k, v in p._shapes.items()}
        inputs = {t.name: t.shape for t in network._inputs}
        for name, shapes in profiles.items():
            if name not in inputs:
                return f"the optimization profile names {name!r}, which is not a network input"
            dims = inputs[name]
            for s in shapes:
                if len(s) != len(dims) or any(d >= 0 and d != x for d, x in zip(dims, s)):
                    return f"the optimization profile of {name!r} {list(s)} does not fit its shape {list(dims)}"
        for name, dims in inputs.items():
            if any(d < 0 for d in dims) and name not in profiles:
                return f"input {name!r} has dynamic dimensions {list(dims)} but no optimization profile"
        if config._device_type == trt.DeviceType.DLA:
            if not 0 <= config._dla < dla_cores:
                return f"DLA core {config._dla} was asked for; this device has {dla_cores}"
            qdq = any(op in ("QuantizeLinear", "DequantizeLinear") for op in network._ops)
            if qdq and "GPU_FALLBACK" not in config._flags:
                return "Q/DQ layers cannot run on the DLA and GPU_FALLBACK is off"
        return None

    @binding("Runtime")
    class Runtime(_Binding):
        def __init__(self, logger):
            record(("Runtime",))
            self._dla = -1

        num_DLA_cores = property(lambda self: dla_cores)

        @property
        def DLA_core(self):  # noqa: N802
            return self._dla

        @DLA_core.setter
        def DLA_core(self, value):  # noqa: N802
            self._dla = int(value)
            record(("runtime.DLA_core", self._dla))

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            if not data.startswith(FAKE_ENGINE):
                error("deserializeCudaEngine: not an engine (magic tag mismatch)")
                return None
            spec = json.loads(data[len(FAKE_ENGINE):])
            if api_key(spec["trt"]) != key or spec["trt"].split(".")[:2] != version.split(".")[:2]:
                error(f"the engine was built by TensorRT {spec['trt']}, this is {version}")
                return None
            if cuda is None:
                raise RuntimeError("make_fake_tensorrt(cuda=make_fake_cuda()) is needed to run fake engines")
            dla = (self._dla if self._dla >= 0 else 0) if spec["device_type"] == "DLA" else None
            return _engine_class()(spec, cuda, record, error, dla)

    def _engine_class():
        return _classes["ICudaEngine"]

    _classes = {"ICudaEngine": _make_engine_classes(version, trt, binding)}
    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    mapping = {trt.DataType[k]: v for k, v in NPTYPE[key].items()}

    def nptype(trt_type):
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    trt.nptype = nptype
    return trt


# ---------------- the runtime side: engines that run their ONNX model with ONNX Runtime on fake memory ------------

def _make_engine_classes(version: str, trt, binding):
    ort_types = {"tensor(float)": "FLOAT", "tensor(float16)": "HALF", "tensor(int64)": "INT64",
                 "tensor(int32)": "INT32", "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL"}

    @binding("IExecutionContext")
    class ExecutionContext(_Binding):
        def __init__(self, engine):
            self._engine, self._thread = engine, threading.get_ident()
            self._shapes: dict[str, tuple] = {}
            self._addresses: dict[str, int] = {}

        engine = property(lambda self: self._engine)

        def _same_thread(self, what: str) -> None:
            if threading.get_ident() != self._thread:  # stricter than TensorRT (which forbids concurrent calls)
                raise AssertionError(f"IExecutionContext.{what} called from thread {threading.get_ident()}, but the "
                                     f"context was made in thread {self._thread}: one execution context must not be "
                                     "used from two threads")

        def set_input_shape(self, name, shape):
            self._same_thread("set_input_shape")
            e = self._engine
            shape = tuple(int(d) for d in shape)
            e._record(("context.set_input_shape", name, shape))
            if e._io.get(name, (None,))[0] != trt.TensorIOMode.INPUT:
                e._error(f"setInputShape: {name!r} is not an input tensor of the engine")
                return False
            dims = e._io[name][1]
            lo, _, hi = e._profile.get(name, [dims] * 3)
            if len(shape) != len(dims) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                e._error(f"setInputShape: {name!r} {list(shape)} is outside the profile {lo}..{hi}")
                return False
            self._shapes[name] = shape
            return True

        def set_tensor_address(self, name, memory):
            self._same_thread("set_tensor_address")
            if name not in self._engine._io:
                self._engine._error(f"setTensorAddress: {name!r} is not an I/O tensor of the engine")
                return False
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name):
            self._same_thread("get_tensor_address")
            return self._addresses.get(name, 0)

        def get_tensor_shape(self, name):
            self._same_thread("get_tensor_shape")
            mode, dims = self._engine._io[name]
            if mode == trt.TensorIOMode.INPUT:
                return tuple(self._shapes.get(name, dims))
            batch = next((s[0] for s in self._shapes.values()), -1)
            return tuple(batch if (i == 0 and d < 0) else d for i, d in enumerate(dims))

        def execute_async_v3(self, stream_handle):
            self._same_thread("execute_async_v3")
            e, cuda = self._engine, self._engine._cuda
            for name, (mode, _) in e._io.items():
                if mode == trt.TensorIOMode.INPUT and name not in self._shapes:
                    e._error(f"enqueueV3: the shape of input {name!r} was not set")
                    return False
                if name not in self._addresses:
                    e._error(f"enqueueV3: the address of {name!r} was not set")
                    return False
            ctx = cuda._effective_context()
            stream = cuda._streams.get(int(stream_handle))
            if e._context != ctx or stream is None or stream._ctx != ctx:
                e._error("enqueueV3: Cuda Runtime (invalid resource handle): the engine, the stream and the current "
                         "context must be the same CUDA context")
                return False
            for name in e._io:
                alloc = cuda._allocation(self._addresses[name])
                if alloc is None or alloc._ctx != ctx:
                    e._error(f"enqueueV3: the address of {name!r} is not device memory of this context")
                    return False
            feeds = {}
            for name, (mode, _) in e._io.items():
                if mode == trt.TensorIOMode.INPUT:
                    x = cuda.read(self._addresses[name], self._shapes[name], e._np[name])
                    feeds[name] = e._round(x) if e._round is not None and x.dtype == np.float32 else x
            outs = [o.name for o in e._session.get_outputs()]
            for name, value in zip(outs, e._session.run(outs, feeds)):
                value = np.ascontiguousarray(value, e._np[name])
                expected = self.get_tensor_shape(name)
                assert tuple(value.shape) == tuple(expected), f"{name}: {value.shape} vs {expected}"
                cuda.write(self._addresses[name], value)  # fails loudly if the buffer is too small
            e._record(("context.execute_async_v3", int(stream_handle)))
            return True

    @binding("ICudaEngine")
    class Engine(_Binding):
        """A deserialized fake engine: its ONNX model run by ONNX Runtime, its profile enforced."""

        def __init__(self, spec: dict, cuda, record, error, dla_core):
            import onnxruntime as ort

            self._spec, self._cuda, self._record, self._error = spec, cuda, record, error
            self._profile = spec["profile"]
            self._context = cuda._effective_context()
            self._dla_core_in_use = dla_core  # the DLA core it runs on (None: the GPU)
            model = base64.b64decode(spec["model"])
            flags = set(spec["flags"])
            self._round = None
            if "FP16" in flags and not spec["strongly_typed"]:
                self._round = round_fp16
            elif "TF32" in flags:
                self._round = round_tf32
            if self._round is not None:
                model = _reduced_precision_model(model, self._round)
            self._session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            ios = [(v, trt.TensorIOMode.INPUT) for v in self._session.get_inputs()]
            ios += [(v, trt.TensorIOMode.OUTPUT) for v in self._session.get_outputs()]
            self._io = {v.name: (mode, [d if isinstance(d, int) else -1 for d in v.shape]) for v, mode in ios}
            self._dtype = {v.name: trt.DataType[ort_types[v.type]] for v, _ in ios}
            self._np = {n: np.dtype(trt.nptype(t)) for n, t in self._dtype.items()}
            self._names = [v.name for v, _ in ios]

        num_io_tensors = property(lambda self: len(self._names))

        def get_tensor_name(self, index):
            return self._names[index]

        def get_tensor_mode(self, name):
            return self._io[name][0] if name in self._io else trt.TensorIOMode.NONE

        def get_tensor_dtype(self, name):
            return self._dtype[name]

        def get_tensor_shape(self, name):
            return tuple(self._io[name][1])

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self._profile.get(name, [])]

        def create_execution_context(self):
            return ExecutionContext(self)

    return Engine


# ---------------- the FAKE pycuda.driver ----------------

class LogicError(RuntimeError):
    """pycuda.driver.LogicError: what pycuda raises for a call made without a current CUDA context."""


class FakeAllocation:
    """pycuda.driver.DeviceAllocation: int() is the device address; free() releases it."""

    def __init__(self, address: int, nbytes: int, ctx, release):
        self.address, self.nbytes, self._ctx, self._release = address, nbytes, ctx, release

    def __int__(self):
        return self.address

    __index__ = __int__

    def free(self):
        self._release(self)


PRIMARY = 0xC0  # the handle of device 0's primary context


def make_fake_cuda() -> types.SimpleNamespace:
    """A FAKE pycuda.driver. `cuda.calls` records the copies (and the context pushes/pops); `cuda.read(ptr,
    shape, dtype)` and `cuda.write(ptr, array)` are the fake engines' access to the device memory. See the
    module docstring for the context rules."""
    memory: dict[int, np.ndarray] = {}  # base address -> bytes
    allocations: dict[int, FakeAllocation] = {}
    streams: dict[int, object] = {}
    calls: list = []
    local = threading.local()
    counters = {"address": 0x10000, "stream": 0x51000, "context": PRIMARY + 1}
    initialized = [False]

    def stack() -> list:
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    class Context:
        def __init__(self, handle: int):
            self.handle = handle

        def __eq__(self, other):
            return isinstance(other, Context) and other.handle == self.handle

        def __hash__(self):
            return hash(self.handle)

        def push(self):
            stack().append(self)
            calls.append(("ctx.push", self.handle, threading.get_ident()))

        @staticmethod
        def pop():
            if not stack():
                raise LogicError("context::pop failed: invalid device context - cannot pop non-current context")
            ctx = stack().pop()
            calls.append(("ctx.pop", ctx.handle, threading.get_ident()))
            return ctx

        @staticmethod
        def get_current():
            return stack()[-1] if stack() else None

        def detach(self):
            if stack() and stack()[-1] == self:
                stack().pop()

        @staticmethod
        def synchronize():
            current("cuCtxSynchronize")

    class Device:
        def __init__(self, ordinal: int):
            if not initialized[0]:
                raise LogicError("cuDeviceGet failed: initialization error")
            if ordinal != 0:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")

        def retain_primary_context(self):
            return Context(PRIMARY)

        def make_context(self, flags=0):
            ctx = Context(counters["context"])
            counters["context"] += 1
            ctx.push()
            return ctx

        def name(self):
            return "Fake Orin"

        def compute_capability(self):
            return 8, 7

    def init(flags=0):
        initialized[0] = True

    def current(what: str) -> Context:
        ctx = Context.get_current()
        if ctx is None:
            raise LogicError(f"{what} failed: invalid device context")
        return ctx

    def effective_context() -> Context:
        """What the CUDA runtime (TensorRT) uses: the current context, else the device's primary context."""
        return Context.get_current() or Context(PRIMARY)

    def allocation_at(ptr: int) -> FakeAllocation | None:
        ptr = int(ptr)
        for base, a in allocations.items():
            if base <= ptr < base + max(1, a.nbytes):
                return a
        return None

    def locate(ptr: int, nbytes: int) -> np.ndarray:
        ptr = int(ptr)
        for base, buf in memory.items():
            if base <= ptr and ptr + nbytes <= base + buf.size:
                return buf[ptr - base:ptr - base + nbytes]
        raise AssertionError(f"device access of {nbytes} bytes at {ptr:#x} is outside every allocation")

    def release(a: FakeAllocation) -> None:
        if a.address not in allocations:
            raise LogicError("cuMemFree failed: invalid argument (freed twice)")
        del allocations[a.address], memory[a.address]

    def mem_alloc(nbytes):
        ctx = current("cuMemAlloc")
        address = counters["address"]
        counters["address"] += (int(nbytes) + 0xFFFF) // 0x10000 * 0x10000 + 0x10000  # a gap: none abut
        memory[address] = np.full(int(nbytes), 0xFF, np.uint8)  # NaN bytes until written, as real memory may be
        allocations[address] = FakeAllocation(address, int(nbytes), ctx, release)
        return allocations[address]

    def check_device(what: str, ptr, stream=None) -> None:
        ctx = current(what)
        a = allocation_at(ptr)
        if a is None or a._ctx != ctx:
            raise LogicError(f"{what} failed: invalid argument (not device memory of the current context)")
        if stream is not None and stream._ctx != ctx:
            raise LogicError(f"{what} failed: invalid resource handle (a stream of another context)")

    def memset_d8(dest, data, size):
        check_device("cuMemsetD8", dest)
        locate(dest, size)[:] = data

    def write(ptr, array):
        a = np.ascontiguousarray(array)
        locate(ptr, a.nbytes)[:] = a.view(np.uint8).ravel()

    def read(ptr, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return locate(ptr, n).copy().view(dtype).reshape(shape)

    def memcpy_htod_async(dest, src, stream=None):
        check_device("cuMemcpyHtoDAsync", dest, stream)
        calls.append(("htod", int(dest), src.nbytes))
        write(dest, src)

    def memcpy_dtoh_async(dest, src, stream=None):
        check_device("cuMemcpyDtoHAsync", src, stream)
        calls.append(("dtoh", int(src), dest.nbytes))
        dest.view(np.uint8).reshape(-1)[:] = locate(src, dest.nbytes)

    def memcpy_dtoh(dest, src):
        check_device("cuMemcpyDtoH", src)
        calls.append(("dtoh", int(src), dest.nbytes))
        dest.view(np.uint8).reshape(-1)[:] = locate(src, dest.nbytes)

    def memcpy_dtod_async(dest, src, size, stream=None):
        check_device("cuMemcpyDtoDAsync", dest, stream)
        check_device("cuMemcpyDtoDAsync", src, stream)
        d, s_, n = int(dest), int(src), int(size)
        if d < s_ + n and s_ < d + n:
            raise AssertionError(f"overlapping device-to-device copy ({s_:#x} -> {d:#x}, {n} bytes): "
                                 "undefined in CUDA")
        calls.append(("dtod", d, s_, n))
        locate(dest, n)[:] = locate(src, n).copy()

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        current("cuMemHostAlloc")
        return np.empty(shape, dtype, order=order)

    class Stream:
        def __init__(self, flags=0):
            self._ctx = current("cuStreamCreate")
            self.handle = counters["stream"]
            counters["stream"] += 1
            streams[self.handle] = self

        def synchronize(self):
            current("cuStreamSynchronize")

    class Event:
        def __init__(self, flags=0):
            self._ctx = current("cuEventCreate")

        def record(self, stream=None):
            ctx = current("cuEventRecord")
            if stream is not None and stream._ctx != ctx:
                raise LogicError("cuEventRecord failed: invalid resource handle")
            return self

        def synchronize(self):
            return self

        def time_since(self, event):
            return 0.25

    return types.SimpleNamespace(
        init=init, Device=Device, Context=Context, LogicError=LogicError, mem_alloc=mem_alloc, memset_d8=memset_d8,
        memcpy_htod_async=memcpy_htod_async, memcpy_dtoh_async=memcpy_dtoh_async, memcpy_dtoh=memcpy_dtoh,
        memcpy_dtod_async=memcpy_dtod_async, pagelocked_empty=pagelocked_empty, Stream=Stream, Event=Event,
        read=read, write=write, calls=calls, memory=memory, _streams=streams, _allocation=allocation_at,
        _effective_context=effective_context, __fake__=True)


def primary_context_current(cuda) -> None:
    """What `import pycuda.autoprimaryctx` does in the calling thread: device 0's primary context made current."""
    cuda.init()
    cuda.Device(0).retain_primary_context().push()


def fake_engine_runner(trt, cuda):
    """An engine runner for `build_engines(engine_runner=...)` on the fakes, as `polygraphy_runner` is on the
    device: each engine deserialized by the fake Runtime (on the plan's DLA core) and run in chunks of the
    profile's batch through an execution context, on fake device memory, with the primary context pushed in
    the calling thread for the duration."""
    def factory(engines: list[bytes], plan: dict):
        from engine_builder.build import padded, profile_batch

        max_batch, pad_to = profile_batch(plan)

        def run(k: int, x: np.ndarray) -> dict:
            cuda.init()
            cuda.Device(0).retain_primary_context().push()
            try:
                rt = trt.Runtime(trt.Logger(trt.Logger.WARNING))
                if plan.get("dla_core") is not None:
                    rt.DLA_core = int(plan["dla_core"])
                engine = rt.deserialize_cuda_engine(engines[k])
                assert engine is not None, trt.errors
                context, stream = engine.create_execution_context(), cuda.Stream()
                names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
                inp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
                outs: dict[str, list] = {}
                for i in range(0, len(x), max_batch):
                    chunk, n = padded(x[i:i + max_batch], pad_to), min(max_batch, len(x) - i)
                    assert context.set_input_shape(inp, chunk.shape), trt.errors
                    bufs = {inp: cuda.mem_alloc(chunk.nbytes)}
                    cuda.memcpy_htod_async(bufs[inp], chunk, stream)
                    host = {}
                    for o in names[1:] if names[0] == inp else [n_ for n_ in names if n_ != inp]:
                        dt = np.dtype(trt.nptype(engine.get_tensor_dtype(o)))
                        host[o] = np.empty(context.get_tensor_shape(o), dt)
                        bufs[o] = cuda.mem_alloc(host[o].nbytes)
                    for name, buf in bufs.items():
                        assert context.set_tensor_address(name, int(buf)), trt.errors
                    assert context.execute_async_v3(stream.handle), trt.errors
                    for o, h in host.items():
                        cuda.memcpy_dtoh_async(h, bufs[o], stream)
                        outs.setdefault(o, []).append(h[:n].astype(np.float32))
                    for buf in bufs.values():
                        buf.free()
                return {o: np.concatenate(v) for o, v in outs.items()}
            finally:
                cuda.Context.pop()

        return run

    return factory
