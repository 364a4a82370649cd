"""Health monitor and recovery, in process on real bundles: damaged quantized stages are rolled back, a
drifted input raises the exit thresholds instead."""
from __future__ import annotations

import sqlite3

import numpy as np

from edge_runtime import installer
from edge_runtime.bundle import Bundle, CalibrationSpec, InputStat
from edge_runtime.health import HealthConfig, input_stats
from edge_runtime.preprocess import to_rgb_resized
from edge_runtime.service import Service, ServiceConfig
from tests.edge_runtime.service_helpers import add_quantized_stages, frames, write_video

# a queue long enough that no sample is skipped: the frames checked are exactly the frames sent
FAST = HealthConfig(min_samples=30, fast_samples=10, ref_samples=20, drift_window=10, queue_size=10_000)


def _serve(bundle, video, db, **kw) -> Service:
    svc = Service(ServiceConfig(bundle=str(bundle), source=str(video), store=str(db), shadow_rate=1.0,
                                handle_signals=False, health=FAST, **kw))
    svc.run()
    return svc


def _events(db):
    with sqlite3.connect(db) as c:
        return [(k, i) for i, k in c.execute("SELECT id, kind FROM events ORDER BY id")]


def test_damaged_quantized_stages_roll_back_within_bounded_frames(tiny_bundle, tmp_path):
    root = tmp_path / "root"
    good = installer.install(tiny_bundle, root)  # FP32 only: the last known good
    add_quantized_stages(tiny_bundle, damage=0.5)  # a broken quantizer's output, with valid sha256s
    bad = installer.install(tiny_bundle, root)
    video = write_video(tmp_path / "v.avi", frames(400))
    db = tmp_path / "d.db"
    svc = _serve(root, video, db)
    kinds = [k for k, _ in _events(db)]
    assert "rollback_requested" in kinds and "rollback" in kinds
    assert installer.link_target(root, "current") == good.resolve() and (bad / installer.REJECTED).exists()
    assert svc.model.precision == "fp32" and svc.bundle_dir == good.resolve()
    with sqlite3.connect(db) as c:
        t_rb = c.execute("SELECT time FROM events WHERE kind='rollback'").fetchone()[0]
        before = c.execute("SELECT count(*) FROM decisions WHERE time <= ?", (t_rb,)).fetchone()[0]
        total = c.execute("SELECT count(*) FROM decisions").fetchone()[0]
    print("rollback after", before, "frames")
    assert before <= 200, f"rollback only after {before} frames"
    assert total == 400  # no frame lost across the switch
    assert svc.status()["health"]["state"] == "ok"


def test_drifted_input_raises_thresholds_not_rollback(tiny_bundle, tmp_path):
    add_quantized_stages(tiny_bundle, damage=0.0)  # sound quantized stages
    normal, dark = frames(60, seed=1), frames(140, seed=1, gain=0.35)
    spec = Bundle.open(tiny_bundle).input
    stats = [input_stats(to_rgb_resized(f, spec)) for f in normal]
    b = Bundle.open(tiny_bundle)
    b.manifest.calibration = CalibrationSpec(
        images=len(stats), source="test frames", resized_images=0, hidden_range=[],
        input_stats={k: InputStat(float(np.mean([s[k] for s in stats])), float(np.std([s[k] for s in stats])))
                     for k in stats[0]})
    b.save()
    video = write_video(tmp_path / "v.avi", normal + dark)
    db = tmp_path / "d.db"
    svc = _serve(tiny_bundle, video, db)
    kinds = [k for k, _ in _events(db)]
    assert "thresholds_raised" in kinds and not {"rollback", "rollback_requested", "fallback_fp32"} & set(kinds)
    h = svc.status()["health"]
    assert "input_drift" in h["raised_by"] and "brightness" in h["input_drift"]["drifting"]
    assert h["input_drift"]["reference"] == "manifest calibration statistics"
    base = Bundle.open(tiny_bundle).exit_policy.early_exit
    assert all(r > b0 for r, b0 in zip(h["early_exit"], base))
    assert h["shadow"]["agreement"] == 1.0


def test_without_calibration_statistics_the_first_frames_are_the_reference(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(40) + frames(60, gain=0.3))
    svc = _serve(tiny_bundle, video, tmp_path / "d.db")
    h = svc.status()["health"]
    assert h["input_drift"]["reference"].startswith("first 20 sampled frames")
    assert "FP32 stages in use" in h["shadow"]["check"] and "input_drift" in h["raised_by"]
