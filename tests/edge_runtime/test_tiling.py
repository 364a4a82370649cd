"""Tile grids, cutting, compaction, frame verdicts and changed-tiles-only reuse, on the real ONNX Runtime
path (a tiny exported bundle switched to tile mode)."""
import dataclasses
import json

import numpy as np
import pytest

from edge_runtime.bundle import Bundle
from edge_runtime.errors import EdgeError, InputError
from edge_runtime.executor import ExitPolicy
from edge_runtime.frame_decision import decide_frame
from edge_runtime.preprocess import preprocess
from edge_runtime.reuse import TileReuse, tile_stats
from edge_runtime.tile_executor import TileResults, run_tiles
from edge_runtime.tiling import Roi, TileGrid, axis_starts, parse_roi


def tile_bundle(path, overlap=0.25):
    b = Bundle.open(path)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile", tile_overlap=overlap)
    b.save()
    return path


def frame(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


# ---------- the grid ----------
def test_grid_of_a_1280x960_frame_has_234_tiles_covering_it():
    g = TileGrid.for_frame((960, 1280), (96, 96), 0.25)
    assert (g.rows, g.cols, len(g)) == (13, 18, 234)
    assert g.rects[:, 2].max() == 1280 and g.rects[:, 3].max() == 960 and g.rects.min() == 0
    covered = np.zeros((960, 1280), bool)
    for x0, y0, x1, y1 in g.rects:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_axis_starts_overlap_and_end_at_the_edge():
    s = axis_starts(0, 300, 96, 72)
    assert s[0] == 0 and s[-1] == 300 - 96 and all(0 < b - a <= 72 for a, b in zip(s, s[1:]))
    assert axis_starts(10, 50, 96, 72) == [10]


def test_cut_tiles_equal_preprocessing_each_crop(tiny_bundle):
    spec = Bundle.open(tiny_bundle).input
    img = frame(70, 90)
    g = TileGrid.for_frame(img.shape[:2], (spec.height, spec.width), 0.25)
    tiles = g.cut(img, spec)  # (N, 3, 32, 32)
    assert tiles.shape == (len(g), 3, 32, 32) and tiles.dtype == np.float32
    for i, (x0, y0, x1, y1) in enumerate(g.rects):
        np.testing.assert_allclose(tiles[i], preprocess(img[y0:y1, x0:x1], spec)[0], atol=1e-5)
    np.testing.assert_array_equal(g.cut(img, spec, np.array([1, 3])), tiles[[1, 3]])


def test_small_frame_is_padded_and_says_so():
    g = TileGrid.for_frame((20, 30), (32, 32), 0.25)
    assert g.padded and len(g) == 1 and g.pad == (12, 2)


def test_roi_box_limits_tiles_and_bad_rois_are_refused():
    full = TileGrid.for_frame((960, 1280), (96, 96), 0.25)
    roi = TileGrid.for_frame((960, 1280), (96, 96), 0.25, parse_roi("100,100,500,400"))
    assert 0 < len(roi) < len(full)
    assert roi.rects[:, 0].min() >= 100 and roi.rects[:, 2].max() <= 500
    with pytest.raises(InputError, match="outside"):
        TileGrid.for_frame((960, 1280), (96, 96), 0.25, parse_roi("2000,0,2100,100"))
    for bad in ("5,5,5,9", "a,b,c,d", "/no/such/mask.png"):
        with pytest.raises(InputError):
            parse_roi(bad)


def test_roi_mask_keeps_only_tiles_that_touch_it(tmp_path):
    import cv2

    mask = np.zeros((300, 400), np.uint8)
    mask[:, :50] = 255
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), mask)
    g = TileGrid.for_frame((300, 400), (96, 96), 0.25, parse_roi(str(path)))
    assert len(g) and all(x0 < 50 for x0 in g.rects[:, 0])
    with pytest.raises(InputError, match="empty"):
        TileGrid.for_frame((300, 400), (96, 96), 0.25, Roi(mask=np.zeros((300, 400), bool), source="m"))


