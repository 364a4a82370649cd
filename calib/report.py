"""Weight bytes by precision: what a quantized bundle actually stores."""
from __future__ import annotations

import os
from pathlib import Path

# bytes per element by ONNX TensorProto data type; INT4/UINT4 pack two to a byte
_BYTES = {1: 4.0, 10: 2.0, 16: 2.0, 3: 1.0, 2: 1.0, 22: 0.5, 21: 0.5, 11: 8.0}
_SHAPE_TYPES = {6, 7, 9}  # int32, int64, bool: shape constants, not weights


def model_weight_bytes(model) -> int:
    """Bytes of every numeric initializer (weights, biases, norms, Q/DQ scales and zero points);
    int32/int64/bool shape constants are left out."""
    import numpy as np

    total = 0.0
    for t in model.graph.initializer:
        if t.data_type in _SHAPE_TYPES:
            continue
        total += int(np.prod(t.dims)) * _BYTES.get(t.data_type, 4.0)
    return int(round(total))


def weight_bytes(bundle_path: str | os.PathLike) -> dict[str, int]:
    """{"fp32": bytes of the FP32 stages, "quantized": bytes of the quantized stages (0 if none)}.

    >>> weight_bytes("bundle/")   # doctest: +SKIP
    {'fp32': 1105424, 'quantized': 298011}
    """
    import onnx

    from edge_runtime.bundle import Bundle

    bundle = Bundle.open(bundle_path)
    root = Path(bundle.root)
    fp32 = sum(model_weight_bytes(onnx.load(str(root / s.file))) for s in bundle.stages)
    quant = sum(model_weight_bytes(onnx.load(str(root / s.quantized))) for s in bundle.stages if s.quantized)
    return {"fp32": fp32, "quantized": quant}
