"""quantize_bundle: FP32 baseline -> calibration method by accuracy -> per-layer sensitivity -> precision
plan (FP16 / INT8 / AWQ INT4) under an accuracy budget -> bias correction -> stage{k}.q.onnx.

Nothing in the bundle changes until every stage is built and the budget is met; then the new files are
moved in and the manifest is saved atomically, so a failure leaves the FP32 bundle as it was.

    >>> report = quantize_bundle("bundle/", "data/", mode="mixed")     # doctest: +SKIP
    >>> report["quantized"]["accuracy"], report["weight_bytes"]["ratio"]   # doctest: +SKIP
    (96.7, 0.27)
"""
from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from calib import awq as awq_mod
from calib.data import CalibSet, load_calib
from calib.errors import CalibError
from calib.evaluate import Scores, chain, hidden_stats, rel_err, score
from calib.graph import Layer, find_layers, norm_groups
from calib.qdq import (INT4_OPSET, METHODS, bias_array, fold_norm, insert_int4, load_stage, ort_int8, run,
                       session, set_bias, to_fp16, weight_array)
from calib.report import model_weight_bytes

MODES = ("int8", "int4", "mixed")
FP16_FRACTION = 0.10  # the most sensitive layers kept in FP16
COMPENSATE_ABOVE = 0.01  # relative output error (L2) above which a layer gets bias correction
COMP_IMAGES = 48  # images used for bias correction's per-layer output statistics
SENS_IMAGES = 48  # images used for the per-layer sensitivity
Progress = Callable[[str, int, int], None]


def parse_trt(version: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in str(version).split(".")[:2]]
    except ValueError:
        raise CalibError(f"--trt-version must look like 10.3 or 8.6, got {version!r}") from None
    return (parts + [0])[0], (parts + [0])[1]


@dataclass
class StageWork:
    k: int
    base: object  # FP32 ModelProto at the working opset
    layers: list[Layer]
    groups: dict[str, list[str]]  # LayerNorm node -> layer names that take its AWQ scale
    x_cal: np.ndarray  # FP32 stage input on the calibration images
    caches: dict[str, str] = field(default_factory=dict)  # method -> calibration cache file


