"""`edge-qwq report`: one self-contained HTML page about a bundle, for the production engineer who decides
whether it goes on the line: accuracy per exit and exit rates, the quantization plan and per-layer
sensitivity, the latency estimate per stage against the budget, the plan and cost table, and (when given)
the tuning Pareto front. Plots come from edge_qwq.plots, the same module `edge-qwq tune` draws with; images
are embedded, nothing is fetched when the page is viewed.

    >>> path, warnings = write_report("bundle/", "report.html", bench="bench.json")   # doctest: +SKIP

Inputs that do not belong together are refused, one line each (ReportError): a bench.json whose stages
(FLOPs per stage) are not the bundle's, a tune.json of another bundle version. What can be shown but may
mislead is a warning, printed and shown at the top of the page: a bench measured with other exit thresholds
than the bundle has now, the plan and cost table missing from this build.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from edge_qwq import plots
from edge_runtime.errors import EdgeError

DEFAULT_CAMERAS = 8
DEFAULT_FPS = 30.0
DEFAULT_BUDGET_MS = 15.0


class ReportError(EdgeError):
    """An input the report cannot use (missing, not JSON, from another bundle)."""


# ------------------------------------------------------------------------------------------- inputs
def read_json(path, what: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"{what} {p}: no such file")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{what} {p} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError:
        raise ReportError(f"{what} {p} is not a text (JSON) file") from None
    if not isinstance(d, dict):
        raise ReportError(f"{what} {p}: expected a JSON object, found a {type(d).__name__}")
    return d


def load_bench(path, bundle) -> tuple[dict, str, list[str]]:
    """(bench result, kind, warnings): kind "model" (`edge-qwq bench --json`) or "frames" (`edge-qwq bench
    --frames --json`). Refused (ReportError) when it is neither or is not this bundle's. A bench file names no
    bundle version (unless it has "bundle_version"), so "this bundle's" is checked by shape: exits, FLOPs per
    stage, quantized weight bytes; another bundle of the same shape and quantization is not told apart."""
    d = read_json(path, "bench file")
    n = len(bundle.stages)
    warnings: list[str] = []
    try:
        if d.get("bundle_version") not in (None, bundle.version):
            raise ReportError(f"bench file {path} measured bundle version {d['bundle_version']}, not {bundle.root} "
                              f"(version {bundle.version})")
        if "accuracy" in d and "exit_rate" in d:
            kind, rates = "model", d["exit_rate"]
            exits = d["accuracy"]["exits"]
            if len(exits) != n:
                raise ReportError(f"bench file {path} has {len(exits)} exits, bundle {bundle.root} has {n} stages: "
                                  "it is another bundle's bench")
            stage_flops = (d.get("flops") or {}).get("student_stages")
            if stage_flops is not None and [int(f) for f in stage_flops] != [s.flops for s in bundle.stages]:
                raise ReportError(f"bench file {path} measured stages of {_mflops(stage_flops)} MFLOPs, bundle "
                                  f"{bundle.root} has {_mflops([s.flops for s in bundle.stages])}: it is another "
                                  "bundle's bench")
            q = bundle.manifest.quantization
            wb = (d.get("weight_bytes") or {}).get("quantized")
            if q is not None and wb is not None and int(wb) != q.weight_bytes_quantized:
                raise ReportError(f"bench file {path} measured quantized weights of {int(wb):,} bytes, bundle "
                                  f"{bundle.root} has {q.weight_bytes_quantized:,}: it is another bundle's bench")
            if q is not None and "quantized" not in d:
                warnings.append(f"bench file {path} has no quantized figures: it was measured before the stages "
                                "were quantized; run `edge-qwq bench` again")
            measured = d.get("exit_policy")
            policy = bundle.exit_policy
            now = {"early_exit": list(policy.early_exit), "early_exit_ok": list(policy.early_exit_ok)}
            if measured and not _same_policy(measured, now):
                warnings.append(f"bench file {path} was measured with exit thresholds {_policy_text(measured)}; the "
                                f"bundle now has {_policy_text(now)} (tuned since?): its accuracy and exit rates are "
                                "not the bundle's as it stands; run `edge-qwq bench` again")
        elif "early_exit" in d and "full_depth" in d and "exit_rates" in d:
            kind, rates = "frames", d["exit_rates"]
            if bundle.input.mode != "tile":
                raise ReportError(f"bench file {path} is a whole-frame bench (tile bundles); bundle {bundle.root} "
                                  "is a resize bundle: give its `edge-qwq bench --json` output")
            for part in ("early_exit", "full_depth"):
                float(d[part]["recall_pct"]), float(d[part]["false_alarm_pct"])
            frame = bundle.manifest.frames
            t = frame.threshold_for(d.get("precision", "")) if frame is not None else None
            if t is not None and d.get("threshold") is not None and abs(float(d["threshold"]) - t) > 1e-9:
                warnings.append(f"bench file {path} was measured with frame threshold {float(d['threshold']):.6f}; the "
                                f"bundle now has {t:.6f}: run `edge-qwq bench --frames` again")
        else:
            raise ReportError(f"bench file {path} is not the JSON of `edge-qwq bench --json` (no accuracy and "
                              "exit_rate) nor of `edge-qwq bench --frames --json` (no early_exit, full_depth and "
                              "exit_rates)")
        if len(rates) != n or not all(0.0 <= float(r) <= 1.0 for r in rates):
            raise ReportError(f"bench file {path}: {len(rates)} exit rates for a bundle of {n} stages, or a rate "
                              "outside 0..1: it is another bundle's bench")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ReportError(f"bench file {path} is damaged or of another edge-qwq version ({type(e).__name__}: "
                          f"{e})") from None
    return d, kind, warnings


def load_tune(path, bundle) -> dict:
    """A tune.json (or the folder `edge-qwq tune --out` wrote), refused unless it tunes this bundle: its
    bundle_version is this bundle's version, the version it applied, or the version this bundle was tuned
    from (manifest.tuning.base_version)."""
    p = Path(path)
    if p.is_dir():
        if not (p / "tune.json").is_file():
            raise ReportError(f"--tune {p}: the folder holds no tune.json (give the tune.json, or the folder "
                              "`edge-qwq tune --out` wrote)")
        p = p / "tune.json"
    d = read_json(p, "tune file")
    missing = [k for k in ("bundle_version", "objectives", "chosen", "untuned", "pareto_front", "all_trials",
                           "accuracy_per_exit") if k not in d]
    if missing:
        raise ReportError(f"tune file {p} is not the tune.json of `edge-qwq tune` (no {', '.join(missing)})")
    ours = {str(d["bundle_version"])}
    if isinstance(d.get("applied"), dict) and d["applied"].get("version"):
        ours.add(str(d["applied"]["version"]))
    tuned_from = bundle.manifest.tuning.base_version if bundle.manifest.tuning is not None else None
    if bundle.version not in ours and tuned_from not in ours:
        raise ReportError(f"tune file {p} tunes bundle version {d['bundle_version']} ({d.get('bundle', '?')}), not "
                          f"{bundle.root} (version {bundle.version}): its Pareto front would describe another model; "
                          "tune this bundle (`edge-qwq tune --bundle ...`) and give that tune.json")
    return d


# ------------------------------------------------------------------------------------------- the page
def build_report(bundle_path, bench=None, tune=None, cameras: int = DEFAULT_CAMERAS, fps: float = DEFAULT_FPS,
                 frame_size: tuple[int, int] | None = None, budget_ms: float = DEFAULT_BUDGET_MS,
                 plan_line=None) -> tuple[str, list[str]]:
    """(the page's HTML, warnings). frame_size: (height, width). plan_line: the sizing function (default
    engine_builder.cost.plan_line, imported here)."""
    from edge_qwq import __version__
    from edge_runtime.bundle import Bundle

    bundle = Bundle.open(bundle_path)
    warnings: list[str] = []
    bench_d = kind = tune_d = None
    if bench is not None:
        bench_d, kind, w = load_bench(bench, bundle)
        warnings += w
    if tune is not None:
        tune_d = load_tune(tune, bundle)
    quant_report = _quant_report(bundle, warnings)

    try:
        accuracy = _accuracy_section(bundle, bench_d, kind, bench, quant_report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ReportError(f"bench file {bench} is damaged or of another edge-qwq version ({type(e).__name__}: "
                          f"{e})") from None
    sections = [_bundle_section(bundle), accuracy,
                *_quantization_sections(bundle, quant_report),
                _latency_section(bundle, frame_size, budget_ms),
                *_cost_sections(bundle, cameras, fps, frame_size, budget_ms, plan_line, warnings)]
    if tune_d is not None:
        from edge_qwq.tune_output import tune_sections

        try:
            tuning = tune_sections(tune_d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ReportError(f"tune file {tune} is damaged or of another edge-qwq version ({type(e).__name__}: "
                              f"{e})") from None
        for s in tuning:
            s.title = f"Tuning: {s.title}"
            sections.append(s)
    if warnings:
        sections.insert(0, plots.Section("Warnings", "\n\n".join(warnings)))
    frame = f", frames {frame_size[1]}x{frame_size[0]}" if frame_size else ""
    subtitle = (f"{bundle.root} · version {bundle.version} · {cameras} cameras at {fps:g} fps{frame} · budget "
                f"{budget_ms:g} ms per frame · written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
                f"edge-qwq {__version__}")
    return plots.page(f"edge-qwq report: {bundle.root.name}", sections, subtitle), warnings


def write_report(bundle_path, out, **kw) -> tuple[Path, list[str]]:
    """Build the page (build_report's keywords) and write it to `out`; (path, warnings)."""
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"--out {out} is a folder; give the page's file name, e.g. {out / 'report.html'}")
    text, warnings = build_report(bundle_path, **kw)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out, warnings


