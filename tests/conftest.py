"""Shared fixtures: tiny models and bundles the tests make themselves (nothing is downloaded)."""
from __future__ import annotations

import pytest

# real PostgreSQL, Mosquitto and Chromium, started once per session: postgres_server/postgres_url,
# mosquitto_broker/mosquitto_url, chromium (see tests/servers.py)
pytest_plugins = ["tests.servers"]

CLASSES = ["crack", "ok", "scratch", "spot"]


def make_tiny_student(seed: int = 0, **overrides):
    """A randomly initialised student, small enough to export in a second."""
    import torch

    from export.student import Student, StudentConfig

    torch.manual_seed(seed)
    cfg = dict(classes=CLASSES, image_size=32, patch=8, dim=16, depth=3, heads=2, exits=(1, 2))
    cfg.update(overrides)
    return Student(StudentConfig(**cfg)).eval()


@pytest.fixture(scope="session")
def tiny_bundle_template(tmp_path_factory):
    from export.onnx_export import export_bundle

    out = tmp_path_factory.mktemp("bundle_template") / "bundle"
    export_bundle(make_tiny_student(), out)
    return out


def fresh_copy(template, tmp_path, name: str = "bundle"):
    """A copy of a session's template bundle in the test's own folder, for a test that modifies it."""
    import shutil

    dst = tmp_path / name
    shutil.copytree(template, dst)
    return dst


@pytest.fixture
def tiny_bundle(tiny_bundle_template, tmp_path):
    """A fresh copy of a 3-stage FP32 bundle (32 px input, 4 classes), for tests that modify it."""
    return fresh_copy(tiny_bundle_template, tmp_path)
