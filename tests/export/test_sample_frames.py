import hashlib
import json

import cv2
import numpy as np
import pytest

from edge_qwq.cli import main
from export.sample_data import TEXTURES, load_textures
from export.sample_frames import FRAME_SPLITS, make_conveyor_video, make_frame, make_frames

SIZE_HW = (240, 320)


@pytest.fixture(scope="module")
def textures():
    return load_textures()


def _digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*")))).hexdigest()


def test_frames_layout_boxes_and_determinism(tmp_path):
    counts = make_frames(tmp_path / "a", 3, size_hw=SIZE_HW, seed=1)
    make_frames(tmp_path / "b", 3, size_hw=SIZE_HW, seed=1)
    assert counts == {"train": 3, "fit": 3, "score": 3}
    for split in FRAME_SPLITS:
        assert _digest(tmp_path / "a" / split) == _digest(tmp_path / "b" / split)
        doc = json.loads((tmp_path / "a" / split / "boxes.json").read_text())
        assert doc["frame_size"] == [320, 240] and "synthetic" in doc["note"]
        assert sorted(doc["frames"]) == [f"frame_{i:05d}.png" for i in range(3)]
        for name, defects in doc["frames"].items():
            assert cv2.imread(str(tmp_path / "a" / split / name)).shape == (240, 320, 3)
            for d in defects:
                x0, y0, x1, y1 = d["box"]
                assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
                assert x0 <= d["centre"][0] <= x1 and y0 <= d["centre"][1] <= y1
                assert d["label"] in ("crack", "scratch", "spot") and isinstance(d["subtle"], bool)
    make_frames(tmp_path / "c", 3, size_hw=SIZE_HW, seed=2)
    assert _digest(tmp_path / "a" / "train") != _digest(tmp_path / "c" / "train")


def test_a_bigger_score_split_leaves_fit_unchanged(tmp_path):
    make_frames(tmp_path / "a", 2, size_hw=SIZE_HW, split_sizes={"train": 0})
    counts = make_frames(tmp_path / "b", 2, size_hw=SIZE_HW, split_sizes={"train": 0, "score": 5})
    assert counts == {"train": 0, "fit": 2, "score": 5}
    assert _digest(tmp_path / "a" / "fit") == _digest(tmp_path / "b" / "fit")
    first = sorted((tmp_path / "a" / "score").glob("*.png"))
    assert [p.read_bytes() for p in first] == [(tmp_path / "b" / "score" / p.name).read_bytes() for p in first]


def test_boxes_surround_the_pixels_that_changed(textures):
    rng = np.random.default_rng(5)
    for i in range(12):
        seed, texture = int(rng.integers(1 << 30)), TEXTURES[i % len(TEXTURES)]
        img, defects = make_frame(textures, SIZE_HW, np.random.default_rng(seed), texture, 1)
        clean, same = make_frame(textures, SIZE_HW, np.random.default_rng(seed), texture, 1, paint=False)
        assert defects == same and len(defects) == 1
        diff = np.abs(img.astype(int) - clean.astype(int)).max(axis=2)  # (H, W)
        ys, xs = np.nonzero(diff > 3)
        assert len(xs) >= 5, defects  # a visible defect ...
        x0, y0, x1, y1 = defects[0]["box"]
        assert x0 <= xs.mean() < x1 and y0 <= ys.mean() < y1, defects
        inside = (xs >= x0 - 1) & (xs < x1 + 1) & (ys >= y0 - 1) & (ys < y1 + 1)
        assert inside.mean() > 0.95  # ... and the box holds it
        cx, cy = defects[0]["centre"]
        assert 24 - 3 <= cx <= 320 - 24 + 3 and 24 - 3 <= cy <= 240 - 24 + 3  # centre 24 px inside


def test_subtle_share(textures):
    rng = np.random.default_rng(0)
    subtle = []
    for _ in range(40):
        _, defects = make_frame(textures, (160, 160), rng, "grass", 3)
        subtle += [d["subtle"] for d in defects]
    assert len(subtle) == 120
    assert 0.18 < np.mean(subtle) < 0.5


