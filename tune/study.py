"""The Optuna study: objectives, a storage any number of workers share, the trials, the Pareto front.

Objectives (multi-objective by default): maximise accuracy (or defect recall, `metric="recall"`) on the tuning
split and minimise the expected ms per frame on the target (roofline estimate per stage x the trial's exit
rates x the frames not reused). With measured per-stage ms (`--measure`) the ms measured here is a third
objective. `kind="weighted"` is the seed's single objective instead: metric - weight x ms. One constraint:
frame reuse may change at most `max_changed_pct` of the video's decisions (infeasible trials never reach the
front).

Storage: any Optuna storage URL (`sqlite:///study.db`, `postgresql://user@host/db`, ...), or a file path
for Optuna's journal file storage (the local default, safe for several processes on one machine). Several
`edge-qwq tune` processes given the same storage and study name work on one study together; the study records
the bundle it tunes, and a worker of another bundle is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.sources import redact_url
from tune.scores import ExitScores
from tune.simulate import Figures, measure
from tune.space import SearchSpace
from tune.video import VideoScores


@dataclass
class Variant:
    """One bundle the study may pick (the base, or a pruned variant) and what its trials are scored on."""

    name: str
    model: object  # edge_runtime.inference.DynamicInference
    stage_ms: list[float]  # per stage, estimated on the target
    tune: ExitScores
    video: VideoScores | None = None
    measured_ms: list[float] | None = None  # per stage, measured here (ONNX Runtime), with --measure
    prune_threshold: float | None = None

    @property
    def ok_index(self) -> int:
        return self.model.ok_index

    def figures(self, params: dict, scores: ExitScores | None = None) -> Figures:
        return measure(scores or self.tune, params, self.ok_index, self.stage_ms, self.video, self.measured_ms)


@dataclass
class Objectives:
    metric: str = "accuracy"  # "accuracy" | "recall"
    kind: str = "pareto"  # "pareto" | "weighted"
    weight: float = 1.0  # weighted: points of the metric one ms is worth
    max_changed_pct: float = 0.5  # reuse may change at most this percent of video decisions
    measured: bool = False  # a third objective: ms measured here

    def names(self) -> list[str]:
        if self.kind == "weighted":
            return [f"{self.metric} - {self.weight:g} x ms"]
        return [self.metric, "latency_ms"] + (["measured_ms"] if self.measured else [])

    def directions(self) -> list[str]:
        if self.kind == "weighted":
            return ["maximize"]
        return ["maximize", "minimize"] + (["minimize"] if self.measured else [])

    def values(self, f: Figures) -> list[float]:
        metric = f.accuracy if self.metric == "accuracy" else f.recall
        if self.kind == "weighted":
            return [metric - self.weight * f.latency_ms]
        return [metric, f.latency_ms] + ([f.measured_ms] if self.measured else [])

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def open_storage(url: str | None, default_path: str):
    """An Optuna storage: a URL (RDB), or a file path / journal:///path (journal file); InputError when the
    storage cannot be reached, with the URL's password hidden."""
    import optuna

    target = url or default_path
    shown = redact_url(target)
    try:
        if "://" not in target or target.startswith("journal://"):
            from pathlib import Path

            from optuna.storages.journal import JournalFileBackend

            path = Path(target.removeprefix("journal://"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        return _rdb(target)
    except ImportError as e:
        missing = getattr(e.__cause__, "name", None) or "its DB-API module"
        raise InputError(f"--storage {shown}: its database driver is not installed ({missing}); "
                         "`pip install edge-qwq[tune]` brings PostgreSQL's (psycopg)") from None
    except Exception as e:  # SQLAlchemy's OperationalError, ArgumentError, ...: one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"--storage {shown}: cannot open the study storage ({redact_text(first, target)[:200]})") \
            from None


def _rdb(url: str, attempts: int = 4):
    """RDBStorage; workers that start together race to create its tables on a new database (one of them
    gets a duplicate-key error from the server's catalogue): the loser tries again, and finds them made."""
    import time

    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except Exception as e:
            text = str(e).lower()
            if attempt == attempts - 1 or not ("duplicate key" in text or "already exists" in text):
                raise
            time.sleep(0.5 + attempt)


def _engine_kwargs(url: str) -> dict:
    """A PostgreSQL server that is down fails in seconds, not after the driver's default wait."""
    return {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}


def redact_text(text: str, url: str) -> str:
    """`text` with the password of `url` (if any) removed."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def open_study(storage, name: str, bundle_digest: str, objectives: Objectives, space: SearchSpace):
    """Create the study, or join it when it exists; InputError when it tunes another bundle or other
    objectives (trials of two different questions must not mix)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=name, directions=objectives.directions(),
                                load_if_exists=True, sampler=_sampler(space))
    attrs = study.user_attrs
    if not attrs:
        study.set_user_attr("bundle_digest", bundle_digest)
        study.set_user_attr("objectives", objectives.to_dict())
        study.set_user_attr("space", space.describe())
        return study
    if attrs.get("bundle_digest") != bundle_digest:
        raise InputError(f"study {name!r} tunes another bundle (version {str(attrs.get('bundle_digest'))[:12]}), "
                         f"not this one ({bundle_digest[:12]}); choose another --study")
    if attrs.get("objectives") != objectives.to_dict():
        raise InputError(f"study {name!r} was made with other objectives ({attrs.get('objectives')}); give the "
                         "same --metric/--objective/--measure, or choose another --study")
    return study


def _sampler(space: SearchSpace):
    import optuna

    return optuna.samplers.TPESampler(n_startup_trials=20, multivariate=True)  # reads trial.set_constraint


def run_trials(study, space: SearchSpace, variants: dict[str, Variant], objectives: Objectives, trials: int,
               untuned: dict | None = None, progress=None) -> None:
    """`trials` more trials in the study (the untuned configuration first, when the study is new)."""
    if untuned is not None and not study.trials:
        flat = space.as_trial_params(untuned)
        if flat is not None:
            study.enqueue_trial(flat, user_attrs={"untuned": True})

    def objective(trial) -> list[float]:
        params = space.suggest(trial)
        f = variants[params["variant"]].figures(params)
        trial.set_user_attr("params", params)
        trial.set_user_attr("figures", f.to_dict())
        excess = f.reuse_changed_pct - objectives.max_changed_pct  # feasible when <= 0
        trial.set_user_attr("constraint", [excess])
        trial.set_constraint("reuse_changed", excess)
        values = objectives.values(f)
        return values[0] if len(values) == 1 else values

    study.optimize(objective, n_trials=trials, callbacks=[progress] if progress else None, gc_after_trial=False)


def feasible(t) -> bool:
    return all(c <= 0 for c in t.user_attrs.get("constraint", [0.0]))


def complete_trials(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "figures" in t.user_attrs]


def pareto_front(study, objectives: Objectives) -> list:
    """The feasible complete trials no other feasible trial dominates, fastest first."""
    trials = [t for t in complete_trials(study) if feasible(t)]
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in objectives.directions()])
    vals = np.array([np.asarray(t.values) * signs for t in trials]) if trials else np.zeros((0, len(signs)))
    front = []
    for i, t in enumerate(trials):
        dominated = ((vals >= vals[i]).all(axis=1) & (vals > vals[i]).any(axis=1)).any()
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.user_attrs["figures"]["latency_ms"])


