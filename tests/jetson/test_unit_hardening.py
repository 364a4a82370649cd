"""Issue 11, finding 13: the unit's sandbox (systemd-analyze security), its site drop-in and install.sh."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge_runtime.service_helpers import REPO

UNIT = REPO / "jetson" / "edge-qwq.service"
WRITE_DROPIN = REPO / "jetson" / "write-dropin.sh"
INSTALL = REPO / "jetson" / "install.sh"
MAX_EXPOSURE = 2.0
# A site as a line would have it: a network camera, HTTP for the line's network with a token, an MQTT broker
# and a GPIO chip for a reject output.
SITE = ["--source", "rtsp://10.20.0.7:554/stream1", "--http", "0.0.0.0:8080", "--allow", "192.168.10.0/24",
        "--allow", "10.20.0.5", "--device", "/dev/gpiochip0", "--token-file", "/etc/edge-qwq/http-token"]
# A camera with a user and password in its URL: it must stay out of everything systemctl shows to any user.
SECRET_SOURCE = "rtsp://operator:s3cret-Pw@10.20.0.7:554/stream1"
ENV_FILE = Path("etc") / "edge-qwq" / "site.env"
DROPIN = Path("etc") / "systemd" / "system" / "edge-qwq.service.d" / "10-site.conf"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    return exe


def _dropin(*args: str, root: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["bash", str(WRITE_DROPIN), *args, *(["--root", str(root)] if root else ["--stdout"])]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _layout(tmp_path: Path, *site: str, unit_text: str | None = None) -> Path:
    """ROOT/etc/systemd/system/edge-qwq.service (ExecStart on this checkout, for verify) and its drop-in."""
    text = UNIT.read_text() if unit_text is None else unit_text
    unit = tmp_path / "etc" / "systemd" / "system" / "edge-qwq.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(text.replace("/opt/edge-qwq/venv/bin/edge-qwq", f"{sys.executable} -m edge_qwq.cli"))
    _dropin(*site, root=tmp_path)
    assert (tmp_path / DROPIN).is_file() and (tmp_path / ENV_FILE).is_file()
    return unit


def _written(tmp_path: Path, *site: str) -> tuple[str, str]:
    """The drop-in and the environment file write-dropin.sh writes under tmp_path."""
    _dropin(*site, root=tmp_path)
    return (tmp_path / DROPIN).read_text(), (tmp_path / ENV_FILE).read_text()


def _exposure(unit: Path) -> float:
    r = subprocess.run([_analyze(), "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for edge-qwq\.service: (\d+(?:\.\d+)?)", r.stdout)
    assert m, (r.stdout, r.stderr)
    return float(m.group(1))


def test_unit_with_its_default_dropin_has_exposure_at_most_2(tmp_path):
    assert _exposure(_layout(tmp_path)) <= MAX_EXPOSURE


def test_a_site_dropin_with_network_outputs_and_a_gpio_chip_keeps_the_exposure(tmp_path):
    assert _exposure(_layout(tmp_path, *SITE)) <= MAX_EXPOSURE


def test_the_exposure_check_can_fail(tmp_path):
    # the unit as it was before the hardening (no system-call filter, no address policy, /proc open)
    old = "\n".join(line for line in UNIT.read_text().splitlines()
                    if not re.match(r"(SystemCallFilter|SystemCallErrorNumber|IPAddress\w+|ProtectProc|"
                                    r"PrivateMounts|RemoveIPC)=", line))
    assert _exposure(_layout(tmp_path, unit_text=old)) > MAX_EXPOSURE


def test_unit_and_its_dropin_pass_systemd_analyze_verify(tmp_path):
    exe = _analyze()
    unit = _layout(tmp_path, *SITE)
    dropin = unit.parent / "edge-qwq.service.d" / "10-site.conf"
    r = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(unit) not in r.stderr and str(dropin) not in r.stderr, r.stderr
    dropin.write_text(dropin.read_text() + "DeviceAllow=/dev/gpio chip0 rwx\n")  # verify reads the drop-in
    r = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert str(dropin) in r.stderr


def _settings(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)
    return [tuple(line.split("=", 1)) for line in text.splitlines() if re.match(r"^[A-Za-z]+=", line)]


def test_unit_has_the_hardening_and_serves_http_on_the_loopback():
    settings = _settings(UNIT.read_text())
    have = set(settings)
    for kv in [("SystemCallFilter", "@system-service"), ("SystemCallFilter", "~@privileged"),
               ("SystemCallArchitectures", "native"), ("SystemCallErrorNumber", "EPERM"),
               ("IPAddressDeny", "any"), ("IPAddressAllow", "localhost"), ("ProtectProc", "invisible"),
               ("PrivateMounts", "yes"), ("DevicePolicy", "closed"), ("NoNewPrivileges", "yes"),
               ("CapabilityBoundingSet", "")]:
        assert kv in have, kv
    keys = dict(settings)
    assert int(keys["LimitNOFILE"]) <= 65536 and int(keys["TasksMax"]) <= 1024
    assert [v for k, v in settings if k == "IPAddressAllow"] == ["localhost"]  # the rest comes from the drop-in
    assert keys.get("MemoryDenyWriteExecute") != "yes" and keys.get("PrivateDevices") != "yes"  # CUDA, GPU nodes
    assert "EDGE_QWQ_HTTP=127.0.0.1:8080" in keys["Environment"].split()
    assert "0.0.0.0" not in UNIT.read_text()


def _env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it: KEY=VALUE lines, '#' comments; unquoted values (all this one has)
    are taken as they are but for backslash escapes."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith(("#", ";")))
    return {k.strip(): re.sub(r"\\(.)", r"\1", v.strip()) for k, v in pairs}


def _exec_start(unit_text: str, dropin_text: str, env_text: str = "") -> tuple[list[str], dict[str, str]]:
    """(ExecStart's arguments, the process's environment) as systemd expands them with the drop-in's
    Environment= and its EnvironmentFile= (whose settings override Environment=; enough for this unit)."""
    env = {}
    for key, value in _settings(unit_text) + _settings(dropin_text):
        if key == "Environment":
            env.update(w.split("=", 1) for w in shlex.split(value.replace("%%", "%")))
    assert ("EnvironmentFile", "/etc/edge-qwq/site.env") in _settings(dropin_text)
    env.update(_env_file(env_text))
    (cmd,) = [v for k, v in _settings(unit_text) if k == "ExecStart"]
    argv = []
    for word in shlex.split(cmd):
        m = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", word)
        argv += [env[m.group(1)]] if m and m.group(1) else env[m.group(2)].split() if m else [word]
    return argv, env


def test_exec_start_with_the_dropin_is_an_edge_qwq_run_command_line(tmp_path, monkeypatch):
    """The source reaches `run` through its environment (EDGE_QWQ_SOURCE), never on the command line, which
    every local user can read (ps, systemctl status)."""
    from edge_qwq.commands.run import command

    unit = UNIT.read_text()
    argv, env = _exec_start(unit, *_written(tmp_path))
    assert argv[:2] == ["/opt/edge-qwq/venv/bin/edge-qwq", "run"] and "--source" not in argv
    assert env["EDGE_QWQ_SOURCE"] == "csi://0" and argv[argv.index("--http") + 1] == "127.0.0.1:8080"
    monkeypatch.setenv("EDGE_QWQ_SOURCE", env["EDGE_QWQ_SOURCE"])
    ctx = command.make_context("run", argv[2:])  # every option exists and parses
    assert ctx.params["source"] == "csi://0"
    argv, env = _exec_start(unit, *_written(tmp_path, *SITE, "--args", "--threads 2"))
    assert env["EDGE_QWQ_SOURCE"] == "rtsp://10.20.0.7:554/stream1"
    assert argv[argv.index("--http") + 1] == "0.0.0.0:8080"
    assert argv[-4:] == ["--http-token-file", "/etc/edge-qwq/http-token", "--threads", "2"]
    command.make_context("run", argv[2:])


def test_default_dropin_only_sets_the_service_options():
    text = _dropin().stdout
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Service]", "EnvironmentFile=/etc/edge-qwq/site.env",
                     'Environment="EDGE_QWQ_HTTP=127.0.0.1:8080"', 'Environment="EDGE_QWQ_ARGS="']


def test_site_dropin_adds_to_the_allow_lists_and_nothing_else(tmp_path):
    text, env = _written(tmp_path, *SITE, "--source", "rtsp://cam:p%40ss@10.20.0.7/s")
    assert "EDGE_QWQ_SOURCE=rtsp://cam:p%40ss@10.20.0.7/s\n" in env  # no % specifiers in an environment file
    assert "EDGE_QWQ_SOURCE" not in text and "10.20.0.7/s" not in text
    assert 'Environment="EDGE_QWQ_HTTP=0.0.0.0:8080"' in text
    assert 'Environment="EDGE_QWQ_ARGS=--http-token-file /etc/edge-qwq/http-token"' in text
    # the camera's address comes from --source; the HTTP clients' network and the broker from --allow
    assert [v for k, v in _settings(text) if k == "IPAddressAllow"] == ["10.20.0.7", "192.168.10.0/24", "10.20.0.5"]
    assert [v for k, v in _settings(text) if k == "DeviceAllow"] == ["/dev/gpiochip0 rw"]
    assert {k for k, _ in _settings(text)} == {"EnvironmentFile", "Environment", "IPAddressAllow", "DeviceAllow"}


def test_a_camera_password_stays_in_the_root_only_environment_file(tmp_path):
    """Issue 11, finding 5: systemctl show prints Environment= to every local user; the URL goes elsewhere."""
    conf = tmp_path / "etc" / "edge-qwq" / "site.conf"
    r = _dropin("--config", str(conf), "--save-config", *SITE, "--source", SECRET_SOURCE, root=tmp_path)
    dropin, env = (tmp_path / DROPIN).read_text(), (tmp_path / ENV_FILE).read_text()
    for leak in ("s3cret-Pw", "operator", SECRET_SOURCE, "/stream1"):
        assert leak not in dropin and leak not in r.stdout + r.stderr, leak
    assert "IPAddressAllow=10.20.0.7\n" in dropin  # the camera is still let through
    assert _env_file(env) == {"EDGE_QWQ_SOURCE": SECRET_SOURCE}
    for path in (tmp_path / ENV_FILE, conf):  # the configuration holds it too
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    assert oct((tmp_path / DROPIN).stat().st_mode & 0o777) == "0o644"
    argv, process_env = _exec_start(UNIT.read_text(), dropin, env)
    assert process_env["EDGE_QWQ_SOURCE"] == SECRET_SOURCE and not any("s3cret" in a for a in argv)
    # --stdout prints the drop-in alone; a refused source is not echoed
    assert "s3cret" not in _dropin("--source", SECRET_SOURCE).stdout
    r = _dropin("--source", "rtsp://operator:s3cret Pw@10.20.0.7/s", check=False)
    assert r.returncode == 2 and "one word" in r.stderr and "s3cret" not in r.stderr


def test_the_unit_with_a_secret_source_passes_verify_and_keeps_the_exposure(tmp_path):
    unit = _layout(tmp_path, *SITE, "--source", SECRET_SOURCE)
    r = subprocess.run([_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(unit) not in r.stderr and "s3cret" not in r.stdout + r.stderr, r.stderr
    assert _exposure(unit) <= MAX_EXPOSURE


@pytest.mark.parametrize("args, message", [
    (["--allow", "any"], "address policy"),
    (["--allow", "0.0.0.0/0"], "address policy"),
    (["--allow", "broker.local"], "not a name"),
    (["--allow", "10.0.0.300"], "not a name"),
    (["--device", "/dev/../dev/mem"], "device node"),
    (["--device", "block-sd"], "no use"),
    (["--http", "0.0.0.0:8080"], "--token-file"),
    (["--http", "8080"], "HOST:PORT"),
    (["--source", "rtsp://10.0.0.7/a b"], "one word"),
    (["--args", 'a "b c"'], "quotes"),
    (["--frobnicate"], "unknown option"),
])
def test_dropin_refuses_what_would_loosen_or_break_the_unit(args, message):
    r = _dropin(*args, check=False)
    assert r.returncode == 2 and message in r.stderr and not r.stdout, r.stderr


def test_dropin_writes_under_root_and_keeps_the_site_configuration(tmp_path):
    conf = tmp_path / "etc" / "edge-qwq" / "site.conf"
    _dropin("--config", str(conf), "--save-config", *SITE, root=tmp_path)
    dropin = tmp_path / DROPIN
    assert dropin.read_text() == _dropin(*SITE).stdout.replace("write-dropin.sh:", f"write-dropin.sh from {conf}:")
    assert oct(dropin.stat().st_mode & 0o777) == "0o644" and oct(conf.stat().st_mode & 0o777) == "0o600"
    text = conf.read_text()
    assert "ALLOW=192.168.10.0/24\nALLOW=10.20.0.5\n" in text and "ALLOW=10.20.0.7" not in text  # camera: derived
    # a later output: its broker and GPIO chip go into the configuration, the drop-in follows
    conf.write_text(text + "ALLOW=10.30.0.9\nDEVICE=/dev/gpiochip1\nARGS=--threads 2\n")
    out = _dropin("--config", str(conf)).stdout
    assert "IPAddressAllow=10.30.0.9\n" in out and "DeviceAllow=/dev/gpiochip1 rw\n" in out
    assert "EDGE_QWQ_ARGS=--http-token-file /etc/edge-qwq/http-token --threads 2" in out
    # options on the command line replace the configured setting
    out = _dropin("--config", str(conf), "--allow", "10.40.0.0/16").stdout
    assert [v for k, v in _settings(out) if k == "IPAddressAllow"] == ["10.20.0.7", "10.40.0.0/16"]
    conf.write_text(text + "ALOW=10.30.0.9\n")
    r = _dropin("--config", str(conf), check=False)
    assert r.returncode == 2 and "unknown setting ALOW" in r.stderr


@needs_bash
def test_install_sh_parses_and_has_help():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True, timeout=30)
    subprocess.run(["bash", "-n", str(WRITE_DROPIN)], check=True, timeout=30)
    r = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--bundle DIR" in r.stdout and "--dry-run" in r.stdout
    r = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "unknown option --bogus" in r.stderr


@needs_bash
def test_install_sh_dry_run_creates_the_user_installs_the_bundle_and_writes_the_dropin(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    etc_before = os.path.exists("/etc/edge-qwq")
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--bundle", str(bundle), "--token", *SITE[:-2]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^\+ (useradd --system --user-group --home-dir /var/lib/edge-qwq --no-create-home "
                     r"--shell /usr/sbin/nologin --groups video\S* edge-qwq|usermod --append --groups video\S* "
                     r"edge-qwq)$", out, re.M), out
    assert re.search(r"^\+ runuser -u edge-qwq -- /opt/edge-qwq/venv/bin/edge-qwq install \S+ --root /var/lib/edge-qwq$",
                     out, re.M), out
    assert "+ write /etc/edge-qwq/http-token (0640 root:edge-qwq): a random token" in out
    assert "+ write /etc/systemd/system/edge-qwq.service (0644 root:root)" in out
    for line in ['Environment="EDGE_QWQ_ARGS=--http-token-file /etc/edge-qwq/http-token"',
                 "IPAddressAllow=10.20.0.7", "IPAddressAllow=192.168.10.0/24", "DeviceAllow=/dev/gpiochip0 rw"]:
        assert f"    {line}\n" in out, line
    assert "+ write /etc/edge-qwq/site.env (0600 root:root)" in out
    assert "    EnvironmentFile=/etc/edge-qwq/site.env\n" in out
    assert out.index("+ systemctl daemon-reload") < out.index("+ systemctl enable edge-qwq.service")
    assert os.path.exists("/etc/edge-qwq") == etc_before  # a dry run changes nothing
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-packages", "--prefix", "/srv/eq"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "apt-get" not in r.stdout and "ExecStart=/srv/eq/venv/bin/edge-qwq run" in r.stdout
    # a camera password is in no line of a dry run
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-packages", "--source", SECRET_SOURCE],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "s3cret" not in r.stdout + r.stderr, r.stdout
    assert "--source rtsp://***@10.20.0.7:554/stream1 " in r.stdout
