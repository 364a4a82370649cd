"""End to end through the CLI, as a user runs it (slow: trains real, if small, models)."""
import json

import pytest

from edge_qwq.cli import main

pytestmark = pytest.mark.slow


def test_build_without_tensorrt_gives_a_complete_bundle_and_one_sentence(tmp_path, capsys):
    data, teacher, bundle = tmp_path / "data", tmp_path / "teacher", tmp_path / "bundle"
    assert main(["data", "sample", "--out", str(data), "--size", "32", "--per-class", "12"]) == 0
    assert main(["teacher", "train", "--data", str(data), "--out", str(teacher), "--arch", "vit", "--tiny",
                 "--epochs", "1"]) == 0
    capsys.readouterr()
    rc = main(["build", "--teacher", str(teacher), "--data", str(data), "--target", "orin", "--out", str(bundle),
               "--epochs", "1", "--max-drop", "100",  # a 1-epoch student: accuracy is not the point here
               "--budget", "0.3ms"])  # sized by latency on the target (the tiny teacher is too small for 10 %)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "engines will be built on the device" in err
    assert "0.3 ms on orin-nano" in " ".join(err.split())  # the budget, on the Nano `orin` stands for
    m = json.loads((bundle / "manifest.json").read_text())
    assert all(s["quantized"] for s in m["stages"]) and "quantization" in m and "calibration" in m
    from edge_runtime.bundle import Bundle

    Bundle.open(bundle)  # every file present, every hash right


def test_demo_runs_every_step_and_writes_the_contract(tmp_path, capsys):
    from edge_qwq.demo import run_demo

    work = tmp_path / "demo"
    summary = run_demo(work, per_class=16, teacher_epochs=1, distill_epochs=2, frame_epochs=1,
                       frames={"train": 4, "fit": 48, "score": 6}, frame_size=(192, 256))
    bench = json.loads((work / "bench.json").read_text())
    for key in ("accuracy", "exit_rate", "compute_ratio", "flops", "latency_ms", "backend", "quantized",
                "weight_bytes", "ort_default_int8_accuracy"):
        assert key in bench, key
    assert set(bench["accuracy"]) >= {"teacher", "student_full", "early_exit", "exits"}
    assert set(bench["latency_ms"]) == {"teacher", "student_full", "early_exit"}
    assert bench["flops"]["student_full"] < bench["flops"]["teacher"]
    assert 0 < bench["compute_ratio"] <= 1 and abs(sum(bench["exit_rate"]) - 1) < 1e-6
    lines = (work / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == summary["video"]["frames"] > 0
    assert {"label", "confidence", "exit_index", "latency_ms"} <= set(json.loads(lines[0]))

    # whole frames: the tile bundle, its fitted threshold, the frame bench, reuse on a video, the drawn frame
    from edge_runtime.bundle import Bundle

    tiles = Bundle.open(work / "bundle-tiles")
    assert tiles.input.mode == "tile" and set(tiles.manifest.frames.threshold) == {"fp32", "quantized"}
    fb = json.loads((work / "frames_bench.json").read_text())
    assert fb["frames"] == 6 and fb["frame_size"] == [256, 192] and fb["precision"] == "quantized"
    assert {"recall_pct", "false_alarm_pct", "located_pct", "false_boxes_per_frame"} <= set(fb["early_exit"])
    reuse = json.loads((work / "reuse_bench.json").read_text())
    assert reuse["frames"] == 200 and reuse["tiles_total"] == 200 * reuse["tiles_per_frame"]
    import cv2

    png = cv2.imread(summary["frames"]["png"])
    assert png is not None and png.shape[:2] == (192, 256)

    # the last step: the report, its path printed (issue 14)
    report = work / "report.html"
    assert summary["report"] == str(report) and report.is_file()
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 5 and "http://" not in page and "https://" not in page
    assert f"report: {report}" in capsys.readouterr().err
