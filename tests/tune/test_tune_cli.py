"""`edge-qwq tune` end to end on a bundle and data made here: the study, its front, the plots, the report,
`--apply`, shared storage with two concurrent workers, and bad input as one line with the bundle untouched."""
import json
import os
import subprocess
import sys

import cv2
import pytest

from edge_qwq.cli import main
from edge_runtime.bundle import Bundle


def tune(capsys, bundle, data, out, *args):
    rc = main(["tune", "--bundle", str(bundle), "--data", str(data), "--out", str(out), *args])
    cap = capsys.readouterr()
    return rc, cap.err


def test_a_study_its_front_plots_and_report(confident_bundle, tune_data, tmp_path, capsys):
    out = tmp_path / "t"
    rc, err = tune(capsys, confident_bundle, tune_data, out, "--trials", "40", "--report")
    assert rc == 0, err
    r = json.loads((out / "tune.json").read_text())
    assert r["trials"]["in_study"] == 40 and len(r["all_trials"]) == 40
    assert r["all_trials"][0]["untuned"] and r["all_trials"][0]["params"]["early_exit"] == [0.85, 0.92]
    front = r["pareto_front"]
    assert front and all(t["feasible"] for t in front)
    lat = [t["figures"]["latency_ms"] for t in front]
    acc = [t["figures"]["accuracy"] for t in front]
    assert lat == sorted(lat) and acc == sorted(acc)  # along a front, faster never means more accurate
    for t in r["all_trials"]:  # nothing off the front dominates a front point
        assert not any(t["figures"]["accuracy"] > f["figures"]["accuracy"] and
                       t["figures"]["latency_ms"] < f["figures"]["latency_ms"] for f in front if t["feasible"])
    assert "tuning on 32 images" in err and r["judged_on"].startswith("64 images")
    for name in ("pareto.png", "exit_rates.png", "accuracy_per_exit.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.std() > 10  # a real picture, not a blank one
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "http://" not in page and "https://" not in page


def test_apply_writes_a_new_version_that_run_and_the_service_use(confident_bundle, tune_data, tmp_path, capsys):
    from edge_runtime.inference import DynamicInference
    from edge_runtime.service import Service, ServiceConfig

    out = tmp_path / "t"
    assert tune(capsys, confident_bundle, tune_data, out, "--trials", "25")[0] == 0
    trials = json.loads((out / "tune.json").read_text())["all_trials"]
    pick = next(t for t in trials if not t["untuned"] and t["params"]["reuse_window"] > 0)
    before = Bundle.open(confident_bundle).version
    rc, err = tune(capsys, confident_bundle, tune_data, out, "--trials", "0", "--trial", str(pick["number"]),
                   "--apply")
    assert rc == 0, err
    b = Bundle.open(confident_bundle)  # every hash verifies
    p = pick["params"]
    assert b.version != before and f"{before} -> {b.version}" in err
    assert b.manifest.tuning.trial == pick["number"] and b.manifest.tuning.base_version == before
    assert b.manifest.exit_policy.early_exit == pytest.approx(p["early_exit"], abs=1e-6)
    assert b.manifest.dynamic.reuse_window == p["reuse_window"]
    model = DynamicInference(confident_bundle)
    assert list(model.policy.ok_thresholds) == pytest.approx(p["early_exit_ok"], abs=1e-6)
    assert model.reuse_window == p["reuse_window"]
    folder = tune_data / "val" / "ok"
    assert main(["run", "--bundle", str(confident_bundle), "--source", str(folder), "--max-frames", "2"]) == 0
    assert f'"model_version": "{b.version}"' in capsys.readouterr().out
    svc = Service(ServiceConfig(bundle=str(confident_bundle), source=str(folder), store=str(tmp_path / "d.db"),
                                max_frames=3, handle_signals=False))
    assert svc.run() == 0
    assert list(svc.model.policy.thresholds) == pytest.approx(p["early_exit"], abs=1e-6)
    assert svc.reuse.window == p["reuse_window"]


def _worker(bundle, data, out, storage, study, trials):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge_qwq.cli", "tune", "--bundle", str(bundle), "--data", str(data),
                             "--out", str(out), "--storage", storage, "--study", study, "--trials", str(trials)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def two_workers_share_one_study(bundle, data, tmp_path, storage) -> dict:
    """Two concurrent workers, 20 + 15 trials, on one storage, then a third process that only reads:
    {"returncodes", "numbers" (of the study's trials), "complete", "front_read", "front_stored"}."""
    import optuna

    from tune.study import Objectives, pareto_front

    workers = [_worker(bundle, data, tmp_path / f"w{i}", storage, "shared", n) for i, n in enumerate((20, 15))]
    codes = []
    for w in workers:
        _, err = w.communicate(timeout=240)
        codes.append((w.returncode, err[-500:]))
    study = optuna.load_study(study_name="shared", storage=_storage(storage))
    third = _worker(bundle, data, tmp_path / "w3", storage, "shared", 0)
    _, err = third.communicate(timeout=120)
    codes.append((third.returncode, err[-500:]))
    read = json.loads((tmp_path / "w3" / "tune.json").read_text()) if third.returncode == 0 else {}
    return {"returncodes": codes, "numbers": [t.number for t in study.trials],
            "complete": all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials),
            "in_study_read": read.get("trials", {}).get("in_study"),
            "front_read": [t["number"] for t in read.get("pareto_front", [])],
            "front_stored": [t.number for t in pareto_front(study, Objectives())]}


