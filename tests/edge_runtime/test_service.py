"""The service end to end, as `edge-qwq run` in a subprocess: video file, MJPEG over ffmpeg stopped and
restarted, kill -9 and restart, SIGTERM, systemd notify on a real socket, and the user mistakes."""
from __future__ import annotations

import json
import signal
import socket
import sqlite3

import pytest

from tests.edge_runtime.test_store import fill_disk
from tests.edge_runtime.service_helpers import (
    MjpegServer, cli, cli_run, corrupt_avi, free_port, frames, needs_ffmpeg, status, wait_for, write_video)


def _rows(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT id, frame_id, label FROM decisions ORDER BY id").fetchall()


def _one_line_error(r):
    assert r.returncode != 0, r.stdout
    err = r.stderr.strip()
    assert err.startswith("edge-qwq: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_video_file_every_frame_stored_corrupt_counted(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(120))
    corrupt_avi(video, [7, 50])
    db, jl = tmp_path / "d.db", tmp_path / "d.jsonl"
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db),
                "--jsonl", str(jl))
    assert r.returncode == 0, r.stderr
    rows = _rows(db)
    assert len(rows) == 118 == len(jl.read_text().splitlines())
    assert [f for _, f, _ in rows] == [i for i in range(120) if i not in (7, 50)]  # the file's own frame indices
    assert "118 of 120 frames decoded; 2 could not be decoded" in r.stderr


@needs_ffmpeg
def test_mjpeg_stream_survives_ffmpeg_restart_and_sigterm_flushes(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    server = MjpegServer(video).start()
    port, db, jl = free_port(), tmp_path / "d.db", tmp_path / "d.jsonl"
    p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(db), "--jsonl", str(jl),
            "--http", f"127.0.0.1:{port}")
    try:
        wait_for(lambda: (status(port) or {}).get("frames", 0) >= 20, 30, what="frames before the stop")
        server.stop()
        wait_for(lambda: not status(port)["source_stats"]["connected"], 10, what="the loss to be seen")
        before = status(port)["frames"]
        server.start()
        s = wait_for(lambda: (st := status(port)) and st["frames"] > before + 20 and st, 30,
                     what="frames after the restart")
        assert s["source_stats"]["reconnects"] >= 1 and p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
        server.stop()
    assert p.returncode == 0
    rows = _rows(db)
    assert len(rows) >= s["frames"] and len(jl.read_text().splitlines()) == len(rows)  # SIGTERM flushed all


@needs_ffmpeg
def test_kill_9_then_restart_keeps_every_reported_decision(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    db, jl = tmp_path / "d.db", tmp_path / "d.jsonl"
    with MjpegServer(video) as server:
        p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(db), "--jsonl", str(jl))
        wait_for(lambda: jl.exists() and len(jl.read_text().splitlines()) >= 40, 30, what="stored decisions")
        p.kill()
        p.communicate(timeout=10)
    reported = [json.loads(x) for x in jl.read_text().splitlines() if x.endswith("}")]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {i: (f, lab) for i, f, lab in _rows(db)}
    assert len(reported) >= 40
    assert all(stored.get(r["id"]) == (r["frame_id"], r["label"]) for r in reported)
    video2 = write_video(tmp_path / "v2.avi", frames(10))
    r = cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video2), "--store", str(db))
    assert r.returncode == 0, r.stderr
    assert len(_rows(db)) == len(stored) + 10


@needs_ffmpeg
def test_ready_and_watchdog_on_a_real_notify_socket(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(60))
    addr = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, MjpegServer(video) as server:
        sock.bind(addr)
        sock.settimeout(20)
        p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(tmp_path / "d.db"),
                env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "200000"})
        got = [sock.recv(256).decode() for _ in range(4)]
        p.send_signal(signal.SIGTERM)
        got.append(sock.recv(256).decode())
        while "STOPPING=1" not in got[-1]:
            got.append(sock.recv(256).decode())
        p.communicate(timeout=20)
    assert got[0].startswith("READY=1") and got[1:4] == ["WATCHDOG=1"] * 3
    assert p.returncode == 0


def test_user_mistakes_one_line_each_and_the_store_is_kept(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "v.avi", frames(20))
    db = tmp_path / "d.db"
    assert cli_run("run", "--bundle", str(tiny_bundle), "--source", str(video), "--store", str(db)).returncode == 0
    base = ["run", "--bundle", str(tiny_bundle), "--store", str(db)]
    err = _one_line_error(cli_run(*base, "--source", str(tmp_path / "nope.mp4")))
    assert "no such file" in err
    # `run` alone still gives up on a stream after --connect-timeout; the service waits for it (issue 13:
    # tests/edge_runtime/test_camera_wait.py)
    err = _one_line_error(cli_run("run", "--bundle", str(tiny_bundle), "--source", f"http://127.0.0.1:{free_port()}/cam",
                                  "--connect-timeout", "1"))
    assert "cannot open the stream" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        err = _one_line_error(cli_run(*base, "--source", str(video), "--http", f"127.0.0.1:{busy.getsockname()[1]}"))
    assert "already in use" in err
    err = _one_line_error(cli_run("run", "--bundle", str(tmp_path), "--source", str(video), "--store", str(db)))
    assert "is not a bundle" in err
    err = _one_line_error(cli_run(*base, "--source", str(video), "--evidence", str(tmp_path / "ev"),
                                  "--evidence-budget-mb", "1e12"))
    assert "does not fit on this disk" in err
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(_rows(db)) == 20


