"""Issue 15: a full line set-up in the unit's site configuration (camera, HTTP, MQTT to the plant broker, the
reject output) and the plant server's collector unit."""
from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge_runtime.service_helpers import REPO
from tests.jetson.test_unit_hardening import (DROPIN, ENV_FILE, INSTALL, MAX_EXPOSURE, UNIT, _analyze, _dropin,
                                              _env_file, _exec_start, _exposure, _layout, _settings)

COLLECT_UNIT = REPO / "jetson" / "edge-qwq-collect.service"
README = REPO / "jetson" / "README.md"
PASSWORD = "mqtt-S3cret-pw"
SECRET_SOURCE = "rtsp://operator:cam-S3cret@10.20.0.7:554/stream1"
MQTT = "mqtts://10.20.0.5:8883/edge-qwq/line3"
GATEWAY = "http://10.20.0.9:8000/reject"
# A site.conf as the README's example has it: every output of a line.
FULL_SITE = f"""# line 3, camera 1
SOURCE={SECRET_SOURCE}
HTTP=0.0.0.0:8080
TOKEN_FILE=/etc/edge-qwq/http-token
ALLOW=192.168.10.0/24
MQTT={MQTT}
DEVICE_NAME=line3-cam1
MQTT_USER=line3
MQTT_PASSWORD_FILE=/etc/edge-qwq/mqtt.pw
MQTT_TLS_CA=/etc/edge-qwq/ca.pem
REJECT=gpio:gpiochip0:PQ.05:active_low
REJECT_DELAY_MS=400
REJECT_PULSE_MS=50
"""


def _site(tmp_path: Path, text: str = FULL_SITE, **changes: str) -> Path:
    """ROOT/etc/edge-qwq/site.conf with the settings in `changes` replaced (or added), and the files it names."""
    for key, value in changes.items():
        text, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        text += "" if n else f"{key}={value}\n"
    etc = tmp_path / "etc" / "edge-qwq"
    etc.mkdir(parents=True, exist_ok=True)
    for name, content in [("http-token", "t0ken"), ("mqtt.pw", PASSWORD + "\n"), ("ca.pem", "-----BEGIN\n")]:
        (etc / name).write_text(content)
    conf = etc / "site.conf"
    conf.write_text(text)
    return conf


def _allowed(text: str, key: str) -> list[str]:
    return [v for k, v in _settings(text) if k == key]


