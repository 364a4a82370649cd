"""`edge-qwq estimate`: per-stage latency of a bundle on Orin targets, from a roofline (no device needed)."""
from __future__ import annotations

import json

import click


@click.command("estimate")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--target", default="all", show_default=True,
              type=click.Choice(["orin-agx", "orin-nx", "orin-nano", "all"]), help="Jetson Orin module.")
@click.option("--budget-ms", default=15.0, show_default=True, type=float, help="Per-frame budget, ms.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "quantized"]),
              help="auto: the quantized stages when the bundle has them.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the estimate as JSON (a list when --target all).")
def command(bundle, target, budget_ms, precision, json_out):
    """Estimate per-stage, full-depth and early-exit latency of BUNDLE on a Jetson Orin.

    \b
    Example:
      edge-qwq estimate --bundle bundle/ --target all --budget-ms 15 --json estimate.json
    """
    from rich.console import Console

    from engine_builder.estimate import estimate_bundle, format_assumptions, format_estimate
    from engine_builder.targets import target_names

    console = Console()
    results = [estimate_bundle(bundle, name, budget_ms, precision=precision) for name in target_names(target)]
    for est in results:
        console.print(format_estimate(est))
    console.print("FLOPs are multiply-adds x 2; latency = max(compute, memory) per kernel + launch cost.",
                  highlight=False)
    console.print(format_assumptions(results), highlight=False, markup=False, soft_wrap=True)
    if "pruning_note" in results[0]:
        console.print(f"Student {results[0]['pruning_note']}", highlight=False, markup=False, soft_wrap=True)
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results[0] if len(results) == 1 else results, f, indent=2)
        console.print(f"wrote {json_out}", highlight=False)
