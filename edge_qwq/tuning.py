"""`edge-qwq tune`, chained: score the splits once, run the study, choose from its front, judge, write, apply.

    >>> result = tune_bundle(TuneRequest(bundle="bundle/", data="data/", trials=100))   # doctest: +SKIP
    >>> result["chosen"]["judged"]["accuracy"], result["untuned"]["judged"]["accuracy"]  # doctest: +SKIP

The tuning split (default `calib`, which `bench` does not use) scores the trials; the judge split (default
`val`, bench's) reports the chosen point and the untuned one, never used to choose. Per-stage ms come from the
roofline estimate on `target` (engine_builder.estimate); `measure` adds ms measured here per stage.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.errors import InputError


@dataclass
class TuneRequest:
    bundle: str
    data: str
    trials: int = 100
    target: str = "orin-agx"
    max_drop: float = 0.3
    storage: str | None = None
    study: str | None = None
    out: str = "tune_out"
    video: str | None = None
    tune_split: str = "calib"
    judge_split: str = "val"
    metric: str = "accuracy"
    objective: str = "pareto"
    weight: float = 1.0
    measure: bool = False
    ranges: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    apply: bool = False
    trial: int | None = None
    no_reuse: bool = False
    max_changed_pct: float = 0.5


def tune_bundle(req: TuneRequest, say=print, progress=None) -> dict:
    """Run the whole job (module doc); the JSON-ready result, also written to OUT/tune.json."""
    from tune.space import SearchSpace
    from tune.study import Objectives, choose, open_storage, open_study, run_trials

    if req.tune_split == req.judge_split:
        raise InputError(f"--tune-split and --judge-split are both {req.tune_split!r}: a point chosen on the "
                         "images it is judged on says nothing about new ones")
    out = Path(req.out)
    # what can be refused cheaply goes first: the storage, the study (another bundle's?), the space
    storage = open_storage(req.storage, str(out / "study.journal"))
    bundle = Bundle.open(req.bundle)
    names = ["base"] + [_variant_name(p) for p in req.variants]
    space = SearchSpace.build(len(bundle.stages) - 1, req.ranges, names, tune_reuse=not req.no_reuse)
    objectives = Objectives(req.metric, req.objective, req.weight, req.max_changed_pct, req.measure)
    name = req.study or f"edge-qwq-{bundle.version}"
    study = open_study(storage, name, bundle.digest, objectives, space)
    variants = _variants(req, dict(zip(names, [req.bundle, *req.variants])), say, progress)
    base = variants["base"]
    untuned = untuned_params(base.model)
    t0 = time.perf_counter()
    if req.trials:
        with (progress(f"{req.trials} trials") if progress else _null()) as cb:
            done = [0]

            def tick(study_, trial_) -> None:
                done[0] += 1
                cb(done[0], req.trials)

            run_trials(study, space, variants, objectives, req.trials, untuned, tick if cb else None)
    tuned_s = time.perf_counter() - t0
    untuned_fig = base.figures(untuned)
    choice = choose(study, objectives, untuned_fig, untuned, req.max_drop, req.trial)
    chosen_variant = variants[choice.params.get("variant", "base")]
    judge = {v.name: _judge_scores(v, req, progress) for v in (base, chosen_variant)}
    result = {
        "bundle": str(req.bundle), "bundle_version": base.model.bundle.version, "study": name,
        "storage": _shown(req.storage, out / "study.journal"), "target": req.target,
        "objectives": objectives.to_dict() | {"names": objectives.names()}, "space": space.describe(),
        "tuned_on": base.tune.source, "judged_on": judge["base"].source,
        "video": base.video.source if base.video else None,
        "trials": {"this_run": req.trials, "in_study": len(study.trials), "seconds_this_run": round(tuned_s, 2)},
        "stage_ms": {v.name: [round(x, 4) for x in v.stage_ms] for v in variants.values()},
        "measured_stage_ms": {v.name: v.measured_ms for v in variants.values() if v.measured_ms},
        "untuned": {"params": untuned, "tuned_split": untuned_fig.to_dict(),
                    "judged": base.figures(untuned, judge["base"]).to_dict()},
        "chosen": {"trial": None if choice.trial is None else choice.trial.number, "reason": choice.reason,
                   "params": choice.params, "variant": chosen_variant.name,
                   "tuned_split": chosen_variant.figures(choice.params).to_dict(),
                   "judged": chosen_variant.figures(choice.params, judge[chosen_variant.name]).to_dict()},
        "accuracy_per_exit": {"tuning split": _per_exit(base.tune), "judge split": _per_exit(judge["base"])},
        "pareto_front": [_trial_row(t) for t in choice.front],
        "all_trials": [_trial_row(t) for t in _complete(study)],
    }
    result["applied"] = _apply(req, result, chosen_variant, choice, say) if req.apply else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def untuned_params(model) -> dict:
    """The configuration the bundle runs with today (its manifest's, or the defaults)."""
    p = model.policy
    return {"early_exit": list(p.thresholds), "early_exit_ok": list(p.ok_thresholds),
            "reuse_window": int(model.bundle.manifest.dynamic.reuse_window),
            "reuse_threshold": float(model.bundle.manifest.dynamic.reuse_threshold), "variant": "base"}


def _variants(req: TuneRequest, paths: dict[str, str], say, progress) -> dict:
    """The base bundle and any pruned variants ({name: path}), each with its tuning scores, video and
    per-stage ms."""
    from edge_runtime.inference import DynamicInference, InferenceConfig
    from tune.study import Variant

    out, classes = {}, None
    for name, path in paths.items():
        model = DynamicInference(path, InferenceConfig(threads=0))
        if model.tiled is not None:
            raise InputError(f"{path} is a tile bundle: tuning its per-tile exits needs frames with located "
                             "defects, which `tune` does not score yet; tune a resize bundle")
        if classes is not None and model.classes != classes:
            raise InputError(f"--variant {path}: its classes {model.classes} are not the base bundle's {classes}")
        classes = model.classes
        out[name] = Variant(name, model, _stage_ms(path, req.target, model.precision),
                            _scores(model, req.data, req.tune_split, req.out, progress, say),
                            None if req.no_reuse else _video(model, req, say),
                            _measure(model) if req.measure else None, _prune_threshold(model))
    return out


def _variant_name(path: str) -> str:
    b = Bundle.open(path)
    pruning = b.manifest.student.pruning if b.manifest.student else None
    return f"{Path(path).name} (prune {pruning.threshold:g})" if pruning else Path(path).name


def _prune_threshold(model) -> float | None:
    s = model.bundle.manifest.student
    return s.pruning.threshold if s is not None and s.pruning is not None else None


def _stage_ms(path: str, target: str, precision: str) -> list[float]:
    from engine_builder.estimate import estimate_bundle

    est = estimate_bundle(path, target, precision=precision)
    return [float(s["ms"]) for s in est["stages"]]


def _scores(model, data, split, out, progress, say):
    from tune.scores import split_scores

    with (progress(f"scoring {split}/ once per stage") if progress else _null()) as cb:
        s = split_scores(model, data, split, Path(out) / "cache", cb)
    if s.labels is None or len(s) < 20:
        raise InputError(f"{data}/{split}: {len(s)} images; tuning needs at least 20 labelled images")
    say(f"tuning on {s.source}")
    return s


def _judge_scores(variant, req: TuneRequest, progress):
    from tune.scores import split_scores

    with (progress(f"scoring {req.judge_split}/ (judge)") if progress else _null()) as cb:
        return split_scores(variant.model, req.data, req.judge_split, Path(req.out) / "cache", cb)


def _video(model, req: TuneRequest, say):
    from tune.video import video_scores

    v = video_scores(model, req.video, req.data, req.tune_split)
    say(f"frame reuse tuned on {v.source}")
    return v


def _measure(model, frames: int = 200) -> list[float]:
    """p50 ms of each stage here (ONNX Runtime, one frame at a time), on its real input."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((1, 3, model.spec.height, model.spec.width)).astype(np.float32)
    out = []
    for k in range(model.num_stages):
        times = []
        for i in range(frames + 20):
            t0 = time.perf_counter()
            nxt, _ = model.backend.run_stage(k, h)
            if i >= 20:
                times.append((time.perf_counter() - t0) * 1e3)
        out.append(round(float(np.median(times)), 4))
        h = nxt
    return out


def _apply(req, result, variant, choice, say) -> dict | None:
    from tune.apply import apply_params

    if choice.trial is None:
        say("nothing applied: " + choice.reason)
        return None
    record = {"study": result["study"], "storage": result["storage"], "trial": choice.trial.number,
              "objectives": result["objectives"], "target": req.target,
              "tuned_on": {"source": result["tuned_on"], "figures": result["chosen"]["tuned_split"]},
              "judged_on": {"source": result["judged_on"], "figures": result["chosen"]["judged"],
                            "untuned_figures": result["untuned"]["judged"]}}
    path = variant.model.bundle.root
    b, before, note = apply_params(path, choice.params, result["chosen"]["judged"]["exit_rates"], record)
    say(f"applied trial {choice.trial.number} to {path}: version {before} -> {b.version}")
    return {"bundle": str(path), "version_before": before, "version": b.version, "signature_note": note}


def _per_exit(s) -> list[float]:
    """Accuracy (%) of each exit's own answer."""
    return [round(100.0 * float((s.top[k] == s.labels).mean()), 3) for k in range(s.stages)]


def _trial_row(t) -> dict:
    return {"number": t.number, "values": list(t.values), "params": t.user_attrs["params"],
            "figures": t.user_attrs["figures"], "feasible": all(c <= 0 for c in t.user_attrs.get("constraint", [0])),
            "untuned": bool(t.user_attrs.get("untuned"))}


def _complete(study) -> list:
    from tune.study import complete_trials

    return complete_trials(study)


def _shown(storage: str | None, default: Path) -> str:
    from edge_runtime.sources import redact_url

    return redact_url(storage) if storage else str(default)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
