"""Teachers of three transformers families (tiny configs) distil into the student and export."""
import json

import pytest

from edge_runtime.bundle import Bundle
from edge_runtime.inference import DynamicInference


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from export.sample_data import make_sample

    root = tmp_path_factory.mktemp("teacher_data") / "data"
    make_sample(root, size=32, per_class=8, seed=1)
    return root


@pytest.mark.parametrize("arch", ["vit", "resnet", "convnext"])
def test_family_trains_distils_and_exports(arch, data, tmp_path):
    from export.distill import DistillConfig, distill
    from export.onnx_export import export_bundle
    from export.student import load_student
    from export.teacher import load_teacher
    from export.teacher_train import train_teacher

    r = train_teacher(data, tmp_path / "teacher", arch=arch, epochs=1, tiny=True, show_progress=False)
    assert 0.0 <= r["val_accuracy"] <= 1.0
    assert (tmp_path / "teacher" / "config.json").is_file()
    teacher = load_teacher(tmp_path / "teacher", classes=r["classes"])
    assert type(teacher.model).__name__.lower().startswith(arch)
    student_cfg = {"dim": 16, "depth": 3, "heads": 2, "exits": (1, 2)}
    m = distill(tmp_path / "teacher", data, tmp_path / "student", student_cfg,
                DistillConfig(epochs=1, batch_size=16), show_progress=False)
    assert len(m["val_accuracy_per_exit"]) == 3
    assert json.loads((tmp_path / "student" / "distill_metrics.json").read_text())["classes"] == r["classes"]
    export_bundle(load_student(tmp_path / "student"), tmp_path / "bundle")
    b = Bundle.open(tmp_path / "bundle")
    assert b.classes == r["classes"] and len(b.stages) == 3
    d = DynamicInference(tmp_path / "bundle").infer(next((data / "val" / "spot").iterdir()))
    assert d.label in b.classes


def test_teacher_with_other_labels_is_refused(data, tmp_path):
    from export.errors import ExportError
    from export.teacher import build_teacher, load_teacher, save_teacher

    save_teacher(build_teacher("resnet", ["cat", "dog"], 32, tiny=True), tmp_path / "t")
    with pytest.raises(ExportError, match="lack the data's class"):
        load_teacher(tmp_path / "t", classes=["crack", "ok", "scratch", "spot"])


def test_teacher_onnx_matches_transformers(tmp_path):
    import numpy as np
    import torch

    from edge_runtime.backends.onnxruntime_backend import make_session
    from export.teacher import build_teacher, save_teacher
    from export.teacher_onnx import export_teacher_onnx

    t = build_teacher("vit", ["crack", "ok", "scratch", "spot"], 32, tiny=True)
    save_teacher(t, tmp_path / "t")
    export_teacher_onnx(tmp_path / "t", tmp_path / "t.onnx")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = t.model.eval()(pixel_values=x).logits.numpy()
    got = make_session(tmp_path / "t.onnx").run(None, {"pixel_values": x.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-4
