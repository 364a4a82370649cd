"""Sizing and cost (engine_builder.cost, `edge-qwq plan`): the arithmetic on a hand-worked case, the price table
and its one-line refusals, and plans of a resize and a tile bundle from the per-frame estimate."""
from __future__ import annotations

import json
import math

import pytest

import engine_builder.estimate as estimate_mod
from edge_runtime.errors import InputError
from edge_runtime.tiling import TileGrid
from engine_builder.cost import (
    costs,
    load_prices,
    merge_prices,
    over_host_link,
    plan_line,
    recommend,
    sizing,
    target_list,
)
from engine_builder.estimate import estimate_frame
from engine_builder.prices import DEFAULT_PRICES
from engine_builder.targets import TARGETS, get_target, target_names
from tests.engine_builder.test_tiles import as_tile_bundle

# Round numbers: 1000 per device bought, 50 W, 100 a year of support, 0.20 per kWh, 8000 h a year.
ROUND = {"currency": "USD", "energy_price_per_kwh": 0.2, "hours_per_year": 8000,
         "devices": {"orin-agx": {"price": 1000, "power_w": 50, "support_per_year": 100},
                     "l4": {"hourly": 0.5, "power_w": 72}}}


# ---------------- the arithmetic, by hand ----------------

def test_devices_are_the_load_with_headroom_over_one_devices_capacity():
    # 8 cameras x 30 fps = 240 frames/s; x 1.3 = 312; a device does 100 -> ceil(3.12) = 4 devices
    s = sizing(8, 30, 100.0, 0.3)
    assert s["load_fps"] == 240 and s["devices_exact"] == pytest.approx(3.12) and s["devices"] == 4
    assert s["utilisation"] == pytest.approx(240 / 400)
    assert s["cameras_per_device"] == 2  # 100 / 1.3 = 76.9 frames/s with headroom: two 30 fps cameras
    assert s["capacity_fps"] == 400 and s["capacity_with_headroom_fps"] == pytest.approx(400 / 1.3)


def test_an_exact_fit_is_not_rounded_up_by_float_noise():
    # 10 x 30 x 1.3 = 390.00000000000006 in floating point; 390 / 390 must stay 1 device
    assert sizing(10, 30, 390.0, 0.3)["devices"] == 1
    assert sizing(1, 30, 1000.0, 0.0)["devices"] == 1  # never zero devices


def test_cost_per_1000_frames_and_tco_by_hand():
    entry = ROUND["devices"]["orin-agx"]
    c = costs(merge_prices(ROUND)["devices"]["orin-agx"], devices=4, load_fps=240, years=2,
              energy_price_per_kwh=0.2, hours_per_year=8000)
    # per device-hour: 1000 / (2 x 8000) = 0.0625 amortised + 100 / 8000 = 0.0125 support + 0.05 kW x 0.2 = 0.01
    assert c["cost_per_device_hour_parts"] == pytest.approx({"rent": 0, "amortised": 0.0625, "power": 0.01,
                                                             "support": 0.0125})
    assert c["cost_per_device_hour"] == pytest.approx(0.085) and c["cost_per_hour"] == pytest.approx(0.34)
    # 240 frames/s = 864,000 frames an hour: 0.34 / 864000 x 1000
    assert c["cost_per_1000_frames"] == pytest.approx(0.34 / 864_000 * 1000)
    # 4 x (1000 + (100 + 0.05 x 8000 x 0.2) x 2) = 4 x 1360
    assert c["tco"] == pytest.approx(5440.0)
    # the two agree: the cost per hour over every hour of the years is the TCO
    assert c["cost_per_hour"] * 8000 * 2 == pytest.approx(c["tco"])
    assert entry["price"] == 1000


def test_a_rented_device_pays_its_hourly_price_and_no_energy():
    c = costs({"hourly": 0.5, "power_w": 72.0, "support_per_year": 0.0}, devices=4, load_fps=240, years=2,
              energy_price_per_kwh=0.2, hours_per_year=8000)
    assert c["cost_per_hour"] == pytest.approx(2.0) and c["cost_per_device_hour_parts"]["power"] == 0
    assert c["tco"] == pytest.approx(4 * 0.5 * 8000 * 2)
    assert c["cost_per_1000_frames"] == pytest.approx(2.0 / 864_000 * 1000)