def _bundle_section(bundle) -> plots.Section:
    m = bundle.manifest
    inp = m.input
    mode = (f"tile: {inp.height}x{inp.width} px tiles, overlap {inp.tile_overlap:g}" if inp.mode == "tile"
            else f"resize: the whole frame scaled to {inp.height}x{inp.width} px")
    rows = [["version", f"{bundle.version} ({'signed' if bundle.signed else 'not signed'})"],
            ["classes", f"{', '.join(m.classes)} (ok class: {m.ok_class})"],
            ["input", mode],
            ["stages", "; ".join(f"stage {s.index}: {s.flops / 1e6:.1f} MFLOPs"
                                 + (" (quantized)" if s.quantized else "") for s in m.stages)],
            ["exit policy", f"defect at {_floats(m.exit_policy.early_exit)}, ok at "
                            f"{_floats(m.exit_policy.early_exit_ok)}"],
            ["frame reuse", f"window {m.dynamic.reuse_window}, change threshold {m.dynamic.reuse_threshold:g} grey "
                            "levels" if m.dynamic.reuse_window else "off"]]
    if m.student is not None:
        s = m.student
        rows.append(["student", f"dim {s.dim}, depth {s.depth}, heads {s.heads}, {s.patch} px tokens, exits after "
                                f"blocks {s.exits}" + (", pruned" if s.pruning is not None else "")])
    if m.tuning is not None:
        t = m.tuning
        rows.append(["tuning", f"study {t.study}, trial {t.trial if t.trial is not None else 'none (untuned kept)'}, "
                               f"from version {t.base_version}"])
    if m.frames is not None:
        rows.append(["frame threshold", ", ".join(f"{p} {v:.6f}" for p, v in m.frames.threshold.items())])
    rows.append(["engines", ", ".join(f"{k} ({e.precision}{', active' if e.active else ''})"
                                      for k, e in m.engines.items()) or "none yet (built on the device)"])
    return plots.Section("The bundle", "What the manifest records.", tables=[(["field", "value"], rows)])


