"""Reject timing benchmark: does the reject fire on time while the frame loop runs at full speed? Prints JSON.

    python bench/reject_bench.py [--bundle B] [--rejects 1000] [--delay-ms 400] [--pulse-ms 2] [--pairs 3]

`edge-qwq run --store --reject fake-gpio:EDGES` runs in a subprocess on a video file, which it decides as
fast as it can (no camera pacing: the frame loop at full speed, the CPU busy with inference), until at least
--rejects defect frames were decided. The fake chip (FAKE: no pin moves) appends every write it receives to
EDGES with its wall-clock time; the k-th write that drives the line active belongs to the k-th reject that
fired (the worker fires them in due order, and due order is frame order). The timing error of a reject is
that write's time minus its scheduled time (the frame's capture + the delay), both from the same clock.
  * timing: |error| p50 / p99 / max over the rejects, and how many were late (> 2 ms) or failed;
  * the frame loop: frames per second without and with the reject output, --pairs runs of each in turn; the
    ratio is the median of the pairs' ratios (the timing is the last run's).
Pass: p99 |error| <= 2 ms over at least 1000 rejects, and the frame rate with rejects within 10 % of without.
Without --bundle it exports a default-size untrained student (needs torch): it labels most frames of the
generated video as defects, which is what this benchmark needs (it measures timing, not accuracy).
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import default_bundle, make_video  # noqa: E402


def run_service(bundle: Path, video: Path, store: Path, frames: int, threads: int, reject: list[str]) -> float:
    """`edge-qwq run` over the video; returns its decided frames per second (from the store's row times)."""
    cmd = [sys.executable, "-m", "edge_qwq.cli", "run", "--bundle", str(bundle), "--source", str(video),
           "--store", str(store), "--max-frames", str(frames), "--threads", str(threads), "--shadow-rate", "0",
           "--reuse-window", "0", *reject]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"edge-qwq run failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    with sqlite3.connect(store) as db:
        t = [r[0] for r in db.execute("SELECT time FROM decisions ORDER BY id")]
    return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


def timing(store: Path, edges: Path) -> dict:
    """Each fired reject's scheduled time against the time the fake chip received its active write."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT id, scheduled_at, status, error_ms FROM rejects ORDER BY id").fetchall()
    writes = [json.loads(line) for line in edges.read_text().splitlines() if line.strip()]
    on = [w["wall"] for w in writes if w["value"] == 1]
    fired = [r for r in rows if r[2] in ("fired", "late")]
    if len(on) != len(fired):
        raise SystemExit(f"the fake chip received {len(on)} active writes for {len(fired)} fired rejects")
    err = np.array([(t - r[1]) * 1e3 for t, r in zip(on, fired)])  # ms, chip's receipt - scheduled
    worker = np.array([r[3] for r in fired])  # ms, as the worker measured it (monotonic clock)
    a = np.abs(err)
    return {"rejects": len(rows), "fired": len(fired), "failed": sum(r[2] == "failed" for r in rows),
            "late_over_2ms": int((a > 2.0).sum()),
            "abs_error_ms": {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
                             "max": round(float(a.max()), 3)} if len(a) else None,
            "mean_error_ms": round(float(err.mean()), 3) if len(err) else None,
            "worker_vs_chip_ms_max": round(float(np.abs(err - worker).max()), 3) if len(err) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--rejects", type=int, default=1000, help="at least this many defect frames")
    ap.add_argument("--delay-ms", type=float, default=400.0)
    ap.add_argument("--pulse-ms", type=float, default=2.0)
    ap.add_argument("--pairs", type=int, default=3, help="runs without and with the reject output, in turn")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its default, all cores)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle or default_bundle(tmp / "bundle")
        frames = int(args.rejects * 1.6)
        video = make_video(tmp / "line.avi", frames, size=(320, 240), still=1)
        fps = {"without": [], "with": []}
        edges = tmp / "edges.jsonl"
        t0 = time.perf_counter()
        for k in range(args.pairs):  # A/B in turn: the ratio is the median of the pairs (a shared machine drifts)
            fps["without"].append(run_service(bundle, video, tmp / f"without{k}.db", frames, args.threads, []))
            edges.unlink(missing_ok=True)
            fps["with"].append(run_service(bundle, video, tmp / f"with{k}.db", frames, args.threads,
                                           ["--reject", f"fake-gpio:{edges}", "--reject-delay-ms", str(args.delay_ms),
                                            "--reject-pulse-ms", str(args.pulse_ms)]))
        wall = time.perf_counter() - t0
        with sqlite3.connect(tmp / "without0.db") as db:
            defects = db.execute("SELECT COUNT(*) FROM decisions WHERE label != 'ok'").fetchone()[0]
        if defects < args.rejects:
            raise SystemExit(f"only {defects} of {frames} frames were defects; give --bundle one that finds more")
        t = timing(tmp / f"with{args.pairs - 1}.db", edges)  # the last run's rejects, where its chip saw them
        ratios = [w / o for w, o in zip(fps["with"], fps["without"]) if o]
    out = {"bench": "reject", "output": "fake-gpio (FAKE chip: timed where it receives the write)",
           "delay_ms": args.delay_ms, "pulse_ms": args.pulse_ms, "frames": frames, **t,
           "fps_without_reject": [round(x, 1) for x in fps["without"]],
           "fps_with_reject": [round(x, 1) for x in fps["with"]],
           "fps_ratio": round(float(np.median(ratios)), 3) if ratios else None, "wall_s": round(wall, 1)}
    out["pass"] = bool(t["abs_error_ms"] and t["rejects"] >= args.rejects and t["abs_error_ms"]["p99"] <= 2.0
                       and t["failed"] == 0 and out["fps_ratio"] and out["fps_ratio"] >= 0.9)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
