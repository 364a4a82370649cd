"""Tile mode in engine_builder: the batch profile sized by a frame's tile count (GPU: 1..tiles; DLA: fixed,
padded by the runtime), and the per-frame estimate (tiles x survival x per-tile cost, cut and upload)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edge_runtime.bundle import Bundle, InputSpec
from edge_runtime.tiling import TileGrid
from engine_builder.build import build_engines, padded, profile_batch
from engine_builder.estimate import Assumptions, Layer, estimate_frame, frame_cost
from engine_builder.plan import (
    BuildError,
    BuildOptions,
    GraphPrecision,
    options_for_input,
    plan_build,
)
from engine_builder.targets import get_target
from engine_builder.verify import onnxruntime_runner
from edge_runtime.tiling import parse_frame_size
from tests.engine_builder.fake_tensorrt import make_fake_tensorrt
from tests.engine_builder.test_cache_build import ORIN

TILE96 = InputSpec(96, 96, (0.5,) * 3, (0.25,) * 3, mode="tile")
RESIZE96 = dataclasses.replace(TILE96, mode="resize")
QDQ = GraphPrecision(has_qdq=True, has_int4=False, has_fp16=False)
FP32 = GraphPrecision(has_qdq=False, has_int4=False, has_fp16=False)


def as_tile_bundle(root, overlap: float = 0.25):
    b = Bundle.open(root)
    b.manifest.input = dataclasses.replace(b.manifest.input, mode="tile", tile_overlap=overlap)
    b.save()
    return root


@pytest.fixture
def tile_bundle(tiny_bundle):
    """The tiny 3-stage bundle (32 px input) in tile mode."""
    return as_tile_bundle(tiny_bundle)


def _tiles(frame_hw, tile_hw=(96, 96), overlap=0.25) -> int:
    return len(TileGrid.for_frame(frame_hw, tile_hw, overlap))


# ---------------- the profile ----------------

def test_frame_size_is_width_x_height():
    assert parse_frame_size("1920x1080") == (1080, 1920)
    assert parse_frame_size("1280X960") == (960, 1280)
    for bad in ("1920", "axb", "0x10", "1920x1080x3"):
        with pytest.raises(ValueError, match="frame size"):
            parse_frame_size(bad)


def test_resize_bundle_keeps_todays_profile():
    opts, tiles = options_for_input(RESIZE96, BuildOptions())
    assert tiles is None and opts.batch == (1, 1, 4)
    with pytest.raises(BuildError, match="--frame-size is for tile bundles"):
        options_for_input(RESIZE96, BuildOptions(frame_size=(1080, 1920)))


@pytest.mark.parametrize("frame_hw,expected", [(None, 405), ((1080, 1920), 405), ((960, 1280), 234)])
def test_tile_profile_runs_from_one_tile_to_the_frames_tile_count(frame_hw, expected):
    opts, tiles = options_for_input(TILE96, BuildOptions("quantized", frame_size=frame_hw))
    assert expected == _tiles(frame_hw or (1080, 1920))
    assert opts.batch == (1, expected, expected)
    assert tiles["tiles"] == expected and tiles["batch"] == [1, expected, expected] and not tiles["static_batch"]
    assert tiles["frame"] == ("1920x1080" if expected == 405 else "1280x960")
    plan = plan_build("10.3.0", QDQ, opts, "image", (-1, 3, 96, 96))
    assert plan.profile == {"image": ((1, 3, 96, 96), (expected, 3, 96, 96), (expected, 3, 96, 96))}
    # a later stage takes the hidden state: the same batch range
    hidden = plan_build("10.3.0", QDQ, opts, "hidden_in", (-1, 144, 64)).profile["hidden_in"]
    assert [s[0] for s in hidden] == [1, expected, expected]


def test_dla_tile_profile_is_fixed_at_the_tile_count():
    opts, tiles = options_for_input(TILE96, BuildOptions("fp16", dla_core=0, frame_size=(960, 1280)))
    assert tiles["static_batch"] and tiles["batch"] == [234, 234, 234]
    plan = plan_build("10.3.0", FP32, opts, "image", (-1, 3, 96, 96))
    assert plan.profile["image"] == ((234, 3, 96, 96),) * 3 and "GPU_FALLBACK" in plan.flags
    # the verification runner pads to a static batch and drops the padding rows
    assert profile_batch(plan.to_dict()) == (234, 234)
    assert profile_batch({"profile": {"image": [[1, 3], [405, 3], [405, 3]]}}) == (405, None)
    x = np.ones((5, 3), np.float32)
    p = padded(x, 8)
    assert p.shape == (8, 3) and np.all(p[:5] == 1) and np.all(p[5:] == 0)
    assert padded(x, None) is not None and padded(x, None).shape == (5, 3)


def test_dla_refuses_more_tiles_than_it_can_batch():
    with pytest.raises(BuildError, match=r"DLA takes at most 4096 tiles.*7680x4320 frame has \d+ tiles"):
        options_for_input(TILE96, BuildOptions("quantized", dla_core=0, frame_size=(4320, 7680)))
    # the GPU has no such limit
    opts, _ = options_for_input(TILE96, BuildOptions("quantized", frame_size=(4320, 7680)))
    assert opts.batch[2] == _tiles((4320, 7680)) > 4096


def _ort_engine(root):
    b = Bundle.open(root)
    runner = onnxruntime_runner([b.path(s.file) for s in b.stages])
    return lambda engines, plan: runner


def test_build_of_a_tile_bundle_records_profile_and_frame(tile_bundle):
    trt = make_fake_tensorrt("10.3.0")
    res = build_engines(tile_bundle, options=BuildOptions(frame_size=(960, 1280)), trt=trt, fingerprint=ORIN,
                        engine_runner=_ort_engine(tile_bundle), progress=lambda s: None)
    n = _tiles((960, 1280), (32, 32))
    shapes = [c for c in trt.calls if c[0] == "profile.set_shape"]
    assert len(shapes) == 3 and all(lo[0] == 1 and opt[0] == n and hi[0] == n for _, _, lo, opt, hi in shapes)
    entry = Bundle.open(tile_bundle).manifest.engines[ORIN.id]
    assert entry.plan["profile"]["hidden_in"][2][0] == n  # the last stage's plan is the one recorded
    assert entry.plan["tiles"]["frame"] == "1280x960" and entry.plan["tiles"]["tiles"] == n
    assert entry.options["frame_size"] == [960, 1280] and entry.options["batch"] == [1, n, n]
    assert f"1280x960 frames as {n} tiles, batch 1..{n}" in res["summary"]
    # same frame size: reused; another frame size asked for: rebuilt for it
    again = build_engines(tile_bundle, options=BuildOptions(frame_size=(960, 1280)), trt=make_fake_tensorrt(),
                          fingerprint=ORIN, engine_runner=_ort_engine(tile_bundle))
    assert again["decision"]["action"] == "use"
    assert build_engines(tile_bundle, trt=make_fake_tensorrt(), fingerprint=ORIN,
                         engine_runner=_ort_engine(tile_bundle))["decision"]["action"] == "use"  # no size given
    other = build_engines(tile_bundle, options=BuildOptions(frame_size=(1080, 1920)), trt=make_fake_tensorrt(),
                          fingerprint=ORIN, engine_runner=_ort_engine(tile_bundle), progress=lambda s: None)
    assert other["decision"]["action"] == "build" and "1280x960" in other["decision"]["reason"]
    assert Bundle.open(tile_bundle).manifest.engines[ORIN.id].plan["tiles"]["frame"] == "1920x1080"


def test_build_of_a_resize_bundle_is_unchanged(tiny_bundle):
    trt = make_fake_tensorrt("10.3.0")
    build_engines(tiny_bundle, trt=trt, fingerprint=ORIN, engine_runner=_ort_engine(tiny_bundle),
                  progress=lambda s: None)
    shapes = [c for c in trt.calls if c[0] == "profile.set_shape"]
    assert all((lo[0], opt[0], hi[0]) == (1, 1, 4) for _, _, lo, opt, hi in shapes)
    assert "tiles" not in Bundle.open(tiny_bundle).manifest.engines[ORIN.id].plan


# ---------------- the per-frame estimate ----------------

def test_frame_cost_by_hand():
    """Two stages, one compute-bound kernel each; no launch or stage overhead, so every stage costs
    tiles entering x per-tile cost. AGX INT8 at 50 %: 42.5e12 ops/s."""
    agx = get_target("orin-agx")
    a = Assumptions(compute_efficiency=0.5, bandwidth_efficiency=0.5, launch_us=0.0, stage_overhead_ms=0.0)
    f0, f1 = 4.25e9, 8.5e9  # FLOPs per tile: 0.1 ms and 0.2 ms per tile
    stages = [[Layer("s0", "MatMul", "int8", int(f0), 1.0)], [Layer("s1", "MatMul", "int8", int(f1), 1.0)]]
    out = frame_cost(stages, agx, a, frame_hw=(1000, 2000), tile_hw=(100, 100), tiles=10, exit_rates=(0.8,))
    # stage 0: 10 tiles x 0.1 ms; stage 1: 10 x (1 - 0.8) = 2 tiles x 0.2 ms
    assert [s["tiles"] for s in out["stages"]] == [10, 2]
    assert out["stages"][0]["ms"] == pytest.approx(1.0)
    assert out["stages"][1]["ms"] == pytest.approx(0.4)
    assert out["stages"][1]["worst_ms"] == pytest.approx(2.0)  # all 10 tiles
    # cut: frame 1000*2000*3 bytes read + 10 tiles * 3*100*100 * 4 bytes written; upload: the tiles twice
    bw = 204.8e9 * 0.5
    assert out["cut_ms"] == pytest.approx((6e6 + 1.2e6) / bw * 1e3, abs=1e-4)  # 0.0703 ms
    assert out["upload_ms"] == pytest.approx(2.4e6 / bw * 1e3, abs=1e-4)  # 0.0234 ms
    pre = out["cut_ms"] + out["upload_ms"]
    assert out["mean_ms"] == pytest.approx(pre + 1.4, abs=1e-3)
    assert out["worst_ms"] == pytest.approx(pre + 3.0, abs=1e-3)
    assert out["fps_mean"] == pytest.approx(1e3 / out["mean_ms"], rel=1e-2)


def test_weights_are_read_once_per_batch():
    nano = get_target("orin-nano")
    a = Assumptions(bandwidth_efficiency=1.0, launch_us=0.0)
    layer = Layer("m", "MatMul", "fp16", flops=1, bytes=1e6 + 1e5, weight_bytes=1e6)  # memory-bound
    assert layer.ms(nano, a) == pytest.approx((1e6 + 1e5) / 68e9 * 1e3)
    assert layer.ms(nano, a, batch=10) == pytest.approx((1e6 + 10 * 1e5) / 68e9 * 1e3)


def test_estimate_frame_of_a_tile_bundle(tile_bundle):
    est = estimate_frame(tile_bundle, "orin-nano", frame_size=(960, 1280), exit_rates=(0.9, 0.05))
    n = _tiles((960, 1280), (32, 32))
    assert est["mode"] == "tile" and est["tiles"] == n and est["frame"] == "1280x960"
    assert [s["tiles"] for s in est["stages"]] == pytest.approx([n, n * 0.1, n * 0.05], abs=1e-3)
    assert est["exit_rates_source"] == "given (--exit-rates)"
    assert est["mean_ms"] < est["worst_ms"]
    assert est["mean_ms"] == pytest.approx(est["cut_ms"] + est["upload_ms"] + sum(s["ms"] for s in est["stages"]),
                                           abs=1e-3)
    assert est["within_budget"] == (est["mean_ms"] <= 15.0)
    # default rates: none measured in this bundle, so the documented assumption (half per exit)
    default = estimate_frame(tile_bundle, "orin-nano", frame_size=(960, 1280))
    assert default["exit_rates"] == [0.5, 0.25] and "half of the tiles" in default["exit_rates_source"]
    # measured rates in the manifest are used when present
    b = Bundle.open(tile_bundle)
    b.manifest.exit_policy.exit_fraction = [0.97, 0.01]
    b.save()
    measured = estimate_frame(tile_bundle, "orin-nano", frame_size=(960, 1280))
    assert measured["exit_rates"] == [0.97, 0.01] and "measured" in measured["exit_rates_source"]


def test_bigger_frames_and_smaller_targets_cost_more(tile_bundle):
    sizes = [(240, 320), (480, 640), (960, 1280), (1080, 1920), (2160, 3840)]
    ms = [estimate_frame(tile_bundle, "orin-nx", frame_size=hw, exit_rates=(0.9, 0.05))["mean_ms"] for hw in sizes]
    assert ms == sorted(ms) and len(set(ms)) == len(ms)
    by_target = [estimate_frame(tile_bundle, t, exit_rates=(0.9, 0.05))["mean_ms"]
                 for t in ("orin-agx", "orin-nx", "orin-nano")]
    assert by_target == sorted(by_target)
    # more early exits: cheaper frames
    assert (estimate_frame(tile_bundle, "orin-nx", exit_rates=(0.99, 0.0))["mean_ms"]
            < estimate_frame(tile_bundle, "orin-nx", exit_rates=(0.5, 0.2))["mean_ms"])


def test_bad_exit_rates_are_refused(tile_bundle):
    from edge_runtime.errors import EdgeError

    with pytest.raises(EdgeError, match="give 2 exit rate"):
        estimate_frame(tile_bundle, "orin-nx", exit_rates=(0.9,))
    with pytest.raises(EdgeError, match="sum to at most 1"):
        estimate_frame(tile_bundle, "orin-nx", exit_rates=(0.9, 0.2))


def test_estimate_cli_prints_per_frame_figures_for_a_tile_bundle(tile_bundle, tmp_path, capsys):
    from edge_qwq.cli import main

    out = tmp_path / "est.json"
    argv = ["estimate", "--bundle", str(tile_bundle), "--frame-size", "1280x960", "--exit-rates", "0.9,0.05",
            "--budget-ms", "15", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    n = _tiles((960, 1280), (32, 32))
    assert f"Per 1280x960 frame: {n} tiles of 32x32" in text
    for name in ("orin-agx", "orin-nx", "orin-nano"):
        assert name in text
    assert "worst ms" in text and "fps" in text
    data = json.loads(out.read_text())
    assert [d["frame"]["target"] for d in data] == ["orin-agx", "orin-nx", "orin-nano"]
    for d in data:
        f = d["frame"]
        assert f["tiles"] == n and f["exit_rates"] == [0.9, 0.05]
        assert d["assumptions"]["exit_rates"] == [0.9, 0.05]  # the per-stage early-exit mean uses them too
        assert f["fps_mean"] == pytest.approx(1e3 / f["mean_ms"], rel=1e-2)


def test_estimate_cli_default_frame_for_a_tile_bundle_and_none_for_resize(tile_bundle, tiny_bundle_template,
                                                                         tmp_path, capsys):
    import shutil

    from edge_qwq.cli import main

    tiny_bundle = shutil.copytree(tiny_bundle_template, tmp_path / "resize_bundle")  # tile_bundle is the other copy
    assert main(["estimate", "--bundle", str(tile_bundle), "--target", "orin-nano"]) == 0
    assert "Per 1920x1080 frame" in capsys.readouterr().out
    out = tmp_path / "resize.json"
    assert main(["estimate", "--bundle", str(tiny_bundle), "--target", "orin-nano", "--json", str(out)]) == 0
    assert "Per " not in capsys.readouterr().out and "frame" not in json.loads(out.read_text())
    # a resize bundle given a frame size: one resized input per frame
    assert main(["estimate", "--bundle", str(tiny_bundle), "--target", "orin-nano", "--frame-size", "640x480",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["frame"]["tiles"] == 1


@pytest.mark.parametrize("argv,words", [
    (["--frame-size", "1920"], "WIDTHxHEIGHT"),
    (["--exit-rates", "a,b"], "fractions separated by commas"),
    (["--exit-rates", "0.9"], "give 2 exit rate"),
])
def test_estimate_cli_bad_options_are_one_line(tile_bundle, capsys, argv, words):
    from edge_qwq.cli import main

    assert main(["estimate", "--bundle", str(tile_bundle), *argv]) != 0
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_build_cli_frame_size_reaches_the_build_options(tile_bundle, capsys):
    from edge_qwq.cli import main
    from edge_qwq.commands.build import _engine_options

    assert _engine_options(0, 256, False, (960, 1280))["options"] == BuildOptions(workspace_mb=256, dla_core=0,
                                                                                  frame_size=(960, 1280))
    assert main(["build", "--bundle", str(tile_bundle), "--frame-size", "1920"]) != 0
    err = capsys.readouterr().err
    assert "WIDTHxHEIGHT" in err and "Traceback" not in err