class Quantizer:
    def __init__(self, bundle, cs: CalibSet, mode: str, trt: tuple[int, int], max_drop: float,
                 progress: Progress | None, eval_set: tuple[np.ndarray, np.ndarray], workdir: Path):
        from edge_runtime.executor import ExitPolicy

        self.bundle, self.cs, self.mode, self.trt, self.max_drop = bundle, cs, mode, trt, max_drop
        self.progress = progress or (lambda step, done, total: None)
        self.eval_x, self.eval_y = eval_set
        self.workdir = workdir
        self.int4_allowed = trt >= (10, 0) and mode != "int8"
        self.policy = ExitPolicy.from_spec(bundle.exit_policy, len(bundle.stages) - 1)
        self.int4: dict[tuple[int, str], awq_mod.Int4Weight] = {}
        self.int4_info: dict[tuple[int, str], dict] = {}
        self.notes: list[str] = []

    # ---------- setup ----------
    def load_stages(self) -> None:
        opset = INT4_OPSET if self.int4_allowed else None
        description = self.awq_description()
        self.stages, x = [], self.cs.x
        self.fp32_hidden = []
        for spec in self.bundle.stages:
            base = load_stage(self.bundle.path(spec.file), opset)
            layers = find_layers(base)
            st = StageWork(spec.index, base, layers, norm_groups(base, layers, description), x)
            st.caches = {m: str(self.workdir / f"stage{spec.index}.{m}.json") for m in METHODS}
            self.stages.append(st)
            x = run(base, x)["hidden"]  # (N, T, dim)
            self.fp32_hidden.append(hidden_stats(x))
        _, self.ref_logits = chain([s.base for s in self.stages], self.eval_x)
        _, self.ref_cal_logits = chain([s.base for s in self.stages], self.cs.x)
        self.fp32 = self.score(self.ref_logits)

    def awq_description(self) -> list[tuple[str, list[str]]] | None:
        """The student's own account of which linear layers read which norm (manifest student.awq_groups);
        None, with a note in the report, when the bundle has none and graph patterns must stand in."""
        student = self.bundle.manifest.student
        if student is not None and student.awq_groups:
            self.awq_groups_source = "student description (manifest student.awq_groups)"
            return [(g.norm, list(g.linears)) for g in student.awq_groups]
        self.awq_groups_source = "graph patterns (LayerNormalization -> MatMul)"
        if self.int4_allowed:
            self.notes.append("the bundle has no AWQ groups from the student (student.awq_groups): AWQ scales "
                              "were grouped by matching LayerNormalization -> MatMul in the graphs instead")
        return None

    def score(self, logits) -> Scores:
        return score(logits, self.eval_y, self.policy, self.bundle.ok_index, self.ref_logits)

    def keys(self) -> list[tuple[int, str]]:
        return [(s.k, layer.name) for s in self.stages for layer in s.layers]

    def layer(self, key: tuple[int, str]) -> Layer:
        return next(layer for layer in self.stages[key[0]].layers if layer.name == key[1])

    # ---------- building ----------
    def build(self, plan: dict, method: str) -> list:
        """The quantized stage graphs for `plan` {(stage, layer): "int8" | "int4" | "fp16"}."""
        models = []
        for st in self.stages:
            p = {layer.name: plan[(st.k, layer.name)] for layer in st.layers}
            m = ort_int8(st.base, st.x_cal, method, exclude=[n for n, v in p.items() if v != "int8"],
                         cache=st.caches[method])
            self._finish(m, st, p)
            models.append(m)
        return models

    def _finish(self, m, st: StageWork, p: dict) -> None:
        """INT4 weights, AWQ folds and FP16 layers on top of the INT8 Q/DQ graph: INT4 and FP16 layers are
        FP16 regions (FP16 activations, weights and bias; see calib.qdq), weightless MatMuls included."""
        for layer in st.layers:
            if p.get(layer.name) == "int4":
                insert_int4(m, layer, self.int4[(st.k, layer.name)])
            elif p.get(layer.name) == "fp16":
                to_fp16(m, layer)
        for norm, names in st.groups.items():
            if all(p.get(n) == "int4" for n in names):
                fold_norm(m, norm, self.int4[(st.k, names[0])].s)

    def evaluate(self, models) -> Scores:
        return self.score(chain(models, self.eval_x)[1])

    # ---------- INT8 calibration method ----------
    def choose_method(self) -> str:
        plan = {key: "int8" for key in self.keys()}
        self.method_scores = {}
        for i, method in enumerate(METHODS):
            self.progress(f"INT8 calibration: {method}", i, len(METHODS))
            self.method_scores[method] = self.evaluate(self.build(plan, method))
        best = max(METHODS, key=lambda m: (-self.method_scores[m].drop(self.fp32), -self.method_scores[m].logit_err))
        return best

    # ---------- AWQ ----------
    def run_awq(self) -> None:
        """AWQ (and round-to-nearest, for the report) for every INT4-eligible layer."""
        search, held = self.cs.split()
        for i, st in enumerate(self.stages):
            self.progress("AWQ INT4 search", i, len(self.stages))
            elig = [layer for layer in st.layers if layer.int4_block]
            inputs = {layer.name: self._input_name(st, layer) for layer in elig}
            acts = run(st.base, st.x_cal, extra_outputs=sorted(set(inputs.values())))
            in_group = {n: norm for norm, names in st.groups.items() for n in names}
            for layer in elig:
                x = acts[inputs[layer.name]]  # (N, ..., K)
                w = weight_array(st.base, layer)
                w = w if layer.k_axis == 0 else w.T  # (K, N)
                if layer.name in in_group and len(st.groups[in_group[layer.name]]) > 1:
                    names = st.groups[in_group[layer.name]]
                    ws = [self._kn(st, self.layer((st.k, n))) for n in names]
                    w4 = awq_mod.awq_group_search(x[search], ws, layer.int4_block)[names.index(layer.name)]
                else:
                    w4 = awq_mod.awq_search(x[search], w, layer.int4_block, scale=layer.name in in_group)
                base = awq_mod.rtn(w, layer.int4_block)
                self.int4[(st.k, layer.name)] = w4
                self.int4_info[(st.k, layer.name)] = {
                    "block": layer.int4_block, "alpha": w4.alpha, "scale_folded_into": in_group.get(layer.name),
                    "awq_error": awq_mod.output_error(x[held], w, w4.dequant()),
                    "rtn_error": awq_mod.output_error(x[held], w, base.dequant())}

    def _kn(self, st: StageWork, layer: Layer) -> np.ndarray:
        w = weight_array(st.base, layer)
        return w if layer.k_axis == 0 else w.T

    @staticmethod
    def _input_name(st: StageWork, layer: Layer) -> str:
        return next(n.input[0] for n in st.base.graph.node if n.name == layer.name)

    # ---------- sensitivity ----------
    def sensitivity(self, method: str) -> None:
        """The error each layer alone causes: INT8 (all layers) and AWQ INT4 (eligible ones), measured as
        the relative logit error of every exit from its stage on, on the calibration images."""
        self.sens8, self.sens4 = {}, {}
        n = min(SENS_IMAGES, len(self.cs))
        cal_inputs = [s.x_cal[:n] for s in self.stages]
        self.fp32_sessions = [session(s.base) for s in self.stages]
        keys = self.keys()
        for i, key in enumerate(keys):
            self.progress("sensitivity", i, len(keys))
            st, layer = self.stages[key[0]], self.layer(key)
            m8 = ort_int8(st.base, st.x_cal, method, include=[layer.name], cache=st.caches[method])
            self.sens8[key] = self._downstream_error(st.k, m8, cal_inputs)
            if key in self.int4:
                m4 = copy.deepcopy(st.base)
                self._finish(m4, st, {layer.name: "int4"})
                self.sens4[key] = self._downstream_error(st.k, m4, cal_inputs)

    def _downstream_error(self, k: int, model, cal_inputs) -> float:
        h, errs = cal_inputs[k], []
        for j in range(k, len(self.stages)):
            out = run(model, h) if j == k else run(None, h, sess=self.fp32_sessions[j])
            h = out["hidden"]
            errs.append(rel_err(out["logits"], self.ref_cal_logits[j][:len(h)]))
        return float(np.mean(errs))

    # ---------- the plan ----------
    def plan(self, method: str) -> tuple[dict, list, Scores]:
        keys = self.keys()
        plan = {key: "int8" for key in keys}
        if self.mode == "int8":
            return plan, self.build(plan, method), None
        eligible = [k for k in keys if k in self.int4]
        if self.mode == "int4":
            plan.update({k: "int4" for k in eligible})
            return plan, self.build(plan, method), None
        n_fp16 = max(1, math.ceil(FP16_FRACTION * len(keys)))
        for key in sorted(keys, key=lambda k: -self.sens8[k])[:n_fp16]:
            plan[key] = "fp16"
        cands = sorted((k for k in eligible if plan[k] == "int8"), key=lambda k: self.sens4[k])
        tried: dict[int, tuple[list, Scores]] = {}

        def attempt(n: int) -> bool:
            p = {**plan, **{k: "int4" for k in cands[:n]}}
            models = self.build(p, method)
            tried[n] = (models, self.evaluate(models))
            self.progress(f"precision plan: {n} INT4 layers", len(tried), int(math.log2(len(cands) + 1)) + 2)
            return tried[n][1].drop(self.fp32) <= self.max_drop

        if not attempt(0):
            s = tried[0][1]
            raise CalibError(
                f"--max-drop {self.max_drop:g} cannot be met: INT8 with the most sensitive {n_fp16} layers in FP16 "
                f"already loses {self.fp32.full - s.full:.2f} points full-depth and {self.fp32.early - s.early:.2f} "
                f"with early exit on {len(self.eval_y)} labelled images; raise --max-drop or add calibration images")
        lo, hi = 0, len(cands)  # lo meets the budget; find the largest n that does (binary search)
        if hi and attempt(hi):
            lo = hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if attempt(mid) else (lo, mid)
        plan.update({k: "int4" for k in cands[:lo]})
        return plan, tried[lo][0], tried[lo][1]

    # ---------- compensation ----------
    def layer_errors(self, models, keys: list) -> dict:
        """Relative L2 output error of each layer (quantized chain vs FP32 chain) and its mean error
        per output channel (what bias correction subtracts)."""
        out = {}
        n = min(COMP_IMAGES, len(self.cs))
        hq, hf = self.cs.x[:n], self.cs.x[:n]
        for st, mq in zip(self.stages, models):
            names = [self.layer(k).out for k in keys if k[0] == st.k]
            rq = run(mq, hq, extra_outputs=names)
            rf = run(st.base, hf, extra_outputs=names)
            for key in (k for k in keys if k[0] == st.k):
                layer = self.layer(key)
                yq, yf = rq[layer.out], rf[layer.out]
                err = float(np.linalg.norm(yq - yf) / max(np.linalg.norm(yf), 1e-20))
                out[key] = (err, _channel_mean(yq - yf, layer))
            hq, hf = rq["hidden"], rf["hidden"]
        return out

    def compensate(self, models, plan) -> tuple[list, dict, Scores]:
        """Empirical bias correction, layer by layer in graph order, for layers whose output error is
        above 1%: the mean error per output channel (quantized chain vs FP32) is taken off the bias."""
        keys = [k for k in self.keys() if self.layer(k).bias]
        before = self.layer_errors(models, keys)
        fix = [k for k in keys if before[k][0] > COMPENSATE_ABOVE]
        info = {k: {"output_error_before": before[k][0]} for k in keys}
        if not fix:
            return models, info, self.evaluate(models)
        fixed = [copy.deepcopy(m) for m in models]
        n = min(COMP_IMAGES, len(self.cs))
        hq, hf = self.cs.x[:n], self.cs.x[:n]
        for st in self.stages:
            todo = [k for k in fix if k[0] == st.k]
            ref = run(st.base, hf, extra_outputs=[self.layer(k).out for k in todo]) if todo else run(st.base, hf)
            for key in todo:  # later layers see the earlier corrections
                layer, m = self.layer(key), fixed[st.k]
                yq = run(m, hq, extra_outputs=[layer.out])[layer.out]
                set_bias(m, layer, bias_array(m, layer) - _channel_mean(yq - ref[layer.out], layer))
            hq, hf = run(fixed[st.k], hq)["hidden"], ref["hidden"]
        after = self.layer_errors(fixed, keys)
        old, new = self.evaluate(models), self.evaluate(fixed)
        keep = new.drop(self.fp32) <= old.drop(self.fp32) and new.logit_err <= old.logit_err
        for key in fix:
            info[key].update({"compensation": "bias correction" if keep else "bias correction (reverted: no gain)",
                              "output_error_after": after[key][0]})
        self.compensation = {"layers": len(fix), "kept": keep, "logit_error_before": old.logit_err,
                             "logit_error_after": new.logit_err}
        return (fixed, info, new) if keep else (models, info, old)