def test_a_full_line_passes_verify_and_keeps_the_exposure(tmp_path):
    unit = _layout(tmp_path, "--config", str(_site(tmp_path)))
    dropin = tmp_path / DROPIN
    assert "SupplementaryGroups=gpio\n" in dropin.read_text()  # the drop-in verified is the full one
    r = subprocess.run([_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(unit) not in r.stderr and str(dropin) not in r.stderr, r.stderr
    assert _exposure(unit) <= MAX_EXPOSURE


def test_the_broker_the_gateway_and_the_gpio_chip_land_in_the_allow_lists(tmp_path):
    conf = _site(tmp_path)
    text = _dropin("--config", str(conf)).stdout
    # the camera's address first (from SOURCE), then the configured networks, then the broker's address
    assert _allowed(text, "IPAddressAllow") == ["10.20.0.7", "192.168.10.0/24", "10.20.0.5"]
    assert _allowed(text, "DeviceAllow") == ["/dev/gpiochip0 rw"]
    assert _allowed(text, "SupplementaryGroups") == ["gpio"]
    # a chip given by number or path is normalised; a DEVICE= of the same chip is not listed twice
    for spec, node in [("gpio:1:105", "/dev/gpiochip1"), ("gpio:/dev/gpiochip2:PQ.05", "/dev/gpiochip2"),
                       ("gpio:gpiochip0:7:active_low", "/dev/gpiochip0")]:
        text = _dropin("--config", str(conf), "--reject", spec, "--device", "/dev/gpiochip0").stdout
        assert _allowed(text, "DeviceAllow") == (["/dev/gpiochip0 rw"] + [f"{node} rw"] * (node != "/dev/gpiochip0"))
    # a PLC gateway by address is let through; a name is not guessed at but warned about, as for a camera
    r = _dropin("--config", str(conf), "--reject", GATEWAY)
    assert _allowed(r.stdout, "IPAddressAllow")[-2:] == ["10.20.0.5", "10.20.0.9"]
    r = _dropin("--config", str(conf), "--mqtt", "mqtt://broker.plant/edge-qwq/line3", "--mqtt-tls-ca", "",
                "--reject", "https://plc-gw.plant/reject")
    assert _allowed(r.stdout, "IPAddressAllow") == ["10.20.0.7", "192.168.10.0/24"]
    assert "the MQTT broker broker.plant is a name: allow its address with --allow" in r.stderr
    assert "the PLC gateway plc-gw.plant is a name" in r.stderr


@pytest.mark.parametrize("reject", ["", "fake-gpio:rejects.log", "fake-gpio:/var/lib/edge-qwq/rejects.log", GATEWAY])
def test_the_gpio_group_and_chip_come_only_with_a_gpio_reject(tmp_path, reject):
    text = _dropin("--config", str(_site(tmp_path)), "--reject", reject,
                   *(["--reject-delay-ms", "", "--reject-pulse-ms", ""] if not reject else [])).stdout
    assert "SupplementaryGroups" not in text and "gpiochip" not in text
    realtime = {"RestrictRealtime", "LimitRTPRIO"} if reject else set()  # any reject: its worker's priority
    assert {k for k, _ in _settings(text)} == {"EnvironmentFile", "Environment", "IPAddressAllow", *realtime}
    if reject:
        assert ("RestrictRealtime", "no") in _settings(text) and ("LimitRTPRIO", "10") in _settings(text)


def test_no_password_or_url_in_the_dropin_only_in_the_root_only_environment_file(tmp_path):
    conf = _site(tmp_path, REJECT=GATEWAY)
    r = _dropin("--config", str(conf), root=tmp_path)
    dropin, env = (tmp_path / DROPIN).read_text(), (tmp_path / ENV_FILE).read_text()
    for leak in (PASSWORD, "cam-S3cret", SECRET_SOURCE, MQTT, "mqtts://", GATEWAY, "/reject", "line3"):
        assert leak not in dropin and leak not in r.stdout + r.stderr, leak
    assert PASSWORD not in env  # the password stays in its file: the service reads it
    assert oct((tmp_path / ENV_FILE).stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / DROPIN).stat().st_mode & 0o777) == "0o644"
    outputs = _env_file(env)["EDGE_QWQ_OUTPUTS"].split()
    assert outputs == ["--mqtt", MQTT, "--device-name", "line3-cam1", "--mqtt-user", "line3",
                       "--mqtt-password-file", "/etc/edge-qwq/mqtt.pw", "--mqtt-tls-ca", "/etc/edge-qwq/ca.pem",
                       "--reject", GATEWAY, "--reject-delay-ms", "400", "--reject-pulse-ms", "50"]


def test_exec_start_carries_the_outputs_to_edge_qwq_run(tmp_path, monkeypatch):
    from edge_qwq.commands.run import command

    _dropin("--config", str(_site(tmp_path)), root=tmp_path)
    argv, env = _exec_start(UNIT.read_text(), (tmp_path / DROPIN).read_text(), (tmp_path / ENV_FILE).read_text())
    assert env["EDGE_QWQ_SOURCE"] == SECRET_SOURCE and not any("S3cret" in a for a in argv)
    assert argv[argv.index("--mqtt") + 1] == MQTT and argv[argv.index("--device-name") + 1] == "line3-cam1"
    assert argv[-6:] == ["--reject", "gpio:gpiochip0:PQ.05:active_low", "--reject-delay-ms", "400",
                         "--reject-pulse-ms", "50"]
    monkeypatch.setenv("EDGE_QWQ_SOURCE", SECRET_SOURCE)
    if not any(p.name == "reject" for p in command.params):  # the reject output is not in `run` yet
        argv = argv[:-6]
    ctx = command.make_context("run", argv[2:])  # every option exists and parses
    assert ctx.params["mqtt"] == MQTT and ctx.params["mqtt_user"] == "line3"
    assert ctx.params["mqtt_password_file"] == "/etc/edge-qwq/mqtt.pw" and ctx.params["store"]
    # without outputs: nothing is added, and the unit's own default (empty) applies
    _dropin(root=tmp_path)
    env_text = (tmp_path / ENV_FILE).read_text()
    assert _env_file(env_text) == {"EDGE_QWQ_SOURCE": "csi://0"}
    argv, _ = _exec_start(UNIT.read_text(), (tmp_path / DROPIN).read_text(), env_text)
    assert "--mqtt" not in argv and "--reject" not in argv and argv[-1] == "0.05"


def test_save_config_keeps_the_outputs_and_an_empty_value_removes_one(tmp_path):
    conf = tmp_path / "etc" / "edge-qwq" / "site.conf"
    _site(tmp_path, text="")
    conf.unlink()
    args = ["--mqtt", MQTT, "--device-name", "line3-cam1", "--mqtt-user", "line3",
            "--mqtt-password-file", "/etc/edge-qwq/mqtt.pw", "--reject", "gpio:0:105", "--reject-delay-ms", "400"]
    _dropin("--config", str(conf), "--save-config", *args, root=tmp_path)
    text = conf.read_text()
    for line in (f"MQTT={MQTT}", "DEVICE_NAME=line3-cam1", "MQTT_USER=line3", "MQTT_PASSWORD_FILE=/etc/edge-qwq/mqtt.pw",
                 "MQTT_TLS_CA=", "REJECT=gpio:0:105", "REJECT_DELAY_MS=400", "REJECT_PULSE_MS="):
        assert f"\n{line}\n" in text, line
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    env = (tmp_path / ENV_FILE).read_text()
    assert _dropin("--config", str(conf), *args).stdout == _dropin("--config", str(conf)).stdout
    _dropin("--config", str(conf), root=tmp_path)
    assert (tmp_path / ENV_FILE).read_text() == env  # the saved configuration gives the same service
    _dropin("--config", str(conf), "--save-config", "--reject", "", "--reject-delay-ms", "", root=tmp_path)
    assert "\nREJECT=\n" in conf.read_text() and "SupplementaryGroups" not in (tmp_path / DROPIN).read_text()
    assert "--reject" not in (tmp_path / ENV_FILE).read_text() and "--mqtt" in (tmp_path / ENV_FILE).read_text()


@pytest.mark.parametrize("key, value, message", [
    ("REJECT", "gpio:", "expected gpio:CHIP:LINE"),
    ("REJECT", "gpio:0", "expected gpio:CHIP:LINE"),
    ("REJECT", "gpio:0:5:active_high", "expected gpio:CHIP:LINE"),
    ("REJECT", "gpio:spi0:5", "expected gpio:CHIP:LINE"),
    ("REJECT", "ftp://x", "must be gpio:CHIP:LINE[:active_low], http(s)://HOST[:PORT]/PATH or fake-gpio:FILE"),
    ("REJECT", "http://10.20.0.9", "HOST[:PORT]/PATH"),
    ("REJECT", "http://plc:gw-S3cret@10.20.0.9/reject", "must not carry credentials"),
    ("REJECT", "fake-gpio:/etc/passwd", "only write under /var/lib/edge-qwq"),
    ("REJECT_DELAY_MS", "-5", "milliseconds from 1 to 60000, not '-5'"),
    ("REJECT_DELAY_MS", "0.4", "milliseconds"),
    ("REJECT_PULSE_MS", "0", "milliseconds from 1 to 10000, not '0'"),
    ("REJECT_PULSE_MS", "10001", "milliseconds from 1 to 10000"),
    ("MQTT", "mqtt://line3:mq-S3cret@10.20.0.5/edge-qwq/line3", "password"),
    ("MQTT", "mqtt://line3@10.20.0.5/edge-qwq/line3", "MQTT_USER"),
    ("MQTT", "http://x", "must start with mqtt:// or mqtts://"),
    ("MQTT", "mqtt:///edge-qwq", "no broker host"),
    ("MQTT", "mqtt://10.20.0.5/edge-qwq/#", "'#'"),
    ("DEVICE_NAME", "line3/cam1", "one topic level"),
    ("MQTT_PASSWORD_FILE", "/home/tech/mqtt.pw", "cannot see /home"),
    ("MQTT_PASSWORD_FILE", "mqtt.pw", "absolute path"),
])
def test_a_bad_output_setting_fails_with_one_line_naming_it(tmp_path, key, value, message):
    changes = {key: value, **({"MQTT_TLS_CA": ""} if key == "MQTT" else {})}
    option = "--" + key.lower().replace("_", "-")
    bad, good = tmp_path / "bad", tmp_path / "good"
    for root, args in [(bad, ["--config", str(_site(bad, **changes))]),
                       (good, ["--config", str(_site(good)), option, value])]:
        r = _dropin(*args, root=root, check=False)
        assert r.returncode == 2 and not r.stdout, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"write-dropin.sh: {key} ({option}) ") and message in lines[0], r.stderr
        assert "S3cret" not in r.stderr


