"""Issue 13, findings 2, 3, 5, 6 and 7, on the torch-free device bundle and the FAKE tensorrt/pycuda
(tests/engine_builder/fake_tensorrt.py). Finding 1 (health on TensorRT) is tested with the backend in
tests/edge_runtime/test_tensorrt_backend.py, finding 8 (the fake itself) in test_fake_tensorrt.py."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_runtime.bundle import Bundle
from engine_builder.build import build_engines
from engine_builder.plan import BuildError, BuildOptions, plan_build
from engine_builder.trt_build import build_serialized
from tests.engine_builder.device_bundle import add_calibration_samples, add_quantized_stages, make_onnx_bundle
from tests.engine_builder.fake_tensorrt import (
    FAKE_ENGINE,
    fake_engine_runner,
    make_fake_cuda,
    make_fake_tensorrt,
)
from tests.engine_builder.test_cache_build import ORIN

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def device_bundle(tmp_path):
    return make_onnx_bundle(tmp_path / "bundle")


def _fakes(version="10.3.0", **kw):
    cuda = make_fake_cuda()
    return make_fake_tensorrt(version, cuda=cuda, **kw), cuda


def _build(root, trt, cuda, **kw):
    return build_engines(root, trt=trt, fingerprint=ORIN, engine_runner=fake_engine_runner(trt, cuda),
                         progress=lambda s: None, **kw)


def _spec(root, entry, k=0) -> dict:
    return json.loads(Path(root, entry.stages[k].file).read_bytes()[len(FAKE_ENGINE):])


# ---------------- finding 2: TF32 ----------------

def test_finding2_fp32_engines_are_built_without_tf32_and_pass_fp32_verification(device_bundle):
    """The fake's engines do TF32 arithmetic when the flag is left on (TensorRT's default): verification at
    FP32 tolerances then rejects them. Cleared, they pass, on the stored calibration inputs."""
    add_calibration_samples(device_bundle)
    trt, cuda = _fakes()
    res = _build(device_bundle, trt, cuda, precision="fp32")
    entry = Bundle.open(device_bundle).manifest.engines[ORIN.id]
    assert entry.active and "built and verified 3 TensorRT engines (fp32)" in res["summary"]
    assert [c for c in trt.calls if c == ("config.clear_flag", "TF32")] == [("config.clear_flag", "TF32")] * 3
    assert "TF32" not in _spec(device_bundle, entry)["flags"]
    assert entry.tolerances["atol"] == 1e-3 and "stored calibration inputs" in entry.verification["inputs"]


def test_finding2_the_fake_shows_what_tf32_would_do(device_bundle, monkeypatch):
    import engine_builder.build as build

    real = build.plan_build
    monkeypatch.setattr(build, "plan_build", lambda *a, **k: dataclasses.replace(real(*a, **k), clear_flags=()))
    trt, cuda = _fakes()
    with pytest.raises(BuildError, match=r"stage \d engine does not match ONNX Runtime"):
        _build(device_bundle, trt, cuda, precision="fp32")


# ---------------- finding 3: JetPack 6.0 (TensorRT 8.6) is the minimum ----------------

def test_finding3_tensorrt_8_5_is_refused_and_8_6_builds(device_bundle):
    with pytest.raises(BuildError, match=r"TensorRT 8.5 is too old: edge-qwq needs TensorRT 8.6 or newer \(JetPack 6.0\+\)"):
        plan_build("8.5.2.2", _fp32(), BuildOptions("fp32"), "image", (-1, 3, 32, 32))
    trt, cuda = _fakes("8.6.2")
    assert "built and verified 3 TensorRT engines" in _build(device_bundle, trt, cuda)["summary"]


def _fp32():
    from engine_builder.plan import GraphPrecision

    return GraphPrecision(False, False, False)


def _install(release_line: str, tmp_path) -> subprocess.CompletedProcess:
    release = tmp_path / "nv_tegra_release"
    release.write_text(release_line + "\n")
    env = {**os.environ, "EDGE_QWQ_TEGRA_RELEASE": str(release)}
    # a dry run changes nothing (it only prints), even as root
    return subprocess.run(["bash", str(REPO / "jetson" / "install.sh"), "--dry-run", "--no-packages", "--no-service"],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_finding3_install_sh_stops_on_jetpack_5_with_one_line(tmp_path):
    r = _install("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 2023", tmp_path)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "JetPack 5 or older (L4T R35) is not supported" in err[0] and "JetPack 6.0" in err[0]
    ok = _install("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 2024", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "L4T: # R36 (release), REVISION: 3.0" in ok.stdout  # JetPack 6.0 (TensorRT 8.6) is accepted


def test_finding3_the_docs_state_the_supported_jetpack():
    readme = (REPO / "README.md").read_text()
    jetson = (REPO / "jetson" / "README.md").read_text()
    for text in (readme, jetson):
        assert "JetPack 6.0" in text and "JetPack 5" in text
    assert "not run on a device" in jetson.lower() or "not been run on a device" in jetson.lower()


# ---------------- finding 5: the DLA ----------------

def test_finding5_dla_build_of_a_quantized_bundle_is_fp16_from_the_fp32_stages(device_bundle):
    """--dla never hands a Q/DQ graph to the DLA (its quantized layers would silently run on the GPU): with
    precision auto it builds the FP32 stages in FP16, and says how to run them."""
    add_quantized_stages(device_bundle, mode="int8")
    trt, cuda = _fakes(dla_cores=2)
    res = _build(device_bundle, trt, cuda, options=BuildOptions(dla_core=1))
    entry = Bundle.open(device_bundle).manifest.engines[ORIN.id]
    assert entry.active and entry.precision == "fp32"  # the graphs the runtime's --precision names
    assert [s.source for s in entry.stages] == [f"stages/stage{k}.onnx" for k in range(3)]
    assert entry.plan["flags"] == ["FP16", "GPU_FALLBACK"] and entry.plan["dla_core"] == 1
    assert entry.tolerances["atol"] == 2e-2  # verified at FP16 tolerances
    spec = _spec(device_bundle, entry)
    assert spec["device_type"] == "DLA" and spec["gpu_fallback_layers"] == []  # nothing quantized left the DLA
    assert "fp16 from the fp32 stages, on DLA core 1: run them with --precision fp32" in res["summary"]
    # the service's first start (no options) keeps the DLA build instead of rebuilding it for the GPU
    again = build_engines(device_bundle, trt=trt, fingerprint=ORIN, engine_runner=fake_engine_runner(trt, cuda))
    assert again["decision"]["action"] == "use"
    # asked for the GPU: rebuilt
    gpu = _build(device_bundle, trt, cuda, options=BuildOptions())
    assert gpu["decision"]["action"] == "build"


def test_finding5_dla_with_quantized_precision_is_refused_in_one_line(device_bundle):
    add_quantized_stages(device_bundle, mode="int8")
    trt, cuda = _fakes(dla_cores=2)
    with pytest.raises(BuildError) as e:
        _build(device_bundle, trt, cuda, precision="quantized", options=BuildOptions(dla_core=0))
    assert "\n" not in str(e.value) and str(e.value).startswith("--dla cannot take the quantized (Q/DQ) stages")
    assert not any(c[0] == "build_serialized_network" for c in trt.calls)


def test_finding5_the_backend_runs_dla_engines_on_their_core(device_bundle):
    from edge_runtime.backends.tensorrt_backend import TensorRTBackend

    trt, cuda = _fakes(dla_cores=2)
    _build(device_bundle, trt, cuda, options=BuildOptions(dla_core=1))
    backend = TensorRTBackend(Bundle.open(device_bundle), "fp32", fingerprint=ORIN, trt=trt, cuda=cuda)
    assert ("runtime.DLA_core", 1) in trt.calls
    assert [e._dla_core_in_use for e in backend.engines] == [1, 1, 1]  # unset, TensorRT would use core 0
    backend.close()


# ---------------- finding 6: any failure of the build at service start falls back ----------------

class PolygraphyException(Exception):
    """Stands for polygraphy.exception.PolygraphyException (what G_LOGGER.critical raises)."""


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), PolygraphyException("Could not deserialize engine"),
                                   make_fake_cuda().LogicError("cuMemAlloc failed: out of memory")],
                         ids=["RuntimeError", "Polygraphy", "pycuda"])
def test_finding6_service_start_falls_back_on_any_build_failure(device_bundle, monkeypatch, capsys, error):
    import importlib.util

    import engine_builder.build as build
    from edge_qwq.commands.run import _engines_for

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real_find_spec(name, *a))

    def fails(*a, **k):
        raise error

    monkeypatch.setattr(build, "build_engines_or_explain", fails)
    assert _engines_for(str(device_bundle), "tensorrt") == "onnxruntime"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorRT engines not usable" in err[0] and "running on onnxruntime" in err[0]
    assert type(error).__name__ in err[0] and str(error) in err[0]


def test_finding6_build_engines_turns_a_tensorrt_error_into_a_build_error(device_bundle, monkeypatch):
    import engine_builder.build as build

    def crash(*a, **k):
        raise RuntimeError("[TRT] [E] 1: [defaultAllocator.cpp::allocate::20] Error Code 1: Cuda Runtime (out of memory)")

    monkeypatch.setattr(build, "build_serialized", crash)
    trt, cuda = _fakes()
    with pytest.raises(BuildError, match=r"the TensorRT build failed \(RuntimeError: .*out of memory\)"):
        _build(device_bundle, trt, cuda)


# ---------------- finding 7: lint for the installed TensorRT; the timing cache's answer ----------------

@pytest.mark.parametrize("installed,expected", [("8.6.2.3", "8.6.2.3"), (None, "10.3")])
def test_finding7_build_on_the_device_lints_for_the_installed_tensorrt(device_bundle, monkeypatch, installed, expected):
    import edge_qwq.pipeline as pipeline
    import engine_builder.build as build
    from edge_qwq.cli import main

    linted = []
    monkeypatch.setattr(build, "installed_trt_version", lambda: installed, raising=False)
    monkeypatch.setattr(pipeline, "lint", lambda bundle, trt_version="10.3": linted.append(trt_version) or [])
    assert main(["build", "--bundle", str(device_bundle)]) == 0
    assert linted == [expected]
    linted.clear()
    assert main(["build", "--bundle", str(device_bundle), "--trt-version", "10.7"]) == 0
    assert linted == ["10.7"]  # given: used as given


def test_finding7_a_refused_timing_cache_is_replaced_and_said(tmp_path):
    import onnx

    from tests.engine_builder.device_bundle import _fp32_stage

    onnx.save(_fp32_stage(1), tmp_path / "stage1.onnx")
    other = make_fake_tensorrt("10.3.0", device="another Orin")
    theirs = bytes(other.Builder(other.Logger()).create_builder_config().create_timing_cache(b"").serialize())
    trt = make_fake_tensorrt("10.3.0")
    plan = plan_build("10.3.0", _fp32(), BuildOptions("fp32"), "hidden_in", (-1, 16, 16))
    lines = []
    engine, cache = build_serialized(trt, tmp_path / "stage1.onnx", plan, theirs, progress=lines.append)
    assert engine.startswith(FAKE_ENGINE)
    assert any("refused the timing cache" in line for line in lines)
    assert json.loads(cache[len(b"fake-timing-cache|"):])["device"] == "Orin sm87"  # the new one, this device's
    assert [c[1] for c in trt.calls if c[0] == "config.create_timing_cache"] == [theirs, b""]