def _channel_mean(d: np.ndarray, layer: Layer) -> np.ndarray:
    """Mean over every axis but the output channels (axis 1 for Conv, the last one otherwise)."""
    ch = 1 if layer.op == "Conv" else d.ndim - 1
    return d.mean(axis=tuple(i for i in range(d.ndim) if i != ch))


def quantize_bundle(bundle_path: str | os.PathLike, calib_dir: str | os.PathLike, mode: str = "mixed",
                    trt_version: str = "10.3", max_drop: float = 0.3, progress: Progress | None = None,
                    eval_data=None) -> dict:
    """Quantize a bundle's stages; returns the report (also written as quant_report.json).

    mode: "int8" (all INT8), "int4" (every eligible MatMul/Gemm AWQ INT4, the rest INT8) or "mixed"
    (most sensitive 10% FP16, INT4 for the least sensitive matrix layers while `max_drop` holds, the
    rest INT8). trt_version < 10: no INT4 (falls back to INT8). max_drop: accuracy budget in points,
    full-depth and with early exit, on `eval_data` ((x (N, 3, H, W) float32, labels (N,)) or a data
    folder whose val/ split is used) or, without it, on the labelled calibration images.
    progress(step, done, total) is called as the work advances. CalibError (a one-line user error) if the
    data or budget cannot be used; the bundle is then left as it was."""
    from edge_runtime.bundle import Bundle

    t0 = time.perf_counter()
    if mode not in MODES:
        raise CalibError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if max_drop is None or not 0 <= float(max_drop) <= 100:
        raise CalibError(f"--max-drop must be between 0 and 100 points, got {max_drop!r}")
    trt = parse_trt(trt_version)
    bundle = Bundle.open(bundle_path)
    cs = load_calib(calib_dir, bundle)
    eval_set = _eval_set(eval_data, bundle, cs)
    with tempfile.TemporaryDirectory(prefix="edge-qwq-quant.") as work:
        q = Quantizer(bundle, cs, mode, trt, float(max_drop), progress, eval_set, Path(work))
        if cs.resized:
            spec = bundle.input
            q.notes.append(f"{cs.resized} of {len(cs)} calibration images are not {spec.height}x{spec.width}; "
                           "they were resized as the runtime resizes frames")
        models, report = _quantize(q)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    _write(bundle, models, report, q)
    return report


