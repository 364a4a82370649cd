import json

import numpy as np
import onnx
import pytest
import torch

from edge_runtime.bundle import Bundle
from edge_runtime.errors import BundleError
from export.errors import ExportError
from export.onnx_export import export_bundle
from tests.conftest import make_tiny_student


def test_each_stage_matches_torch_and_passes_checker(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    student = make_tiny_student()
    x = torch.randn(3, 3, 32, 32)
    from edge_runtime.backends.onnxruntime_backend import make_session

    h = x
    for stage in b.stages:
        onnx.checker.check_model(str(tiny_bundle / stage.file), full_check=True)
        with torch.no_grad():
            ref_h, ref_logits = student.run_stage(stage.index, h)
        sess = make_session(tiny_bundle / stage.file)
        got_h, got_logits = sess.run(["hidden", "logits"], {stage.input: h.numpy()})
        assert np.abs(got_h - ref_h.numpy()).max() < 1e-4
        assert np.abs(got_logits - ref_logits.numpy()).max() < 1e-4
        h = ref_h
    assert [s.max_abs_error_vs_torch < 1e-4 for s in b.stages] == [True] * 3


def test_manifest_has_the_contract_fields(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["schema_version"] == 2 and m["ok_class"] == "ok"
    assert m["input"]["size"] == [32, 32] and len(m["input"]["mean"]) == 3
    assert len(m["stages"]) == 3 and all(s["flops"] > 0 for s in m["stages"])
    assert m["exit_policy"]["early_exit"] == [0.85, 0.92]
    assert m["exit_policy"]["early_exit_ok"] == [0.925, 0.96]  # exiting early as ok asks more
    assert set(m["files"]) == {s["file"] for s in m["stages"]}


def test_stage_flops_match_a_hand_count(tiny_bundle):
    """Tiny student: 32 px, patch 8 (stem 3->8->8->16), T = 16 tokens, dim 16, 2 heads, MLP 48."""
    stem = 2 * (16 * 16 * 8 * 27 + 8 * 8 * 8 * 72 + 4 * 4 * 16 * 32)
    block = 2 * (16 * 16 * 48 + 2 * 2 * 16 * 16 * 8 + 16 * 16 * 16 + 2 * 16 * 16 * 48)  # qkv, qk+av, proj, mlp
    head = 2 * 32 * 4
    flops = [s["flops"] for s in json.loads((tiny_bundle / "manifest.json").read_text())["stages"]]
    assert flops == [stem + block + head, block + head, block + head]


def test_export_refuses_to_overwrite_without_force(tiny_bundle):
    before = (tiny_bundle / "manifest.json").read_text()
    with pytest.raises(ExportError, match="--force"):
        export_bundle(make_tiny_student(seed=1), tiny_bundle)
    assert (tiny_bundle / "manifest.json").read_text() == before
    export_bundle(make_tiny_student(seed=1), tiny_bundle, force=True)
    assert (tiny_bundle / "manifest.json").read_text() != before


def test_edited_and_truncated_files_are_refused(tiny_bundle):
    stage = tiny_bundle / "stages" / "stage1.onnx"
    data = stage.read_bytes()
    stage.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="stages/stage1.onnx was changed"):
        Bundle.open(tiny_bundle)


def test_bundle_from_another_schema_is_refused(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    m["schema_version"] = 99
    (tiny_bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="upgrade edge-qwq"):
        Bundle.open(tiny_bundle)


def test_exit_policy_written_by_export_is_the_runtimes_default(tiny_bundle):
    """exit_policy: export writes the one set of defaults; DynamicInference reads them, overrides win."""
    from edge_runtime.executor import ExitPolicy, default_thresholds
    from edge_runtime.inference import DynamicInference

    spec = Bundle.open(tiny_bundle).exit_policy
    assert (spec.early_exit, spec.early_exit_ok) == default_thresholds(2)
    assert DynamicInference(tiny_bundle).policy == ExitPolicy.build(2)
    model = DynamicInference(tiny_bundle, {"early_exit": [0.5, 0.6]})
    assert model.policy.thresholds == (0.5, 0.6) and model.policy.ok_thresholds == tuple(spec.early_exit_ok)
