import numpy as np

from calib import awq


def _data(seed=0, k=64, n=48, m=512):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[:, :4] *= 20.0  # a few salient input channels, as AWQ assumes
    w = rng.standard_normal((k, n)).astype(np.float32) * 0.1
    return x, w


def test_quantize_is_symmetric_int4_blocked():
    x, w = _data()
    q, scales = awq.quantize(w, 32)
    assert q.shape == w.shape and scales.shape == (2, w.shape[1])
    assert q.min() >= -8 and q.max() <= 7
    deq = awq.dequantize(q, scales, 32)
    assert np.abs(deq - w).max() <= scales.max() / 2 + 1e-6  # round-to-nearest within half a step


def test_awq_beats_round_to_nearest_on_held_out_rows():
    x, w = _data()
    w4 = awq.awq_search(x[:384], w, 32)
    rtn = awq.rtn(w, 32)
    held = x[384:]
    assert w4.alpha > 0  # salient channels must pull alpha off zero
    assert awq.output_error(held, w, w4.dequant()) < awq.output_error(held, w, rtn.dequant())


def _block_errors(x, w, wq, block):
    """The clip search's objective: per block, the squared error of that block's partial output."""
    k = w.shape[0]
    return sum(float(((x[:, g:g + block] @ (wq - w)[g:g + block]) ** 2).sum()) for g in range(0, k, block))


def test_clip_search_lowers_its_objective():
    x, w = _data(1)
    clip = awq.search_clip(x, w, 32)
    assert clip.shape == (2, w.shape[1]) and clip.min() >= awq.CLIPS.min()
    no_clip = awq.dequantize(*awq.quantize(w, 32), 32)
    clipped = awq.dequantize(*awq.quantize(w, 32, clip), 32)
    assert _block_errors(x, w, clipped, 32) <= _block_errors(x, w, no_clip, 32)
    assert (clip < 1).any()  # a Gaussian weight block always gains from some clipping


def test_scales_are_the_fp16_values_the_graph_stores():
    """The INT4 DequantizeLinear holds FP16 scales (its output, the weight, is then FP16: W4A16), so q is
    computed with exactly those values, and none is 0 (TensorRT rejects a zero scale)."""
    _, w = _data()
    w[:32, 0] = 0.0  # an all-zero block
    q, scales = awq.quantize(w, 32)
    np.testing.assert_array_equal(scales, scales.astype(np.float16).astype(np.float32))
    assert scales.min() >= np.finfo(np.float16).tiny and q[:32, 0].tolist() == [0] * 32
