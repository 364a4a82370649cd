"""`edge-qwq report`: one self-contained page from a real (tiny) quantized bundle, its bench.json and its
tune.json, all made here; bad input as one line; the demo's report step; and (slow) the page in a real
headless Chromium without network: every image decodes and a full-page screenshot shows the plots."""
import base64
import json
import re
import time

import cv2
import numpy as np
import pytest

from edge_qwq.cli import main
from edge_runtime.bundle import Bundle

SECTIONS = ("The bundle", "Accuracy per exit and exit rates", "Quantization plan and per-layer sensitivity",
            "Latency estimate per stage against the budget", "Plan and cost (estimated)")
TUNE_SECTIONS = ("Tuning: Pareto front", "Tuning: Chosen point", "Tuning: Accuracy per exit")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A quantized tiny bundle (confident exits), 32 px sample data, its bench.json and a tune folder."""
    import torch

    from calib import quantize_bundle
    from edge_qwq.bench import run_bench
    from export.onnx_export import export_bundle
    from export.sample_data import make_sample
    from tests.conftest import make_tiny_student

    root = tmp_path_factory.mktemp("report")
    data, bundle = root / "data", root / "bundle"
    make_sample(data, size=32, per_class=40, seed=3)
    student = make_tiny_student(seed=4)
    with torch.no_grad():
        for k, head in enumerate(student.heads):
            head.fc.weight.mul_(6.0 + 3 * k)
    export_bundle(student, bundle)
    quantize_bundle(bundle, data, mode="mixed", max_drop=100.0)
    bench = root / "bench.json"
    bench.write_text(json.dumps(run_bench(bundle, data, None, frames=20, log=lambda m: None)))
    tune = root / "tune"
    assert main(["tune", "--bundle", str(bundle), "--data", str(data), "--trials", "8", "--out", str(tune)]) == 0
    return {"root": root, "data": data, "bundle": bundle, "bench": bench, "tune": tune}


def report(capsys, made, out, *args, bench=True, tune=True):
    argv = ["report", "--bundle", str(made["bundle"]), "--out", str(out), *args]
    if bench:
        argv += ["--bench", str(made["bench"])]
    if tune:
        argv += ["--tune", str(made["tune"])]
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def has_cost() -> bool:
    try:
        import engine_builder.cost  # noqa: F401
    except ImportError:
        return False
    return True


def images_of(page: str) -> list[np.ndarray]:
    out = []
    for b64 in re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page):
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.std() > 10  # a real picture
        out.append(img)
    return out


# ------------------------------------------------------------------------------------------ the page
def test_one_self_contained_page_with_every_section(made, tmp_path, capsys):
    out = tmp_path / "r" / "report.html"
    rc, stdout, err = report(capsys, made, out)
    assert rc == 0, err
    assert f"report: {out}" in stdout
    page = out.read_text()
    # self-contained: no script, no stylesheet link, no external URL in any attribute, a CSP forbidding fetches
    assert "<script" not in page and "<link" not in page
    urls = re.findall(r"""\b(?:src|href|action|srcset|poster)\s*=\s*(['"]?)([^'" >]*)""", page)
    assert urls and all(u.startswith("data:image/png;base64,") for _, u in urls), [u[:40] for _, u in urls]
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'; img-src data:" in page
    for title in SECTIONS + TUNE_SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    # accuracy per exit + exit rates, sensitivity, latency, (cost + devices), the three tuning plots
    expected = 2 + 1 + 1 + (2 if has_cost() else 0) + 3
    assert page.count("<img ") == len(images_of(page)) == expected
    # the plan and every layer of it, with its sensitivity
    b = Bundle.open(made["bundle"])
    for layers in b.manifest.quantization.plan.values():
        for name in layers:
            assert f"<td>{name}</td>" in page, name
    # the bench's own figures and the estimate on each Orin
    bench = json.loads(made["bench"].read_text())
    assert f"<td>{bench['accuracy']['student_full']:.4g}</td>" in page
    for target in ("orin-agx", "orin-nx", "orin-nano"):
        assert f"<td>{target}</td>" in page
    assert "Warnings" not in page  # every input belongs to this bundle


def test_plan_and_cost_section_comes_from_plan_lines_dict(made, tmp_path):
    from edge_qwq.report import build_report

    calls = []

    def plan_line(bundle, cameras, fps, frame_size=None, budget_ms=15.0, **kw):
        calls.append((cameras, fps, frame_size, budget_ms))
        row = {"target": "orin-nano", "name": "Jetson Orin Nano 8GB", "mean_ms": 1.5, "worst_ms": 2.5,
               "fps_per_device": 666.7, "devices": 1, "utilisation": 0.36, "within_budget": True,
               "cost_per_1000_frames": 0.0000843, "tco": 377.84, "currency": "USD", "estimated": True,
               "sources": ["latency: a data sheet", "price: a list price"]}
        return {"inputs": {"cameras": cameras, "fps": fps, "years": 3.0}, "rows": [row, dict(row, target="l4",
                name="NVIDIA L4", devices=2, cost_per_1000_frames=0.00093, tco=21150.14)],
                "assumptions": {"formulas": {"devices": "ceil(load x (1 + headroom) / capacity)"},
                                "power": "full power mode"},
                "recommended": {"target": "orin-nano", "configuration": "1 x Jetson Orin Nano 8GB",
                                "basis": "cheapest by TCO", "tco": 377.84, "currency": "USD"},
                "seed_table": [{"scenario": "4 cameras x 25 fps", "configuration": "1 x Jetson Orin Nano 8GB",
                                "capacity": "512 frames/s with 30% headroom"}]}

    page, warnings = build_report(made["bundle"], cameras=4, fps=25.0, frame_size=(1080, 1920), budget_ms=12.0,
                                  plan_line=plan_line)
    assert calls == [(4, 25.0, (1080, 1920), 12.0)] and warnings == []
    assert "Recommended: 1 x Jetson Orin Nano 8GB (cheapest by TCO): 377.84 USD total cost of ownership." in page
    assert "<td>0.0000843</td>" in page and "<td>21,150.14</td>" in page and "<td>36 %</td>" in page
    assert "<td>4 cameras x 25 fps</td>" in page and "ceil(load x (1 + headroom) / capacity)" in page
    assert "latency: a data sheet; price: a list price" in page
    assert "<h2>Plan and cost: scenario, configuration, capacity</h2>" in page


def test_cost_missing_from_the_build_is_a_warning(made, monkeypatch):
    import sys

    from edge_qwq.report import build_report

    monkeypatch.setitem(sys.modules, "engine_builder.cost", None)  # import fails
    page, warnings = build_report(made["bundle"])
    assert warnings == ["the plan and cost table is not in this build (engine_builder.cost is missing)"]
    assert "<h2>Warnings</h2>" in page and "Not available in this build" in page


def test_real_plan_line_for_the_line(made, tmp_path, capsys):
    pytest.importorskip("engine_builder.cost")
    out = tmp_path / "report.html"
    rc, _, err = report(capsys, made, out, "--cameras", "8", "--fps", "30", "--frame-size", "1920x1080",
                        bench=False, tune=False)
    assert rc == 0, err
    page = out.read_text()
    assert "8 cameras x 30 fps @1920x1080" in page and "Recommended:" in page
    assert "for a 1920x1080 frame (given)" in page


def test_without_bench_the_bundles_own_figures(made, tmp_path, capsys):
    out = tmp_path / "report.html"
    rc, _, err = report(capsys, made, out, bench=False, tune=False)
    assert rc == 0, err
    page = out.read_text()
    assert "No --bench given" in page and "<td>exit rates (%)</td>" in page
    assert not any(f"<h2>{t}</h2>" in page for t in TUNE_SECTIONS)
    assert len(images_of(page)) == 1 + 1 + 1 + (2 if has_cost() else 0)  # exit rates, sensitivity, latency


def test_tile_bundle_with_a_frame_bench(tmp_path, capsys):
    from export.onnx_export import export_bundle
    from tests.conftest import make_tiny_student

    bundle = tmp_path / "tiles"
    export_bundle(make_tiny_student(), bundle, input_mode="tile")
    part = {"recall_pct": 90.0, "false_alarm_pct": 2.0, "accuracy_pct": 94.0, "located_pct": 80.0,
            "false_boxes_per_frame": 0.02, "tiles_per_frame": 234.0}
    fb = {"frames": 10, "frame_size": [1280, 960], "precision": "fp32", "exit_rates": [0.9, 0.05, 0.05],
          "early_exit": part, "full_depth": dict(part, false_alarm_pct=1.0)}
    (tmp_path / "fb.json").write_text(json.dumps(fb))
    out = tmp_path / "report.html"
    assert main(["report", "--bundle", str(bundle), "--bench", str(tmp_path / "fb.json"), "--out", str(out),
                 "--frame-size", "1280x960"]) == 0, capsys.readouterr().err
    page = out.read_text()
    assert "<th>per-tile early exit</th>" in page and "<th>tiles per stage (mean)</th>" in page
    assert "1280x960 frame (given) cut into" in page
    assert "The stages are not quantized" in page


# ------------------------------------------------------------------------------------------ bad input
def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_inputs_are_one_line_each(made, tmp_path, capsys):
    b = Bundle.open(made["bundle"])
    bench = json.loads(made["bench"].read_text())
    tune = json.loads((made["tune"] / "tune.json").read_text())
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"accuracy": ')
    other_flops = tmp_path / "other_flops.json"
    other_flops.write_text(json.dumps(dict(bench, flops=dict(bench["flops"], student_stages=[1, 2, 3]))))
    other_weights = tmp_path / "other_weights.json"
    other_weights.write_text(json.dumps(dict(bench, weight_bytes={"fp32": 1, "quantized": 12345})))
    two_exits = tmp_path / "two_exits.json"
    two_exits.write_text(json.dumps(dict(bench, exit_rate=[0.5, 0.5],
                                         accuracy=dict(bench["accuracy"], exits=[1.0, 2.0]))))
    frames = tmp_path / "frames.json"
    frames.write_text(json.dumps({"early_exit": {}, "full_depth": {}, "exit_rates": [0.9, 0.05, 0.05]}))
    not_bench = tmp_path / "not_bench.json"
    not_bench.write_text(json.dumps({"hello": 1}))
    damaged_tune = tmp_path / "damaged_tune.json"
    damaged_tune.write_text(json.dumps(dict(tune, pareto_front=[{"number": 1}])))
    damaged_bench = tmp_path / "damaged_bench.json"
    damaged_bench.write_text(json.dumps(dict(bench, quantized={"exit_rate": [0.2, 0.3, 0.5]})))
    other_tune = tmp_path / "other_tune" / "tune.json"
    other_tune.parent.mkdir()
    other_tune.write_text(json.dumps(dict(tune, bundle_version="0123456789ab", applied=None)))
    out = tmp_path / "report.html"
    cases = [
        (["--bench", str(tmp_path / "missing.json")], "bench file", "no such file"),
        (["--bench", str(corrupt)], "is not valid JSON", "line 1 column 14"),
        (["--bench", str(not_bench)], "is not the JSON of `edge-qwq bench --json`", ""),
        (["--bench", str(other_flops)], "another bundle's bench", "MFLOPs"),
        (["--bench", str(other_weights)], "another bundle's bench", "12,345"),
        (["--bench", str(two_exits)], "has 2 exits", "3 stages"),
        (["--bench", str(frames)], "whole-frame bench", "resize bundle"),
        (["--tune", str(other_tune.parent)], "tunes bundle version 0123456789ab", f"version {b.version}"),
        (["--tune", str(tmp_path)], "holds no tune.json", ""),
        (["--tune", str(corrupt)], "tune file", "not valid JSON"),
        (["--tune", str(damaged_tune)], "damaged or of another edge-qwq version", "KeyError"),
        (["--bench", str(damaged_bench)], "damaged or of another edge-qwq version", "KeyError"),
    ]
    for args, *expected in cases:
        rc = main(["report", "--bundle", str(made["bundle"]), "--out", str(out), *args])
        line = one_line(capsys.readouterr().err)
        assert rc == 2 and line.startswith("edge-qwq: error: "), (args, line)
        assert all(e in line for e in expected), (args, line)
        assert not out.exists()  # nothing half-written
    for args, expected in ((["--cameras", "0"], "'--cameras': 0 is not in the range x>=1"),
                           (["--frame-size", "19x"], "expected WIDTHxHEIGHT"),
                           (["--fps", "nan"], "not a finite number"),
                           (["--out", str(tmp_path)], "is a directory")):
        rc = main(["report", "--bundle", str(made["bundle"]), "--out", str(out), *args] if "--out" not in args
                  else ["report", "--bundle", str(made["bundle"]), *args])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and expected in err, (args, err)
    rc = main(["report", "--bundle", str(tmp_path / "nope"), "--out", str(out)])
    assert rc == 2 and "is not a bundle" in one_line(capsys.readouterr().err)


def test_bench_with_other_thresholds_is_a_warning_on_the_page(made, tmp_path, capsys):
    bench = json.loads(made["bench"].read_text())
    changed = tmp_path / "bench.json"
    changed.write_text(json.dumps(dict(bench, exit_policy={"early_exit": [0.5, 0.6], "early_exit_ok": [0.7, 0.8]})))
    out = tmp_path / "report.html"
    rc = main(["report", "--bundle", str(made["bundle"]), "--bench", str(changed), "--out", str(out)])
    line = one_line(capsys.readouterr().err)
    assert rc == 0 and line.startswith("edge-qwq: warning: ") and "exit thresholds defect [0.5, 0.6]" in line
    page = out.read_text()
    assert page.index("<h2>Warnings</h2>") < page.index("<h2>The bundle</h2>")


def test_a_tune_json_whose_configuration_was_applied_to_this_bundle_is_accepted(made, tmp_path, capsys):
    b = Bundle.open(made["bundle"])
    tune = json.loads((made["tune"] / "tune.json").read_text())
    applied = tmp_path / "tune.json"  # the study of version X, applied: this bundle is the version it wrote
    applied.write_text(json.dumps(dict(tune, bundle_version="0123456789ab", applied={"version": b.version})))
    out = tmp_path / "report.html"
    rc = main(["report", "--bundle", str(made["bundle"]), "--tune", str(applied), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "<h2>Tuning: Pareto front</h2>" in out.read_text()


# ------------------------------------------------------------------------------------------ one module, the demo
def test_tuning_and_report_plots_come_from_one_module():
    from pathlib import Path

    import edge_qwq
    from edge_qwq import plots, report, tune_output

    assert report.plots is plots and tune_output.plots is plots
    drawing = sorted(p.name for p in Path(edge_qwq.__file__).parent.rglob("*.py") if "matplotlib" in p.read_text())
    assert drawing == ["plots.py"]


def test_demo_report_step(made, tmp_path):
    from edge_qwq.demo import write_demo_report

    out = tmp_path / "demo" / "report.html"
    assert write_demo_report(made["bundle"], made["bench"], out) == out
    page = out.read_text()
    assert "Measured by `edge-qwq bench`" in page and len(images_of(page)) == 4 + (2 if has_cost() else 0)
    # a demo whose bench was not written still gets its page, from the bundle's own figures
    assert "No --bench given" in write_demo_report(made["bundle"], tmp_path / "none.json", out).read_text()


# ------------------------------------------------------------------------------------------ a real browser
# Runs in the page once it has loaded: each image must be complete with a natural size, and its pixels are
# decoded for real by drawing it on a canvas and reading them back (the share of pixels that are not white).
# Synchronous on purpose: under --virtual-time-budget, img.decode() promises may not settle before the dump.
EVAL = """
const imgs = [...document.images];
const ink = imgs.map(i => {
  if (!(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)) return -1;
  const c = document.createElement('canvas');
  c.width = i.naturalWidth; c.height = i.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(i, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let k = 0; k < d.length; k += 4) if (d[k] < 200 || d[k + 1] < 200 || d[k + 2] < 200) n++;
  return n / (c.width * c.height);
});
JSON.stringify({
  n: imgs.length,
  complete: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
  ink: ink.map(x => Math.round(x * 1000) / 1000),
  fetched: performance.getEntriesByType('resource').filter(e => !e.name.startsWith('data:')).map(e => e.name),
  height: Math.ceil(document.documentElement.scrollHeight),
  viewport: window.innerWidth,
  rects: imgs.map(i => { const r = i.getBoundingClientRect();
                         return [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round); }),
})
"""
BLUE = np.array([235, 111, 31])  # plots.COLORS["front"] #1f6feb, in BGR


def saturated(img: np.ndarray) -> np.ndarray:
    """Pixels with colour (plots), not the page's black, grey and white text and rules."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    return (hsv[..., 1] > 80) & (hsv[..., 2] > 60)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_page_in_a_real_browser_without_network(made, tmp_path, chromium, capsys):
    page = tmp_path / "report.html"
    rc, _, err = report(capsys, made, page)
    assert rc == 0, err
    html = page.read_text()
    n_img = html.count("<img ")
    # eval_page appends an inline script: this copy allows it (and eval); img-src stays `data:` only
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline' "
                                                         "'unsafe-eval';"))
    t0 = time.monotonic()
    facts = json.loads(chromium.eval_page(probe, EVAL, budget_ms=10_000, timeout=180))
    print(f"\nevaluated in {time.monotonic() - t0:.1f} s: {facts}")
    assert facts["n"] == n_img >= 9 and facts["complete"] == n_img, facts
    assert all(x > 0.01 for x in facts["ink"]), facts["ink"]  # every image decoded to a picture, not blank
    assert facts["fetched"] == [], facts  # nothing but data: URIs
    assert all(w > 200 and h > 150 for _, _, w, h in facts["rects"]), facts["rects"]

    # the whole page, as tall as it is, with the page's own CSP, at the width the page was measured at (the
    # same layout: the image rectangles above are where the images are on the screenshot)
    height, width = facts["height"], facts["viewport"]
    shot = cv2.imread(str(chromium.screenshot(page, tmp_path / "report.png", width, height, timeout=120)))
    assert shot is not None and shot.shape[:2] == (height, width)
    # the same page without its images: only text and tables
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", html))
    bare_shot = cv2.imread(str(chromium.screenshot(bare, tmp_path / "bare.png", width, height, timeout=120)))
    coloured, bare_coloured = int(saturated(shot).sum()), int(saturated(bare_shot).sum())
    blue = int((np.abs(shot.astype(int) - BLUE).max(axis=2) <= 12).sum())
    print(f"\nscreenshot {shot.shape[1]}x{shot.shape[0]}: {n_img} images; coloured pixels {coloured} "
          f"(without images {bare_coloured}); #1f6feb pixels {blue}")
    assert bare_coloured < 0.02 * coloured and coloured > 100_000 and blue > 10_000
    # every image's place on the screenshot shows that plot: the region matches the PNG embedded in the page
    # (drawn at the size the page gives it), pixel for pixel up to resampling
    for k, (png, (x, y, w, h)) in enumerate(zip(images_of(html), facts["rects"])):
        region = shot[y:y + h, x:x + w].astype(np.float32)
        ref = cv2.resize(png, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert region.shape == ref.shape, (k, region.shape, ref.shape)
        diff = float(np.abs(region - ref).mean())
        corr = float(np.corrcoef(region.mean(axis=2).ravel(), ref.mean(axis=2).ravel())[0, 1])
        colours = len(np.unique(region.astype(np.uint8).reshape(-1, 3), axis=0))
        print(f"image {k}: {w}x{h} at ({x}, {y}): mean |screenshot - png| {diff:.2f} grey levels, correlation "
              f"{corr:.3f}, {colours} colours")
        assert diff < 8 and corr > 0.9 and colours > 100, (k, diff, corr, colours)