@dataclass
class Choice:
    trial: object | None  # optuna FrozenTrial, None when the untuned configuration stays
    params: dict
    reason: str
    front: list = field(default_factory=list)


def choose(study, objectives: Objectives, untuned: Figures, untuned_params: dict, max_drop: float,
           trial_number: int | None = None) -> Choice:
    """The fastest front trial within `max_drop` points of the untuned configuration's metric (on the tuning
    split), or trial `trial_number`; InputError when no front trial is within `max_drop`."""
    front = pareto_front(study, objectives)
    if trial_number is not None:
        t = next((t for t in complete_trials(study) if t.number == trial_number), None)
        if t is None:
            raise InputError(f"--trial {trial_number}: no complete trial with that number in study "
                             f"{study.study_name!r}")
        return Choice(t, t.user_attrs["params"], f"trial {trial_number}, as asked (--trial)", front)
    key = "accuracy" if objectives.metric == "accuracy" else "recall"
    base = getattr(untuned, key)
    near = [t for t in front if t.user_attrs["figures"][key] >= base - max_drop - 1e-9]
    if not near:
        best = max((t.user_attrs["figures"][key] for t in front), default=float("nan"))
        raise InputError(f"no trial on the Pareto front is within --max-drop {max_drop:g} points of the untuned "
                         f"{key} ({base:.2f} %; the front's best is {best:.2f} %); raise --max-drop or run more "
                         "trials. The bundle was not changed")
    faster = [t for t in near if t.user_attrs["figures"]["latency_ms"] < untuned.latency_ms - 1e-9]
    if not faster:
        return Choice(None, untuned_params, f"nothing on the front within {max_drop:g} points is faster than the "
                                            "untuned configuration: the defaults already lie on the Pareto front",
                      front)
    t = faster[0]
    return Choice(t, t.user_attrs["params"], f"the fastest front trial within {max_drop:g} points of the untuned "
                                             f"{key}", front)