def _accuracy_section(bundle, bench: dict | None, kind: str | None, bench_path, quant_report: dict | None):
    title = "Accuracy per exit and exit rates"
    n = len(bundle.stages)
    if kind == "model":
        acc, q = bench["accuracy"], bench.get("quantized")
        per_exit = {"FP32": acc["exits"]}
        rates = {"FP32": bench["exit_rate"]}
        if q:
            per_exit["quantized"] = q["accuracy"]["exits"]
            rates["quantized"] = q["exit_rate"]
        lat = bench.get("latency_ms") or {}
        qlat = (q or {}).get("latency_ms") or {}
        rows = [["accuracy, full depth (%)", acc["student_full"], (q or {}).get("accuracy", {}).get("student_full")],
                ["accuracy, early exit (%)", acc["early_exit"], (q or {}).get("accuracy", {}).get("early_exit")],
                ["accuracy of each exit's answer (%)", acc["exits"], (q or {}).get("accuracy", {}).get("exits")],
                ["exit rates (%)", _pct(bench["exit_rate"]), _pct(q["exit_rate"]) if q else None],
                ["compute per frame / full depth", bench.get("compute_ratio"), (q or {}).get("compute_ratio")],
                ["early exit p50 / p99 here (ms)", _p50_99(lat.get("early_exit")), _p50_99(qlat.get("early_exit"))]]
        if bench.get("defect_recall") is not None:
            rows.append(["defect recall, early exit (%)", bench["defect_recall"], None])
        if acc.get("teacher") is not None:
            rows.append(["teacher accuracy (%)", acc["teacher"], None])
        text = (f"Measured by `edge-qwq bench` ({bench_path}) on {bench.get('images', '?')} images, "
                f"{bench.get('backend', '?')}; latencies are this machine's, not the target's (see the estimate "
                "below). Each exit's accuracy is its own answer, before the early-exit policy.")
        images = [plots.accuracy_per_exit_png(per_exit), plots.exit_rates_png(rates)]
        return plots.Section(title, text, images, [(["measure", "FP32", "quantized"], rows)])
    if kind == "frames":
        e, f = bench["early_exit"], bench["full_depth"]
        keys = [("recall_pct", "defect frames flagged (%)"), ("false_alarm_pct", "good frames flagged (%)"),
                ("accuracy_pct", "frame accuracy (%)"), ("located_pct", "true defects located (%)"),
                ("false_boxes_per_frame", "false boxes per frame"), ("tiles_per_frame", "tiles per frame")]
        rows = [[label, e.get(k), f.get(k)] for k, label in keys if k in e]
        w, h = bench.get("frame_size", ["?", "?"])
        text = (f"Whole frames measured by `edge-qwq bench --frames` ({bench_path}): {bench.get('frames', '?')} "
                f"frames of {w}x{h}, {bench.get('precision', '?')} stages. Exit rates are per tile. A frame bench "
                "has no per-exit accuracy: `edge-qwq bench --json` on tiles gives it.")
        return plots.Section(title, text, [plots.exit_rates_png({"tiles": bench["exit_rates"]})],
                             [(["measure", "per-tile early exit", "full depth"], rows)])
    # no bench: what the bundle itself records
    rows, images = [], []
    q = bundle.manifest.quantization
    if q is not None:
        rows += [["accuracy, full depth (%)", q.fp32_accuracy_pct, q.accuracy_pct],
                 ["accuracy, early exit (%)", q.fp32_accuracy_early_exit_pct, q.accuracy_early_exit_pct]]
    rates = {}
    for key, name in (("fp32", "FP32"), ("quantized", "quantized")):
        r = ((quant_report or {}).get(key) or {}).get("exit_rate")
        if isinstance(r, list) and len(r) == n:
            rates[f"{name} (calibration evaluation)"] = r
    fractions = bundle.exit_policy.exit_fraction
    if not rates and fractions:
        rates["measured (manifest)"] = list(fractions) + [max(0.0, 1.0 - sum(fractions))]
    if rates:
        rows.append(["exit rates (%)", *[_pct(r) for r in list(rates.values())[:2]]])
        images.append(plots.exit_rates_png(rates))
    text = ("No --bench given: the figures the bundle records" + (f" (quantization's evaluation on {q.eval_images} "
            "images)" if q is not None else "") + ". `edge-qwq bench --bundle B --data D --json bench.json` "
            "measures the accuracy of every exit; pass it with --bench.")
    return plots.Section(title, text, images, [(["measure", "FP32", "quantized"], rows)] if rows else [])


