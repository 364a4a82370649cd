"""`--reject SPEC` parsing and the timing checks: every accepted form, its normalisation, and one clear line (never
a password) for every malformed one."""
from __future__ import annotations

import math

import pytest

from edge_runtime.errors import EdgeError
from edge_runtime.reject.spec import RejectError, RejectSpec, check_timing, parse_reject


@pytest.mark.parametrize("text, expected", [
    ("gpio:gpiochip0:105", RejectSpec("gpio", chip="/dev/gpiochip0", line=105)),
    ("gpio:0:105", RejectSpec("gpio", chip="/dev/gpiochip0", line=105)),
    ("gpio:007:3", RejectSpec("gpio", chip="/dev/gpiochip7", line=3)),
    ("gpio:/dev/gpiochip2:PQ.05:active_low", RejectSpec("gpio", chip="/dev/gpiochip2", line="PQ.05", active_low=True)),
    ("gpio:1:GPIO_PZ0:active-low", RejectSpec("gpio", chip="/dev/gpiochip1", line="GPIO_PZ0", active_low=True)),
    ("gpio:gpiochip1:12:low", RejectSpec("gpio", chip="/dev/gpiochip1", line=12, active_low=True)),
    ("gpio:gpiochip1:12:ACTIVE_LOW", RejectSpec("gpio", chip="/dev/gpiochip1", line=12, active_low=True)),
    ("http://10.0.0.9:8080/reject", RejectSpec("http", url="http://10.0.0.9:8080/reject")),
    ("https://plc.example.com/api/reject?line=2", RejectSpec("http", url="https://plc.example.com/api/reject?line=2")),
    ("fake-gpio:/tmp/edges.jsonl", RejectSpec("fake-gpio", path="/tmp/edges.jsonl")),
    ("fake-gpio:relative/edges.jsonl", RejectSpec("fake-gpio", path="relative/edges.jsonl")),
])
def test_accepted_forms_are_normalised(text, expected):
    got = parse_reject(text)
    assert got == expected
    assert type(got.line) is type(expected.line)  # "105" becomes the int 105, a name stays a str


@pytest.mark.parametrize("text, shown", [
    ("gpio:0:105", "gpio:/dev/gpiochip0:105"),
    ("gpio:gpiochip2:PQ.05:active_low", "gpio:/dev/gpiochip2:PQ.05:active_low"),
    ("http://10.0.0.9:8080/reject", "http://10.0.0.9:8080/reject"),
    ("fake-gpio:/tmp/e.jsonl", "fake-gpio:/tmp/e.jsonl"),
])
def test_shown(text, shown):
    assert parse_reject(text).shown == shown


@pytest.mark.parametrize("text, says", [
    ("gpio:", "give gpio:CHIP:LINE[:active_low]"),
    ("gpio:0", "give gpio:CHIP:LINE[:active_low]"),
    ("gpio:0:", "give gpio:CHIP:LINE[:active_low]"),
    ("gpio::5", "give gpio:CHIP:LINE[:active_low]"),
    ("gpio:0:1:2", "give gpio:CHIP:LINE[:active_low]"),
    ("gpio:0:active_low", "give gpio:CHIP:LINE[:active_low]"),
    ("gpio:x:1", "CHIP is gpiochipN, /dev/gpiochipN or N"),
    ("gpio:chip0:1", "CHIP is gpiochipN, /dev/gpiochipN or N"),
    ("gpio:0:bad name", "LINE is an offset or a line name"),
    ("gpio:0:PQ.05;rm", "LINE is an offset or a line name"),
    ("gpio:0:a/b", "LINE is an offset or a line name"),
    ("gpio:0:-1", "LINE is an offset or a line name"),  # real gpiod v2 would resolve "-1" to offset -1 (OverflowError)
    ("ftp://x", "give gpio:CHIP:LINE[:active_low], http://HOST[:PORT]/PATH or fake-gpio:FILE"),
    ("nonsense", "give gpio:CHIP:LINE[:active_low], http://HOST[:PORT]/PATH or fake-gpio:FILE"),
    ("", "give gpio:CHIP:LINE[:active_low]"),
    ("GPIO:0:1", "give gpio:CHIP:LINE[:active_low], http://HOST[:PORT]/PATH or fake-gpio:FILE"),
    ("http:///nohost", "has no host"),
    ("http://h:0/", "port 0 is not a port"),
    ("http://h:99999/", "not a valid URL"),
    ("http://h:port/", "not a valid URL"),
    ("fake-gpio:", "needs the file the fake chip writes its edges to"),
])
def test_bad_forms_raise_one_line(text, says):
    with pytest.raises(RejectError) as e:
        parse_reject(text)
    msg = str(e.value)
    assert says in msg
    assert "\n" not in msg
    assert msg.startswith("--reject ")
    assert isinstance(e.value, EdgeError)  # the CLI prints it as one line and exits non-zero


@pytest.mark.parametrize("text", [
    "http://user:s3cr3tpw@h:0/",
    "http://user:s3cr3tpw@h:99999/",
    "http://user:s3cr3tpw@/nohost",
    "http://s3cr3tpw@h:0/",  # a bare user part is often a token
    "http://user:s3cr3tpw@[::1/",
    "ftp://user:s3cr3tpw@x/",
    "https://user:s3cr3tpw@h:0/r?token=abc",
])
def test_password_never_in_errors(text):
    with pytest.raises(RejectError) as e:
        parse_reject(text)
    assert "s3cr3tpw" not in str(e.value)
    assert "***" in str(e.value)


@pytest.mark.parametrize("text", [
    "http://user:s3cr3tpw@10.0.0.9:8080/reject",
    "https://operator:s3cr3tpw@plc.local/r",
    "http://user:s3cr3tpw@plc.local/r?token=s3cr3tpw",
])
def test_password_never_in_shown(text):
    spec = parse_reject(text)
    assert spec.url == text  # the worker needs it, to authenticate
    assert "s3cr3tpw" not in spec.shown
    assert "s3cr3tpw" not in str(spec.shown)
    assert spec.shown.startswith(text.split("://")[0] + "://")
    assert "***" in spec.shown


@pytest.mark.parametrize("delay, pulse", [(0, 50), (400, 0.5), (0.0, 10_000), (1e6, 1)])
def test_check_timing_accepts(delay, pulse):
    assert check_timing(delay, pulse) is None


@pytest.mark.parametrize("delay, pulse, says", [
    (-1, 50, "--reject-delay-ms must be a time in ms >= 0, got -1"),
    (math.nan, 50, "--reject-delay-ms must be a time in ms >= 0, got nan"),
    (math.inf, 50, "--reject-delay-ms must be a time in ms >= 0, got inf"),
    (-math.inf, 50, "--reject-delay-ms"),
    (0, 0, "--reject-pulse-ms must be in (0, 10000] ms, got 0"),
    (0, -5, "--reject-pulse-ms must be in (0, 10000] ms, got -5"),
    (0, 10_000.5, "--reject-pulse-ms must be in (0, 10000] ms, got 10000.5"),
    (0, math.nan, "--reject-pulse-ms"),
    (0, math.inf, "--reject-pulse-ms"),
])
def test_check_timing_refuses(delay, pulse, says):
    with pytest.raises(RejectError) as e:
        check_timing(delay, pulse)
    assert says in str(e.value)
    assert "\n" not in str(e.value)
