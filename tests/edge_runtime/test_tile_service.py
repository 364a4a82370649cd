"""Tile mode through `edge-qwq run` and the service: real ONNX Runtime, MJPG videos written by OpenCV, SQLite.

The bundle is the tiny 32 px test bundle with its manifest switched to input mode "tile": every frame is cut
into 32 px tiles (25 % overlap). Its random weights call most tiles a defect at the unfitted threshold,
and `--frame-threshold 0.01` makes every tile one, so defect frames, boxes and evidence are certain.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3

import cv2
import numpy as np
import pytest

from edge_qwq.cli import main
from tests.edge_runtime.service_helpers import frames, http_get, write_video


@pytest.fixture
def tile_bundle(tiny_bundle):
    from edge_runtime.bundle import Bundle

    b = Bundle.open(tiny_bundle)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile")
    b.save()
    return tiny_bundle


def _grid(hw, roi=None):
    from edge_runtime.tiling import TileGrid, parse_roi

    return TileGrid.for_frame(hw, (32, 32), 0.25, parse_roi(roi))


def _run(capsys, *args):
    code = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, [json.loads(x) for x in out.splitlines() if x.startswith("{")], err.strip()


def _one_line_error(code, err):
    assert code != 0 and err.startswith("edge-qwq: error:") and "\n" not in err, err
    return err


# ---------------------------------------------------------------- edge-qwq run (the plain loop)
def test_run_in_tile_mode_prints_tiles_and_defects(capsys, tile_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(4, size=(320, 240)))
    code, lines, err = _run(capsys, "--bundle", tile_bundle, "--source", video)
    assert code == 0, err
    assert len(lines) == 4
    grid = _grid((240, 320))
    for line in lines:
        assert line["tiles"]["tiles"] == len(grid) == 130
        assert (line["tiles"]["rows"], line["tiles"]["cols"]) == (grid.rows, grid.cols)
        assert line["tiles"]["inferred"] + line["tiles"]["reused"] == len(grid)
        assert isinstance(line["defects"], list) and line["padded"] is False
        assert "tile_map" not in line  # large: only with --tile-map
        for d in line["defects"]:
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240 and 0 < d["confidence"] <= 1
        assert line["is_defect"] == bool(line["defects"])


def test_run_tile_map_flag_and_frame_threshold(capsys, tile_bundle, tmp_path):
    img = tmp_path / "part.png"
    cv2.imwrite(str(img), frames(1, size=(320, 240))[0])
    code, (line,), err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--tile-map",
                              "--frame-threshold", "0.01")
    assert code == 0, err
    assert len(line["tile_map"]) == 10 and all(len(r) == 13 for r in line["tile_map"])
    assert line["is_defect"] and line["defects"]  # every tile scores above 0.01
    covered = np.zeros((240, 320), bool)
    for d in line["defects"]:
        x0, y0, x1, y1 = d["box"]
        covered[y0:y1, x0:x1] = True
    assert covered.all()  # every tile is a defect: the boxes cover the frame
    code, (strict,), err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--frame-threshold", "1.0")
    assert code == 0 and not strict["is_defect"] and strict["defects"] == []


def test_run_passes_overlap_and_reuse_to_the_model(capsys, tile_bundle, tmp_path):
    from edge_runtime.tiling import TileGrid

    still = write_video(tmp_path / "still.avi", frames(4, size=(320, 240), moving=False))
    code, lines, err = _run(capsys, "--bundle", tile_bundle, "--source", still, "--tile-overlap", "0")
    assert code == 0, err
    assert {x["tiles"]["tiles"] for x in lines} == {len(TileGrid.for_frame((240, 320), (32, 32), 0.0))} == {80}
    assert all(x["tiles"]["reused"] == 0 for x in lines)  # the bundle's reuse window: 0
    code, lines, err = _run(capsys, "--bundle", tile_bundle, "--source", still, "--reuse-window", "3",
                            "--reuse-threshold", "8")
    assert code == 0 and [x["tiles"]["reused"] for x in lines] == [0, 130, 130, 130]  # a still scene
    assert [x["reused"] for x in lines] == [False, True, True, True]


def test_tiling_on_with_a_resize_bundle_is_one_clear_line(capsys, tiny_bundle, tmp_path):
    img = tmp_path / "part.png"
    cv2.imwrite(str(img), frames(1, size=(64, 48))[0])
    code, lines, err = _run(capsys, "--bundle", tiny_bundle, "--source", img, "--tiling", "on")
    assert "--tiling on" in _one_line_error(code, err) and not lines
    code, lines, err = _run(capsys, "--bundle", tiny_bundle, "--source", img, "--roi", "0,0,32,32")
    assert "--roi" in _one_line_error(code, err)
    code, (line,), err = _run(capsys, "--bundle", tiny_bundle, "--source", img)  # resize mode: as before
    assert code == 0 and "defects" not in line and "tiles" not in line


def test_tiling_off_on_a_tile_bundle_scales_the_frame_whole(capsys, tile_bundle, tmp_path):
    img = tmp_path / "part.png"
    cv2.imwrite(str(img), frames(1, size=(320, 240))[0])
    code, (line,), err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--tiling", "off")
    assert code == 0 and "tiles" not in line and "defects" not in line


def test_roi_outside_the_frame_is_one_clear_line_and_inside_reduces_tiles(capsys, tile_bundle, tmp_path):
    img = tmp_path / "part.png"
    cv2.imwrite(str(img), frames(1, size=(320, 240))[0])
    code, lines, err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--roi", "400,300,500,400")
    assert "outside the 320x240 frame" in _one_line_error(code, err) and not lines
    code, (line,), err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--roi", "0,0,160,120",
                              "--tile-map")
    assert code == 0, err
    assert line["tiles"]["tiles"] == len(_grid((240, 320), "0,0,160,120")) < 130
    for d in line["defects"]:
        assert d["box"][2] <= 160 and d["box"][3] <= 120
    mask = np.zeros((240, 320), np.uint8)
    mask[100:140, 140:180] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    code, (masked,), err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--roi", tmp_path / "mask.png")
    assert code == 0 and masked["tiles"]["tiles"] == len(_grid((240, 320), str(tmp_path / "mask.png"))) < 20
    code, _, err = _run(capsys, "--bundle", tile_bundle, "--source", img, "--roi", "1,2,3")
    assert "--roi" in _one_line_error(code, err)


def test_a_frame_smaller_than_a_tile_is_padded(capsys, tile_bundle, tmp_path):
    small, fits = tmp_path / "small.png", tmp_path / "fits.png"
    cv2.imwrite(str(small), frames(1, size=(24, 20))[0])  # the tiles are 32 px
    cv2.imwrite(str(fits), frames(1, size=(64, 48))[0])
    code, (line,), err = _run(capsys, "--bundle", tile_bundle, "--source", small)
    assert code == 0, err
    assert line["padded"] is True and line["tiles"]["tiles"] == 1
    assert all(d["box"][2] <= 24 and d["box"][3] <= 20 for d in line["defects"])  # boxes stay in the frame
    code, (line,), err = _run(capsys, "--bundle", tile_bundle, "--source", fits)
    assert code == 0 and line["padded"] is False and line["tiles"]["tiles"] == len(_grid((48, 64))) == 6


def test_run_help_explains_the_tile_options(capsys):
    code = main(["run", "--help"])
    out = capsys.readouterr().out
    assert code == 0
    for opt in ("--tiling", "--tile-overlap", "--roi", "--reuse-threshold", "--frame-threshold", "--tile-map",
                "--heatmap"):
        assert opt in out, opt
    assert "input.mode" in out and "frames.threshold" in out


# ---------------------------------------------------------------- the service
def _service(bundle, source, **kw):
    from edge_runtime.service import Service, ServiceConfig

    return Service(ServiceConfig(bundle=str(bundle), source=str(source), shadow_rate=0.0, handle_signals=False,
                                 **kw))


def _video_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


def test_service_stores_defects_evidence_with_boxes_and_full_size_latest_jpg(tile_bundle, tmp_path):
    from edge_runtime.http_api import HttpApi
    from edge_runtime.overlay import DEFECT_COLOR, draw_defects

    smooth = [cv2.GaussianBlur(f, (7, 7), 0) for f in frames(5, size=(320, 240))]  # little JPEG noise
    video = write_video(tmp_path / "v.avi", smooth)
    db, jl, ev = tmp_path / "d.db", tmp_path / "d.jsonl", tmp_path / "evidence"
    svc = _service(tile_bundle, video, store=str(db), jsonl=str(jl), evidence=str(ev),
                   frame_threshold=0.01)
    assert svc.run() == 0
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT frame_id, label, defects, tiles, evidence FROM decisions ORDER BY id").fetchall()
    assert len(rows) == 5
    for _, label, defects, tiles, evidence in rows:
        defects, tiles = json.loads(defects), json.loads(tiles)
        assert defects and defects[0]["label"] == label and tiles["tiles"] == 130 and evidence
    reported = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [r["defects"] for r in reported] == [json.loads(r[2]) for r in rows]  # lists, not JSON text
    assert all("tile_map" not in r for r in reported)

    # evidence: the frame at full size with the boxes drawn, at the boxes and only there
    frame_id, _, defects, _, evidence = rows[0]
    shot = cv2.imread(evidence)
    raw = _video_frames(video)[frame_id]
    assert shot.shape == raw.shape == (240, 320, 3)
    decision = dataclasses.replace(svc._latest[1], defects=json.loads(defects))
    drawn = draw_defects(raw, decision)
    for d in json.loads(defects):  # the left side of every box: red where annotation draws it, in the evidence
        x0, y0, x1, y1 = d["box"]
        side = slice(y0, y1), x0
        red = (drawn[side] == DEFECT_COLOR).all(axis=1)  # (other boxes' labels may cover part of it)
        assert red.mean() > 0.3, d
        assert np.abs(shot[side][red].astype(int) - raw[side][red].astype(int)).max(axis=1).mean() > 40, d
    marks = (drawn != raw).any(axis=2)  # every pixel annotation changes: boxes and labels
    assert 0.02 < marks.mean() < 0.5
    off_raw = np.abs(shot.astype(int) - raw.astype(int)).max(axis=2)
    off_drawn = np.abs(shot.astype(int) - drawn.astype(int)).max(axis=2)
    assert off_raw[marks].mean() > 40 and off_drawn[marks].mean() < off_raw[marks].mean() / 2
    assert np.median(off_drawn) < 16  # nothing else was drawn (JPEG noise, ringing near the lines)

    # /latest.jpg over a real HTTP server: full frame size (no reduced-scale decode in tile mode), with boxes
    api = HttpApi("127.0.0.1:0", svc).start()
    try:
        code, body = http_get(f"http://127.0.0.1:{api.port}/latest.jpg")
    finally:
        api.close()
    latest = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert code == 200 and latest.shape == (240, 320, 3)
    s = svc.status()
    assert s["reuse"]["mode"] == "tiles" and svc.reuse.frames == 0  # whole-frame reuse not consulted
    rates = s["tile_exit_rates"]  # per tile, not per frame: they sum to 1 over the stages that ran
    assert rates and abs(sum(rates.values()) - 1.0) < 1e-3


def test_service_in_resize_mode_decodes_mjpeg_at_full_size_until_a_reduced_scale_is_shown_to_agree(tiny_bundle,
                                                                                                    tmp_path):
    video = write_video(tmp_path / "v.avi", frames(3, size=(320, 240)))
    svc = _service(tiny_bundle, video, store=str(tmp_path / "d.db"))
    svc.run()
    assert svc._latest[0].shape == (240, 320, 3)  # 1/4 scale would cover the 32 px input: not yet shown to agree
    assert svc.status()["reuse"]["mode"] == "frames" and svc.status()["decode"]["compared"] == 3
    with sqlite3.connect(tmp_path / "d.db") as c:
        assert c.execute("SELECT count(*) FROM decisions WHERE defects IS NULL AND tiles IS NULL").fetchone()[0] == 3


def test_service_tile_reuse_replaces_frame_reuse(tile_bundle, tmp_path):
    video = write_video(tmp_path / "still.avi", frames(12, size=(128, 96), moving=False))
    svc = _service(tile_bundle, video, store=str(tmp_path / "d.db"), jsonl=str(tmp_path / "d.jsonl"),
                   reuse_window=4, reuse_threshold=5.0, tile_map=True)
    svc.run()
    reuse = svc.status()["reuse"]
    assert reuse["threshold"] == 5.0
    n = len(_grid((96, 128)))
    assert reuse["mode"] == "tiles" and reuse["window"] == 4 and reuse["tiles"] == 12 * n
    assert reuse["reused"] > 0 and 0 < reuse["rate"] < 1  # a still scene: unchanged tiles keep their result
    assert svc.reuse.window == 0 and svc.reuse.frames == 0
    rows = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert any(r["reused"] for r in rows) and sum(r["tiles"]["reused"] for r in rows) == reuse["reused"]
    assert all(len(r["tile_map"]) == _grid((96, 128)).rows for r in rows)  # --tile-map: JSON lines only
    assert svc.inferred < 12  # frames whose every tile was reused ran no stage


def test_service_run_cli_passes_the_tile_options(capsys, tile_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(3, size=(320, 240)))
    db = tmp_path / "d.db"
    code = main(["run", "--bundle", str(tile_bundle), "--source", str(video), "--store", str(db),
                 "--roi", "0,0,160,120", "--frame-threshold", "0.01", "--shadow-rate", "0"])
    assert code == 0, capsys.readouterr().err
    with sqlite3.connect(db) as c:
        tiles = [json.loads(t) for (t,) in c.execute("SELECT tiles FROM decisions")]
    assert len(tiles) == 3 and all(t["tiles"] == len(_grid((240, 320), "0,0,160,120")) for t in tiles)
    code = main(["run", "--bundle", str(tile_bundle), "--source", str(video), "--store", str(db),
                 "--roi", "400,300,500,400"])
    assert "outside the 320x240 frame" in _one_line_error(code, capsys.readouterr().err.strip())


def test_heatmap_overlay_colours_the_inspected_tiles_only(tile_bundle, tmp_path):
    from edge_runtime.inference import DynamicInference, InferenceConfig
    from edge_runtime.overlay import annotate

    frame = frames(1, size=(320, 240))[0]
    model = DynamicInference(tile_bundle, InferenceConfig(roi="0,0,160,120", frame_threshold=1.0))
    d = model.infer(frame)
    assert not d.defects
    grid = model.tiled.grid_for(frame)
    plain, heat = annotate(frame, d), annotate(frame, d, heatmap=True, grid=grid)
    diff = np.abs(heat.astype(int) - plain.astype(int)).sum(axis=2)
    x1, y1 = grid.rects[:, 2].max(), grid.rects[:, 3].max()
    assert diff[30:y1 - 10, 10:x1 - 10].mean() > 10  # inside the inspected tiles (below the header)
    assert diff[y1 + 10:230, x1 + 10:310].max() == 0  # outside the ROI: untouched
    no_grid = annotate(frame, d, heatmap=True)  # without the grid the map is spread over the frame
    assert np.abs(no_grid.astype(int) - plain.astype(int)).sum() > 0


# ---------------------------------------------------------------- the store's schema and the decode size
OLD_SCHEMA = """
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, frame_id INTEGER NOT NULL,
    source TEXT NOT NULL, label TEXT NOT NULL, confidence REAL NOT NULL, exit INTEGER NOT NULL,
    latency_ms REAL NOT NULL, model_version TEXT NOT NULL, reused INTEGER NOT NULL, evidence TEXT);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
