"""jetson/detect_stream.py on a tile-mode bundle: defects printed, boxes drawn into the recorded stream."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np

from tests.edge_runtime.service_helpers import REPO, frames, write_video

SCRIPT = REPO / "jetson" / "detect_stream.py"


def test_detect_stream_prints_and_draws_the_defect_boxes(tiny_bundle, tmp_path):
    from edge_runtime.bundle import Bundle
    from edge_runtime.inference import Decision
    from edge_runtime.overlay import DEFECT_COLOR, draw_defects

    b = Bundle.open(tiny_bundle)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile")
    b.save()
    smooth = [cv2.GaussianBlur(f, (7, 7), 0) for f in frames(4, size=(160, 120))]
    video, out = write_video(tmp_path / "v.avi", smooth), tmp_path / "out.avi"
    r = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(tiny_bundle), "--source", str(video),
                        "--out", str(out), "--roi", "0,0,80,120"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 4 and all("tile_map" not in x for x in lines)
    defect_lines = [x for x in lines if x["defects"]]
    assert defect_lines, "the random tiny model calls some tiles defects"  # (unfitted threshold 0.5)
    first = defect_lines[0]
    assert f"frame {first['frame']}: {first['defects'][0]['label']}" in r.stderr
    assert all(d["box"][2] <= 80 for x in lines for d in x["defects"])  # inside the ROI
    cap = cv2.VideoCapture(str(out))
    shown = [cap.read()[1] for _ in range(4)]
    cap = cv2.VideoCapture(str(video))
    raw = [cap.read()[1] for _ in range(4)]
    k = first["frame"]
    decision = Decision(**{f.name: first[f.name] for f in dataclasses.fields(Decision) if f.name in first})
    marks = (draw_defects(raw[k], decision) != raw[k]).any(axis=2)  # where the boxes and their labels go
    marks[:24] = marks[:, :4] = marks[-4:] = marks[:, -4:] = False  # not the header and border annotate adds
    off = np.abs(shown[k].astype(int) - raw[k].astype(int)).max(axis=2)
    assert marks.sum() > 50 and off[marks].mean() > 40 > np.median(off[~marks])
    assert np.abs(shown[k][marks].astype(int) - DEFECT_COLOR).max(axis=1).mean() < 80  # red-ish after MJPG