def _eval_set(eval_data, bundle, cs: CalibSet) -> tuple[np.ndarray, np.ndarray]:
    if eval_data is None:
        return cs.x, cs.labels
    if isinstance(eval_data, (str, os.PathLike)):
        ev = load_calib(eval_data, bundle, split="val")
        return ev.x, ev.labels
    x, y = eval_data
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


def _quantize(q: Quantizer) -> tuple[list, dict]:
    q.progress("FP32 baseline", 0, 1)
    q.load_stages()
    method = q.choose_method()
    if q.mode != "int8" and q.int4_allowed:
        q.run_awq()
    if q.mode == "mixed":
        q.sensitivity(method)
    plan, models, _ = q.plan(method)
    q.progress("bias correction", 0, 1)
    models, comp, final = q.compensate(models, plan)
    drop = final.drop(q.fp32)
    if drop > q.max_drop:
        raise CalibError(
            f"--max-drop {q.max_drop:g} cannot be met in --mode {q.mode}: the quantized stages lose "
            f"{q.fp32.full - final.full:.2f} points full-depth and {q.fp32.early - final.early:.2f} with early "
            f"exit on {len(q.eval_y)} labelled images; raise --max-drop or try --mode mixed")
    return models, _report(q, method, plan, comp, final, models)


def _report(q: Quantizer, method: str, plan: dict, comp: dict, final: Scores, models) -> dict:
    import onnx

    layers = []
    for key in q.keys():
        layer = q.layer(key)
        row = {"stage": key[0], "name": layer.name, "module": layer.module, "op": layer.op,
               "precision": plan[key], "params": layer.params,
               "sensitivity": getattr(q, "sens8", {}).get(key), "sensitivity_int4": getattr(q, "sens4", {}).get(key)}
        if plan[key] == "int4":
            row["int4"] = q.int4_info[key]
        row.update(comp.get(key, {}))
        layers.append(row)
    int4_rows = [r["int4"] for r in layers if "int4" in r]
    fp32_bytes = sum(model_weight_bytes(onnx.load(str(q.bundle.path(s.file)))) for s in q.bundle.stages)
    q_bytes = sum(model_weight_bytes(m) for m in models)
    by_prec = {}
    for r in layers:
        by_prec[r["precision"]] = by_prec.get(r["precision"], 0) + r["params"]
    factor = {"fp16": 2.0, "int8": 1.0, "int4": 0.5}
    notes = list(q.notes)
    if q.trt < (10, 0) and q.mode != "int8":
        notes.append(f"TensorRT {q.trt[0]}.{q.trt[1]} has no INT4: every layer that would be INT4 is INT8")
    return {
        "mode": q.mode, "trt_version": f"{q.trt[0]}.{q.trt[1]}", "opset": INT4_OPSET if q.int4_allowed else None,
        "calibration_method": method, "awq_groups_source": getattr(q, "awq_groups_source", None),
        "calibration_methods": {m: s.to_dict() for m, s in q.method_scores.items()},
        "eval_images": int(len(q.eval_y)), "calibration_images": len(q.cs),
        "fp32": q.fp32.to_dict(), "quantized": final.to_dict(),
        "fp32_hidden": [{"stage": k, **h} for k, h in enumerate(q.fp32_hidden)],
        "drop_points": {"full": round(q.fp32.full - final.full, 3), "early_exit": round(q.fp32.early - final.early, 3)},
        "max_drop": q.max_drop,
        "layers": layers,
        "compensation": getattr(q, "compensation", {"layers": 0}),
        "int4_totals": {"layers": len(int4_rows), "awq_error": float(sum(r["awq_error"] for r in int4_rows)),
                        "rtn_error": float(sum(r["rtn_error"] for r in int4_rows))},
        "weight_bytes": {"fp32": fp32_bytes, "quantized": q_bytes, "ratio": round(q_bytes / max(fp32_bytes, 1), 4),
                         "layer_weights_by_precision": {p: int(n * factor[p]) for p, n in by_prec.items()}},
        "notes": notes,
    }


