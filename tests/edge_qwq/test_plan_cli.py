"""`edge-qwq plan`: tables on stderr, the JSON with every input and assumption, and one clear line for each
mistake (no traceback)."""
import json

import pytest

from edge_qwq.cli import main


def run_cli(capsys, *args):
    code = main(["plan", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err.strip()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


def test_plan_prints_the_tables_and_writes_the_json(capsys, tiny_bundle, tmp_path):
    out_json = tmp_path / "plan.json"
    code, out, err = run_cli(capsys, "--bundle", tiny_bundle, "--cameras", 8, "--fps", 30, "--frame-size",
                             "1920x1080", "--years", 3, "--json", out_json)
    assert code == 0 and out == ""  # the tables go to stderr
    for words in ("Per frame (ESTIMATED)", "Devices and cost (ESTIMATED)", "TCO 3 y", "USD/1000 frames",
                  "scenario", "configuration", "capacity", "8 cameras x 30 fps", "orin-agx", "orin-nx", "orin-nano",
                  "l4", "Every figure is an estimate", "recommended (estimated):"):
        assert words in err, words
    plan = json.loads(out_json.read_text())
    assert plan["inputs"]["cameras"] == 8 and plan["inputs"]["frame_size"] == "1920x1080"
    assert plan["inputs"]["prices_from"] == "defaults (engine_builder.prices)"
    assert [r["target"] for r in plan["rows"]] == ["orin-agx", "orin-nx", "orin-nano", "l4"]
    assert all(r["estimated"] and r["devices"] >= 1 and r["tco"] > 0 and r["cost_per_1000_frames"] > 0
               for r in plan["rows"])
    assert plan["assumptions"]["prices"]["currency"] == "USD" and plan["seed_table"][0]["recommended"]


def test_price_file_energy_price_and_targets(capsys, tiny_bundle, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"devices": {"orin-nx": {"price": 1000, "power_w": 50, "source": "our quote"}}}))
    out_json = tmp_path / "plan.json"
    code, _, err = run_cli(capsys, "--bundle", tiny_bundle, "--cameras", 2, "--fps", 15, "--target", "orin-nx",
                           "--price-file", prices, "--energy-price", 0.5, "--headroom", 0, "--json", out_json)
    assert code == 0, err
    plan = json.loads(out_json.read_text())
    (row,) = plan["rows"]
    assert row["target"] == "orin-nx" and row["price"] == 1000 and "price: our quote" in row["sources"]
    assert plan["inputs"]["energy_price_per_kwh"] == 0.5 and plan["inputs"]["headroom"] == 0
    assert plan["inputs"]["prices_from"].endswith("prices.json")
    # by hand: 1000 / (3 x 8760) + 0.05 kW x 0.5 per device-hour, x devices
    per_hour = (1000 / (3 * 8760) + 0.05 * 0.5) * row["devices"]
    assert row["cost_per_hour"] == pytest.approx(per_hour, abs=1e-6)
    assert row["tco"] == pytest.approx(row["devices"] * (1000 + 0.05 * 8760 * 0.5 * 3), abs=0.01)


@pytest.mark.parametrize("args, words", [
    (["--cameras", "0", "--fps", "30"], "'--cameras': 0 is not in the range x>=1"),
    (["--cameras", "8", "--fps", "0"], "'--fps'"),
    (["--cameras", "8", "--fps", "nan"], "not a finite number"),
    (["--cameras", "8", "--fps", "30", "--frame-size", "1920by1080"], "frame size '1920by1080'"),
    (["--cameras", "8", "--fps", "30", "--frame-size", "0x1080"], "each side must be at least 1 px"),
    (["--cameras", "8", "--fps", "30", "--headroom", "-0.1"], "'--headroom'"),
    (["--cameras", "8", "--fps", "30", "--target", "xavier"], "'--target'"),
])
def test_bad_options_are_one_line(capsys, tiny_bundle, args, words):
    code, _, err = run_cli(capsys, "--bundle", tiny_bundle, *args)
    assert code == 2 and words in err
    assert len(error_lines(err)) == 1


@pytest.mark.parametrize("table, words", [
    ({"devices": {"orin-agx": {"price": 1599}}}, "missing field 'power_w'"),
    ({"devices": {"orin-agx": {"price": -1599, "power_w": 60}}}, "devices.orin-agx.price is -1599"),
])
def test_a_bad_price_file_is_one_line(capsys, tiny_bundle, tmp_path, table, words):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(table))
    code, _, err = run_cli(capsys, "--bundle", tiny_bundle, "--cameras", 8, "--fps", 30, "--price-file", prices)
    assert code == 2 and words in err and err.startswith("edge-qwq: error: price file")
    assert len(err.splitlines()) == 1


def test_a_missing_bundle_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--bundle", tmp_path / "nope", "--cameras", 8, "--fps", 30)
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("edge-qwq: error:")