def check_shared(r: dict) -> None:
    assert [c for c, _ in r["returncodes"]] == [0, 0, 0], r["returncodes"]
    assert len(r["numbers"]) == 35 and len(set(r["numbers"])) == 35  # the trials add up; none repeats
    assert r["complete"] and r["in_study_read"] == 35
    assert r["front_read"] == r["front_stored"] and r["front_read"]  # a third process reads the same front


def _storage(url):
    from tune.study import open_storage

    return open_storage(url, url)


@pytest.mark.timeout(300)
def test_two_workers_on_one_local_storage(confident_bundle, tune_data, tmp_path):
    r = two_workers_share_one_study(confident_bundle, tune_data, tmp_path, str(tmp_path / "study.journal"))
    check_shared(r)
    assert len(r["numbers"]) == 35


def test_an_unreachable_storage_is_one_line_without_its_password(confident_bundle, tune_data, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    manifest = (confident_bundle / "manifest.json").read_bytes()
    rc, err = tune(capsys, confident_bundle, tune_data, tmp_path / "t", "--storage",
                   f"postgresql://tuner:s3cret@127.0.0.1:{port}/studies", "--apply")
    assert rc != 0 and "cannot open the study storage" in err and len(err.strip().splitlines()) == 1, err
    assert "s3cret" not in err
    assert (confident_bundle / "manifest.json").read_bytes() == manifest


def test_a_study_of_another_bundle_is_refused(confident_bundle, tiny_bundle, tune_data, tmp_path, capsys):
    storage = str(tmp_path / "s.journal")
    assert tune(capsys, tiny_bundle, tune_data, tmp_path / "a", "--storage", storage, "--study", "line3",
                "--trials", "3")[0] == 0
    manifest = (confident_bundle / "manifest.json").read_bytes()
    rc, err = tune(capsys, confident_bundle, tune_data, tmp_path / "b", "--storage", storage, "--study", "line3",
                   "--apply")
    assert rc != 0 and "tunes another bundle" in err and len(err.strip().splitlines()) == 1, err
    assert (confident_bundle / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("args, words", [
    (["--range", "early_exit=0.2:0.9"], "may be narrowed within 0.5..0.999"),
    (["--range", "speed=1:2"], "expected NAME=LO:HI"),
    (["--tune-split", "val"], "are both 'val'"),
    (["--trial", "999", "--trials", "2"], "no complete trial with that number"),
    (["--max-drop", "nan"], "not a finite number"),
])
def test_bad_options_are_one_line_and_touch_nothing(confident_bundle, tune_data, tmp_path, capsys, args, words):
    manifest = (confident_bundle / "manifest.json").read_bytes()
    rc, err = tune(capsys, confident_bundle, tune_data, tmp_path / "t", "--apply", *args)
    assert rc != 0 and words in err, err
    assert (confident_bundle / "manifest.json").read_bytes() == manifest


@pytest.mark.timeout(300)
def test_two_workers_on_a_real_postgresql_server(confident_bundle, tune_data, tmp_path, postgres_url):
    r = two_workers_share_one_study(confident_bundle, tune_data, tmp_path, postgres_url)
    check_shared(r)
    assert len(set(r["numbers"])) == 35


def test_a_pruned_variant_is_a_choice_of_the_study(confident_bundle, tiny_bundle, tune_data, tmp_path, capsys):
    """--variant: another bundle of the same classes (here an unpruned one stands in for `prune`'s output)."""
    out = tmp_path / "t"
    rc, err = tune(capsys, confident_bundle, tune_data, out, "--trials", "30", "--variant", str(tiny_bundle))
    assert rc == 0, err
    r = json.loads((out / "tune.json").read_text())
    assert set(r["space"]["variants"]) == {"base", "bundle"} and set(r["stage_ms"]) == {"base", "bundle"}
    assert {t["params"]["variant"] for t in r["all_trials"]} == {"base", "bundle"}


@pytest.mark.parametrize("args, n_values", [(["--measure"], 3), (["--objective", "weighted", "--weight", "2"], 1)])
def test_measured_and_weighted_objectives(confident_bundle, tune_data, tmp_path, capsys, args, n_values):
    out = tmp_path / "t"
    rc, err = tune(capsys, confident_bundle, tune_data, out, "--trials", "8", *args)
    assert rc == 0, err
    r = json.loads((out / "tune.json").read_text())
    assert all(len(t["values"]) == n_values for t in r["all_trials"])
    if n_values == 3:
        assert all(t["figures"]["measured_ms"] > 0 for t in r["all_trials"]) and r["measured_stage_ms"]["base"]
    else:
        f = r["all_trials"][0]["figures"]
        assert r["all_trials"][0]["values"][0] == pytest.approx(f["accuracy"] - 2 * f["latency_ms"], abs=1e-3)
