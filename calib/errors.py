"""Errors a user can cause while quantizing: printed by the CLI as one line, never a traceback."""
from __future__ import annotations

from edge_runtime.errors import EdgeError


class CalibError(EdgeError):
    """Calibration data, an accuracy budget or a TensorRT target that quantization cannot work with."""


class LintError(CalibError):
    """The bundle breaks TensorRT's ONNX rules (the findings are printed before this one line)."""
