"""The tile-mode flow through the CLI on a tiny student: frames train -> export (tile) -> frames fit ->
bench --frames -> run on a frame. Real torch training, real ONNX Runtime, real sample frames."""
import json

import pytest

from edge_qwq.cli import main
from tests.conftest import make_tiny_student


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    from export.sample_data import make_sample
    from export.sample_frames import make_frames
    from export.student import save_student

    root = tmp_path_factory.mktemp("frames_cli")
    make_sample(root / "data", size=32, per_class=8, seed=4)
    make_frames(root / "frames", 0, size_hw=(96, 128), seed=0, split_sizes={"train": 6, "fit": 44, "score": 6})
    save_student(make_tiny_student(), root / "student")
    return root


def test_frames_train_export_fit_bench_and_run(flow, capsys):
    from edge_runtime.bundle import Bundle

    rc = main(["frames", "train", "--student", str(flow / "student"), "--data", str(flow / "data"),
               "--frames", str(flow / "frames" / "train"), "--out", str(flow / "tiles"), "--epochs", "1", "--rounds", "1",
               "--hard-per-frame", "4", "--random-per-frame", "4"])
    assert rc == 0, capsys.readouterr().err
    assert main(["export", "--student", str(flow / "tiles"), "--out", str(flow / "bundle")]) == 0
    bundle = Bundle.open(flow / "bundle")
    assert bundle.input.mode == "tile" and bundle.input.tile_overlap == 0.25
    capsys.readouterr()
    rc = main(["frames", "fit", "--bundle", str(flow / "bundle"), "--frames", str(flow / "frames" / "fit"),
               "--false-alarms", "0.1"])
    err = capsys.readouterr().err
    assert rc == 0 and "frame threshold" in err
    assert "fp32" in Bundle.open(flow / "bundle").manifest.frames.threshold
    out = flow / "frames.json"
    assert main(["bench", "--bundle", str(flow / "bundle"), "--frames", str(flow / "frames" / "score"),
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["frames"] == 6 and r["frame_size"] == [128, 96]
    e, f = r["early_exit"], r["full_depth"]
    assert e["tiles_per_frame"] == f["tiles_per_frame"] > 1
    assert f["compute_ratio"] == 1.0 and 0 < e["compute_ratio"] <= 1.0
    assert abs(sum(r["exit_rates"]) - 1.0) < 1e-3
    capsys.readouterr()
    frame = next((flow / "frames" / "score").glob("*.png"))
    assert main(["run", "--bundle", str(flow / "bundle"), "--source", str(frame)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert line["tiles"]["tiles"] == e["tiles_per_frame"] and isinstance(line["defects"], list)


def test_export_refuses_a_bad_input_mode_and_frames_fit_a_resize_bundle(flow, tmp_path, capsys):
    assert main(["export", "--student", str(flow / "student"), "--out", str(tmp_path / "b"),
                 "--input-mode", "resize"]) == 0
    capsys.readouterr()
    rc = main(["frames", "fit", "--bundle", str(tmp_path / "b"), "--frames", str(flow / "frames" / "fit")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "tile-mode" in err and len(err.splitlines()) == 1
    rc = main(["frames", "train", "--student", str(flow / "student"), "--data", str(flow / "data"),
               "--frames", str(tmp_path), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "boxes.json" in err and not (tmp_path / "s").exists()
