"""What several benchmarks make for themselves: a conveyor-like MJPEG video and an untrained default student.

Imported by the bench scripts, which run as `python bench/<name>.py` (their folder is on sys.path)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_video(path: Path, n: int, size=(640, 480), still: int = 4, step: int = 11) -> Path:
    """A textured part with a spot that moves `step` px every `still` frames (a conveyor seen by a fixed
    camera); still=1: no two frames alike, so nothing is reused."""
    import cv2

    rng = np.random.default_rng(0)
    w, h = size
    base = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for i in range(n):
        f = base.copy()
        x = 20 + (i // still * step) % (w - 40)
        cv2.circle(f, (x, h // 2), 6, (30, 30, 30), -1)
        vw.write(f)
    vw.release()
    return path


def default_bundle(out: Path) -> Path:
    """A default-size student, untrained (seed 0), exported: for timing, not for accuracy."""
    import torch

    from export.onnx_export import export_bundle
    from export.student import Student, StudentConfig

    torch.manual_seed(0)
    export_bundle(Student(StudentConfig(classes=["crack", "ok", "scratch", "spot"])).eval(), out)
    return out
