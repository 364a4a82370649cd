"""Calibrated exit confidences: one temperature per exit head, fitted on held-out images and folded
into the head's last linear layer, so the exported logits give calibrated softmax probabilities.

The early-exit thresholds (0.85, 0.92, ...) are probabilities; they mean what they say only if a
confidence of 0.9 is right about 90% of the time. Distillation at temperature T leaves the heads
under-confident (they learn the teacher's softened targets), so without this an exit rarely fires.
"""
from __future__ import annotations


def fit_temperature(logits, labels) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on (N, C) logits and (N,) labels."""
    import torch
    import torch.nn.functional as F

    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def calibrate_exits(student, images_u8, labels, normalize) -> list[float]:
    """Fit and fold one temperature per exit head; returns the temperatures (shallowest exit first)."""
    import torch

    from export.training import predict

    student.eval()
    exits = predict(lambda u8: student(normalize(u8)), images_u8)  # [(N, C)] per exit
    temps = []
    for head, logits in zip(student.heads, exits):
        t = fit_temperature(torch.from_numpy(logits), labels)
        with torch.no_grad():
            head.fc.weight /= t
            head.fc.bias /= t
        temps.append(round(t, 4))
    return temps