# ---------- per-tile early exit with compaction ----------
class RowBackend:
    """Each tile's logits are scripted per stage (rows of the batch keep their identity through take_rows):
    a test double for the control flow; the ONNX Runtime path is tested below."""

    num_stages = 3

    def __init__(self, logits):  # (stages, N, C)
        self.logits, self.entered = logits, []

    def run_stage(self, k, x):
        ids = x if k else np.arange(len(x))
        self.entered.append(len(ids))
        return ids, self.logits[k][ids]

    def take_rows(self, hidden, rows):
        return hidden[rows]


def test_confident_tiles_leave_and_the_rest_go_on_as_a_smaller_batch():
    n, ok = 6, 1
    logits = np.zeros((3, n, 4), np.float32)
    logits[0, :4, ok] = 8.0  # 4 tiles plainly ok at stage 0
    logits[1, 4, 2] = 8.0  # tile 4: a confident scratch at stage 1
    logits[2, 5, 3] = 8.0  # tile 5 answers at the last stage
    b = RowBackend(logits)
    r = run_tiles(b, np.zeros((n, 3, 8, 8), np.float32), ExitPolicy.build(2), ok)
    assert b.entered == [6, 2, 1] and r.stage_tiles == [6, 2, 1]
    assert r.exit_at.tolist() == [0, 0, 0, 0, 1, 2] and r.labels.tolist() == [1, 1, 1, 1, 2, 3]
    full = run_tiles(RowBackend(logits), np.zeros((n, 3, 8, 8), np.float32), ExitPolicy.build(2), ok,
                     compact=False)
    assert full.stage_tiles == [6, 6, 6] and set(full.exit_at.tolist()) == {2}


def test_tile_mode_on_onnxruntime_scores_each_tile_as_its_crop(tiny_bundle):
    from edge_runtime.executor import softmax
    from edge_runtime.inference import DynamicInference, InferenceConfig

    tile_bundle(tiny_bundle)
    img = frame(64, 96, seed=3)
    model = DynamicInference(tiny_bundle, InferenceConfig(reuse_window=0))
    d = model.infer(img)
    grid = model.tiled.grid_for(img)
    assert d.tiles["tiles"] == len(grid) and d.tiles["stage_tiles"][0] == len(grid)
    assert len(d.tile_map) == d.tiles["rows"] == grid.rows and d.padded is False
    verdict, info = model.tiled.infer(img, compact=False)  # every tile answers at the last exit
    assert info.stage_tiles == [len(grid)] * model.num_stages
    crop = DynamicInference(tiny_bundle, InferenceConfig(tiling="off"))
    for i, (x0, y0, x1, y1) in enumerate(grid.rects):
        logits, _ = crop.run_all_stages(preprocess(img[y0:y1, x0:x1], crop.spec))
        p_ok = softmax(logits[-1].astype(np.float64))[0, model.ok_index]
        assert abs(verdict.scores[i] - (1 - p_ok)) < 1e-4


def test_tiling_on_for_a_resize_bundle_is_refused_in_one_line(tiny_bundle):
    from edge_runtime.inference import DynamicInference, InferenceConfig

    with pytest.raises(EdgeError, match="input mode is 'resize'"):
        DynamicInference(tiny_bundle, InferenceConfig(tiling="on"))
    with pytest.raises(EdgeError, match="--roi"):
        DynamicInference(tiny_bundle, InferenceConfig(roi="0,0,10,10"))


def test_tiling_off_on_a_tile_bundle_resizes_the_whole_frame(tiny_bundle):
    from edge_runtime.inference import DynamicInference, InferenceConfig

    tile_bundle(tiny_bundle)
    d = DynamicInference(tiny_bundle, InferenceConfig(tiling="off")).infer(frame(64, 96))
    assert d.defects is None and "tiles" not in d.to_dict()


def test_small_frame_decision_says_it_was_padded(tiny_bundle):
    from edge_runtime.inference import DynamicInference

    tile_bundle(tiny_bundle)
    d = DynamicInference(tiny_bundle).infer(frame(20, 25))
    assert d.padded is True and d.tiles["tiles"] == 1 and json.loads(json.dumps(d.to_dict()))["padded"] is True


# ---------- the frame verdict ----------
def results_with_scores(scores, defect_class=2, ok=1):
    n = len(scores)
    probs = np.zeros((n, 4))
    probs[:, ok] = 1 - np.asarray(scores)
    probs[:, defect_class] = scores
    labels = probs.argmax(1)
    return TileResults(labels, probs[np.arange(n), labels], np.zeros(n, np.int64), probs)


