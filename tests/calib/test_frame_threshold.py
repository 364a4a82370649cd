"""The frame-level threshold: chosen on defect-free frames, saved per precision, refused where it cannot be."""
import dataclasses

import numpy as np
import pytest

from calib.frame_threshold import FLOOR, choose_threshold, fit_frame_threshold
from edge_runtime.bundle import Bundle
from edge_runtime.errors import InputError


def test_threshold_flags_at_most_the_allowed_share_of_good_frames():
    rng = np.random.default_rng(0)
    for n, target in ((100, 0.02), (57, 0.05), (300, 0.0)):
        m = rng.random(n)
        t = choose_threshold(m, target)
        assert (m >= t).sum() <= int(np.floor(target * n))
        # the smallest such threshold: one step lower would flag one frame more than allowed
        assert (m >= np.nextafter(t, -np.inf)).sum() == int(np.floor(target * n)) + 1 or t == FLOOR


def test_threshold_never_under_the_floor_and_ties_count_as_flagged():
    assert choose_threshold(np.full(50, 0.1), 0.02) == FLOOR
    t = choose_threshold(np.array([0.9] * 10 + [0.6] * 90), 0.05)  # 10 tied frames > 5 allowed
    assert t > 0.9


@pytest.fixture
def frames_dir(tmp_path):
    from export.sample_frames import make_frames

    make_frames(tmp_path / "frames", 0, size_hw=(96, 128), seed=0, split_sizes={"train": 0, "fit": 48, "score": 0})
    return tmp_path / "frames" / "fit"


def test_fit_writes_the_frames_section_and_the_runtime_uses_it(tiny_bundle, frames_dir):
    from edge_runtime.inference import DynamicInference

    b = Bundle.open(tiny_bundle)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile")
    b.save()
    spec = fit_frame_threshold(tiny_bundle, frames_dir, target=0.05, min_good=10)
    saved = Bundle.open(tiny_bundle).manifest.frames
    assert saved.to_dict() == spec.to_dict() and set(saved.threshold) == {"fp32"}
    assert saved.fitted_on["good_frames"] >= 10 and saved.measured["fp32"]["false_alarm_pct"] <= 5.0
    assert DynamicInference(tiny_bundle).frame_threshold == saved.threshold["fp32"]


def test_fit_refuses_a_resize_bundle_and_a_folder_without_boxes(tiny_bundle, frames_dir, tmp_path):
    with pytest.raises(InputError, match="tile-mode"):
        fit_frame_threshold(tiny_bundle, frames_dir)
    b = Bundle.open(tiny_bundle)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile")
    b.save()
    with pytest.raises(InputError, match="boxes.json"):
        fit_frame_threshold(tiny_bundle, tmp_path)
    with pytest.raises(InputError, match="defect-free"):
        fit_frame_threshold(tiny_bundle, frames_dir, min_good=10000)