def _fake_frame(mean_ms: float, worst_ms: float, tiles: int = 1):
    def fake(bundle, target, frame_size=(1080, 1920), exit_rates=None, budget_ms=15.0, precision="auto",
             assumptions=None):
        return {"target": target, "tiles": tiles, "mean_ms": mean_ms, "worst_ms": worst_ms, "upload_ms": 0.0,
                "fps_mean": round(1e3 / mean_ms, 1), "fps_worst": round(1e3 / worst_ms, 1),
                "budget_ms": budget_ms, "within_budget": mean_ms <= budget_ms,
                "worst_within_budget": worst_ms <= budget_ms, "precision": "fp32", "exit_rates": [0.5, 0.25],
                "exit_rates_source": "assumed", "assumptions": {"bandwidth_efficiency": 0.7, "frame_notes": []}}
    return fake


def test_plan_line_does_the_hand_worked_case(tiny_bundle, monkeypatch):
    # a frame of 10 ms on the AGX: 100 frames/s per device
    monkeypatch.setattr(estimate_mod, "estimate_frame", _fake_frame(10.0, 12.5))
    p = plan_line(tiny_bundle, cameras=8, fps=30, frame_size=(1080, 1920), targets=["orin-agx"], prices=ROUND,
                  years=2, headroom=0.3, budget_ms=15)
    (r,) = p["rows"]
    assert r["fps_per_device"] == 100 and r["devices"] == 4 and r["utilisation"] == 0.6
    assert r["cameras_per_device"] == 2 and r["within_budget"] and r["worst_within_budget"]
    assert r["cost_per_1000_frames"] == pytest.approx(0.34 / 864_000 * 1000, abs=1e-8)
    assert r["tco"] == 5440.0 and r["currency"] == "USD" and r["estimated"] is True
    assert r["queued_ms"] == 20.0  # two cameras per device, in step: the second waits for the first
    assert p["recommended"]["target"] == "orin-agx" and p["recommended"]["devices"] == 4
    assert p["recommended"]["configuration"].startswith("4 x Jetson AGX Orin 64GB, FP32 stages")
    seed = p["seed_table"][0]
    assert seed["scenario"] == "8 cameras x 30 fps @1920x1080" and seed["recommended"]
    assert "307.7 frames/s with 30% headroom" in seed["capacity"]


# ---------------- the plan from the estimate: resize and tile bundles ----------------

def test_plan_of_a_resize_bundle_has_every_input_and_assumption(tiny_bundle):
    p = plan_line(tiny_bundle, cameras=8, fps=30, frame_size=(1080, 1920))
    json.dumps(p)  # JSON-ready
    assert [r["target"] for r in p["rows"]] == ["orin-agx", "orin-nx", "orin-nano", "l4"]
    i = p["inputs"]
    assert {k: i[k] for k in ("cameras", "fps", "load_fps", "frame_size", "years", "headroom", "budget_ms",
                              "currency", "energy_price_per_kwh", "hours_per_year", "mode", "precision")} == {
        "cameras": 8, "fps": 30.0, "load_fps": 240, "frame_size": "1920x1080", "years": 3.0, "headroom": 0.3,
        "budget_ms": 15.0, "currency": "USD", "energy_price_per_kwh": 0.2, "hours_per_year": 8760.0,
        "mode": "resize", "precision": "fp32"}
    assert i["targets"] == ["orin-agx", "orin-nx", "orin-nano", "l4"] and i["prices_from"].startswith("defaults")
    a = p["assumptions"]
    assert a["estimated"] is True and set(a["formulas"]) >= {"devices", "cost_per_1000_frames", "tco", "utilisation"}
    assert a["prices"]["devices"]["orin-agx"]["price"] == DEFAULT_PRICES["devices"]["orin-agx"]["price"]
    assert all(a["prices"]["devices"][t].get("source") for t in i["targets"])
    assert set(a["latency"]) == set(i["targets"]) and a["not_counted"]
    for r in p["rows"]:
        assert r["tiles"] == 1 and r["estimated"] is True and len(r["sources"]) == 2
        want = estimate_frame(tiny_bundle, r["target"], (1080, 1920))
        if r["target"] != "l4":  # the Orins: the estimate itself
            assert (r["mean_ms"], r["worst_ms"]) == (want["mean_ms"], want["worst_ms"])
        assert r["fps_per_device"] == round(1e3 / r["mean_ms"], 1)
        assert r["devices"] == math.ceil(240 * 1.3 / r["fps_per_device"] - 1e-9)
    assert p["recommended"]["target"] in i["targets"]


