"""`edge-qwq run --reject`: every defect frame rejected and recorded, through the real entry point and the
FAKE chip (fake-gpio:, its writes in a file: no GPIO chip exists here); kill -9; the user's mistakes."""
from __future__ import annotations

import json
import re
import signal
import sqlite3

import pytest

from edge_runtime.service import Service, ServiceConfig
from tests.edge_runtime.service_helpers import cli, cli_run, frames, wait_for, write_video

pytestmark = pytest.mark.timeout(120)


def _edges(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _query(db, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def test_every_defect_frame_is_rejected_on_time_and_recorded(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(80))
    db, chip = tmp_path / "d.db", tmp_path / "edges.jsonl"
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
                "--reject", f"fake-gpio:{chip}", "--reject-delay-ms", "300", "--reject-pulse-ms", "5")
    assert r.returncode == 0, r.stderr
    assert "rejecting defects on fake-gpio:" in r.stderr and "300 ms after capture" in r.stderr
    defects = _query(db, "SELECT id, frame_id, time FROM decisions WHERE label != 'ok' ORDER BY id")
    rejects = _query(db, "SELECT decision_id, frame_id, scheduled_at, fired_at, error_ms, status, output "
                         "FROM rejects ORDER BY id")
    assert len(defects) > 0  # this untrained student calls these frames defects
    assert [(d, f) for d, f, *_ in rejects] == [(i, f) for i, f, _ in defects]  # each defect once, in order
    decided = {i: t for i, _, t in defects}
    for decision_id, _, scheduled, fired, error_ms, status, output in rejects:
        assert status in ("fired", "late") and output == f"fake-gpio:{chip}"
        assert scheduled - 0.3 <= decided[decision_id]  # due from the capture, which came before the decision
        assert -0.001 <= fired - scheduled < 0.25 and abs(error_ms - (fired - scheduled) * 1e3) < 5
    ons = [e for e in _edges(chip) if e["value"] == 1]
    assert len(ons) == len(rejects)  # the chip received one active write per reject
    assert all(abs(e["wall"] - row[3]) < 0.005 for e, row in zip(ons, rejects))
    assert _edges(chip)[-1]["value"] == 0  # released inactive


def test_status_reports_the_rejects(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(30))
    chip = tmp_path / "edges.jsonl"
    svc = Service(ServiceConfig(bundle=str(tiny_bundle), source=str(video), store=str(tmp_path / "d.db"),
                                reject=f"fake-gpio:{chip}", reject_delay_ms=20, reject_pulse_ms=2,
                                handle_signals=False))
    assert svc.run() == 0
    st = svc.status()["reject"]
    assert st["output"] == f"fake-gpio:{chip}" and st["api"].startswith("FAKE")
    assert st["scheduled"] == st["fired"] + st["failed"] == svc.status()["store"]["stored"] and st["failed"] == 0
    assert st["timing_error_ms"]["max"] >= 0 and st["worker"] == "stopped"
    from prometheus_client import generate_latest

    metrics = generate_latest(svc.registry).decode()
    fired = svc.metrics.rejects.labels("fired")._value.get() + svc.metrics.rejects.labels("late")._value.get()
    assert fired == st["fired"] and "edgeqwq_rejects_total{status=" in metrics


def test_kill_9_the_worker_still_rejects_and_the_restart_marks_them_unconfirmed(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(3000, size=(32, 32)))
    db, chip = tmp_path / "d.db", tmp_path / "edges.jsonl"
    args = ("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
            "--reject", f"fake-gpio:{chip}", "--reject-delay-ms", "1500", "--reject-pulse-ms", "1")
    p = cli(*args)
    try:
        wait_for(lambda: db.exists() and _query(db, "SELECT COUNT(*) FROM rejects")[0][0] >= 20, 60,
                 what="committed rejects")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=20)
    pending = _query(db, "SELECT id FROM rejects WHERE status = 'scheduled'")
    assert pending  # scheduled 1.5 s ahead: none had fired when the service died
    wait_for(lambda: sum(e["value"] for e in _edges(chip)) >= len(pending), 10,
             what="the orphaned worker to fire what it was given")
    r = cli_run(*args[:-4], "--reject-delay-ms", "10", "--reject-pulse-ms", "1", "--max-frames", "5", timeout=60)
    assert r.returncode == 0, r.stderr
    ids = ",".join(str(i) for (i,) in pending)
    assert {s for (s,) in _query(db, f"SELECT status FROM rejects WHERE id IN ({ids})")} == {"unconfirmed"}
    (detail,) = _query(db, "SELECT detail FROM events WHERE kind = 'rejects_unconfirmed'")[0]
    assert json.loads(detail)["count"] >= len(pending)


def _one_line(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("spec, expect", [
    ("gpio:gpiochip9:3", "no GPIO chip /dev/gpiochip9 on this machine"),
    ("gpio:0", "give gpio:CHIP:LINE[:active_low]"),
    ("ftp://plc/reject", "give gpio:CHIP:LINE[:active_low], http://HOST[:PORT]/PATH or fake-gpio:FILE"),
])
def test_a_bad_reject_output_is_one_line_and_loses_no_decision(tiny_bundle, tmp_path, spec, expect):
    video = write_video(tmp_path / "v.avi", frames(10))
    db = tmp_path / "d.db"
    assert cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db)).returncode == 0
    before = _query(db, "SELECT * FROM decisions")
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db), "--reject", spec)
    assert expect in _one_line(r)
    assert _query(db, "SELECT * FROM decisions") == before and len(before) == 10


@pytest.mark.parametrize("args, expect", [
    (("--reject", "fake-gpio:e.jsonl"), "--reject needs --store"),
    (("--store", "d.db", "--reject", "fake-gpio:e.jsonl", "--reject-delay-ms", "-5"), "--reject-delay-ms"),
    (("--store", "d.db", "--reject", "fake-gpio:e.jsonl", "--reject-pulse-ms", "0"), "--reject-pulse-ms"),
    (("--store", "d.db", "--reject", "fake-gpio:e.jsonl", "--reject-delay-ms", "nan"), "--reject-delay-ms"),
])
def test_reject_option_mistakes(tiny_bundle, tmp_path, args, expect):
    video = write_video(tmp_path / "v.avi", frames(3))
    args = [a.replace("e.jsonl", str(tmp_path / "e.jsonl")).replace("d.db", str(tmp_path / "d.db")) for a in args]
    p = cli("run", "--bundle", str(tiny_bundle), "--source", str(video), *args)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and expect in err and "Traceback" not in err, err
    assert not (tmp_path / "e.jsonl").exists()


def test_a_gateway_password_never_shows(tiny_bundle, tmp_path):
    from tests.edge_runtime.service_helpers import free_port

    video = write_video(tmp_path / "v.avi", frames(5))
    db = tmp_path / "d.db"
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
                "--reject", f"http://plc:Hunter2-pw@127.0.0.1:{free_port()}/reject", "--reject-delay-ms", "5")
    assert r.returncode == 0, r.stderr
    assert "Hunter2" not in r.stderr + r.stdout
    rows = _query(db, "SELECT output, status, detail FROM rejects")
    assert rows and all("Hunter2" not in o and s == "failed" and "cannot be reached" in d for o, s, d in rows)
    events = _query(db, "SELECT detail FROM events")
    assert all("Hunter2" not in d for (d,) in events)
    assert re.search(r"reject \d+ failed: the gateway cannot be reached", r.stderr)
    assert "pulse" not in r.stderr  # a gateway gets a request, not a pulse
