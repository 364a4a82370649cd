"""Sizing and cost of a line: which device, how many, what a thousand inspected frames cost (`edge-qwq plan`).

Built on the per-frame latency estimate (engine_builder.estimate.estimate_frame: a roofline per layer, the
bundle's measured exit rates, tiles per frame in tile mode). Per target, with a load of `cameras` x `fps`
frames per second and a headroom h (default 30 %):

    fps per device        = 1000 / mean ms per frame     (frames processed one after another on the GPU)
    devices               = ceil(load x (1 + h) / fps per device)
    utilisation           = load / (devices x fps per device)
    cameras per device    = floor(fps per device / (1 + h) / fps)
    cost per device-hour  = price / (years x hours per year) + support per year / hours per year
                            + power W / 1000 x energy price per kWh         (bought devices)
                          = hourly + support per year / hours per year      (rented: power is in the hourly price)
    cost per 1000 frames  = cost per device-hour x devices / (load x 3600) x 1000
    TCO over years        = devices x (price + (support per year + power W / 1000 x hours per year x energy
                            price) x years)          (rented: devices x (hourly x hours per year + support) x years)

Power is the module's full power mode (MAXN on the AGX Orin and Orin NX, 15 W on the Orin Nano, the L4's
72 W), not scaled by utilisation: an upper bound for the energy bill. Every figure is an estimate; the
prices, powers and sources are engine_builder.prices.DEFAULT_PRICES unless a price table says otherwise.

    >>> p = plan_line("bundle/", cameras=8, fps=30, frame_size=(1080, 1920))        # doctest: +SKIP
    >>> [(r["target"], r["devices"], r["cost_per_1000_frames"], r["tco"]) for r in p["rows"]]  # doctest: +SKIP
    >>> p["recommended"]["configuration"]                                           # doctest: +SKIP
    '1 x Jetson Orin Nano 8GB, INT8/INT4/FP16 stages, 15 W'
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from edge_runtime.errors import InputError
from engine_builder.prices import DEFAULT_PRICES, default_prices
from engine_builder.targets import COMPARISON_TARGETS, TARGETS, get_target

DEFAULT_HEADROOM = 0.3
DEFAULT_YEARS = 3.0
DEFAULT_FRAME_HW = (1080, 1920)  # as engine_builder.plan: the frame tile engines are sized for by default
HOURS_PER_YEAR_MAX = 8784.0  # a leap year

FORMULAS = {
    "fps_per_device": "1000 / mean_ms (one frame after another on the GPU; the mean uses the exit rates)",
    "devices": "ceil(load_fps x (1 + headroom) / fps_per_device), load_fps = cameras x fps",
    "utilisation": "load_fps / (devices x fps_per_device)",
    "cameras_per_device": "floor(fps_per_device / (1 + headroom) / fps)",
    "cost_per_device_hour": ("bought: price / (years x hours_per_year) + support_per_year / hours_per_year + "
                             "power_w / 1000 x energy_price_per_kwh; rented: hourly + support_per_year / "
                             "hours_per_year"),
    "cost_per_1000_frames": "cost_per_device_hour x devices / (load_fps x 3600) x 1000",
    "tco": ("bought: devices x (price + (support_per_year + power_w / 1000 x hours_per_year x "
            "energy_price_per_kwh) x years); rented: devices x (hourly x hours_per_year + support_per_year) x years"),
    "queued_ms": ("(the in-step column) ceil(cameras / devices) x mean_ms: the last frame's latency when the "
                  "cameras sharing a device deliver their frames at the same instant"),
}

NOT_COUNTED = [
    "carrier board, enclosure, power supply, cameras, network and installation (add them to `price`)",
    "camera capture and decoding, and the frame decision on the host (see the estimate's notes)",
    "queueing: fps per device assumes frames arrive spread out; see queued_ms for cameras in step",
    "batching several cameras' frames into one GPU run (it would raise a data-centre GPU's throughput most)",
    "the data-centre row: sending frames over the network to the server, and its round trip",
]

_TOP_NUMBERS = ("energy_price_per_kwh", "hours_per_year")
_TOP_TEXT = ("currency", "compiled", "energy_source", "loaded_from", "notes")
_DEVICE_NUMBERS = ("price", "hourly", "power_w", "support_per_year")
_DEVICE_TEXT = ("name", "power_mode", "what", "source")


# ---------------- the price table ----------------

def load_prices(path: str | os.PathLike) -> dict:
    """The price table of a JSON or YAML file laid over the defaults (engine_builder.prices): top-level
    `currency`, `energy_price_per_kwh`, `hours_per_year`, and `devices` {target: {"price" (bought) or
    "hourly" (rented), "power_w", optional "support_per_year", "name", "power_mode", "what", "source"}}.
    A device the file names replaces the default entry whole; one it leaves out keeps the default (unless the
    file changes the currency). A missing field, a negative or non-numeric value, an unknown device or field:
    InputError, one line."""
    p = Path(path)
    where = f"price file {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{where} cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError(f"{where} is YAML, but PyYAML is not installed here: give the table as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{where} is not valid JSON: {e}") from None
    table = merge_prices(data, where)
    table["loaded_from"] = str(p)
    return table


def merge_prices(overrides: dict | None, where: str = "prices") -> dict:
    """`overrides` (a whole table or any part of one, as in a price file) checked and laid over the defaults."""
    table = default_prices()
    if overrides is None:
        return table
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: expected a table (mapping) with 'devices', 'energy_price_per_kwh', ...")
    unknown = sorted(set(overrides) - set(_TOP_NUMBERS) - set(_TOP_TEXT) - {"devices"})
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}; fields are: devices, "
                         f"{', '.join(_TOP_NUMBERS)}, {', '.join(_TOP_TEXT)}")
    for key in _TOP_NUMBERS:
        if key in overrides:
            table[key] = _number(overrides[key], f"{where}: {key}")
    if not 1 <= table["hours_per_year"] <= HOURS_PER_YEAR_MAX:
        raise InputError(f"{where}: hours_per_year is {table['hours_per_year']:g}: give 1 to {HOURS_PER_YEAR_MAX:g}")
    for key in _TOP_TEXT:
        if key in overrides:
            if not isinstance(overrides[key], str) or not overrides[key].strip():
                raise InputError(f"{where}: {key} must be a non-empty text")
            table[key] = overrides[key].strip()
    if table["currency"] != DEFAULT_PRICES["currency"]:  # the defaults are in USD: none of them carry over
        if "energy_price_per_kwh" not in overrides:
            raise InputError(f"{where}: the currency is {table['currency']}, so give energy_price_per_kwh in "
                             f"{table['currency']} too (the defaults are in {DEFAULT_PRICES['currency']})")
        table["devices"] = {}
    devices = overrides.get("devices", {})
    if not isinstance(devices, dict):
        raise InputError(f"{where}: devices must map a target name to its prices")
    known = list(TARGETS) + list(COMPARISON_TARGETS)
    for name, entry in devices.items():
        if name not in known:
            raise InputError(f"{where}: unknown device {name!r}; devices are: {', '.join(known)}")
        table["devices"][name] = _device_entry(entry, f"{where}: devices.{name}")
    return table


def _device_entry(entry, where: str) -> dict:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a mapping with price (or hourly) and power_w")
    unknown = sorted(set(entry) - set(_DEVICE_NUMBERS) - set(_DEVICE_TEXT))
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}; fields are: "
                         f"{', '.join(_DEVICE_NUMBERS + _DEVICE_TEXT)}")
    if "power_w" not in entry:
        raise InputError(f"{where}: missing field 'power_w' (the module's power mode, W)")
    if "price" in entry and "hourly" in entry:
        raise InputError(f"{where}: give either 'price' (bought) or 'hourly' (rented), not both")
    if "price" not in entry and "hourly" not in entry:
        raise InputError(f"{where}: missing field 'price' (per device, bought; or 'hourly' for a rented one)")
    out = {k: _number(entry[k], f"{where}.{k}") for k in _DEVICE_NUMBERS if k in entry}
    out.setdefault("support_per_year", 0.0)
    for k in _DEVICE_TEXT:
        if k in entry:
            if not isinstance(entry[k], str):
                raise InputError(f"{where}.{k} must be text")
            out[k] = entry[k]
    return out


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} is {value!r}: give a number")
    if value < 0:
        raise InputError(f"{where} is {value:g}: a price, power or rate cannot be negative")
    return float(value)


# ---------------- the arithmetic ----------------

def sizing(cameras: int, fps: float, fps_per_device: float, headroom: float) -> dict:
    """Devices for `cameras` x `fps` frames/s when one device processes `fps_per_device` (module doc)."""
    load = cameras * fps
    need = load * (1.0 + headroom) / fps_per_device
    devices = max(1, math.ceil(need - 1e-9))  # 3.0000000004 (float noise) is 3 devices
    return {"load_fps": load, "devices_exact": need, "devices": devices,
            "utilisation": load / (devices * fps_per_device),
            "cameras_per_device": math.floor(fps_per_device / (1.0 + headroom) / fps + 1e-9),
            "capacity_fps": devices * fps_per_device,
            "capacity_with_headroom_fps": devices * fps_per_device / (1.0 + headroom)}


def costs(entry: dict, devices: int, load_fps: float, years: float, energy_price_per_kwh: float,
          hours_per_year: float) -> dict:
    """Cost per device-hour, per 1000 frames of the load, and the TCO over `years` (module doc)."""
    support_h = entry.get("support_per_year", 0.0) / hours_per_year
    if "hourly" in entry:
        parts = {"rent": entry["hourly"], "amortised": 0.0, "power": 0.0, "support": support_h}
        tco = devices * (entry["hourly"] * hours_per_year + entry.get("support_per_year", 0.0)) * years
    else:
        power_h = entry["power_w"] / 1000.0 * energy_price_per_kwh
        parts = {"rent": 0.0, "amortised": entry["price"] / (years * hours_per_year), "power": power_h,
                 "support": support_h}
        tco = devices * (entry["price"] + (entry.get("support_per_year", 0.0)
                                           + entry["power_w"] / 1000.0 * hours_per_year * energy_price_per_kwh) * years)
    per_device_hour = sum(parts.values())
    per_hour = per_device_hour * devices
    return {"cost_per_device_hour": per_device_hour, "cost_per_device_hour_parts": parts, "cost_per_hour": per_hour,
            "cost_per_1000_frames": per_hour / (load_fps * 3600.0) * 1000.0, "tco": tco}


# ---------------- the plan ----------------

def plan_line(bundle, cameras: int, fps: float, frame_size: tuple[int, int] | None = None,
              targets: list[str] | None = None, prices: dict | None = None, years: float = 3.0,
              headroom: float = 0.3, budget_ms: float = 15.0) -> dict:
    """The plan for a line of `cameras` x `fps` on each target (module doc). bundle: a path or an open
    Bundle; frame_size: (height, width), default the tile bundle's own frame size, else 1920x1080; targets:
    default every Orin and the data-centre comparison; prices: a table or part of one (as a price file, or
    what load_prices returned), laid over the defaults. JSON-ready: {"inputs", "assumptions", "rows":
    [{"target", "name", "mean_ms", "worst_ms", "fps_per_device", "devices", "utilisation", "within_budget",
    "cost_per_1000_frames", "tco", "currency", "estimated", "sources", ...}], "recommended", "seed_table"}."""
    from edge_runtime.bundle import Bundle
    from engine_builder.estimate import estimate_frame, stage_files

    check_load(cameras, fps, years, headroom, budget_ms)
    opened = Bundle.open(bundle) if isinstance(bundle, (str, os.PathLike)) else bundle
    table = merge_prices(prices, "prices") if prices is not None else default_prices()
    names = target_list(targets)
    spec = opened.manifest.input
    if frame_size is not None:
        frame_hw, frame_from = (int(frame_size[0]), int(frame_size[1])), "given"
        if min(frame_hw) < 1:
            raise InputError(f"frame size {frame_hw[1]}x{frame_hw[0]}: each side must be at least 1 px")
    elif spec.mode == "tile" and spec.frame_size:
        frame_hw, frame_from = tuple(spec.frame_size), "the tile bundle's frame size (manifest input.frame_size)"
    else:
        frame_hw, frame_from = DEFAULT_FRAME_HW, "default"
    missing = [n for n in names if n not in table["devices"]]
    if missing:
        raise InputError(f"no price for {missing[0]} in the price table ({table['currency']}); add devices."
                         f"{missing[0]} with price (or hourly) and power_w")
    precision_used = stage_files(opened, "auto")[0]
    stages_label = precision_label(opened, precision_used)
    load = cameras * fps
    scenario = f"{cameras} camera{'s' if cameras != 1 else ''} x {fps:g} fps @{frame_hw[1]}x{frame_hw[0]}"
    rows, latency_assumptions = [], {}
    for name in names:
        target = get_target(name)
        frame = over_host_link(estimate_frame(opened, name, frame_hw, budget_ms=budget_ms), target, spec)
        latency_assumptions[name] = frame["assumptions"]
        rows.append(_row(frame, target, table, stages_label, cameras, fps, years, headroom))
    small = spec.mode == "tile" and (frame_hw[0] < spec.height or frame_hw[1] < spec.width)
    inputs = {
        "bundle": str(opened.root), "mode": spec.mode, "model_input": [spec.height, spec.width],
        "precision": precision_used, "stages": stages_label, "cameras": int(cameras), "fps": float(fps),
        "load_fps": load, "frame_size": f"{frame_hw[1]}x{frame_hw[0]}", "frame_hw": list(frame_hw),
        "frame_size_source": frame_from, "tiles_per_frame": rows[0]["tiles"] if rows else None,
        "targets": names, "years": float(years), "headroom": float(headroom), "budget_ms": float(budget_ms),
        "currency": table["currency"], "energy_price_per_kwh": table["energy_price_per_kwh"],
        "hours_per_year": table["hours_per_year"],
        "prices_from": table.get("loaded_from") or ("defaults (engine_builder.prices)" if prices is None
                                                     else "given table over the defaults"),
    }
    if small:
        inputs["frame_note"] = (f"the {frame_hw[1]}x{frame_hw[0]} frame is smaller than the model input "
                                f"{spec.width}x{spec.height}: one padded tile")
    assumptions = {
        "estimated": True,
        "formulas": dict(FORMULAS),
        "capacity": ("fps per device from the mean frame (measured exit rates); the worst frame (every tile or "
                     "frame to full depth) gives fps_worst"),
        "power": ("the module's full power mode, not scaled by utilisation (an upper bound); a rented device's "
                  "power is in its hourly price"),
        "operating": f"{table['hours_per_year']:g} hours a year, for {years:g} years",
        "exit_rates": rows[0]["exit_rates"] if rows else [],
        "exit_rates_source": rows[0]["exit_rates_source"] if rows else "",
        "not_counted": list(NOT_COUNTED),
        "prices": table,
        "latency": latency_assumptions,
    }
    recommended = recommend(rows, scenario, headroom, fps)
    return {"estimated": True, "scenario": scenario, "inputs": inputs, "assumptions": assumptions, "rows": rows,
            "recommended": recommended, "seed_table": seed_table(rows, recommended, scenario, headroom, fps)}


def check_load(cameras, fps, years, headroom, budget_ms) -> None:
    """One line for each impossible load: zero cameras, fps <= 0, years <= 0, negative headroom, budget <= 0."""
    if isinstance(cameras, bool) or not isinstance(cameras, int) or cameras < 1:
        raise InputError(f"cameras is {cameras!r}: give a whole number of cameras, at least 1")
    for what, v in (("fps", fps), ("years", years), ("budget_ms", budget_ms)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InputError(f"{what} is {v!r}: give a number above 0")
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not math.isfinite(headroom) \
            or headroom < 0:
        raise InputError(f"headroom is {headroom!r}: give a fraction of 0 or more (0.3 = 30 %)")


def target_list(targets: list[str] | None) -> list[str]:
    """None or ["all"] -> every Orin then the data-centre comparison; else each name checked, in order."""
    every = list(TARGETS) + list(COMPARISON_TARGETS)
    if targets is None or list(targets) == ["all"]:
        return every
    names = []
    for t in targets:
        for name in (every if t == "all" else [get_target(t).name]):
            if name not in names:
                names.append(name)
    return names


def over_host_link(frame: dict, target, spec) -> dict:
    """A discrete GPU gets its tiles over PCIe (target.host_link_gbs, one way), not by a copy within shared
    DRAM: the frame's upload is re-costed at the link's bandwidth x the estimate's bandwidth efficiency."""
    from engine_builder.estimate import TILE_BYTES_PER_VALUE

    if not target.host_link_gbs:
        return frame
    eff = frame["assumptions"]["bandwidth_efficiency"]
    tile_bytes = frame["tiles"] * 3 * spec.height * spec.width * TILE_BYTES_PER_VALUE
    link_ms = tile_bytes / (target.host_link_gbs * 1e9 * eff) * 1e3
    delta = link_ms - frame["upload_ms"]
    mean, worst = frame["mean_ms"] + delta, frame["worst_ms"] + delta
    note = (f"upload over the host link (PCIe, {target.host_link_gbs:g} GB/s one way x {eff:.0%}) instead of "
            f"a copy in shared DRAM: {link_ms:.3f} ms")
    return {**frame, "upload_ms": round(link_ms, 4), "mean_ms": round(mean, 4), "worst_ms": round(worst, 4),
            "fps_mean": round(1e3 / mean, 1), "fps_worst": round(1e3 / worst, 1),
            "within_budget": mean <= frame["budget_ms"], "worst_within_budget": worst <= frame["budget_ms"],
            "assumptions": {**frame["assumptions"],
                            "frame_notes": list(frame["assumptions"].get("frame_notes", [])) + [note]}}