@pytest.mark.parametrize("changes, message", [
    ({"MQTT": ""}, "DEVICE_NAME (--device-name) needs MQTT"),
    ({"REJECT": ""}, "REJECT_DELAY_MS (--reject-delay-ms) needs REJECT"),
    ({"MQTT": "mqtt://10.20.0.5/edge-qwq/line3"}, "MQTT_TLS_CA (--mqtt-tls-ca) needs an mqtts://"),
    ({"MQTT_USER": ""}, "MQTT_PASSWORD_FILE (--mqtt-password-file) needs MQTT_USER"),
])
def test_an_output_setting_without_what_it_belongs_to_is_refused(tmp_path, changes, message):
    r = _dropin("--config", str(_site(tmp_path, **changes)), root=tmp_path, check=False)
    assert r.returncode == 2 and not r.stdout and r.stderr == f"write-dropin.sh: {r.stderr.split(': ', 1)[1]}" and message in r.stderr


def test_the_unit_expands_the_outputs_and_the_help_names_them():
    (cmd,) = [v for k, v in _settings(UNIT.read_text()) if k == "ExecStart"]
    assert shlex.split(cmd)[-2:] == ["$EDGE_QWQ_ARGS", "$EDGE_QWQ_OUTPUTS"]
    (default,) = [v for k, v in _settings(UNIT.read_text()) if k == "Environment"]
    assert "EDGE_QWQ_OUTPUTS=" in default.split()
    r = subprocess.run(["bash", str(REPO / "jetson" / "write-dropin.sh"), "--help"], capture_output=True, text=True,
                       timeout=30)
    for option in ("--mqtt URL", "--device-name NAME", "--mqtt-user USER", "--mqtt-password-file FILE",
                   "--mqtt-tls-ca FILE", "--reject SPEC", "--reject-delay-ms MS", "--reject-pulse-ms MS"):
        assert option in r.stdout, option


