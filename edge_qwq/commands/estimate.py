"""`edge-qwq estimate`: per-stage latency of a bundle on Orin targets, from a roofline (no device needed); for a
tile bundle also per camera frame (tiles per frame, tiles entering each stage, mean and worst ms, frames/s)."""
from __future__ import annotations

import json

import click

from edge_qwq.commands import frame_size_callback


def _exit_rates(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give fractions separated by commas, e.g. 0.95,0.02") from None


@click.command("estimate")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--target", default="all", show_default=True,
              type=click.Choice(["orin-agx", "orin-nx", "orin-nano", "all"]), help="Jetson Orin module.")
@click.option("--budget-ms", default=15.0, show_default=True, type=float, help="Per-frame budget, ms.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "quantized"]),
              help="auto: the quantized stages when the bundle has them.")
@click.option("--frame-size", default=None, metavar="WIDTHxHEIGHT", callback=frame_size_callback(),
              help="Camera frame for the per-frame estimate (tile bundles: default 1920x1080; a resize bundle "
                   "gets one only when this is given).")
@click.option("--exit-rates", default=None, metavar="R1,R2,...", callback=_exit_rates,
              help="Fraction of all inputs (tiles, in tile mode) leaving at each early exit, e.g. 0.95,0.02; "
                   "default: the manifest's measured exit_fraction, else half of those still running per exit.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the estimate as JSON (a list when --target all; per-frame figures under \"frame\").")
def command(bundle, target, budget_ms, precision, frame_size, exit_rates, json_out):
    """Estimate per-stage, full-depth and early-exit latency of BUNDLE on a Jetson Orin; for a tile bundle,
    what a whole camera frame costs.

    \b
    Examples:
      edge-qwq estimate --bundle bundle/ --target all --budget-ms 15 --json estimate.json
      edge-qwq estimate --bundle tiles/ --frame-size 1920x1080 --exit-rates 0.95,0.02
    """
    from dataclasses import replace

    from rich.console import Console

    from edge_runtime.bundle import Bundle
    from engine_builder.estimate import (
        Assumptions,
        check_exit_rates,
        estimate_bundle,
        estimate_frame,
        format_assumptions,
        format_estimate,
        format_frames,
        stage_files,
    )
    from engine_builder.plan import DEFAULT_FRAME_HW
    from engine_builder.targets import target_names

    console = Console()
    opened = Bundle.open(bundle)
    assumptions = None
    if exit_rates is not None:
        rates = check_exit_rates(exit_rates, len(stage_files(opened, precision)[1]) - 1)
        assumptions = replace(Assumptions(), exit_rates=rates, exit_rates_source="given (--exit-rates)")
    names = target_names(target)
    results = [estimate_bundle(bundle, name, budget_ms, precision=precision, assumptions=assumptions)
               for name in names]
    for est in results:
        console.print(format_estimate(est))
    console.print("FLOPs are multiply-adds x 2; latency = max(compute, memory) per kernel + launch cost.",
                  highlight=False)
    console.print(format_assumptions(results), highlight=False, markup=False, soft_wrap=True)
    if "pruning_note" in results[0]:
        console.print(f"Student {results[0]['pruning_note']}", highlight=False, markup=False, soft_wrap=True)
    tile_mode = opened.manifest.input.mode == "tile"
    if tile_mode or frame_size is not None:
        frames = [estimate_frame(opened, name, frame_size or DEFAULT_FRAME_HW, exit_rates, budget_ms, precision)
                  for name in names]
        for est, frame in zip(results, frames):
            est["frame"] = frame
        console.print(format_frames(frames))
        for note in frames[0]["assumptions"]["frame_notes"]:
            console.print(f"  {note}", highlight=False, markup=False, soft_wrap=True)
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results[0] if len(results) == 1 else results, f, indent=2)
        console.print(f"wrote {json_out}", highlight=False)
