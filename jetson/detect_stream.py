#!/usr/bin/env python3
"""Camera-stream defect detection on the runtime's public API (edge_runtime.DynamicInference).

Prints one decision per frame, writes the annotated stream to a video file (--out) and/or shows it
(--show), and exits cleanly on Ctrl-C (the output file is closed and playable). With a tile-mode bundle
each decision also lists its defects (label, confidence, box in frame pixels), which are drawn as boxes
and summed up on stderr ("frame 12: scratch 0.97 at [360, 144, 528, 240]").

    python3 jetson/detect_stream.py --bundle /var/lib/edge-qwq/current --source csi://0 --out line3.avi
    python3 jetson/detect_stream.py --bundle bundle/ --source http://camera.local:8090/ --show
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="bundle folder (or an install root's current/)")
    p.add_argument("--source", required=True, help="video file, v4l2:///dev/videoN, csi://N, rtsp://, http://")
    p.add_argument("--out", help="write the annotated stream here (.avi, MJPG)")
    p.add_argument("--show", action="store_true", help="show the annotated stream in a window (q quits)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate recorded in --out")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: never)")
    p.add_argument("--roi", help="tile mode: inspect only x0,y0,x1,y1 (frame pixels) or a mask image")
    p.add_argument("--heatmap", action="store_true", help="tile mode: draw the tile defect scores under the boxes")
    p.add_argument("--tile-map", action="store_true", help="tile mode: print each frame's tile map (large)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edge_runtime import DynamicInference, EdgeError, InferenceConfig

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))
    try:
        return run(args, DynamicInference(args.bundle, InferenceConfig(roi=args.roi)), stop)
    except EdgeError as e:
        print(f"detect_stream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detect_stream: interrupted", file=sys.stderr)
        return 0


def run(args: argparse.Namespace, model, stop: list) -> int:
    import cv2

    from edge_runtime.overlay import annotate
    from edge_runtime.sources import open_source

    writer, n = None, 0
    source = open_source(args.source)
    try:
        tiled = getattr(model, "tiled", None)
        for frame_id, frame, origin in source:
            d = model.infer(frame)
            grid = tiled.grid_for(frame) if tiled is not None and args.heatmap else None
            shown = annotate(frame, d, heatmap=args.heatmap, grid=grid)  # boxes drawn when there are defects
            if args.out:  # written before the decision is printed: a printed frame is in the file
                writer = writer or _writer(args.out, shown, args.fps)
                writer.write(shown)
            line = {"frame": frame_id, "source": origin, **d.to_dict()}
            if not args.tile_map:
                line.pop("tile_map", None)
            print(json.dumps(line), flush=True)
            if d.defects:
                print(f"frame {frame_id}: {_defects_text(d.defects)}", file=sys.stderr, flush=True)
            if args.show:
                cv2.imshow("edge-qwq", shown)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
            n += 1
            if stop or (args.max_frames and n >= args.max_frames):
                break
    finally:
        source.close()
        if writer is not None:
            writer.release()
        if args.show:
            cv2.destroyAllWindows()
        print(f"detect_stream: {n} frames", file=sys.stderr)
    return 0


def _defects_text(defects: list[dict], most: int = 3) -> str:
    """The strongest defects in a line: "scratch 0.97 at [360, 144, 528, 240]; ... (+2 more)"."""
    text = "; ".join(f"{x['label']} {x['confidence']:.2f} at {x['box']}" for x in defects[:most])
    return text + (f" (+{len(defects) - most} more)" if len(defects) > most else "")


def _writer(path: str, frame, fps: float):
    import cv2

    h, w = frame.shape[:2]
    return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))


if __name__ == "__main__":
    sys.exit(main())