def test_install_sh_makes_the_gpio_group_and_its_udev_rule_and_passes_the_outputs_on(tmp_path):
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-packages", "--mqtt", MQTT, "--device-name", "cam1",
                        "--reject", "gpio:0:PQ.05", "--reject-delay-ms", "400"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\n+ groupadd -f -r gpio\n" in out
    assert ("+ write /etc/udev/rules.d/60-edge-qwq-gpio.rules (0644 root:root):\n" in out
            and '    SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n' in out)
    assert out.index("+ groupadd -f -r gpio") < out.index("edge-qwq\n+ install -d -o edge-qwq")
    assert re.search(r"^\+ (useradd|usermod) .*--groups video\\?,gpio", out, re.M), out
    for line in ("IPAddressAllow=10.20.0.5", "DeviceAllow=/dev/gpiochip0 rw", "SupplementaryGroups=gpio"):
        assert f"    {line}\n" in out, line
    # a password in a URL is shown by no line of a dry run, and is refused
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--no-packages", "--mqtt",
                        "mqtt://u:mq-S3cret@10.20.0.5/x"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "S3cret" not in r.stdout + r.stderr and "MQTT (--mqtt) holds a password" in r.stderr


def test_the_readmes_example_site_conf_gives_a_full_line(tmp_path):
    """The README's complete site.conf is one write-dropin.sh takes, and it gives what the README says."""
    section = README.read_text().split("## A full line set-up", 1)[1]
    (example,) = re.findall(r"One complete `/etc/edge-qwq/site.conf`.*?```\n(.*?)```", section, re.S)
    conf = _site(tmp_path, text=re.sub(r"^ {3}", "", example, flags=re.M))
    r = _dropin("--config", str(conf), root=tmp_path)
    assert not r.stderr, r.stderr
    dropin = (tmp_path / DROPIN).read_text()
    assert _allowed(dropin, "IPAddressAllow") == ["10.20.0.7", "192.168.10.0/24", "10.20.0.5"]
    assert _allowed(dropin, "DeviceAllow") == ["/dev/gpiochip0 rw"] and "SupplementaryGroups=gpio\n" in dropin
    outputs = _env_file((tmp_path / ENV_FILE).read_text())["EDGE_QWQ_OUTPUTS"]
    assert "--reject gpio:gpiochip0:PQ.05:active_low --reject-delay-ms 400 --reject-pulse-ms 50" in outputs
    assert 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in INSTALL.read_text()
    assert re.search(r"0\.6 / 1\.5 = 0\.4 s, so\s+`REJECT_DELAY_MS=400`", section)  # the delay's worked example


