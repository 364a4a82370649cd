"""Calib fixtures: a small labelled calibration folder at the tiny bundle's 32 px, and quantized copies
of the tiny bundle (mixed mode, int4 mode) shared by the read-only tests."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

CLASSES = ["crack", "ok", "scratch", "spot"]


def write_images(root, per_class: int = 8, size: int = 32, seed: int = 0) -> None:
    """DIR/calib/<class>/*.png: structured noise with a class-dependent mark, so labels mean something."""
    import cv2

    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        folder = root / "calib" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(60, 190, size=(size, size, 3)).astype(np.uint8)
            if name != "ok":
                y = int(rng.integers(4, size - 4))
                img[y - 1 - c % 2:y + 1, :, :] = 255 if c % 2 else 0
            assert cv2.imwrite(str(folder / f"{i:03d}.png"), img)


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibdata")
    write_images(root)
    return root


@pytest.fixture(scope="session")
def quantized_bundle(tiny_bundle_template, calib_dir, tmp_path_factory):
    """(bundle path, report) for a mixed-mode quantization of the tiny bundle."""
    from calib import quantize_bundle

    dst = tmp_path_factory.mktemp("qbundle") / "bundle"
    shutil.copytree(tiny_bundle_template, dst)
    report = quantize_bundle(dst, calib_dir, mode="mixed", max_drop=100.0)
    return dst, report


@pytest.fixture(scope="session")
def int4_bundle(tiny_bundle_template, calib_dir, tmp_path_factory):
    """(bundle path, report) for an int4-mode quantization: every INT4-eligible layer (2-D MatMul/Gemm
    weight whose K a block divides) is INT4 whatever the data, so the INT4 storage can be checked."""
    from calib import quantize_bundle

    dst = tmp_path_factory.mktemp("q4bundle") / "bundle"
    shutil.copytree(tiny_bundle_template, dst)
    report = quantize_bundle(dst, calib_dir, mode="int4", max_drop=100.0)
    return dst, report


@pytest.fixture(scope="session")
def int4_matmul_bundle(tmp_path_factory, calib_dir):
    """(bundle path, report): a mixed-mode quantization of a tiny student of width 32, whose block MatMuls
    (K = 32, 64) are INT4-eligible, unlike the 16-wide tiny bundle's (only its exit heads are)."""
    from calib import quantize_bundle
    from export.onnx_export import export_bundle
    from tests.conftest import make_tiny_student

    dst = tmp_path_factory.mktemp("q4mbundle") / "bundle"
    export_bundle(make_tiny_student(dim=32), dst)
    report = quantize_bundle(dst, calib_dir, mode="mixed", max_drop=100.0)
    return dst, report