"""


def _row(frame_id, **kw):
    return {"time": 1.0, "frame_id": frame_id, "source": "s", "label": "ok", "confidence": 0.9, "exit": 0,
            "latency_ms": 1.0, "model_version": "v", "reused": 0, "evidence": None, **kw}


def test_a_store_from_before_tile_mode_is_migrated_in_place(tmp_path):
    from edge_runtime.store import SCHEMA_VERSION, DecisionStore

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as c:
        c.executescript(OLD_SCHEMA)
        c.execute("INSERT INTO decisions (time, frame_id, source, label, confidence, exit, latency_ms, "
                  "model_version, reused) VALUES (1, 0, 's', 'ok', 0.9, 0, 1.0, 'v', 0)")
    c.close()
    store = DecisionStore(path)
    box = [{"label": "scratch", "confidence": 0.97, "box": [1, 2, 30, 40]}]
    store.add(_row(1, label="scratch", defects=box, tiles={"tiles": 6}))
    store.add(_row(2))
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = db.execute("SELECT id, frame_id, defects, tiles FROM decisions ORDER BY id").fetchall()
    assert rows[0] == (1, 0, None, None) and rows[2] == (3, 2, None, None)  # old row kept, ids go on
    assert json.loads(rows[1][2]) == box and json.loads(rows[1][3]) == {"tiles": 6}
    db.close()
    DecisionStore(path).close()  # opening a migrated (or new) store again changes nothing
    fresh = DecisionStore(tmp_path / "new.db")
    fresh.add(_row(0, defects=[]))
    fresh.close()
    assert sqlite3.connect(tmp_path / "new.db").execute("SELECT defects FROM decisions").fetchone() == ("[]",)


def test_decode_size_may_change_while_the_stream_runs(tmp_path):
    """A function as min_size, asked at every frame: None decodes at full size (tile mode); a size decodes
    at the smallest JPEG scale covering it (no DecodeCheck given: the caller asked for it), so a rollback to a
    tile bundle gets full frames from the next frame on."""
    from edge_runtime.sources import open_source

    video = write_video(tmp_path / "v.avi", frames(6, size=(640, 480)))
    full = [img for _, img, _ in open_source(video)]
    tile = [img for _, img, _ in open_source(video, min_size=lambda: None)]
    assert all(np.array_equal(a, b) for a, b in zip(full, tile)) and len(tile) == 6
    asked = []

    def need():  # the resize model for the first 3 frames, then a tile model
        asked.append(1)
        return (96, 96) if len(asked) <= 3 else None

    shapes = [img.shape for _, img, _ in open_source(video, min_size=need)]
    assert shapes[:3] == [(120, 160, 3)] * 3 and shapes[3:] == [(480, 640, 3)] * 3 and len(asked) == 6