def _quantization_sections(bundle, report: dict | None) -> list:
    title = "Quantization plan and per-layer sensitivity"
    q = bundle.manifest.quantization
    if q is None:
        return [plots.Section(title, "The stages are not quantized (FP32): `edge-qwq quantize --bundle B --data D` "
                                     "makes the plan.")]
    counts: dict[str, dict[str, int]] = {}
    for stage, layers in q.plan.items():
        for p in layers.values():
            counts.setdefault(stage, {}).setdefault(p, 0)
            counts[stage][p] += 1
    kinds = [p for p in ("int8", "int4", "fp16", "fp32") if any(p in c for c in counts.values())]
    per_stage = [[stage, *[c.get(p, 0) for p in kinds]] for stage, c in counts.items()]
    text = (f"Mode {q.mode} for TensorRT >= {q.trt_version}, {q.calibration_method} calibration. Accuracy on "
            f"{q.eval_images} images: {q.accuracy_pct:.2f} % full depth, {q.accuracy_early_exit_pct:.2f} % early exit "
            f"(FP32 {q.fp32_accuracy_pct:.2f} / {q.fp32_accuracy_early_exit_pct:.2f} %); early-exit decisions equal "
            f"to FP32's on {q.fp32_agreement_pct:.2f} %. Weights {q.weight_bytes_quantized:,} bytes vs "
            f"{q.weight_bytes_fp32:,} FP32 ({q.weight_bytes_quantized / max(1, q.weight_bytes_fp32):.2f}x).")
    tables = [(["stage", *[f"{p} layers" for p in kinds]], per_stage)]
    images = []
    layers = [r for r in (report or {}).get("layers", []) if isinstance(r, dict) and "name" in r]
    if layers:
        text += ("\n\nSensitivity: the relative error of the exits' logits (from the layer's stage on) when that "
                 "layer alone is quantized, INT8 for every layer and AWQ INT4 where eligible, on calibration "
                 "images. The plan keeps the most sensitive layers in FP16.")
        planned = [q.plan.get(f"stage{r.get('stage')}", {}).get(r["name"], r.get("precision", "?")) for r in layers]
        labels = [f"s{r.get('stage')} {str(r['name']).lstrip('/')}" for r in layers]
        images.append(plots.sensitivity_png(labels, [_num(r.get("sensitivity")) for r in layers], planned,
                                            [r.get("sensitivity_int4") for r in layers]))
        per_layer = (["stage", "layer", "op", "weights", "planned", "sensitivity INT8", "sensitivity INT4"],
                     [[r.get("stage"), r["name"], r.get("op"), r.get("params"), p, r.get("sensitivity"),
                       r.get("sensitivity_int4")] for r, p in zip(layers, planned)])
    else:
        text += f"\n\nNo per-layer sensitivity: the bundle has no readable {q.report}."
        per_layer = (["stage", "layer", "planned"],
                     [[s, name, p] for s, ls in q.plan.items() for name, p in ls.items()])
    return [plots.Section(title, text, images, tables),
            plots.Section("Quantization plan, layer by layer", tables=[per_layer])]


