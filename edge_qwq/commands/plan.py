"""`edge-qwq plan`: which device and how many for a line of cameras, and what a thousand inspected frames cost,
per Orin module and a data-centre GPU for comparison (estimated; engine_builder.cost)."""
from __future__ import annotations

import json

import click

from edge_qwq.commands import finite, frame_size_callback

TARGET_CHOICES = ["orin-agx", "orin-nx", "orin-nano", "l4", "all"]


@click.command("plan")
@click.option("--bundle", "bundle", required=True, type=click.Path(), help="Bundle folder.")
@click.option("--cameras", required=True, type=click.IntRange(min=1), help="Cameras on the line (at least 1).")
@click.option("--fps", required=True, type=finite(0, min_open=True), help="Frames per second of each camera.")
@click.option("--frame-size", default=None, metavar="WIDTHxHEIGHT", callback=frame_size_callback(),
              help="Camera frame (default: a tile bundle's own frame size, else 1920x1080). A frame smaller "
                   "than a tile bundle's model input is one padded tile.")
@click.option("--target", "targets", multiple=True, type=click.Choice(TARGET_CHOICES), default=("all",),
              show_default=True, help="Device to plan for (repeatable); all = every Orin and the L4 comparison.")
@click.option("--price-file", default=None, type=click.Path(dir_okay=False),
              help="Prices and powers (JSON, or YAML when PyYAML is installed) laid over the defaults; see "
                   "docs/plan.md for the fields.")
@click.option("--years", default=3.0, show_default=True, type=finite(0, min_open=True),
              help="Years to amortise a bought device over, and the TCO period.")
@click.option("--headroom", default=0.3, show_default=True, type=finite(0, 10),
              help="Spare capacity kept on every device (0.3 = 30 %).")
@click.option("--budget-ms", default=15.0, show_default=True, type=finite(0, min_open=True),
              help="Per-frame latency budget, ms.")
@click.option("--energy-price", default=None, type=finite(0), metavar="PER_KWH",
              help="Energy price per kWh in the table's currency (overrides the price file and the default 0.20).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Write the plan, with every input and assumption, as JSON.")
def command(bundle, cameras, fps, frame_size, targets, price_file, years, headroom, budget_ms, energy_price,
            json_out):
    """Size and cost a line for BUNDLE: per target, per-frame latency (mean at the measured exit rates, and
    the worst frame, every tile to full depth), frames per second per device, devices needed with headroom,
    utilisation, whether the budget holds, cost per 1000 frames and total cost of ownership; then the
    cheapest configuration within budget. Every figure is an estimate (a roofline, list prices); the
    assumptions are printed and written into the JSON.

    \b
    Examples:
      edge-qwq plan --bundle bundle/ --cameras 8 --fps 30 --frame-size 1920x1080
      edge-qwq plan --bundle tiles/ --cameras 4 --fps 15 --target orin-nx --target orin-agx --years 5
      edge-qwq plan --bundle bundle/ --cameras 8 --fps 30 --price-file prices.json --energy-price 0.31 \\
          --json plan.json
    """
    from edge_qwq.console import console
    from engine_builder.cost import format_plan, format_plan_assumptions, load_prices, merge_prices, plan_line

    table = load_prices(price_file) if price_file else merge_prices(None)
    if energy_price is not None:
        table["energy_price_per_kwh"] = float(energy_price)
        table["energy_source"] = "given (--energy-price)"
    plan = plan_line(bundle, cameras, fps, frame_size=frame_size, targets=list(targets), prices=table,
                     years=years, headroom=headroom, budget_ms=budget_ms)
    if not price_file:
        plan["inputs"]["prices_from"] = "defaults (engine_builder.prices)"
    for renderable in format_plan(plan):
        console.print(renderable)
    console.print(format_plan_assumptions(plan), markup=False, soft_wrap=True)
    rec = plan["recommended"]
    if rec["target"]:
        console.print(f"recommended (estimated): {rec['configuration']} for {rec['scenario']}; {rec['basis']}",
                      markup=False)
        strict = rec.get("worst_frame_within_budget")
        if strict:
            console.print(f"  if the worst frame must hold the budget too: {strict['configuration']} "
                          f"(TCO {strict['tco']:,.0f} {strict['currency']})", markup=False)
    else:
        console.print(f"no target holds the {budget_ms:g} ms budget per frame: {rec['configuration']}", markup=False)
    if json_out:
        with open(json_out, "w") as f:
            json.dump(plan, f, indent=2)
        console.print(f"wrote {json_out}")