def precision_label(bundle, used: str) -> str:
    """"INT8/FP16 stages" from the bundle's quantization plan; "FP32 stages" when the stages are not quantized."""
    q = bundle.manifest.quantization
    if used != "quantized" or q is None:
        return "FP32 stages"
    kinds = {p for layers in q.plan.values() for p in layers.values()}
    order = [k for k in ("int8", "int4", "fp16") if k in kinds] or [q.mode]
    return "/".join(k.upper() for k in order) + " stages"


def _row(frame: dict, target, table: dict, stages_label: str, cameras: int, fps: float, years: float,
         headroom: float) -> dict:
    entry = table["devices"][target.name]
    fps_dev = round(1e3 / frame["mean_ms"], 1)
    size = sizing(cameras, fps, fps_dev, headroom)
    money = costs(entry, size["devices"], size["load_fps"], years, table["energy_price_per_kwh"],
                  table["hours_per_year"])
    name = entry.get("name") or target.description.split(",")[0]
    mode = entry.get("power_mode") or f"{entry['power_w']:g} W"
    rented = "hourly" in entry
    notes = []
    if size["cameras_per_device"] == 0:
        notes.append(f"one camera's {fps:g} fps exceeds a device with headroom: its frames must be shared "
                     f"between devices")
    row = {
        "target": target.name, "name": name, "description": target.description, "tiles": frame["tiles"],
        "mean_ms": frame["mean_ms"], "worst_ms": frame["worst_ms"], "fps_per_device": fps_dev,
        "fps_worst": round(1e3 / frame["worst_ms"], 1),
        "devices": size["devices"], "devices_exact": round(size["devices_exact"], 4),
        "cameras_per_device": size["cameras_per_device"], "utilisation": round(size["utilisation"], 4),
        "capacity_fps": round(size["capacity_fps"], 1),
        "capacity_with_headroom_fps": round(size["capacity_with_headroom_fps"], 1),
        "within_budget": frame["within_budget"], "worst_within_budget": frame["worst_within_budget"],
        "budget_ms": frame["budget_ms"],
        "queued_ms": round(math.ceil(cameras / size["devices"]) * frame["mean_ms"], 4),
        "cost_per_device_hour": round(money["cost_per_device_hour"], 6),
        "cost_per_device_hour_parts": {k: round(v, 6) for k, v in money["cost_per_device_hour_parts"].items()},
        "cost_per_hour": round(money["cost_per_hour"], 6),
        "cost_per_1000_frames": round(money["cost_per_1000_frames"], 8),
        "tco": round(money["tco"], 2), "tco_years": float(years), "currency": table["currency"],
        "pricing": "rented per hour" if rented else f"bought, amortised over {years:g} years",
        "price": entry.get("price"), "hourly": entry.get("hourly"), "power_w": entry["power_w"],
        "power_mode": mode,
        "support_per_year": entry.get("support_per_year", 0.0),
        "configuration": f"{size['devices']} x {name}, {stages_label}, {mode}",
        "precision": frame["precision"], "exit_rates": frame["exit_rates"],
        "exit_rates_source": frame["exit_rates_source"],
        "estimated": True,
        "sources": [f"latency: {target.source}"] + ([f"price: {entry['source']}"] if entry.get("source")
                                                    else ["price and power: given, no source"]),
    }
    if notes:
        row["notes"] = notes
    return row