def test_half_the_written_frames_are_good(tmp_path):
    make_frames(tmp_path, 40, size_hw=(120, 120), split_sizes={"fit": 0, "score": 0})
    doc = json.loads((tmp_path / "train" / "boxes.json").read_text())
    good = sum(1 for defects in doc["frames"].values() if not defects)
    assert 10 <= good <= 30
    assert all(len(d) <= 3 for d in doc["frames"].values())


def test_conveyor_video(tmp_path, textures):
    info = make_conveyor_video(textures, tmp_path / "line.avi", size_hw=SIZE_HW, frames=30, seed=3)
    assert info["frames"] == 30 and info["frame_size"] == [320, 240] and 0 < info["part_frames"] <= 30
    cap = cv2.VideoCapture(str(tmp_path / "line.avi"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 30 and frames[0].shape == (240, 320, 3)
    doc = json.loads((tmp_path / "line.json").read_text())
    assert len(doc["frames"]) == 30 and len(doc["parts"]) == 30
    assert sum(box is not None for box in doc["parts"]) == info["part_frames"]
    for defects, part in zip(doc["frames"], doc["parts"]):
        for d in defects:  # a defect is on a part, and both are on screen
            x0, y0, x1, y1 = d["box"]
            assert part[0] <= x0 < x1 <= part[2] and part[1] <= y0 < y1 <= part[3]
    make_conveyor_video(textures, tmp_path / "again.avi", size_hw=SIZE_HW, frames=30, seed=3)
    assert json.loads((tmp_path / "again.json").read_text()) == doc


def test_video_has_empty_belt_and_parts_over_its_length(tmp_path, textures):
    info = make_conveyor_video(textures, tmp_path / "line.avi", size_hw=(240, 320), frames=150, seed=0)
    assert 0.4 * 150 <= info["part_frames"] <= 0.8 * 150
    doc = json.loads((tmp_path / "line.json").read_text())
    assert any(doc["frames"])  # some part carries a defect


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err.strip()


@pytest.mark.parametrize("bad, message", [("12x", "expected WIDTHxHEIGHT"), ("50x400", "at least 96 px")])
def test_bad_frame_size_is_one_clear_error(capsys, tmp_path, bad, message):
    code, err = run_cli(capsys, "data", "sample", "--out", str(tmp_path / "d"), "--frames", "1",
                        "--frame-size", bad)
    assert code != 0 and message in err and "--frame-size" in err
    assert not (tmp_path / "d").exists()


def test_cli_frames_only_then_refuses_to_overwrite(capsys, tmp_path):
    out = tmp_path / "d"
    code, err = run_cli(capsys, "data", "sample", "--out", str(out), "--frames", "1", "--frames-only",
                        "--frame-size", "160x120")
    assert code == 0 and "3 frames" in err and "synthetic" in err
    assert sorted(p.name for p in out.iterdir()) == ["frames"]
    assert cv2.imread(str(out / "frames" / "score" / "frame_00000.png")).shape == (120, 160, 3)
    code, err = run_cli(capsys, "data", "sample", "--out", str(out), "--frames", "1", "--frames-only")
    assert code != 0 and "already has frames" in err and len(err.splitlines()) == 1
    code, err = run_cli(capsys, "data", "sample", "--out", str(out), "--frames-only")
    assert code != 0 and "--frames-only needs --frames" in err


def test_cli_video(capsys, tmp_path):
    out = tmp_path / "line.avi"
    code, err = run_cli(capsys, "data", "video", "--out", str(out), "--frame-size", "160x120", "--frames", "5")
    assert code == 0 and out.is_file() and (tmp_path / "line.json").is_file()
    code, err = run_cli(capsys, "data", "video", "--out", str(out), "--frames", "5")
    assert code != 0 and "exists" in err and len(err.splitlines()) == 1