def _write(bundle, models, report: dict, q: Quantizer) -> None:
    """Move the new files in, then save the manifest (atomic); on failure remove what was written."""
    import onnx

    root = Path(bundle.root)
    written: list[tuple[Path, Path]] = []
    try:
        for spec, m in zip(bundle.stages, models):
            tmp = root / f"stages/.stage{spec.index}.q.onnx.tmp"
            onnx.save(m, str(tmp))
            written.append((tmp, root / _quantized_file(spec.index)))
        tmp = root / ".quant_report.json.tmp"
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        written.append((tmp, root / "quant_report.json"))
        (root / "calib").mkdir(exist_ok=True)
        tmp = root / "calib/.samples.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, _verification_samples(q.cs))
        written.append((tmp, root / SAMPLES_FILE))
        for src, dst in written:
            os.replace(src, dst)
        for spec in bundle.stages:
            spec.quantized = _quantized_file(spec.index)
            bundle.add_file(spec.quantized)
        for rel in ("quant_report.json", SAMPLES_FILE):
            bundle.add_file(rel)
        bundle.manifest.quantization = _quant_section(report)
        bundle.manifest.calibration = _calib_section(q)
        # measured on the eval images with the quantized stages: what the latency estimate uses
        bundle.manifest.exit_policy.exit_fraction = report["quantized"]["exit_rate"][:-1]
        bundle.save()
    except BaseException:
        for src, _ in written:
            Path(src).unlink(missing_ok=True)
        raise