def test_plan_of_a_tile_bundle_counts_the_frames_tiles(tiny_bundle):
    tiles_root = as_tile_bundle(tiny_bundle)
    p = plan_line(tiles_root, cameras=2, fps=10, frame_size=(240, 320), targets=["orin-nano"])
    (r,) = p["rows"]
    assert r["tiles"] == len(TileGrid.for_frame((240, 320), (32, 32), 0.25)) > 1
    want = estimate_frame(tiles_root, "orin-nano", (240, 320))
    assert (r["mean_ms"], r["worst_ms"]) == (want["mean_ms"], want["worst_ms"]) and r["worst_ms"] > r["mean_ms"]
    assert p["inputs"]["mode"] == "tile" and "frame_note" not in p["inputs"]


def test_a_frame_smaller_than_the_model_input_is_one_padded_tile(tiny_bundle):
    p = plan_line(as_tile_bundle(tiny_bundle), cameras=1, fps=5, frame_size=(20, 24), targets=["orin-agx"])
    assert p["rows"][0]["tiles"] == 1 and p["inputs"]["tiles_per_frame"] == 1
    assert p["inputs"]["frame_note"] == "the 24x20 frame is smaller than the model input 32x32: one padded tile"


def test_the_data_centre_gpu_gets_its_tiles_over_pcie():
    l4 = get_target("l4")
    spec = type("Spec", (), {"height": 96, "width": 96})()
    frame = {"tiles": 405, "upload_ms": 0.3, "mean_ms": 5.0, "worst_ms": 10.0, "budget_ms": 15.0,
             "assumptions": {"bandwidth_efficiency": 0.7, "frame_notes": []}}
    out = over_host_link(frame, l4, spec)
    link = 405 * 3 * 96 * 96 * 4 / (32e9 * 0.7) * 1e3  # 44.8 MB of float32 tiles at 22.4 GB/s: 2.0 ms
    assert out["upload_ms"] == pytest.approx(link, abs=1e-4)
    assert out["mean_ms"] == pytest.approx(5.0 - 0.3 + link, abs=1e-4)
    assert over_host_link(frame, get_target("orin-agx"), spec) is frame  # shared DRAM: unchanged


def test_the_comparison_gpu_stays_out_of_estimate_all():
    assert target_names("all") == list(TARGETS) == ["orin-agx", "orin-nx", "orin-nano"]
    assert target_list(None) == target_list(["all"]) == ["orin-agx", "orin-nx", "orin-nano", "l4"]
    assert target_list(["l4", "orin-nx", "l4"]) == ["l4", "orin-nx"]


def test_recommend_the_cheapest_within_budget_and_name_the_strict_one():
    base = {"name": "x", "configuration": "c", "capacity_fps": 1, "capacity_with_headroom_fps": 1, "devices": 1,
            "cameras_per_device": 1, "cost_per_1000_frames": 0.1, "currency": "USD", "mean_ms": 5, "worst_ms": 5,
            "budget_ms": 15.0}
    rows = [dict(base, target="a", tco=100, within_budget=True, worst_within_budget=False, worst_ms=20),
            dict(base, target="b", tco=300, within_budget=True, worst_within_budget=True),
            dict(base, target="c", tco=50, within_budget=False, worst_within_budget=False)]
    rec = recommend(rows, "s", 0.3, 30)
    assert rec["target"] == "a" and "over the 15 ms budget" in rec["basis"]
    assert rec["worst_frame_within_budget"]["target"] == "b"
    assert recommend(rows[2:], "s", 0.3, 30)["target"] is None


# ---------------- the price table: one line for each mistake ----------------

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_price_file_overrides_only_what_it_names(tmp_path):
    t = load_prices(write(tmp_path, "p.json", json.dumps({"energy_price_per_kwh": 0.31,
                                                           "devices": {"orin-nx": {"price": 700, "power_w": 20}}})))
    assert t["energy_price_per_kwh"] == 0.31 and t["devices"]["orin-nx"] == {"price": 700.0, "power_w": 20.0,
                                                                             "support_per_year": 0.0}
    assert t["devices"]["orin-agx"] == DEFAULT_PRICES["devices"]["orin-agx"] and t["loaded_from"].endswith("p.json")
    assert merge_prices(t) == {**t}  # a loaded table passes again unchanged (plan_line merges what it is given)


