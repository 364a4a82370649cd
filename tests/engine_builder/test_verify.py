"""Verification accepts an engine within tolerance and rejects one that is not, naming stage and output."""
from __future__ import annotations

import numpy as np

from engine_builder.verify import DEFAULT_TOLERANCES, compare_stage, verify_stages

FP32 = DEFAULT_TOLERANCES["fp32"]
RNG = np.random.default_rng(0)
REF = {"hidden": RNG.standard_normal((8, 16, 4)).astype(np.float32),
       "logits": RNG.standard_normal((8, 4)).astype(np.float32) * 3}


def _perturbed(name, delta):
    out = {k: v.copy() for k, v in REF.items()}
    out[name] = out[name] + delta
    return out


def test_accepts_outputs_within_tolerance():
    v = compare_stage(1, REF, _perturbed("hidden", 5e-4), FP32)
    assert v.passed
    assert "matches" in v.message()


def test_rejects_a_drifted_output_and_names_it():
    got = _perturbed("hidden", 0.0)
    got["hidden"][3, 2, 1] += 0.5  # one element far off
    v = compare_stage(2, REF, got, FP32)
    assert not v.passed
    assert v.worst.name == "hidden" and abs(v.worst.max_abs - 0.5) < 1e-6
    assert v.message().startswith("stage 2 engine does not match ONNX Runtime: worst output 'hidden'")


def test_logits_must_pick_the_same_class():
    got = {k: v.copy() for k, v in REF.items()}
    top = REF["logits"].argmax(-1)
    second = np.argsort(REF["logits"], -1)[:, -2]
    got["logits"][0, top[0]], got["logits"][0, second[0]] = REF["logits"][0, second[0]], REF["logits"][0, top[0]]
    loose = {"atol": 100.0, "rtol": 0.0, "min_argmax_agreement": 1.0}  # values pass, the class does not
    v = compare_stage(0, REF, got, loose)
    assert not v.passed and v.worst.name == "logits" and v.worst.argmax_agreement == 7 / 8
    assert compare_stage(0, REF, got, {**loose, "min_argmax_agreement": 0.8}).passed


def test_missing_or_nan_outputs_fail():
    assert not compare_stage(0, REF, {"logits": REF["logits"]}, FP32).passed
    bad = _perturbed("logits", 0.0)
    bad["logits"][0, 0] = np.nan
    assert not compare_stage(0, REF, bad, FP32).passed


def test_each_stage_is_fed_the_reference_hidden_state():
    seen = []

    def reference(k, x):
        return {"hidden": x + 1.0, "logits": x.reshape(len(x), -1)[:, :2]}

    def engine(k, x):
        seen.append(float(x.flat[0]))
        out = reference(k, x)
        if k == 1:
            out["logits"] = out["logits"] + 1.0
        return out

    verdicts = verify_stages(reference, engine, 3, np.zeros((2, 3), np.float32), FP32)
    assert seen == [0.0, 1.0, 2.0]  # the engine's own hidden never propagates
    assert [v.passed for v in verdicts] == [True, False, True]
    assert verdicts[1].worst.name == "logits"