# --- the plant server: edge-qwq collect

def _collect_layout(tmp_path: Path) -> Path:
    unit = tmp_path / "etc" / "systemd" / "system" / COLLECT_UNIT.name
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(COLLECT_UNIT.read_text().replace("/opt/edge-qwq/venv/bin/edge-qwq",
                                                     f"{sys.executable} -m edge_qwq.cli"))
    return unit


def test_the_collector_unit_passes_verify_and_is_hardened(tmp_path):
    unit = _collect_layout(tmp_path)
    r = subprocess.run([_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(unit) not in r.stderr, r.stderr
    r = subprocess.run([_analyze(), "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for edge-qwq-collect\.service: (\d+(?:\.\d+)?)", r.stdout)
    assert m and float(m.group(1)) <= MAX_EXPOSURE, r.stdout
    unit.write_text(unit.read_text() + "DeviceAllow=/dev/sd a rwx\n")  # the check sees a broken unit
    r = subprocess.run([_analyze(), "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert str(unit) in r.stderr


def test_the_collector_unit_runs_an_edge_qwq_collect_command_line():
    from edge_qwq.commands.collect import command

    text = COLLECT_UNIT.read_text()
    settings = _settings(text)
    env = {}
    for key, value in settings:
        if key == "Environment":
            env.update(w.split("=", 1) for w in shlex.split(value))
    (cmd,) = [v for k, v in settings if k == "ExecStart"]
    cmd = cmd.replace("%d", "/run/credentials/edge-qwq-collect.service").replace("%H", socket.gethostname())
    argv = []
    for word in shlex.split(cmd):
        word = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word)
        m = re.fullmatch(r"\$(\w+)", word)
        argv += env[m.group(1)].split() if m else [word]
    assert argv[:2] == ["/opt/edge-qwq/venv/bin/edge-qwq", "collect"]
    ctx = command.make_context("collect", argv[2:])
    assert ctx.params["mqtt_url"].startswith("mqtts://") and ctx.params["store"].startswith("postgresql://")
    assert ctx.params["mqtt_password_file"] == "/run/credentials/edge-qwq-collect.service/mqtt.pw"
    assert ("LoadCredential", "mqtt.pw:/etc/edge-qwq/collect-mqtt.pw") in settings
    assert ("DynamicUser", "yes") in settings and ("IPAddressDeny", "any") in settings