SAMPLES_FILE = "calib/samples.npy"
SAMPLES = 16  # stored calibration inputs: what engines are verified on, on the device


def _quantized_file(k: int) -> str:
    return f"stages/stage{k}.q.onnx"


def _verification_samples(cs: CalibSet, n: int = SAMPLES) -> np.ndarray:
    """Up to `n` preprocessed calibration inputs (n, 3, H, W) float32, taken round-robin over the classes
    so every class is represented."""
    by_class = [np.flatnonzero(cs.labels == c).tolist() for c in np.unique(cs.labels)]
    picked: list[int] = []
    while len(picked) < min(n, len(cs)):
        for idx in by_class:
            if idx and len(picked) < n:
                picked.append(idx.pop(0))
    return np.ascontiguousarray(cs.x[sorted(picked)], dtype=np.float32)


def _quant_section(report: dict):
    from edge_runtime.bundle import QuantizationSpec

    plan: dict[str, dict[str, str]] = {}
    for r in report["layers"]:
        plan.setdefault(f"stage{r['stage']}", {})[r["name"]] = r["precision"]
    fp32, quant, wb = report["fp32"], report["quantized"], report["weight_bytes"]
    return QuantizationSpec(
        mode=report["mode"], trt_version=report["trt_version"], calibration_method=report["calibration_method"],
        plan=plan, eval_images=report["eval_images"],
        fp32_accuracy_pct=fp32["accuracy"], fp32_accuracy_early_exit_pct=fp32["accuracy_early_exit"],
        accuracy_pct=quant["accuracy"], accuracy_early_exit_pct=quant["accuracy_early_exit"],
        # early-exit decisions equal to FP32's, in %: the health monitor's agreement baseline
        fp32_agreement_pct=quant["fp32_agreement"],
        weight_bytes_fp32=wb["fp32"], weight_bytes_quantized=wb["quantized"], opset=report["opset"],
        report="quant_report.json")


def _calib_section(q: Quantizer):
    from edge_runtime.bundle import CalibrationSpec, InputStat

    # the references the health monitor reads (edge_runtime/health.py), measured with its own function
    stats = {k: InputStat(v["mean"], v["std"]) for k, v in q.cs.stats.items()}
    return CalibrationSpec(images=len(q.cs), source=str(q.cs.root), resized_images=q.cs.resized,
                           input_stats=stats, hidden_range=[(h["min"], h["max"]) for h in q.fp32_hidden],
                           samples=SAMPLES_FILE, samples_count=min(SAMPLES, len(q.cs)))
