"""Each manifest section that calib (or export before it) writes, read by the package that consumes it, in
the same test: the producer's output is what the consumer sees."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_runtime.bundle import Bundle


@pytest.fixture
def qcopy(quantized_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(quantized_bundle[0], dst)
    return dst


def test_awq_groups_written_by_export_are_what_calib_groups_by(quantized_bundle):
    b = Bundle.open(quantized_bundle[0])
    groups = b.manifest.student.awq_groups  # export: Student.awq_groups()
    assert [g.norm for g in groups][:2] == ["blocks.0.norm1", "blocks.0.norm2"]
    report = quantized_bundle[1]
    assert report["awq_groups_source"].startswith("student description")
    assert not any("AWQ scales were grouped by matching" in n for n in report["notes"])
    folded = {r["int4"]["scale_folded_into"] for r in report["layers"] if "int4" in r} - {None}
    assert all(name.endswith("LayerNormalization") for name in folded)


def test_without_awq_groups_calib_says_it_fell_back_to_graph_patterns(tiny_bundle, calib_dir):
    from calib import quantize_bundle

    b = Bundle.open(tiny_bundle)
    b.manifest.student.awq_groups = []
    b.save()
    report = quantize_bundle(tiny_bundle, calib_dir, mode="int4", max_drop=100.0)
    assert report["awq_groups_source"].startswith("graph patterns")
    assert any("grouped by matching LayerNormalization -> MatMul" in n for n in report["notes"])


def test_stored_calibration_inputs_are_what_engine_verification_sees(qcopy):
    """FAKE tensorrt (no TensorRT here): the runner records the stage-0 batch the verifier hands it."""
    from engine_builder.build import build_engines
    from engine_builder.verify import onnxruntime_runner
    from tests.engine_builder.fake_tensorrt import make_fake_tensorrt
    from tests.engine_builder.test_cache_build import ORIN

    b = Bundle.open(qcopy)
    cal = b.manifest.calibration
    stored = np.load(qcopy / cal.samples)  # calib wrote them: (N, 3, H, W) float32, hashed in `files`
    assert cal.samples in b.manifest.files and stored.shape == (cal.samples_count, 3, 32, 32)
    assert cal.samples_count == 16  # round-robin over the 4 classes of the 32 calibration images
    seen = []
    ort = onnxruntime_runner([b.path(s.quantized) for s in b.stages])

    def engine(engines, plan):
        def run(k, x):
            if k == 0:
                seen.append(np.array(x))
            return ort(k, x)
        return run

    res = build_engines(qcopy, trt=make_fake_tensorrt("10.3.0"), fingerprint=ORIN, engine_runner=engine,
                        progress=lambda s: None)
    assert res["entry"]["active"] and res["entry"]["precision"] == "quantized"
    assert len(seen) == 1 and np.array_equal(seen[0], stored)
    assert res["entry"]["verification"]["inputs"] == f"16 stored calibration inputs from {cal.samples}"


def test_a_damaged_samples_file_is_refused_before_any_build(qcopy):
    from edge_runtime.errors import BundleError

    path = qcopy / Bundle.open(qcopy).manifest.calibration.samples
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match="calib/samples.npy was changed"):
        Bundle.open(qcopy)


def test_measured_exit_fractions_are_what_the_estimate_uses(quantized_bundle):
    from engine_builder.estimate import estimate_bundle

    b = Bundle.open(quantized_bundle[0])
    fractions = b.exit_policy.exit_fraction
    assert fractions == quantized_bundle[1]["quantized"]["exit_rate"][:-1]
    est = estimate_bundle(quantized_bundle[0], "orin-nano", 15.0)
    assert est["assumptions"]["exit_rates"] == fractions
    assert est["assumptions"]["exit_rates_source"].startswith("measured")


def test_quantization_trt_version_is_checked_by_the_engine_build(qcopy):
    from engine_builder.build import build_engines
    from engine_builder.plan import BuildError
    from tests.engine_builder.fake_tensorrt import make_fake_tensorrt
    from tests.engine_builder.test_cache_build import ORIN

    q = Bundle.open(qcopy).manifest.quantization
    if not q.has_int4:  # the mixed plan may keep every layer INT8: make it hold INT4 as int4 mode would
        b = Bundle.open(qcopy)
        layers = b.manifest.quantization.plan["stage0"]
        layers[next(iter(layers))] = "int4"
        b.save()
    with pytest.raises(BuildError, match="INT4 weights .* which TensorRT 8.6.2 cannot build"):
        build_engines(qcopy, trt=make_fake_tensorrt("8.6.2"), fingerprint=ORIN, progress=lambda s: None)


def test_quantization_and_calibration_sections_are_in_units(quantized_bundle):
    m = json.loads((quantized_bundle[0] / "manifest.json").read_text())
    q, report = m["quantization"], quantized_bundle[1]
    assert q["fp32_agreement_pct"] == report["quantized"]["fp32_agreement"]  # percent, 0..100
    assert 0.0 <= q["fp32_agreement_pct"] <= 100.0  # as measured: max_drop 100 bounds no value of it
    assert q["weight_bytes_quantized"] == report["weight_bytes"]["quantized"]
    assert set(m["calibration"]["input_stats"]) == {"brightness", "contrast", "sharpness"}
