"""Reuse / rebuild / fall back, and the whole build flow on a real bundle with a FAKE tensorrt.

The fake builds nothing; the "engine" runner below replays ONNX Runtime (a faithful engine) or ONNX
Runtime plus an error (a broken one), so what is tested is our flow: files, manifest, activation.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.bundle import Bundle, EngineEntry, EngineStage
from edge_runtime.fingerprint import DeviceFingerprint
from engine_builder.build import build_engines, build_engines_or_explain
from engine_builder.cache import decide
from engine_builder.plan import BuildError, BuildOptions
from engine_builder.verify import onnxruntime_runner
from tests.engine_builder.fake_tensorrt import make_fake_tensorrt

ORIN = DeviceFingerprint("10.3.0", "12.6", "Orin", "8.7", "36.4.3")
ORIN_UPGRADED = DeviceFingerprint("10.7.0", "12.6", "Orin", "8.7", "36.4.4")
SOURCES = ["stages/stage0.onnx", "stages/stage1.onnx"]
DIGESTS = {"stages/stage0.onnx": "a", "stages/stage1.onnx": "b"}


def _entry(precision="fp32", active=True, digests=DIGESTS):
    return EngineEntry(precision, [EngineStage(f"engines/x/stage{k}.engine", s, digests[s]) for k, s in enumerate(SOURCES)],
                       active=active,
                       verification={} if active else {"failure": "stage 1 engine does not match ONNX Runtime"})


@pytest.mark.parametrize("engines,kw,action,words", [
    ({}, {"trt_available": False}, "fallback", "TensorRT is not installed"),
    ({}, {}, "build", "no TensorRT engines for this device"),
    ({"other": _entry()}, {}, "build", "built for other, not for this device"),
    ({"me": _entry()}, {}, "use", "match"),
    ({"me": _entry()}, {"force": True}, "build", "rebuild requested"),
    ({"me": _entry(precision="quantized")}, {}, "build", "are quantized, but fp32 was asked"),
    ({"me": _entry(digests={"stages/stage0.onnx": "a", "stages/stage1.onnx": "old"})}, {}, "build",
     "stages/stage1.onnx changed"),
    ({"me": _entry(active=False)}, {}, "fallback", "not activated: stage 1 engine"),
    ({"other": _entry()}, {"allow_build": False}, "fallback", "running on ONNX Runtime"),
])
def test_decisions(engines, kw, action, words):
    d = decide(engines, "me", "fp32", SOURCES, DIGESTS, **{"trt_available": True, **kw})
    assert d.action == action and words in d.reason


def _faithful(engines, plan):
    return _ORT["runner"]


_ORT = {}


@pytest.fixture
def ort_engine(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    _ORT["runner"] = onnxruntime_runner([b.path(s.file) for s in b.stages])
    return _faithful


def _broken_stage(k_bad):
    def factory(engines, plan):
        def run(k, x):
            out = dict(_ORT["runner"](k, x))
            if k == k_bad:
                out["logits"] = out["logits"] + 5.0
            return out
        return run
    return factory


def test_build_writes_engines_verifies_and_activates(tiny_bundle, ort_engine):
    trt = make_fake_tensorrt("10.3.0")
    res = build_engines(tiny_bundle, trt=trt, fingerprint=ORIN, engine_runner=ort_engine, progress=lambda s: None)
    assert res["decision"]["action"] == "build" and "built and verified 3 TensorRT engines (fp32)" in res["summary"]
    b = Bundle.open(tiny_bundle)  # verifies every sha256, engines included
    entry = b.manifest.engines[ORIN.id]
    assert entry.active and entry.precision == "fp32"
    assert entry.tolerances == {"atol": 1e-3, "rtol": 1e-3, "min_argmax_agreement": 1.0}
    assert "random normal inputs" in entry.verification["inputs"]  # an FP32 bundle has no stored samples
    assert [s.file for s in entry.stages] == [f"engines/{ORIN.id}/stage{k}.engine" for k in range(3)]
    assert b"timings of" in (tiny_bundle / f"engines/{ORIN.id}/timing.cache").read_bytes()
    assert entry.plan["strongly_typed"] is False and entry.plan["flags"] == [] and entry.plan["clear_flags"] == ["TF32"]
    # second time: reused, nothing built
    trt2 = make_fake_tensorrt("10.3.0")
    again = build_engines(tiny_bundle, trt=trt2, fingerprint=ORIN, engine_runner=ort_engine)
    assert again["decision"]["action"] == "use" and not any(c[0] == "Builder" for c in trt2.calls)


def test_new_fingerprint_rebuilds_and_reuses_nothing_from_the_other_device(tiny_bundle, ort_engine):
    build_engines(tiny_bundle, trt=make_fake_tensorrt("10.3.0"), fingerprint=ORIN, engine_runner=ort_engine,
                  progress=lambda s: None)
    trt = make_fake_tensorrt("10.7.0")
    res = build_engines(tiny_bundle, trt=trt, fingerprint=ORIN_UPGRADED, engine_runner=ort_engine,
                        progress=lambda s: None)
    assert res["decision"]["action"] == "build" and ORIN.id in res["decision"]["reason"]
    # the first stage starts from an empty timing cache (the other device's is not used), later ones reuse it
    caches = [c[1] for c in trt.calls if c[0] == "config.create_timing_cache"]
    assert caches[0] == b"" and b"timings of" in caches[1]
    assert set(Bundle.open(tiny_bundle).manifest.engines) == {ORIN.id, ORIN_UPGRADED.id}


def test_timing_cache_of_this_device_is_reused_on_rebuild(tiny_bundle, ort_engine):
    build_engines(tiny_bundle, trt=make_fake_tensorrt("10.3.0"), fingerprint=ORIN, engine_runner=ort_engine,
                  progress=lambda s: None)
    kept = (tiny_bundle / f"engines/{ORIN.id}/timing.cache").read_bytes()
    trt = make_fake_tensorrt("10.3.0")
    build_engines(tiny_bundle, trt=trt, fingerprint=ORIN, engine_runner=ort_engine, force=True,
                  progress=lambda s: None)
    assert next(c for c in trt.calls if c[0] == "config.create_timing_cache")[1] == kept


def test_failed_verification_is_not_activated_and_names_stage_and_output(tiny_bundle, ort_engine):
    with pytest.raises(BuildError, match=r"stage 1 engine does not match ONNX Runtime: worst output 'logits'"):
        build_engines(tiny_bundle, trt=make_fake_tensorrt("10.3.0"), fingerprint=ORIN,
                      engine_runner=_broken_stage(1), progress=lambda s: None)
    entry = Bundle.open(tiny_bundle).manifest.engines[ORIN.id]
    assert entry.active is False
    assert [s["passed"] for s in entry.verification["stages"]] == [True, False, True]
    # the runtime's check refuses it, and the builder does not loop rebuilding it
    b = Bundle.open(tiny_bundle)
    d = decide(b.manifest.engines, ORIN.id, "fp32", [s.file for s in b.stages], b.manifest.files, True)
    assert d.action == "fallback"


def test_quantized_request_without_quantized_stages_is_refused(tiny_bundle, ort_engine):
    from edge_runtime.errors import BundleError

    with pytest.raises(BundleError, match="no quantized stages"):
        build_engines(tiny_bundle, precision="quantized", trt=make_fake_tensorrt("10.3.0"), fingerprint=ORIN,
                      engine_runner=ort_engine)


def test_without_tensorrt_build_explains_in_one_sentence(tiny_bundle):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    before = json.loads((tiny_bundle / "manifest.json").read_text())
    msg = build_engines_or_explain(tiny_bundle, options=BuildOptions())
    assert "will be built on the device" in msg and "edge-qwq build --target orin" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence
    assert json.loads((tiny_bundle / "manifest.json").read_text()) == before  # bundle untouched
    assert not np.any([p.name == "engines" for p in tiny_bundle.iterdir()])
