import numpy as np
import torch

from edge_runtime.inference import DynamicInference, InferenceConfig
from tests.conftest import make_tiny_student


def test_infer_matches_torch_and_reports_exit_and_latency(tiny_bundle):
    frame = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)  # BGR, another size
    model = DynamicInference(tiny_bundle, InferenceConfig(early_exit=[1.0, 1.0], early_exit_ok=[1.0, 1.0]))
    d = model.infer(frame)
    from edge_runtime.preprocess import preprocess

    x = torch.from_numpy(preprocess(frame, model.spec))
    with torch.no_grad():
        ref = torch.softmax(make_tiny_student()(x)[-1], -1)[0].numpy()
    assert d.exit_index == 2 and len(d.stage_ms) == 3
    assert d.label == model.classes[int(ref.argmax())]
    assert abs(d.confidence - float(ref.max())) < 1e-4
    assert d.latency_ms >= sum(d.stage_ms) > 0


def test_low_thresholds_exit_at_the_first_stage(tiny_bundle):
    model = DynamicInference(tiny_bundle, {"early_exit": [0.01, 0.01], "early_exit_ok": [0.01, 0.01]})
    d = model.infer(np.zeros((32, 32, 3), np.uint8))
    assert d.exit_index == 0 and len(d.stage_ms) == 1
    assert d.is_defect == (d.label != "ok")