def frame_hw_for(bundle, frame_size) -> tuple[tuple[int, int], str]:
    """The camera frame (height, width) the estimate and the plan are for, as engine_builder.cost chooses it:
    the one given, else a tile bundle's own frame size, else 1920x1080; and where it comes from."""
    from engine_builder.plan import DEFAULT_FRAME_HW

    spec = bundle.manifest.input
    if frame_size is not None:
        return (int(frame_size[0]), int(frame_size[1])), "given"
    if spec.mode == "tile" and spec.frame_size:
        return (int(spec.frame_size[0]), int(spec.frame_size[1])), "the tile bundle's frame size"
    return tuple(DEFAULT_FRAME_HW), "default"


def _latency_section(bundle, frame_size, budget_ms: float) -> plots.Section:
    from engine_builder.estimate import estimate_frame
    from engine_builder.targets import target_names

    n = len(bundle.stages)
    tile = bundle.input.mode == "tile"
    frame_hw, frame_from = frame_hw_for(bundle, frame_size)
    rows, table = [], []
    for name in target_names("all"):
        f = estimate_frame(bundle, name, frame_hw, budget_ms=budget_ms)
        pre = f["cut_ms"] + f["upload_ms"]
        rows += [(f"{name} mean", [pre] + [s["ms"] for s in f["stages"]]),
                 (f"{name} worst", [pre] + [s["worst_ms"] for s in f["stages"]])]
        table.append([name, f["precision"], *([f["tiles"], [s["tiles"] for s in f["stages"]]] if tile else []),
                      [s["worst_ms"] for s in f["stages"]], round(pre, 4), f["mean_ms"], f["worst_ms"],
                      f["fps_mean"], _verdict(f["within_budget"], f["worst_within_budget"])])
        rates, source, notes = f["exit_rates"], f["exit_rates_source"], f["assumptions"]["notes"]
        notes = notes + f["assumptions"]["frame_notes"]
    frame = f"{frame_hw[1]}x{frame_hw[0]}"
    what = (f"a {frame} frame ({frame_from}) cut into {table[0][2]} tiles" if tile else
            f"a {frame} frame ({frame_from}) scaled to the {bundle.input.width}x{bundle.input.height} input")
    header = (["target", "precision"] + (["tiles", "tiles per stage (mean)"] if tile else [])
              + ["stage ms (full depth)", "cut + upload ms", "mean ms", "worst ms", "frames/s (mean)",
                 "budget (mean / worst)"])
    text = (f"Estimated, not measured: a roofline per layer from the ONNX graphs (engine_builder.estimate) for "
            f"{what}, on each Jetson Orin at its maximum power mode. Mean: at exit rates {_pct(rates)} % ({source}); "
            f"worst: every {'tile' if tile else 'frame'} to full depth. The budget is {budget_ms:g} ms per frame."
            "\n\nAssumptions: " + "; ".join(notes) + ".")
    img = plots.stacked_latency_png(rows, ["cut + upload"] + [f"stage {k}" for k in range(n)], budget_ms,
                                    f"Estimated ms per {frame} frame, by stage")
    return plots.Section("Latency estimate per stage against the budget", text, [img], [(header, table)])


