"""Frame reuse: judged patch by patch, bounded by reuse_window."""
from __future__ import annotations

import numpy as np

from edge_runtime.inference import Decision
from edge_runtime.reuse import FrameReuse

D = Decision("ok", 0.97, 0, False, 1.5, [1.5], "v1")


def _frame(seed=0, noise=0.0, spot=False):
    rng = np.random.default_rng(0)
    f = rng.integers(80, 170, (240, 320, 3)).astype(np.float32)
    if noise:
        f += np.random.default_rng(seed).normal(0, noise, f.shape)
    if spot:
        f[100:106, 150:156] = 10  # a small new defect: 36 of 76800 pixels
    return np.clip(f, 0, 255).astype(np.uint8)


def test_near_identical_frames_reuse_up_to_the_window():
    r = FrameReuse(window=3)
    assert r.lookup(_frame()) is None
    r.remember(_frame(), D)
    got = [r.lookup(_frame(seed=i, noise=2.0)) for i in range(1, 5)]
    assert [g is not None for g in got] == [True, True, True, False]
    assert got[0].reused and got[0].label == "ok" and not D.reused
    assert r.reused == 3 and r.rate == 3 / 5


def test_a_small_new_defect_triggers_inference():
    r = FrameReuse(window=10)
    r.remember(_frame(), D)
    whole_frame_change = abs(_frame(spot=True).astype(float).mean() - _frame().astype(float).mean())
    assert whole_frame_change < 0.2  # invisible to a whole-frame comparison
    assert r.lookup(_frame(spot=True)) is None


def test_window_zero_never_reuses():
    r = FrameReuse(window=0)
    r.remember(_frame(), D)
    assert r.lookup(_frame()) is None and r.rate == 0.0
