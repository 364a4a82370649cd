import hashlib

import numpy as np

from edge_runtime.image_folder import open_split
from export.sample_data import CLASSES, make_sample


def _digest(root):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.png")))).hexdigest()


def test_layout_classes_and_determinism(tmp_path):
    counts = make_sample(tmp_path / "a", size=48, per_class=10, seed=3)
    make_sample(tmp_path / "b", size=48, per_class=10, seed=3)
    make_sample(tmp_path / "c", size=48, per_class=10, seed=4)
    assert counts == {"train": 40, "val": 32, "calib": 32}
    for split in ("train", "val", "calib"):
        folder = open_split(tmp_path / "a", split)
        assert folder.classes == list(CLASSES)
        assert folder.load_rgb(48, 48).shape[1:] == (48, 48, 3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_defects_change_the_surface_and_ok_does_not(tmp_path):
    from export.sample_data import load_textures, make_image

    tex = load_textures()
    assert set(tex) >= {"brick", "grass", "gravel"}
    ok = make_image(tex, "ok", 64, np.random.default_rng(0), "brick").astype(int)
    for label in ("scratch", "crack", "spot"):
        img = make_image(tex, label, 64, np.random.default_rng(0), "brick").astype(int)
        diff = np.abs(img - ok).max(axis=2)
        assert (diff > 40).sum() >= 6, label  # a visible defect
        assert (diff > 40).mean() < 0.2, label  # and a small one
