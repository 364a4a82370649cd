"""A bundle whose exits are confident (so thresholds matter) and a small labelled data set, both made here."""
import pytest


@pytest.fixture(scope="session")
def tune_data(tmp_path_factory):
    """DIR/{train,val,calib}/<class>/ of 32 px images: real scikit-image textures with synthetic defects."""
    from export.sample_data import make_sample

    root = tmp_path_factory.mktemp("tune_data") / "data"
    make_sample(root, size=32, per_class=40, seed=3)
    return root


@pytest.fixture(scope="session")
def confident_template(tmp_path_factory):
    """A random student whose exit heads are scaled up: its exits answer with high confidence, so each
    threshold changes which images leave early (an untrained model's exits all sit near 1/classes)."""
    import torch

    from export.onnx_export import export_bundle
    from tests.conftest import make_tiny_student

    student = make_tiny_student(seed=4)
    with torch.no_grad():
        for k, head in enumerate(student.heads):
            head.fc.weight.mul_(6.0 + 3 * k)
    out = tmp_path_factory.mktemp("confident") / "bundle"
    export_bundle(student, out)
    return out


@pytest.fixture
def confident_bundle(confident_template, tmp_path):
    from tests.conftest import fresh_copy

    return fresh_copy(confident_template, tmp_path, "confident")
