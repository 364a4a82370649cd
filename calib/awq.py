"""AWQ INT4 weight-only quantization (Lin et al., MLSys 2024) for MatMul/Gemm weights, in numpy.

Weights are symmetric INT4 (zero-point 0, range [-8, 7]), blocked along the input dimension K: one scale
per (block of `block` input channels, output channel). AWQ protects the input channels that carry large
activations: per input channel s = mean|x|^alpha, alpha searched on a grid against the output error,
W' = diag(s) W is quantized and 1/s is folded into the op before (LayerNorm gamma and beta), so
x W = (x / s) (s W). Then each block's clipping ratio is searched against that block's output error.

    >>> r = awq_search(x, w, block=64)           # x (M, K) inputs, w (K, N)   # doctest: +SKIP
    >>> r.alpha, r.q.shape, r.scales.shape      # doctest: +SKIP
    (0.4, (64, 192), (1, 192))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHAS = np.round(np.linspace(0.0, 1.0, 11), 2)
CLIPS = np.round(np.linspace(1.0, 0.6, 9), 2)
MAX_ROWS = 4096  # activation rows used by the searches (tokens x images, subsampled)
FP16_TINY = float(np.finfo(np.float16).tiny)  # smallest normal FP16 (6.1e-5): the least scale
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass
class Int4Weight:
    q: np.ndarray  # (K, N) int8 holding values in [-8, 7]
    scales: np.ndarray  # (K / block, N) float32 holding FP16 values (stored as FP16)
    block: int
    s: np.ndarray  # (K,) AWQ input-channel scale; ones when nothing is folded
    alpha: float

    def dequant(self) -> np.ndarray:
        """The weight the graph computes with, in the original basis: Q(s W) / s, (K, N)."""
        return dequantize(self.q, self.scales, self.block) / self.s[:, None]


def quantize(w: np.ndarray, block: int, clip: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric blocked INT4: w (K, N) -> q (K, N) int8 in [-8, 7], scales (K / block, N) (FP16 values)."""
    k, n = w.shape
    wb = w.reshape(k // block, block, n)  # (G, B, N)
    amax = np.abs(wb).max(axis=1) * clip  # (G, N)
    # the graph stores the scales in FP16 (the DequantizeLinear then yields FP16 weights for FP16 math):
    # quantize with the scales it will hold, none below FP16's smallest normal (TensorRT rejects a 0 scale)
    scales = np.clip(amax / 7.0, FP16_TINY, FP16_MAX).astype(np.float16).astype(np.float32)
    q = np.clip(np.rint(wb / scales[:, None, :]), -8, 7).astype(np.int8)
    return q.reshape(k, n), scales


def dequantize(q: np.ndarray, scales: np.ndarray, block: int) -> np.ndarray:
    k, n = q.shape
    return (q.reshape(k // block, block, n) * scales[:, None, :]).reshape(k, n).astype(np.float32)


def _rows(x: np.ndarray, seed: int = 0) -> np.ndarray:
    x = x.reshape(-1, x.shape[-1])  # (M, K)
    if len(x) > MAX_ROWS:
        x = x[np.random.default_rng(seed).choice(len(x), MAX_ROWS, replace=False)]
    return x.astype(np.float32)


def search_scale(x: np.ndarray, w: np.ndarray, block: int) -> tuple[np.ndarray, float]:
    """Grid-search alpha for s = mean|x|^alpha on the output error of Q(s W) / s. x (M, K), w (K, N)."""
    y = x @ w  # (M, N)
    xmean = np.maximum(np.abs(x).mean(axis=0), 1e-8)  # (K,)
    best = (np.inf, np.ones(w.shape[0], np.float32), 0.0)
    for a in ALPHAS:
        s = xmean ** a
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)  # centred, as in the AWQ reference
        wq = dequantize(*quantize(w * s[:, None], block), block) / s[:, None]
        err = float(((x @ wq - y) ** 2).mean())
        if err < best[0]:
            best = (err, s, float(a))
    return best[1], best[2]


def search_clip(x: np.ndarray, w: np.ndarray, block: int) -> np.ndarray:
    """Per (block, output channel) clipping ratio minimizing that block's partial output error.

    x (M, K) already divided by s, w (K, N) already multiplied by s. Returns ratios (K / block, N)."""
    m, k = x.shape
    g, n = k // block, w.shape[1]
    xb = x.reshape(m, g, block)  # (M, G, B)
    best_err = np.full((g, n), np.inf)
    best = np.ones((g, n), np.float32)
    for r in CLIPS:
        dw = (dequantize(*quantize(w, block, r), block) - w).reshape(g, block, n)  # (G, B, N)
        err = (np.einsum("mgb,gbn->mgn", xb, dw, optimize=True) ** 2).sum(axis=0)  # (G, N)
        better = err < best_err
        best_err[better], best[better] = err[better], r
    return best


def awq_search(x: np.ndarray, w: np.ndarray, block: int, scale: bool = True) -> Int4Weight:
    """AWQ for one weight: x (..., K) calibration inputs of the layer, w (K, N).

    scale=False (no op before the layer to fold 1/s into) searches the clipping only."""
    x = _rows(x)
    s, alpha = search_scale(x, w, block) if scale else (np.ones(w.shape[0], np.float32), 0.0)
    ws = w * s[:, None]
    clip = search_clip(x / s, ws, block)
    q, scales = quantize(ws, block, clip)
    return Int4Weight(q, scales, block, s, alpha)


def awq_group_search(x: np.ndarray, weights: list[np.ndarray], block: int) -> list[Int4Weight]:
    """Several weights reading one input (q, k, v after one norm): one shared s, a clip per weight."""
    x = _rows(x)
    s, alpha = search_scale(x, np.concatenate(weights, axis=1), block)
    out = []
    for w in weights:
        ws = w * s[:, None]
        q, scales = quantize(ws, block, search_clip(x / s, ws, block))
        out.append(Int4Weight(q, scales, block, s, alpha))
    return out


def rtn(w: np.ndarray, block: int) -> Int4Weight:
    """Plain round-to-nearest INT4 (no scales, no clipping): the baseline AWQ must beat."""
    q, scales = quantize(w, block)
    return Int4Weight(q, scales, block, np.ones(w.shape[0], np.float32), 0.0)


def output_error(x: np.ndarray, w: np.ndarray, wq: np.ndarray) -> float:
    """Relative squared output error ||x Wq - x W||^2 / ||x W||^2 on x (..., K)."""
    x = x.reshape(-1, x.shape[-1])
    y = x @ w
    return float(((x @ wq - y) ** 2).sum() / max((y ** 2).sum(), 1e-20))