def test_a_yaml_price_file(tmp_path):
    pytest.importorskip("yaml")
    t = load_prices(write(tmp_path, "p.yaml", "energy_price_per_kwh: 0.25\ndevices:\n  l4:\n    price: 9000\n"
                                              "    power_w: 250\n    support_per_year: 500\n"))
    assert t["devices"]["l4"] == {"price": 9000.0, "power_w": 250.0, "support_per_year": 500.0}


@pytest.mark.parametrize("table, words", [
    ({"devices": {"orin-agx": {"price": 1599}}}, "devices.orin-agx: missing field 'power_w'"),
    ({"devices": {"orin-agx": {"power_w": 60}}}, "devices.orin-agx: missing field 'price'"),
    ({"devices": {"orin-agx": {"price": -5, "power_w": 60}}}, "devices.orin-agx.price is -5: a price, power or rate cannot be negative"),
    ({"devices": {"orin-nx": {"price": 599, "power_w": -25}}}, "devices.orin-nx.power_w is -25"),
    ({"energy_price_per_kwh": -0.1}, "energy_price_per_kwh is -0.1"),
    ({"devices": {"orin-agx": {"price": "cheap", "power_w": 60}}}, "devices.orin-agx.price is 'cheap': give a number"),
    ({"devices": {"orin-agx": {"price": True, "power_w": 60}}}, "give a number"),
    ({"devices": {"orin-agx": {"price": 1, "hourly": 1, "power_w": 60}}}, "either 'price' (bought) or 'hourly'"),
    ({"devices": {"orin-agx": {"price": 1, "power_w": 60, "watts": 3}}}, "unknown field 'watts'"),
    ({"devices": {"xavier": {"price": 1, "power_w": 60}}}, "unknown device 'xavier'"),
    ({"energy": 0.2}, "unknown field 'energy'"),
    ({"hours_per_year": 9000}, "hours_per_year is 9000"),
    ({"currency": "EUR"}, "give energy_price_per_kwh in EUR too"),
    ([1, 2], "expected a table"),
])
def test_a_bad_price_file_is_one_line(tmp_path, table, words):
    with pytest.raises(InputError) as e:
        load_prices(write(tmp_path, "p.json", json.dumps(table)))
    assert words in str(e.value) and "\n" not in str(e.value) and "p.json" in str(e.value)


def test_unreadable_price_files_are_one_line(tmp_path):
    for path, words in ((tmp_path / "none.json", "does not exist"),
                        (write(tmp_path, "bad.json", "{not json"), "is not valid JSON"),
                        (write(tmp_path, "bad.yaml", "devices: [unclosed"), "is not valid YAML")):
        with pytest.raises(InputError, match=words) as e:
            load_prices(path)
        assert "\n" not in str(e.value)


def test_another_currency_prices_only_its_own_devices(tiny_bundle, tmp_path):
    t = load_prices(write(tmp_path, "eur.json", json.dumps({
        "currency": "EUR", "energy_price_per_kwh": 0.3, "devices": {"orin-nx": {"price": 650, "power_w": 25}}})))
    assert list(t["devices"]) == ["orin-nx"]
    assert plan_line(tiny_bundle, 2, 30, targets=["orin-nx"], prices=t)["rows"][0]["currency"] == "EUR"
    with pytest.raises(InputError, match="no price for orin-agx in the price table \\(EUR\\)"):
        plan_line(tiny_bundle, 2, 30, targets=["orin-agx"], prices=t)


@pytest.mark.parametrize("kw, words", [
    ({"cameras": 0}, "cameras is 0"), ({"cameras": 2.5}, "cameras is 2.5"), ({"fps": 0}, "fps is 0"),
    ({"fps": float("nan")}, "fps is nan"), ({"years": 0}, "years is 0"), ({"headroom": -0.1}, "headroom is -0.1"),
    ({"budget_ms": -1}, "budget_ms is -1"),
])
def test_an_impossible_load_is_one_line(tiny_bundle, kw, words):
    args = {"cameras": 8, "fps": 30.0, **kw}
    with pytest.raises(InputError, match=words):
        plan_line(tiny_bundle, **args)