def _cost_sections(bundle, cameras, fps, frame_size, budget_ms, plan_line, warnings: list[str]) -> list:
    title = "Plan and cost (estimated)"
    if plan_line is None:
        try:
            from engine_builder.cost import plan_line
        except ImportError:
            warnings.append("the plan and cost table is not in this build (engine_builder.cost is missing)")
            return [plots.Section(title, "Not available in this build: engine_builder.cost is missing.")]
    plan = plan_line(bundle, cameras, fps, frame_size=frame_size, budget_ms=budget_ms)
    rows = [r for r in plan.get("rows", []) if isinstance(r, dict)]
    currency = next((r.get("currency") for r in rows if r.get("currency")), "")
    rec = plan.get("recommended")
    rec_target = rec.get("target") if isinstance(rec, dict) else rec if isinstance(rec, str) else None
    header = ["target", "device", "mean ms", "worst ms", "frames/s per device", "devices", "utilisation",
              "within budget", f"cost / 1000 frames {currency}".strip(), f"TCO {currency}".strip(), "estimated"]
    table = [[r.get("target"), r.get("name"), r.get("mean_ms"), r.get("worst_ms"), r.get("fps_per_device"),
              r.get("devices"), _share(r.get("utilisation")), _yes(r.get("within_budget")),
              _money(r.get("cost_per_1000_frames")), _money(r.get("tco")), _yes(r.get("estimated"))] for r in rows]
    scenario = plan.get("scenario") or f"{cameras} cameras at {fps:g} fps"
    years = (plan.get("inputs") or {}).get("years")
    text = (f"{scenario}: the devices each target needs for this load with headroom, the cost of a thousand "
            f"inspected frames and the total cost of ownership{f' over {years:g} years' if years else ''}. Every "
            "figure is estimated (latency from the roofline above, prices and power from a documented table); "
            "inputs, assumptions and sources are listed below.")
    if rec is not None:
        text += f"\n\nRecommended: {_describe(rec)}."
    images = []
    costed = [r for r in rows if isinstance(r.get("cost_per_1000_frames"), (int, float))]
    if costed:
        images.append(plots.bars_png([str(r.get("target")) for r in costed],
                                     [float(r["cost_per_1000_frames"]) for r in costed],
                                     f"{currency} per 1000 frames (red: recommended)".strip(), "Cost per 1000 frames",
                                     highlight=[r.get("target") == rec_target for r in costed]))
    sized = [r for r in rows if isinstance(r.get("devices"), (int, float))]
    if sized:
        images.append(plots.bars_png([str(r.get("target")) for r in sized], [float(r["devices"]) for r in sized],
                                     "devices (red: recommended)", f"Devices for {cameras} x {fps:g} fps",
                                     highlight=[r.get("target") == rec_target for r in sized]))
    out = [plots.Section(title, text, images, [(header, table)])]
    if plan.get("seed_table"):
        out.append(plots.Section("Plan and cost: scenario, configuration, capacity", "The seed's table shape, for "
                                 "this line.", tables=[_table_of(plan["seed_table"])]))
    lines, tables = [], []
    if plan.get("inputs"):
        tables.append(_table_of(plan["inputs"], "input"))
    for key, v in (plan.get("assumptions") or {}).items():
        if key == "latency":
            lines.append("latency: the estimate's assumptions per target (the section above)")
        elif key == "prices" and isinstance(v, dict):
            scalars = {k: x for k, x in v.items() if not isinstance(x, (dict, list))}
            lines.append("prices: " + "; ".join(f"{k} {plots._fmt(x)}" for k, x in scalars.items()))
            if isinstance(v.get("devices"), dict):
                tables.append(_table_of(v["devices"], "device"))
        elif isinstance(v, dict):
            tables.append(_table_of(v, key))
        else:
            lines.append(f"{key.replace('_', ' ')}: {plots._fmt(v)}")
    sources = [[r.get("target"), "; ".join(r["sources"]) if isinstance(r.get("sources"), list) else r.get("sources")]
               for r in rows if r.get("sources")]
    if sources:
        tables.append((["target", "sources"], sources))
    if lines or tables:
        out.append(plots.Section("Plan and cost: inputs, assumptions, sources", "\n\n".join(lines), tables=tables))
    return out