@needs_ffmpeg
def test_full_evidence_disk_while_running_keeps_deciding(tiny_bundle, tmp_path):
    import subprocess

    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    video = write_video(tmp_path / "v.avi", frames(60))
    port, db = free_port(), tmp_path / "d.db"
    try:
        with MjpegServer(video) as server:
            p = cli("run", "--bundle", str(tiny_bundle), "--source", server.url, "--store", str(db),
                    "--http", f"127.0.0.1:{port}", "--evidence", str(disk / "ev"), "--evidence-budget-mb", "0.2")
            try:
                s = wait_for(lambda: (st := status(port)) and (st["evidence"] or {}).get("saved", 0) >= 3 and st, 30,
                             what="evidence being written")
                fill_disk(disk / "filler")  # something else fills the disk
                s = wait_for(lambda: (st := status(port)) and st["evidence"]["paused"] and st, 20,
                             what="evidence to pause")
                frames_then = s["frames"]
                wait_for(lambda: status(port)["frames"] > frames_then + 20, 20, what="decisions to go on")
                saved = status(port)["evidence"]["saved"]
                (disk / "filler").unlink()  # the space comes back: evidence resumes (finding 10 of issue 11)
                wait_for(lambda: (e := status(port)["evidence"])["paused"] is None and e["saved"] > saved, 20,
                         what="evidence to resume")
            finally:
                p.send_signal(signal.SIGTERM)
                out, err = p.communicate(timeout=20)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert p.returncode == 0, err
    warnings = [x for x in err.splitlines() if "evidence paused" in x]
    assert len(warnings) == 1 and "cannot write evidence" in warnings[0]
    with sqlite3.connect(db) as c:
        kinds = [k for (k,) in c.execute("SELECT kind FROM events")]
        assert c.execute("SELECT count(*) FROM decisions").fetchone()[0] >= frames_then + 20
    assert "evidence_paused" in kinds and "evidence_resumed" in kinds
    assert any("evidence resumed" in x for x in err.splitlines())


def test_bundle_switch_the_backend_cannot_run_keeps_deciding_on_onnxruntime(tiny_bundle):
    """A rollback on the device to a bundle without TensorRT engines for it: no crash, ONNX Runtime, an event.
    (Here TensorRT is absent altogether, which the backend reports the same way: BackendUnavailable.)"""
    from edge_runtime.service import Service, ServiceConfig

    svc = Service(ServiceConfig(bundle=str(tiny_bundle), source=str(tiny_bundle), backend="tensorrt",
                                handle_signals=False))
    try:
        svc.active.load_or_cpu(tiny_bundle, "fp32")
        assert svc.model.backend.name == "onnxruntime"
        assert [e["kind"] for e in svc.events] == ["backend_fallback"]
        assert svc.events[0]["detail"]["backend"] == "onnxruntime"
    finally:
        svc.active.close()


def test_a_backend_that_cannot_run_the_bundle_at_start_falls_back_and_says_so(tiny_bundle, tmp_path, capsys):
    """Issue 13: at start too (engines refused, or built for another precision), the service decides on ONNX
    Runtime instead of exiting into a systemd restart loop."""
    from edge_runtime.service import Service, ServiceConfig

    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "frame.png"), np.full((40, 40, 3), 128, np.uint8))
    svc = Service(ServiceConfig(bundle=str(tiny_bundle), source=str(tmp_path / "frame.png"), backend="tensorrt",
                                store=str(tmp_path / "d.db"), max_frames=1, handle_signals=False))
    assert svc.run() == 0
    assert svc.model.backend.name == "onnxruntime" and svc.events[0]["kind"] == "backend_fallback"
    err = capsys.readouterr().err
    assert "warning: tensorrt cannot run this bundle here" in err and "deciding on onnxruntime" in err


def test_reuse_window_comes_from_the_bundle_unless_given(tiny_bundle, tmp_path):
    """dynamic.reuse_window: export writes it (0: off); the service takes it when --reuse-window is not given."""
    from edge_runtime.bundle import Bundle
    from edge_runtime.service import Service, ServiceConfig
    from tests.edge_runtime.service_helpers import frames, write_video

    assert Bundle.open(tiny_bundle).manifest.dynamic.reuse_window == 0
    video = write_video(tmp_path / "still.avi", frames(30, moving=False))

    def served(**kw) -> dict:
        svc = Service(ServiceConfig(bundle=str(tiny_bundle), source=str(video), store=str(tmp_path / "d.db"),
                                    shadow_rate=0.0, handle_signals=False, **kw))
        svc.run()
        return svc.status()["reuse"]

    assert served()["window"] == 0 and served()["reused"] == 0
    b = Bundle.open(tiny_bundle)
    b.manifest.dynamic.reuse_window = 4  # what a tuner writes
    b.save()
    reuse = served()
    assert reuse["window"] == 4 and reuse["reused"] > 0  # a still scene reuses decisions
    assert served(reuse_window=0)["window"] == 0  # the user's choice wins
