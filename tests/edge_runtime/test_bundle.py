"""The bundle manifest as a typed contract: round trip, refusals, and the schema-1 migration in memory."""
from __future__ import annotations

import json

import pytest

from edge_runtime import installer
from edge_runtime.bundle import SCHEMA_VERSION, Bundle, Manifest, sha256_file
from edge_runtime.bundle.seal import digest_of
from edge_runtime.errors import BundleError


def _schema_1(bundle_dir) -> dict:
    """The manifest exactly as edge-qwq wrote schema 1 (export, then calib), for the tiny bundle's files."""
    stages = [{"index": k, "file": f"stages/stage{k}.onnx", "input": "image" if k == 0 else "hidden_in",
               "outputs": ["hidden", "logits"], "blocks": [k, k + 1], "hidden_shape": [16, 16], "flops": 1000 + k,
               "max_abs_error_vs_torch": 3e-7} for k in range(3)]
    files = {s["file"]: sha256_file(bundle_dir / s["file"]) for s in stages}
    score = {"accuracy": 90.0, "accuracy_early_exit": 91.0, "logit_error": 0.01, "exit_rate": [0.5, 0.2, 0.3],
             "fp32_agreement": 97.5}
    return {
        "schema_version": 1, "files": files, "producer": "edge-qwq export", "classes": ["crack", "ok", "scratch", "spot"],
        "ok_class": "ok", "input": {"size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "layout": "NCHW",
                                    "color": "RGB"},
        "stages": stages,
        "exit_policy": {"early_exit": [0.85, 0.92], "early_exit_ok": [0.925, 0.96],
                        "temperatures_folded_into_heads": [1.5, 1.2, 1.0], "exit_rates": [0.5, 0.2]},
        "dynamic": {"prune_threshold": 0.0, "reuse_window": 0},
        "student": {"dim": 16, "depth": 3, "heads": 2, "patch": 8, "exits": [1, 2]},
        "opset": 17, "model_version": "abc123def456",
        "quantization": {"mode": "mixed", "trt_version": "10.3", "opset": 21, "calibration_method": "MinMax",
                         "plan": {"stage0": {"/blocks.0/fc1/MatMul": "int4"}}, "fp32": score, "quantized": score,
                         "drop_points": {"full": 0.0, "early_exit": 0.0}, "fp32_agreement": 97.5,
                         "weight_bytes": {"fp32": 4000, "quantized": 900, "ratio": 0.225},
                         "report": "quant_report.json"},
        "calibration": {"images": 32, "source": "/data/calib", "resized_images": 0,
                        "input_stats": {"brightness": {"mean": 120.0, "std": 5.0},
                                        "contrast": {"mean": 30.0, "std": 2.0},
                                        "sharpness": {"mean": 900.0, "std": 50.0}},
                        "hidden_range": [[-5.0, 5.0]] * 3,
                        "hidden": [{"stage": k, "min": -5.0, "max": 5.0} for k in range(3)]},
    }


def test_manifest_round_trips_through_its_typed_form(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    d = b.manifest.to_dict()
    again = Manifest.from_dict(json.loads(json.dumps(d)))
    assert again == b.manifest and again.to_dict() == d
    assert d["schema_version"] == SCHEMA_VERSION == 2


def test_a_schema_1_bundle_opens_through_the_migration_without_rewriting_its_files(tiny_bundle):
    (tiny_bundle / "manifest.json").write_text(json.dumps(_schema_1(tiny_bundle), indent=2))
    before = (tiny_bundle / "manifest.json").read_bytes()
    b = Bundle.open(tiny_bundle)  # every sha256 checked
    assert b.schema_read == 1 and b.manifest.schema_version == 2
    assert (tiny_bundle / "manifest.json").read_bytes() == before  # nothing on disk changed
    m = b.manifest
    assert m.exit_policy.temperatures == [1.5, 1.2, 1.0] and m.exit_policy.exit_fraction == [0.5, 0.2]
    assert m.quantization.fp32_agreement_pct == 97.5 and m.quantization.has_int4
    assert m.quantization.weight_bytes_quantized == 900
    assert m.calibration.input_stats["brightness"].mean == 120.0 and m.calibration.samples is None
    assert m.student.awq_groups == [] and m.dynamic.reuse_window == 0
    assert "opset" not in m.to_dict() and "prune_threshold" not in m.to_dict()["dynamic"]
    # the installer may roll back to it after an upgrade: it installs, and the runtime runs it
    root = tiny_bundle.parent / "root"
    installer.install(tiny_bundle, root)
    from edge_runtime.inference import DynamicInference

    model = DynamicInference(root / "current", {"precision": "fp32"})
    assert model.policy.ok_thresholds == (0.925, 0.96)


def test_schema_1_without_an_ok_bar_gets_the_one_default_rule(tiny_bundle):
    from edge_runtime.executor import ExitPolicy, ok_thresholds_for

    raw = _schema_1(tiny_bundle)
    del raw["exit_policy"]["early_exit_ok"]
    raw["exit_policy"]["early_exit"] = [0.8, 0.9]
    (tiny_bundle / "manifest.json").write_text(json.dumps(raw))
    spec = Bundle.open(tiny_bundle).exit_policy
    assert spec.early_exit_ok == ok_thresholds_for([0.8, 0.9]) == [0.9, 0.95]
    # and the runtime's own fallback follows the same rule
    assert ExitPolicy.build(2, [0.8, 0.9]).ok_thresholds == (0.9, 0.95)


@pytest.mark.parametrize("edit,words", [
    (lambda m: m.update(schema_version=3), "schema 3 is not supported by this edge-qwq (schema 2); upgrade"),
    (lambda m: m.update(schema_version=0), "schema 0 is not supported"),
    (lambda m: m.update(stages="stages/stage0.onnx"), "section 'stages' is malformed"),
    (lambda m: m["input"].update(size=[32]), "section 'input' is malformed"),
    (lambda m: m["exit_policy"].update(early_exit=[0.9]), "exit_policy.early_exit has 1 thresholds for 2"),
    (lambda m: m.update(ok_class="good"), "ok_class 'good' is not one of the classes"),
    (lambda m: m.pop("files"), "manifest lacks files"),
    (lambda m: m.update(calibration={"input_stats": {"brightness": {"mean": "dark"}}}),
     "section 'calibration' is malformed"),
])
def test_malformed_manifests_are_refused_in_one_line(tiny_bundle, edit, words):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    edit(m)
    (tiny_bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError) as e:
        Bundle.open(tiny_bundle)
    assert words in str(e.value) and len(str(e.value).splitlines()) == 1


def test_sections_a_newer_edge_qwq_adds_are_kept_untouched(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    m["tiling"] = {"overlap_pct": 25}
    m["digest"] = digest_of(m)  # a newer edge-qwq writes the digest over what it added
    (tiny_bundle / "manifest.json").write_text(json.dumps(m))
    b = Bundle.open(tiny_bundle)
    b.save()
    assert json.loads((tiny_bundle / "manifest.json").read_text())["tiling"] == {"overlap_pct": 25}
