import numpy as np
import pytest

from edge_runtime.errors import EdgeError
from edge_runtime.executor import EarlyExitExecutor, ExitPolicy, simulate_exits


class ScriptedBackend:
    """A backend whose stages return given logits, counting the stages run (a test double for the
    executor's control flow; the real ONNX Runtime path is tested in test_inference)."""

    name = "scripted"

    def __init__(self, logits_per_stage):
        self.logits = logits_per_stage
        self.num_stages = len(logits_per_stage)
        self.calls = []

    def run_stage(self, k, x):
        self.calls.append(k)
        return x, np.asarray([self.logits[k]], np.float32)


OK = 1  # classes: crack, ok, scratch, spot


def confident(label, margin):
    z = np.zeros(4, np.float32)
    z[label] = margin
    return z


def test_confident_defect_exits_at_stage_0_and_runs_nothing_else():
    b = ScriptedBackend([confident(2, 6.0), confident(1, 6.0), confident(1, 6.0)])
    r = EarlyExitExecutor(b, ExitPolicy.build(2), OK).run(np.zeros((1, 3, 8, 8), np.float32))
    assert (r.label_index, r.exit_index, b.calls) == (2, 0, [0])


def test_ok_needs_more_confidence_than_a_defect():
    # softmax of margin 3.0 over 4 classes = 0.87: enough for a defect at 0.85, not for ok at 0.95
    policy = ExitPolicy.build(2, [0.85, 0.92], [0.95, 0.97])
    b = ScriptedBackend([confident(OK, 3.0), confident(OK, 3.0), confident(OK, 3.0)])
    r = EarlyExitExecutor(b, policy, OK).run(np.zeros((1, 3, 8, 8), np.float32))
    assert r.exit_index == 2 and b.calls == [0, 1, 2]
    b = ScriptedBackend([confident(3, 3.0), confident(OK, 3.0), confident(OK, 3.0)])
    assert EarlyExitExecutor(b, policy, OK).run(np.zeros((1, 3, 8, 8))).exit_index == 0


def test_simulation_matches_frame_by_frame_execution():
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 3, (50, 4)).astype(np.float32) for _ in range(3)]
    policy = ExitPolicy.build(2, [0.8, 0.9], [0.9, 0.95])
    pred, taken = simulate_exits(logits, policy, OK)
    for i in range(50):
        b = ScriptedBackend([lg[i] for lg in logits])
        r = EarlyExitExecutor(b, policy, OK).run(np.zeros((1, 3, 8, 8)))
        assert (r.label_index, r.exit_index) == (pred[i], taken[i])
    assert len(set(taken)) > 1


def test_bad_thresholds_are_user_errors():
    with pytest.raises(EdgeError, match="needs 2 thresholds"):
        ExitPolicy.build(2, [0.9])
    with pytest.raises(EdgeError, match=r"\(0, 1\]"):
        ExitPolicy.build(2, [0.9, 1.5])


def test_raised_policy_is_stricter_and_capped():
    p = ExitPolicy.build(2, [0.85, 0.92]).raised(0.1)
    assert p.thresholds == pytest.approx((0.95, 1.0))


def test_top1_is_the_softmax_argmax_and_its_probability():
    from edge_runtime.executor import softmax, top1

    rng = np.random.default_rng(3)
    for _ in range(100):
        z = rng.normal(0, 5, 6).astype(np.float32)
        label, p = top1(z)
        assert label == int(z.argmax()) and abs(p - float(softmax(z).max())) < 1e-6
