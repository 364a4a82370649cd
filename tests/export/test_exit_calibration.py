import numpy as np
import torch

from export.exit_calibration import calibrate_exits, fit_temperature
from tests.conftest import make_tiny_student


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 4, generator=g) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.5, -1), 1, generator=g).squeeze(1)
    assert abs(fit_temperature(logits, labels) - 2.5) < 0.2


def test_calibration_is_folded_into_the_heads():
    student = make_tiny_student()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8))
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 4, 64))
    norm = lambda u8: (u8.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25  # noqa: E731
    with torch.no_grad():
        before = [lg.clone() for lg in student(norm(images))]
    temps = calibrate_exits(student, images, labels, norm)
    with torch.no_grad():
        after = student(norm(images))
    assert len(temps) == 3
    for b, a, t in zip(before, after, temps):
        assert torch.allclose(a, b / t, atol=1e-4)