def recommend(rows: list[dict], scenario: str, headroom: float, fps: float) -> dict:
    """The cheapest target by TCO whose mean frame holds the budget (the estimate's `within_budget`); when
    its worst frame (every tile to full depth) is over, also the cheapest target whose worst frame holds."""
    def pick(rs):
        return min(rs, key=lambda r: (r["tco"], r["target"])) if rs else None

    def summary(r, basis):
        return {"target": r["target"], "name": r["name"], "devices": r["devices"],
                "configuration": r["configuration"], "basis": basis, "scenario": scenario,
                "capacity_fps": r["capacity_fps"], "capacity_with_headroom_fps": r["capacity_with_headroom_fps"],
                "cameras_per_device": r["cameras_per_device"], "cost_per_1000_frames": r["cost_per_1000_frames"],
                "tco": r["tco"], "currency": r["currency"], "mean_ms": r["mean_ms"], "worst_ms": r["worst_ms"],
                "estimated": True}

    best, strict = pick([r for r in rows if r["within_budget"]]), pick([r for r in rows if r["worst_within_budget"]])
    if best is None:
        return {"target": None, "scenario": scenario, "estimated": True,
                "basis": "no target holds the budget per frame, not even for the mean frame",
                "configuration": "none: use a smaller student, quantize the stages, or raise --budget-ms"}
    if best["worst_within_budget"]:
        return summary(best, "cheapest by TCO; mean and worst frame within budget")
    out = summary(best, f"cheapest by TCO with the mean frame within budget (its worst frame, every tile to "
                        f"full depth, takes {best['worst_ms']:.2f} ms: over the {best['budget_ms']:g} ms budget)")
    if strict is not None:
        out["worst_frame_within_budget"] = summary(strict, "cheapest by TCO with the worst frame within budget")
    return out


