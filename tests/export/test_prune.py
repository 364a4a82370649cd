"""Attention-head pruning: importance, structural removal, export, recovery, and the refusals."""
import json

import numpy as np
import pytest

from export.errors import ExportError
from export.prune import head_importance, prune_heads, select_heads
from tests.conftest import make_tiny_student


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data and a tiny teacher trained one epoch on it."""
    from export.sample_data import make_sample
    from export.teacher_train import train_teacher

    root = tmp_path_factory.mktemp("prune")
    make_sample(root / "data", size=32, per_class=8, seed=3)
    train_teacher(root / "data", root / "teacher", arch="resnet", epochs=1, tiny=True, show_progress=False)
    return root


def _importance(student, setup):
    import torch

    from export.distill import DistillConfig, teacher_logits
    from export.teacher import load_teacher
    from export.training import load_split

    split = load_split(setup / "data", "calib", 32, classes=student.config.classes)
    teacher = load_teacher(setup / "teacher")
    t = torch.from_numpy(teacher_logits(teacher, split.images, [teacher.classes.index(c) for c in split.classes]))
    return head_importance(student, split.images, split.labels, t, DistillConfig())


def test_a_head_that_contributes_nothing_scores_zero_and_is_removed(setup):
    import torch

    student = make_tiny_student(dim=32, heads=4, depth=3)
    hd = student.config.head_dim
    with torch.no_grad():
        student.blocks[0].attn.proj.weight[:, 1 * hd:2 * hd] = 0  # block 0, head 1: its output is discarded
    raw = _importance(student, setup)
    assert raw[0][1] == 0 and all(r.shape == (4,) for r in raw)
    sel = select_heads(raw, 0.01)
    assert 1 not in sel.kept[0]
    for norm, kept in zip(sel.importance, sel.kept):  # the kept heads are exactly those at or above the bar
        assert kept == [h for h, v in enumerate(norm) if v >= 0.01] and max(norm) == 1.0
    pruned = prune_heads(student, sel.kept)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(student(x), pruned(x)):
            assert torch.allclose(a, b, atol=1e-5)  # removing a head that added nothing changes nothing


def test_pruned_weights_are_the_kept_heads_rows_and_the_export_matches_torch(tmp_path):
    import torch

    from edge_runtime.backends.onnxruntime_backend import make_session
    from edge_runtime.bundle import Bundle
    from export.onnx_export import export_bundle

    student = make_tiny_student(dim=32, heads=4, depth=3)
    kept = [[0, 2], [1, 2, 3], [3]]
    pruned = prune_heads(student, kept)
    hd, inner = 8, 32
    for b, keep in enumerate(kept):
        w, pw = student.blocks[b].attn.qkv.weight, pruned.blocks[b].attn.qkv.weight
        rows = [part * inner + h * hd + j for part in range(3) for h in keep for j in range(hd)]
        assert torch.equal(pw, w[rows])
        cols = [h * hd + j for h in keep for j in range(hd)]
        assert torch.equal(pruned.blocks[b].attn.proj.weight, student.blocks[b].attn.proj.weight[:, cols])
    assert pruned.config.block_heads == (2, 3, 1)

    export_bundle(pruned, tmp_path / "b")
    bundle = Bundle.open(tmp_path / "b")
    assert bundle.manifest.student.block_heads == [2, 3, 1]
    x = torch.randn(4, 3, 32, 32)
    h = x.numpy()
    with torch.no_grad():
        t = x
        for k, stage in enumerate(bundle.stages):
            t, logits = pruned.run_stage(k, t)
            sess = make_session(bundle.path(stage.file))
            h, onnx_logits = sess.run(None, {sess.get_inputs()[0].name: h})
            assert np.abs(onnx_logits - logits.numpy()).max() < 1e-4
            assert np.abs(h - t.numpy()).max() < 1e-4


def test_prune_student_recovers_writes_the_manifest_and_reports_flops(setup, tmp_path):
    from edge_runtime.bundle import Bundle
    from export.distill import DistillConfig, distill
    from export.onnx_export import export_bundle
    from export.prune import prune_student
    from export.student import load_student

    distill(setup / "teacher", setup / "data", tmp_path / "student", {"dim": 32, "heads": 4, "depth": 2,
                                                                      "exits": (1,)},
            DistillConfig(epochs=1, batch_size=16), show_progress=False)
    m = prune_student(tmp_path / "student", setup / "teacher", setup / "data", 0.6, tmp_path / "pruned",
                      epochs=1, show_progress=False, log=lambda _: None)
    p = m["pruning"]
    assert p["heads_kept"] == [[h for h, v in enumerate(norm) if v >= 0.6] for norm in p["importance"]]
    kept_heads = sum(len(k) for k in p["heads_kept"])
    assert p["attention_flops_after"] == pytest.approx(p["attention_flops_before"] * kept_heads / 8)
    student = load_student(tmp_path / "pruned")
    assert list(student.config.block_heads) == [len(k) for k in p["heads_kept"]]
    export_bundle(student, tmp_path / "bundle")
    spec = Bundle.open(tmp_path / "bundle").manifest.student
    assert spec.pruning.threshold == 0.6 and spec.pruning.heads_kept == p["heads_kept"]
    assert sum(s.flops for s in Bundle.open(tmp_path / "bundle").stages) == p["flops_after"]
    assert json.loads((tmp_path / "pruned" / "distill_metrics.json").read_text())["pruning"]["threshold"] == 0.6


@pytest.mark.parametrize("threshold", ["0", "1", "1.5", "-0.2"])
def test_threshold_outside_zero_one_is_one_line_and_writes_nothing(threshold, tmp_path, capsys):
    from edge_qwq.cli import main

    rc = main(["prune", "--student", str(tmp_path / "s"), "--teacher", str(tmp_path / "t"), "--data",
               str(tmp_path / "d"), "--prune-threshold", threshold, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "strictly between 0 and 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_teacher_with_other_classes_is_one_line_and_writes_nothing(setup, tmp_path, capsys):
    from edge_qwq.cli import main
    from export.student import save_student
    from export.teacher import build_teacher, save_teacher

    save_student(make_tiny_student(dim=32, heads=4), tmp_path / "student")
    save_teacher(build_teacher("resnet", ["cat", "dog"], 32, tiny=True), tmp_path / "other")
    capsys.readouterr()  # what saving the fixtures printed
    rc = main(["prune", "--student", str(tmp_path / "student"), "--teacher", str(tmp_path / "other"), "--data",
               str(setup / "data"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "not the teacher's" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_pruning_a_pruned_student_is_refused(setup, tmp_path):
    from export.prune import prune_student
    from export.student import save_student

    save_student(prune_heads(make_tiny_student(dim=32, heads=4), [[0], [1, 2], [3]]), tmp_path / "p")
    with pytest.raises(ExportError, match="already pruned"):
        prune_student(tmp_path / "p", setup / "teacher", setup / "data", 0.2, tmp_path / "out", epochs=0)
    assert not (tmp_path / "out").exists()


def test_bench_and_estimate_show_the_flops_pruning_saved(tmp_path, capsys):
    from edge_qwq.bench import run_bench
    from edge_qwq.cli import main
    from edge_runtime.bundle import Bundle
    from export.onnx_export import export_bundle
    from export.sample_data import make_sample
    from export.shapes import Shape, shape_cost

    student = make_tiny_student(dim=32, heads=4, depth=3)
    pruned = prune_heads(student, [[0, 2], [1], [0, 1, 3]])
    full, cut = (shape_cost(Shape.of(s.config), 32, 4) for s in (student, pruned))
    pruned.config.extra["pruning"] = {"threshold": 0.2, "heads_kept": [[0, 2], [1], [0, 1, 3]], "score": "test",
                                      "attention_flops_before": full.attention_flops,
                                      "attention_flops_after": cut.attention_flops,
                                      "flops_before": full.flops, "flops_after": cut.flops}
    export_bundle(pruned, tmp_path / "b")
    assert sum(s.flops for s in Bundle.open(tmp_path / "b").stages) == cut.flops  # the graphs really shrank

    make_sample(tmp_path / "data", size=32, per_class=8, seed=0)
    r = run_bench(tmp_path / "b", tmp_path / "data", frames=5, log=lambda m: None)
    assert r["pruning"]["heads_kept_per_block"] == [2, 1, 3]
    assert r["pruning"]["attention_flops"]["saved_pct"] == pytest.approx(100 * (1 - 6 / 12), abs=0.01)
    assert r["flops"]["student_full"] == cut.flops
    capsys.readouterr()
    assert main(["estimate", "--bundle", str(tmp_path / "b"), "--target", "orin-nano"]) == 0
    assert "50.0 % saved" in " ".join(capsys.readouterr().out.split())
    assert main(["inspect", "--bundle", str(tmp_path / "b")]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "heads kept per block [2, 1, 3]" in shown and "pruned at prune_threshold 0.2" in shown


def test_recovery_starts_from_the_logit_scale_distillation_trained_at():
    import torch

    from export.prune import unfold_temperatures

    student = make_tiny_student()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        calibrated = student(x)
    student.config.extra["exit_temperatures"] = [0.5, 2.0, 4.0]
    unfold_temperatures(student)
    with torch.no_grad():
        for t, a, b in zip([0.5, 2.0, 4.0], calibrated, student(x)):
            assert torch.allclose(b, a * t, atol=1e-5)
    assert "exit_temperatures" not in student.config.extra  # refitted after recovery
