"""Frame-tile training data: labels of grid tiles, crops around defects, bounded hard-negative mining."""
import numpy as np

from export.frame_training import AROUND, SUBTLE_WEIGHT, _around, _pick, collect_tiles, tile_label

CLASSES = ["crack", "ok", "scratch", "spot"]


def test_tile_label_positive_ok_or_left_out():
    d = [{"label": "scratch", "box": [100, 100, 120, 140]}]
    assert tile_label((96, 96, 192, 192), d, CLASSES) == 2  # the whole defect inside
    assert tile_label((0, 0, 96, 96), d, CLASSES) == -1  # touches nothing: ok
    assert tile_label((0, 0, 104, 192), d, CLASSES) is None  # a 20 % sliver: neither label is true
    assert tile_label((0, 0, 115, 192), d, CLASSES) == 2  # 75 % of it


def test_crops_around_a_defect_hold_it_whole_and_stay_in_the_frame():
    frame = np.zeros((300, 400, 3), np.uint8)
    rng = np.random.default_rng(0)
    for box in ([10, 10, 40, 30], [350, 250, 390, 290], [150, 100, 180, 160]):
        for crop in _around(frame, box, 96, rng, 5):
            assert crop.shape == (96, 96, 3)


def test_pick_keeps_the_hardest_and_some_random():
    tiles = np.zeros((50, 4, 4, 3), np.uint8)
    scores = np.arange(50)[::-1].astype(float)  # tile 0 is the hardest
    idx = _pick(tiles, lambda t: scores, 5, 7, np.random.default_rng(0))
    assert set(idx[:5]) == {0, 1, 2, 3, 4} and len(set(idx)) == 12


def test_collect_tiles_from_real_sample_frames(tmp_path):
    from edge_runtime.bundle import InputSpec
    from export.sample_frames import make_frames

    make_frames(tmp_path, 0, size_hw=(192, 256), seed=1, split_sizes={"train": 6, "fit": 0, "score": 0})
    spec = InputSpec(96, 96, (0.5,) * 3, (0.25,) * 3, mode="tile")
    t = collect_tiles(tmp_path / "train", CLASSES, spec, score=lambda x: x.mean(axis=(1, 2, 3)),
                      hard_per_frame=2, random_per_frame=1)
    import json

    truth = json.loads((tmp_path / "train" / "boxes.json").read_text())["frames"]
    defects = [d for ds in truth.values() for d in ds]
    around = sum(AROUND * (SUBTLE_WEIGHT if d["subtle"] else 1) for d in defects)
    assert len(t.positives) >= around and len(t.positives) == len(t.positive_labels)
    assert set(t.positive_labels.tolist()) <= {0, 2, 3}
    assert len(t.negatives) <= 6 * 3 and t.negatives_seen > len(t.negatives)
