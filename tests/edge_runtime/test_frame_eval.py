"""Frame scoring against true boxes: the metrics on a hand-worked case, and bad frames folders."""
import json

import pytest

from edge_runtime.errors import InputError
from edge_runtime.frame_eval import FrameOutcome, frame_metrics, load_frames


def defect(box, subtle=False):
    return {"label": "scratch", "box": box, "centre": [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2],
            "subtle": subtle}


def test_metrics_on_a_hand_worked_case():
    t1, t2 = defect([100, 100, 120, 130]), defect([500, 500, 510, 510], subtle=True)
    outcomes = [
        # a defect frame, found and located by a small box; plus one false box elsewhere
        FrameOutcome([t1], True, [{"box": [72, 72, 240, 168]}, {"box": [700, 0, 796, 96]}], 10.0, 100, [100, 10, 5]),
        # a defect frame found only by a box too large (3 tiles wide): found, not located
        FrameOutcome([t2], True, [{"box": [400, 450, 640, 546]}], 20.0, 100, [100, 20, 20]),
        # a good frame flagged: a false alarm with a false box
        FrameOutcome([], True, [{"box": [0, 0, 96, 96]}], 30.0, 100, [100, 0, 0]),
        # a good frame, quiet
        FrameOutcome([], False, [], 40.0, 100, [100, 0, 0]),
    ]
    m = frame_metrics(outcomes, (96, 96), [10, 20, 30])
    assert (m["frames"], m["defect_frames"], m["good_frames"]) == (4, 2, 2)
    assert m["recall_pct"] == 100.0 and m["false_alarm_pct"] == 50.0 and m["accuracy_pct"] == 75.0
    assert m["located_pct"] == 50.0 and m["subtle_located_pct"] == 0.0
    assert m["boxes"] == 4 and m["location_hits_pct"] == 50.0 and m["false_boxes_per_frame"] == 0.5
    # compute: (100*10 + 10*20 + 5*30) + (100*10 + 20*20 + 20*30) + 2 * 100*10 over 4 frames of 100 tiles x 60
    assert m["compute_ratio"] == round((1350 + 2000 + 2000) / (400 * 60), 4)
    assert m["stage_tiles_per_frame"] == [100.0, 7.5, 6.25]


def test_frames_folder_without_boxes_or_with_missing_frames_is_refused(tmp_path):
    with pytest.raises(InputError, match="boxes.json"):
        load_frames(tmp_path)
    (tmp_path / "boxes.json").write_text(json.dumps({"frames": {"f.png": []}}))
    with pytest.raises(InputError, match="missing"):
        load_frames(tmp_path)
    (tmp_path / "boxes.json").write_text("{not json")
    with pytest.raises(InputError, match="malformed"):
        load_frames(tmp_path)
