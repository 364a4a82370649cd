"""The teacher as one ONNX graph, so the bench times it on the same backend as the student."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

from export.errors import ExportError
from export.teacher import Teacher, load_teacher


class _LogitsOnly:
    """Wraps a transformers classifier: pixel_values (B, 3, S, S) -> logits (B, classes)."""

    @staticmethod
    def module(model):
        import torch

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model(pixel_values=x).logits

        return M().eval()


def export_teacher_onnx(teacher_dir, out: str | Path) -> Teacher:
    """Write TEACHER as ONNX at `out` (batch dynamic, opset 17); returns the loaded teacher."""
    import torch

    teacher = load_teacher(teacher_dir)
    x = torch.randn(1, 3, teacher.image_size, teacher.image_size)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_LogitsOnly.module(copy.deepcopy(teacher.model)), (x,), str(out),
                              input_names=["pixel_values"], output_names=["logits"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=17, do_constant_folding=True, dynamo=False)
    except Exception as e:  # exporter failures are long; one line is enough here
        raise ExportError(f"cannot export teacher {teacher_dir} to ONNX: {str(e).splitlines()[0][:200]}") from None
    return teacher