def seed_table(rows: list[dict], recommended: dict, scenario: str, headroom: float, fps: float) -> list[dict]:
    """The seed's table shape for the user's load: scenario, recommended configuration, capacity; the
    recommendation first, then every other target by TCO (those over budget last)."""
    order = sorted(rows, key=lambda r: (r["target"] != recommended.get("target"), not r["within_budget"],
                                        r["tco"]))
    out = []
    for r in order:
        ok = r["within_budget"]
        capacity = (f"{r['capacity_with_headroom_fps']:g} frames/s with {headroom:.0%} headroom "
                    f"({r['fps_per_device']:g} per device: {r['cameras_per_device']} camera"
                    f"{'' if r['cameras_per_device'] == 1 else 's'} at {fps:g} fps each)")
        out.append({"scenario": scenario, "target": r["target"],
                    "recommended": r["target"] == recommended.get("target"),
                    "configuration": r["configuration"] if ok else
                    f"{r['name']}: over the {r['budget_ms']:g} ms budget ({r['mean_ms']:.2f} ms mean)",
                    "capacity": capacity, "capacity_with_headroom_fps": r["capacity_with_headroom_fps"],
                    "within_budget": ok, "estimated": True})
    return out


# ---------------- the tables people read ----------------

def format_plan(plan: dict):
    """Rich tables: latency per frame per target, devices and cost per target, then the seed's table
    (scenario, recommended configuration, capacity)."""
    from rich.table import Table

    i = plan["inputs"]
    cur = i["currency"]
    lat = Table(title=(f"Per frame (ESTIMATED): {i['frame_size']}, {i['mode']} bundle, {i['stages']}, "
                       f"budget {i['budget_ms']:g} ms"), title_justify="left")
    for col in ("target", "tiles", "mean ms", "worst ms", "budget", "fps/device", "worst fps"):
        lat.add_column(col, justify="left" if col in ("target", "budget") else "right")
    for r in plan["rows"]:
        verdict = "holds" if r["worst_within_budget"] else "mean holds" if r["within_budget"] else "OVER"
        lat.add_row(r["target"], str(r["tiles"]), f"{r['mean_ms']:.2f}", f"{r['worst_ms']:.2f}", verdict,
                    f"{r['fps_per_device']:g}", f"{r['fps_worst']:g}")
    cost = Table(title=(f"Devices and cost (ESTIMATED): {plan['scenario']} = {i['load_fps']:g} frames/s, "
                        f"{i['headroom']:.0%} headroom; {cur}, {i['years']:g}-year TCO"), title_justify="left")
    for col in ("target", "devices", "cams/dev", "util", "in-step", f"{cur}/1000 frames", f"TCO {i['years']:g} y"):
        cost.add_column(col, justify="left" if col == "target" else "right")
    for r in plan["rows"]:
        cost.add_row(r["target"], str(r["devices"]), str(r["cameras_per_device"]), f"{r['utilisation']:.0%}",
                     f"{r['queued_ms']:.1f}", money(r["cost_per_1000_frames"]), f"{r['tco']:,.0f}")
    seed = Table(title="For this load (ESTIMATED; * cheapest by TCO within budget)", title_justify="left")
    for col in ("scenario", "recommended configuration", "capacity"):
        seed.add_column(col)
    for row in plan["seed_table"]:
        seed.add_row(row["scenario"], ("* " if row["recommended"] else "  ") + row["configuration"], row["capacity"])
    return lat, cost, seed