# ------------------------------------------------------------------------------------------- helpers
def _quant_report(bundle, warnings: list[str]) -> dict | None:
    q = bundle.manifest.quantization
    if q is None:
        return None
    p = bundle.root / q.report
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.append(f"{p} is not valid JSON: no per-layer sensitivity")
        return None
    return d if isinstance(d, dict) else None


def _table_of(obj, name: str = "") -> tuple[list[str], list[list]]:
    """A plan_line part (dict, list of dicts, {"header", "rows"} or list of lists) as (header, rows)."""
    if isinstance(obj, dict) and isinstance(obj.get("rows"), list) and isinstance(obj.get("header"), list):
        return [str(h) for h in obj["header"]], [list(r) if isinstance(r, (list, tuple)) else [r] for r in obj["rows"]]
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        keys = list(dict.fromkeys(k for r in obj.values() for k in r))
        return [name, *keys], [[k, *[_flat(r.get(c)) for c in keys]] for k, r in obj.items()]
    if isinstance(obj, dict):
        return [name, ""], [[k, _flat(v)] for k, v in obj.items()]
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        keys = list(dict.fromkeys(k for r in obj for k in r))
        return keys, [[_flat(r.get(k)) for k in keys] for r in obj]
    if isinstance(obj, list) and obj and all(isinstance(r, (list, tuple)) for r in obj):
        return [str(h) for h in obj[0]], [list(r) for r in obj[1:]]
    return [name], [[_flat(x)] for x in (obj if isinstance(obj, list) else [obj])]


