"""Whole-frame benchmark: per-tile early exit vs every tile at full depth (one run), and changed-tiles-only
on the conveyor video; prints JSON.

    python bench/frame_bench.py [--workdir demo_out] [--limit 300]

Runs on the demo's artefacts (run `make demo` first): WORKDIR/bundle-tiles, WORKDIR/data/frames/score and
WORKDIR/conveyor.avi. The frames are real scikit-image texture photographs with synthetic defects. The
ratios (speed-up of early exit, tiles inferred with reuse) are what to compare across machines.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("demo_out"))
    p.add_argument("--limit", type=int, default=None, help="score only the first N frames")
    args = p.parse_args(argv)
    bundle, frames, video = (args.workdir / "bundle-tiles", args.workdir / "data" / "frames" / "score",
                             args.workdir / "conveyor.avi")
    if not (bundle / "manifest.json").is_file() or not video.is_file():
        print(f"no tile bundle or conveyor video in {args.workdir}: run `make demo` first", file=sys.stderr)
        return 2
    from edge_qwq.frame_bench import run_frame_bench
    from edge_qwq.reuse_bench import run_reuse_bench

    r = run_frame_bench(bundle, frames, args.limit, log=lambda m: print(m, file=sys.stderr))
    r["reuse"] = run_reuse_bench(bundle, video, window=5)
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
