"""The roofline estimate: FLOPs and bytes per layer against hand counts, precision from Q/DQ, the CLI."""
from __future__ import annotations

import json

import pytest

from engine_builder.estimate import Assumptions, Layer, estimate_bundle, graph_layers, mean_latency
from engine_builder.targets import TARGETS, get_target
from tests.engine_builder.graphs import fp32_graph, qdq_graph

# Hand counts (FLOPs = multiply-adds x 2):
#   Conv: out 8*8*8 = 512 values, each 3*3*3 = 27 MACs        -> 2 * 512 * 27  = 27648
#   MatMul (1,16,32) x (32,24): 16*24 values, 32 MACs each      -> 2 * 384 * 32  = 24576
#   Gemm (4,10) x (10,6): 24 values, 10 MACs each               -> 2 * 24 * 10   = 480
HAND_FLOPS = {"conv": 27648, "matmul": 24576, "gemm": 480}


def test_flops_match_a_hand_count_within_5_percent():
    layers = {x.name: x for x in graph_layers(fp32_graph())}
    assert set(layers) == set(HAND_FLOPS)  # Relu is fused: no kernel of its own
    for name, hand in HAND_FLOPS.items():
        assert layers[name].flops == pytest.approx(hand, rel=0.05), name
    assert sum(x.flops for x in layers.values()) == pytest.approx(sum(HAND_FLOPS.values()), rel=0.05)


def test_bytes_follow_each_layers_precision():
    fp32 = {x.name: x for x in graph_layers(fp32_graph())}
    q = {x.name: x for x in graph_layers(qdq_graph())}
    # FP32 MatMul: A 512*4 + W 768*4 + out 384*4
    assert fp32["matmul"].bytes == 512 * 4 + 768 * 4 + 384 * 4
    # INT8 conv: activation and weights 1 byte each, output FP32: 192 + 216 + 512*4
    assert q["conv_int8"].precision == "int8"
    assert q["conv_int8"].bytes == 192 + 216 + 512 * 4
    # INT4 weight-only MatMul: half a byte per weight, FP32 activation in and out
    assert q["matmul_int4"].precision == "int4"
    assert q["matmul_int4"].bytes == 512 * 4 + 768 * 0.5 + 384 * 4
    assert fp32["conv"].precision == "fp32"


def test_roofline_takes_the_slower_of_compute_and_memory_plus_launch():
    agx, a = get_target("orin-agx"), Assumptions(compute_efficiency=0.5, bandwidth_efficiency=0.5, launch_us=5.0)
    compute_bound = Layer("c", "MatMul", "int8", flops=10**9, bytes=1000)
    # 1e9 / (85e12 * 0.5) s = 0.023529 ms, + 0.005 ms launch
    assert compute_bound.ms(agx, a) == pytest.approx(1e9 / (85e12 * 0.5) * 1e3 + 0.005, rel=1e-9)
    memory_bound = Layer("m", "MatMul", "fp16", flops=1000, bytes=10**8)
    assert memory_bound.ms(agx, a) == pytest.approx(1e8 / (204.8e9 * 0.5) * 1e3 + 0.005, rel=1e-9)
    # the same layer in FP32 is slower than in INT8 on compute
    assert Layer("c", "MatMul", "fp32", 10**9, 1000).ms(agx, a) > compute_bound.ms(agx, a)


def test_early_exit_mean_weights_cumulative_latency_by_exit_rate():
    # 50% stop after stage 0 (1 ms), 25% after stage 1 (3 ms), the rest run all (6 ms)
    assert mean_latency([1.0, 2.0, 3.0], (0.5, 0.25)) == pytest.approx(0.5 * 1 + 0.25 * 3 + 0.25 * 6)


def test_smaller_targets_are_not_faster():
    assert TARGETS["orin-agx"].int8_tops > TARGETS["orin-nx"].int8_tops > TARGETS["orin-nano"].int8_tops
    assert TARGETS["orin-agx"].bandwidth_gbs > TARGETS["orin-nx"].bandwidth_gbs > TARGETS["orin-nano"].bandwidth_gbs


def test_estimate_bundle_has_the_issue_schema(tiny_bundle):
    est = estimate_bundle(tiny_bundle, "orin-nano", budget_ms=15)
    assert {"target", "budget_ms", "stages", "full_ms", "early_exit_ms", "assumptions"} <= set(est)
    assert len(est["stages"]) == 3
    for s in est["stages"]:
        assert s["flops"] > 0 and s["bytes"] > 0 and s["ms"] > 0
    assert est["full_ms"] == pytest.approx(sum(s["ms"] for s in est["stages"]), rel=1e-3)
    assert est["stages"][0]["ms"] <= est["early_exit_ms"] < est["full_ms"]
    assert est["assumptions"]["source"].startswith("Jetson Orin Nano")
    # the stage FLOPs agree with what export recorded in the manifest
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert [s["flops"] for s in est["stages"]] == [s["flops"] for s in manifest["stages"]]


def test_over_budget_is_reported(tiny_bundle):
    from engine_builder.estimate import over_budget_message

    est = estimate_bundle(tiny_bundle, "orin-nano", budget_ms=0.01)
    assert not est["within_budget"]
    assert "over the 0.01 ms budget" in over_budget_message(est)
    assert over_budget_message(estimate_bundle(tiny_bundle, "orin-nano", budget_ms=1000)) is None


def test_estimate_command_prints_all_targets_and_assumptions(tiny_bundle, tmp_path, capsys):
    from edge_qwq.cli import main

    out = tmp_path / "est.json"
    assert main(["estimate", "--bundle", str(tiny_bundle), "--target", "all", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("orin-agx", "orin-nx", "orin-nano"):
        assert name in text
    assert "Assumptions" in text and "launch cost per kernel" in text and "GB/s" in text
    data = json.loads(out.read_text())
    assert [d["target"] for d in data] == ["orin-agx", "orin-nx", "orin-nano"]
    assert all(len(d["stages"]) == 3 for d in data)


def test_unknown_target_is_one_line_error(tiny_bundle, capsys):
    from edge_qwq.cli import main

    assert main(["estimate", "--bundle", str(tiny_bundle), "--target", "xavier"]) != 0
    assert "Traceback" not in capsys.readouterr().err
