"""Choosing from the front: the fastest point within --max-drop of the untuned one; the defaults kept when
nothing faster is near enough; one clear line when no front point is within --max-drop. Trials are real
Optuna trials in an in-memory study."""
import optuna
import pytest

from edge_runtime.errors import InputError
from tune.simulate import Figures
from tune.study import Objectives, choose, pareto_front

UNTUNED = Figures(95.0, 97.0, [0.8, 0.2], 0.0, 0.0, 1.0)
PARAMS = {"early_exit": [0.85], "early_exit_ok": [0.925], "reuse_window": 0, "reuse_threshold": 3.0,
          "variant": "base"}


def study_of(points):
    """points: (accuracy, latency_ms, feasible)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (acc, ms, ok) in enumerate(points):
        fig = Figures(acc, acc, [1.0, 0.0], 0.0, 0.0 if ok else 2.0, ms)
        dist = optuna.distributions.FloatDistribution(0.5, 0.999)
        study.add_trial(optuna.trial.create_trial(
            params={"early_exit_0": 0.5 + i / 100}, distributions={"early_exit_0": dist}, values=[acc, ms],
            user_attrs={"figures": fig.to_dict(), "params": dict(PARAMS, early_exit=[0.5 + i / 100]),
                        "constraint": [0.0 if ok else 1.5]}))
    return study


def test_the_fastest_front_point_within_max_drop():
    study = study_of([(95.0, 1.0, True), (94.8, 0.7, True), (94.0, 0.4, True), (96.0, 0.5, False),
                      (94.5, 0.9, True)])
    front = pareto_front(study, Objectives())
    assert [t.number for t in front] == [2, 1, 0]  # the infeasible trial 3 and the dominated trial 4 are off
    c = choose(study, Objectives(), UNTUNED, PARAMS, max_drop=0.3)
    assert c.trial.number == 1 and "fastest front trial within 0.3" in c.reason
    assert choose(study, Objectives(), UNTUNED, PARAMS, max_drop=1.0).trial.number == 2


def test_defaults_already_on_the_front_are_kept():
    study = study_of([(95.0, 1.0, True), (93.0, 0.5, True)])
    c = choose(study, Objectives(), UNTUNED, PARAMS, max_drop=0.3)
    assert c.trial is None and c.params == PARAMS and "already lie on the Pareto front" in c.reason


def test_no_front_point_within_max_drop_is_one_line():
    study = study_of([(90.0, 0.5, True), (92.0, 0.8, True)])
    with pytest.raises(InputError, match=r"no trial on the Pareto front is within --max-drop 0.3 points .*95.00 %"):
        choose(study, Objectives(), UNTUNED, PARAMS, max_drop=0.3)
    assert choose(study, Objectives(), UNTUNED, PARAMS, max_drop=3.0).trial.number == 1