def _flat(v):
    if isinstance(v, dict):
        return "; ".join(f"{k}: {plots._fmt(_flat(x))}" for k, x in v.items())
    return v


def _describe(rec) -> str:
    """The recommendation in one sentence: its configuration (or name), why, and what it costs."""
    if not isinstance(rec, dict):
        return str(rec)
    if rec.get("target") is None and rec.get("configuration") is None:
        return str(rec.get("basis") or rec.get("note") or "none of the targets fits this load")
    text = str(rec.get("configuration") or rec.get("name") or rec.get("target"))
    if rec.get("basis"):
        text += f" ({rec['basis']})"
    cur = rec.get("currency") or ""
    money = [f"{_money(rec[k])} {cur} {label}".replace("  ", " ") for k, label in
             (("cost_per_1000_frames", "per 1000 frames"), ("tco", "total cost of ownership")) if k in rec]
    return text + (": " + ", ".join(money) if money else "")


def _money(v):
    """Amounts: three significant figures in plain decimals when small (0.0000843), else two decimals."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return v
    if v == 0 or abs(v) >= 1:
        return f"{v:,.2f}"
    import math

    return f"{v:.{max(2, 2 - math.floor(math.log10(abs(v))))}f}"


def _verdict(mean_ok: bool, worst_ok: bool) -> str:
    return f"{'within' if mean_ok else 'OVER'} / {'within' if worst_ok else 'OVER'}"


def _yes(v) -> str | None:
    return None if v is None else ("yes" if v else "no")


def _share(v):
    return f"{100 * v:.0f} %" if isinstance(v, (int, float)) and v <= 10 else v


def _pct(rates) -> str:
    return ", ".join(f"{100 * float(r):.1f}" for r in rates)


def _p50_99(lat) -> str | None:
    return None if not lat else f"{lat['p50']:.3f} / {lat['p99']:.3f}"


def _floats(v) -> str:
    return "[" + ", ".join(f"{x:g}" for x in v) + "]"


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0


def _mflops(flops) -> str:
    return "/".join(f"{int(f) / 1e6:.1f}" for f in flops)


def _same_policy(a: dict, b: dict) -> bool:
    try:
        return all(len(a[k]) == len(b[k]) and all(abs(float(x) - float(y)) < 1e-9 for x, y in zip(a[k], b[k]))
                   for k in ("early_exit", "early_exit_ok"))
    except (KeyError, TypeError, ValueError):
        return False


def _policy_text(p: dict) -> str:
    return f"defect {_floats(p.get('early_exit', []))} / ok {_floats(p.get('early_exit_ok', []))}"