def format_plan_assumptions(plan: dict) -> str:
    """The assumptions behind a plan, as lines: formulas, prices with their sources, what is not counted."""
    i, a = plan["inputs"], plan["assumptions"]
    p = a["prices"]
    lines = ["Every figure is an estimate. Assumptions:",
             f"  frame {i['frame_size']} ({i['frame_size_source']}), {i['mode']} bundle, model input "
             f"{i['model_input'][1]}x{i['model_input'][0]}, {i['stages']}; exit rates {a['exit_rates']} "
             f"({a['exit_rates_source']})"]
    if "frame_note" in i:
        lines.append(f"  {i['frame_note']}")
    lines += [f"  {k}: {v}" for k, v in a["formulas"].items()]
    lines += [f"  power: {a['power']}", f"  operating: {a['operating']}",
              f"  energy: {p['energy_price_per_kwh']:g} {p['currency']}/kWh ({p.get('energy_source', 'given')})",
              f"  prices from {i['prices_from']} (compiled {p.get('compiled', 'n/a')}):"]
    for r in plan["rows"]:
        what = (f"{r['hourly']:g} {r['currency']}/h" if r["hourly"] is not None
                else f"{r['price']:,.0f} {r['currency']}")
        mode = "" if r["power_mode"] == f"{r['power_w']:g} W" else f" ({r['power_mode']})"
        lines.append(f"    {r['target']}: {r['name']}, {what}, {r['power_w']:g} W{mode}, support "
                     f"{r['support_per_year']:g}/year; " + "; ".join(r["sources"]))
        for n in r.get("notes", []):
            lines.append(f"      note: {n}")
    lines += ["  not counted: " + "; ".join(a["not_counted"])]
    return "\n".join(lines)


def money(x: float) -> str:
    """An amount: three significant figures in plain decimals when small (0.0000843), else two decimals."""
    if x >= 10 or x <= 0:
        return f"{x:,.2f}"
    return f"{x:.{max(2, 2 - math.floor(math.log10(x)))}f}"
