"""`edge-qwq run`: decisions per frame, one JSON line each, on stdout."""
from __future__ import annotations

import json
import sys

import click


@click.command("run")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder (from export/build).")
@click.option("--source", required=True, help="An image, a folder of images or a video file.")
@click.option("--backend", default="onnxruntime", show_default=True,
              type=click.Choice(["onnxruntime", "tensorrt"]), help="Inference backend.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "quantized"]),
              help="auto: the quantized stages when the bundle has them.")
@click.option("--early-exit", default=None, help="Thresholds to exit early with a defect, e.g. 0.85,0.92.")
@click.option("--early-exit-ok", default=None, help="Thresholds to exit early with ok (stricter), e.g. 0.9,0.95.")
@click.option("--max-frames", type=int, default=0, help="Stop after this many frames (0: all).")
def command(bundle, source, backend, precision, early_exit, early_exit_ok, max_frames):
    """Run BUNDLE on SOURCE and print one JSON decision per frame.

    \b
    Example:
      edge-qwq run --bundle bundle/ --source line3.mp4 | jq .label
    """
    from edge_runtime.inference import DynamicInference, InferenceConfig
    from edge_runtime.sources import open_source

    config = InferenceConfig(backend=backend, precision=precision, early_exit=_floats(early_exit),
                             early_exit_ok=_floats(early_exit_ok))
    model = DynamicInference(bundle, config)
    for n, (frame_id, frame, origin) in enumerate(open_source(source)):
        if max_frames and n >= max_frames:
            break
        d = model.infer(frame)
        sys.stdout.write(json.dumps({"frame": frame_id, "source": origin, **d.to_dict()}) + "\n")
        sys.stdout.flush()


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