def test_overlapping_defect_tiles_merge_into_one_box_in_frame_pixels():
    g = TileGrid.for_frame((300, 400), (96, 96), 0.25)  # 4 rows x 5 cols, stride 72
    scores = np.zeros(len(g))
    hot = [i for i, (r, c) in enumerate(g.cells.tolist()) if (r, c) in ((1, 1), (1, 2))]
    scores[hot] = [0.99, 0.97]
    v = decide_frame(g, results_with_scores(scores), 0.9, ["crack", "ok", "scratch", "spot"], 1)
    assert v.label_index == 2 and abs(v.confidence - 0.99) < 1e-9
    assert v.defects == [{"label": "scratch", "confidence": 0.99, "box": [72, 72, 72 + 72 + 96, 72 + 96]}]
    assert v.tile_map[1][1] == 0.99 and v.tile_map[0][0] == 0.0


def test_no_tile_over_the_threshold_is_an_ok_frame():
    g = TileGrid.for_frame((300, 400), (96, 96), 0.25)
    scores = np.full(len(g), 0.2)
    v = decide_frame(g, results_with_scores(scores), 0.9, ["crack", "ok", "scratch", "spot"], 1)
    assert v.label_index == 1 and v.defects == [] and abs(v.confidence - 0.8) < 1e-9


def test_a_long_run_of_defect_tiles_is_split_into_boxes_of_at_most_2x2_tiles():
    g = TileGrid.for_frame((96, 600), (96, 96), 0.25)  # one row of tiles
    v = decide_frame(g, results_with_scores(np.full(len(g), 0.95)), 0.9, ["crack", "ok", "scratch", "spot"], 1)
    assert len(v.defects) >= 2
    assert all(d["box"][2] - d["box"][0] <= 2 * 96 for d in v.defects)
    covered = set()
    for d in v.defects:
        covered |= {i for i, r in enumerate(g.rects) if r[0] >= d["box"][0] and r[2] <= d["box"][2]}
    assert covered == set(range(len(g)))


# ---------- changed tiles only ----------
def test_tile_stats_match_a_direct_computation():
    import cv2

    img = frame(200, 260, seed=5)
    g = TileGrid.for_frame((200, 260), (96, 96), 0.25)
    s = tile_stats(img, g, 4)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    x0, y0 = g.rects[3, :2]
    block = grey[y0 + 24:y0 + 48, x0 + 48:x0 + 72]
    assert abs(s[3, 0, 1, 2] - block.mean()) < 1e-3 and abs(s[3, 1, 1, 2] - block.std()) < 1e-3


def test_only_changed_tiles_are_inferred_and_the_window_bounds_reuse():
    g = TileGrid.for_frame((200, 260), (96, 96), 0.25)
    reuse = TileReuse(window=2, threshold=3.0)
    img = frame(200, 260, seed=1)
    rows, stats = reuse.stale(img, g)
    assert len(rows) == len(g)
    reuse.remember(rows, stats)
    moved = img.copy()
    moved[0:40, 0:40] = 255 - moved[0:40, 0:40]  # a change in the first tile only
    rows, stats = reuse.stale(moved, g)
    assert rows.tolist() == [0]
    reuse.remember(rows, stats)
    rows, stats = reuse.stale(moved, g)  # unchanged, second reuse in a row for most tiles
    reuse.remember(rows, stats)
    rows, _ = reuse.stale(moved, g)  # the window (2) is used up for all but tile 0: re-inferred
    assert set(rows.tolist()) == set(range(1, len(g)))
    assert 0 < reuse.rate < 1


def test_tile_reuse_keeps_results_of_unchanged_tiles(tiny_bundle):
    from edge_runtime.inference import DynamicInference, InferenceConfig

    tile_bundle(tiny_bundle)
    model = DynamicInference(tiny_bundle, InferenceConfig(reuse_window=5))
    img = frame(96, 128, seed=2)
    first = model.infer(img)
    again = model.infer(img)
    assert again.tiles["inferred"] == 0 and again.tiles["reused"] == first.tiles["tiles"] and again.reused
    assert again.tile_map == first.tile_map and again.label == first.label
