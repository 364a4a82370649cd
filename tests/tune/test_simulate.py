"""The simulation a trial runs on is the runtime's own behaviour: the exit policy as the executor decides,
frame reuse as FrameReuse replays it."""
from dataclasses import dataclass

import numpy as np
import pytest

from edge_runtime.executor import ExitPolicy, simulate_exits
from edge_runtime.reuse import FrameReuse, patch_stats
from tune.scores import ExitScores
from tune.simulate import decide, expected_ms, measure, reuse
from tune.video import conveyor


@pytest.mark.parametrize("seed", range(5))
def test_decide_equals_the_executors_simulation(seed):
    rng = np.random.default_rng(seed)
    logits = [rng.normal(0, 1 + 2 * k, (500, 4)).astype(np.float32) for k in range(3)]
    th = rng.uniform(0.3, 1.0, 2)
    ok = rng.uniform(0.3, 1.0, 2)
    if seed == 0:
        th[1] = 1.0  # a bar of 1.0 never exits
    policy = ExitPolicy.build(2, th, ok)
    want_pred, want_exit = simulate_exits(logits, policy, ok_index=1)
    pred, taken = decide(ExitScores.from_logits(logits, None, "random"), th, ok, 1)
    assert (pred == want_pred).all() and (taken == want_exit).all()


def test_reuse_replays_frame_reuse_exactly():
    from skimage import data

    rng = np.random.default_rng(0)
    images = [np.ascontiguousarray(data.brick()[i * 40:i * 40 + 96, :96, None].repeat(3, 2)) for i in range(8)]
    frames, _ = conveyor(images, np.arange(8), seed=1, runs=(4, 9))
    decisions = rng.integers(0, 4, len(frames))
    stats = np.stack([patch_stats(f) for f in frames])
    for window, threshold in ((0, 3.0), (3, 4.0), (10, 12.0), (5, 0.5)):
        live = FrameReuse(window, threshold)
        want, want_reused = [], []
        for f, d in zip(frames, decisions):
            r = live.lookup(f)
            if r is None:
                live.remember(f, _D(int(d)))
                want.append(int(d))
                want_reused.append(False)
            else:
                want.append(r.label)
                want_reused.append(True)
        got, reused = reuse(stats, decisions, window, threshold)
        assert got.tolist() == want and reused.tolist() == want_reused
    assert any(reuse(stats, decisions, 10, 12.0)[1])  # the replay reuses something at a loose threshold


@dataclass
class _D:
    """A decision as FrameReuse keeps it (it `replace`s reused and stage_ms)."""

    label: int
    reused: bool = False
    stage_ms: list = None


def test_expected_ms_and_figures():
    assert expected_ms([1.0, 2.0, 4.0], np.array([0.5, 0.25, 0.25])) == pytest.approx(0.5 * 1 + 0.25 * 3 + 0.25 * 7)
    logits = [np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 0.1]], np.float32)] * 2
    s = ExitScores.from_logits(logits, np.array([0, 1, 0]), "t")
    f = measure(s, {"early_exit": [0.9], "early_exit_ok": [0.9], "reuse_window": 0, "reuse_threshold": 3.0},
                ok_index=1, stage_ms=[1.0, 3.0])
    assert f.exit_rates == [pytest.approx(2 / 3, abs=1e-4), pytest.approx(1 / 3, abs=1e-4)]
    assert f.latency_ms == pytest.approx(2 / 3 * 1 + 1 / 3 * 4)
    assert f.accuracy == pytest.approx(100 * 2 / 3)  # the third image is a 0 and its exits say 2
