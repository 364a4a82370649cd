"""The reject outputs: the GPIO adapters for libgpiod v2 and v1 against FAKE gpiod modules (this machine has no
GPIO chip; tests/edge_runtime/reject/fake_gpiod.py, whose v2 fake reuses the REAL installed package's
LineSettings and line enums), the real installed gpiod on this machine, the FAKE chip (edges to a file), and the
PLC gateway against a real local HTTP server."""
from __future__ import annotations

import base64
import inspect
import json
import os
import socket
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gpiod
import pytest

from edge_runtime.reject import outputs
from edge_runtime.reject.outputs import CONSUMER, FakeGpioChip, GpioV1Line, GpioV2Line, HttpGateway, open_output
from edge_runtime.reject.spec import RejectError, parse_reject
from tests.edge_runtime.reject.fake_gpiod import FakeGpioBoard, FakeGpiodV1, FakeGpiodV2

pytestmark = pytest.mark.timeout(30)

NAMES = {3: "PQ.05", 5: "PZ.01"}


@pytest.fixture
def board() -> FakeGpioBoard:
    b = FakeGpioBoard()
    b.add_chip("/dev/gpiochip0", 8, NAMES)
    b.add_chip("/dev/gpiochip1", 170)
    return b


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--reject ")
    return msg


# ------------------------------------------------------------------------------------------------ the fakes
def test_fake_v2_follows_the_real_signatures():
    fake = FakeGpiodV2(FakeGpioBoard())
    assert list(inspect.signature(fake.request_lines).parameters) == list(inspect.signature(gpiod.request_lines).parameters)
    assert list(inspect.signature(fake.Chip).parameters) == list(inspect.signature(gpiod.Chip).parameters)
    assert fake.LineSettings is gpiod.LineSettings and fake.line is gpiod.line  # the REAL types
    assert not hasattr(fake, "LINE_REQ_DIR_OUT")
    assert not hasattr(FakeGpiodV1(FakeGpioBoard()), "request_lines")


# ------------------------------------------------------------------------------------------------ libgpiod v2
def test_v2_requests_an_inactive_output_and_drives_it(board):
    g = FakeGpiodV2(board)
    out = open_output(parse_reject("gpio:gpiochip0:6"), gpiod_module=g)
    assert isinstance(out, GpioV2Line) and out.api == "libgpiod v2"
    [rec] = board.records("/dev/gpiochip0")
    assert (rec.offset, rec.consumer, rec.direction, rec.active_low, rec.initial) == (6, CONSUMER, "output", False, 0)
    assert CONSUMER == "edge-qwq-reject"
    assert board.chips["/dev/gpiochip0"].opened == board.chips["/dev/gpiochip0"].closed  # no chip left open
    out.set(True)
    out.set(False)
    out.set(True)
    assert rec.values == [1, 0, 1] and not rec.released
    assert [t for _, t in rec.writes] == sorted(t for _, t in rec.writes)
    out.close()
    assert rec.values == [1, 0, 1, 0] and rec.released


def test_v2_writes_the_real_value_enum(board, monkeypatch):
    g = FakeGpiodV2(board)
    out = open_output(parse_reject("gpio:0:2"), gpiod_module=g)
    seen = []
    monkeypatch.setattr(out._req, "set_value", lambda line, value: seen.append((line, value)))
    out.set(True)
    out.set(False)
    assert seen == [(2, gpiod.line.Value.ACTIVE), (2, gpiod.line.Value.INACTIVE)]


def test_v2_active_low_is_passed_through(board):
    out = open_output(parse_reject("gpio:0:4:active_low"), gpiod_module=FakeGpiodV2(board))
    [rec] = board.records("/dev/gpiochip0")
    assert rec.active_low is True and rec.initial == 0  # logically inactive: the chip drives the pin high
    out.set(True)
    assert rec.values == [1]  # the logical level: active_low is the chip's business
    out.close()


def test_v2_line_name_is_resolved(board):
    out = open_output(parse_reject("gpio:/dev/gpiochip0:PQ.05"), gpiod_module=FakeGpiodV2(board))
    assert out.offset == 3
    [rec] = board.records("/dev/gpiochip0")
    assert rec.offset == 3
    out.close()


@pytest.mark.parametrize("spec, says", [
    ("gpio:0:PX.99", "/dev/gpiochip0 has no line named PX.99 (gpioinfo lists the names)"),
    ("gpio:0:8", "/dev/gpiochip0 has 8 lines (0..7), no line 8"),
    ("gpio:0:105", "/dev/gpiochip0 has 8 lines (0..7), no line 105"),
    ("gpio:7:1", "no GPIO chip /dev/gpiochip7 on this machine (gpiodetect lists them)"),
])
def test_v2_lines_and_chips_that_do_not_exist(board, spec, says):
    with pytest.raises(RejectError) as e:
        open_output(parse_reject(spec), gpiod_module=FakeGpiodV2(board))
    assert says in one_line(e)
    assert board.records("/dev/gpiochip0") == []


def test_v2_busy_line(board):
    board.chips["/dev/gpiochip0"].busy.add(5)
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:0:PZ.01"), gpiod_module=FakeGpiodV2(board))
    assert "line PZ.01 of /dev/gpiochip0 is in use by another program (gpioinfo shows which)" in one_line(e)


def test_v2_line_taken_by_a_first_request(board):
    g = FakeGpiodV2(board)
    first = open_output(parse_reject("gpio:0:1"), gpiod_module=g)
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:0:1"), gpiod_module=g)
    assert "in use by another program" in one_line(e)
    first.close()
    open_output(parse_reject("gpio:0:1"), gpiod_module=g).close()  # released: free again


def test_v2_no_permission(board):
    board.chips["/dev/gpiochip1"].unreadable = True
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:1:100"), gpiod_module=FakeGpiodV2(board))
    assert "gpio:/dev/gpiochip1:100: no permission to open /dev/gpiochip1" in one_line(e)


def test_v2_close_releases_even_when_the_last_write_fails(board, monkeypatch):
    out = open_output(parse_reject("gpio:0:0"), gpiod_module=FakeGpiodV2(board))
    [rec] = board.records("/dev/gpiochip0")

    def broken(line, value):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(out._req, "set_value", broken)
    with pytest.raises(OSError):
        out.close()
    assert rec.released


# ------------------------------------------------------------------------------------------------ libgpiod v1
def test_v1_requests_an_inactive_output_and_drives_it(board):
    g = FakeGpiodV1(board)
    out = open_output(parse_reject("gpio:gpiochip1:105"), gpiod_module=g)
    assert isinstance(out, GpioV1Line) and out.api == "libgpiod v1"
    [rec] = board.records("/dev/gpiochip1")
    assert (rec.offset, rec.consumer, rec.direction, rec.active_low, rec.initial) == (105, CONSUMER, "output", False, 0)
    chip = board.chips["/dev/gpiochip1"]
    assert (chip.opened, chip.closed) == (1, 0)  # v1 keeps the chip open while the line is requested
    out.set(True)
    out.set(False)
    assert rec.values == [1, 0]
    assert all(type(v) is int for v in rec.values)
    out.close()
    assert rec.values == [1, 0, 0] and rec.released
    assert (chip.opened, chip.closed) == (1, 1)


def test_v1_active_low_flag_and_name(board):
    out = open_output(parse_reject("gpio:0:PQ.05:active_low"), gpiod_module=FakeGpiodV1(board))
    [rec] = board.records("/dev/gpiochip0")
    assert (rec.offset, rec.active_low, rec.initial, rec.direction) == (3, True, 0, "output")
    out.close()


@pytest.mark.parametrize("spec, says", [
    ("gpio:0:PX.99", "/dev/gpiochip0 has no line named PX.99 (gpioinfo lists the names)"),
    ("gpio:0:8", "/dev/gpiochip0 has 8 lines (0..7), no line 8"),
])
def test_v1_lines_that_do_not_exist_close_the_chip(board, spec, says):
    with pytest.raises(RejectError) as e:
        open_output(parse_reject(spec), gpiod_module=FakeGpiodV1(board))
    assert says in one_line(e)
    chip = board.chips["/dev/gpiochip0"]
    assert (chip.opened, chip.closed) == (1, 1)


def test_v1_busy_line_closes_the_chip(board):
    board.chips["/dev/gpiochip0"].busy.add(2)
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:0:2"), gpiod_module=FakeGpiodV1(board))
    assert "line 2 of /dev/gpiochip0 is in use by another program" in one_line(e)
    chip = board.chips["/dev/gpiochip0"]
    assert (chip.opened, chip.closed) == (1, 1)


@pytest.mark.parametrize("setup, says", [
    (lambda b: None, "no GPIO chip /dev/gpiochip4 on this machine"),
    (lambda b: setattr(b.add_chip("/dev/gpiochip4", 8), "unreadable", True), "no permission to open /dev/gpiochip4"),
])
def test_v1_chip_that_cannot_be_opened(board, setup, says):
    setup(board)
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:4:1"), gpiod_module=FakeGpiodV1(board))
    assert says in one_line(e)


def test_v1_close_releases_and_closes_even_when_the_last_write_fails(board, monkeypatch):
    out = open_output(parse_reject("gpio:0:1"), gpiod_module=FakeGpiodV1(board))
    [rec] = board.records("/dev/gpiochip0")

    def broken(value):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(out._line, "set_value", broken)
    with pytest.raises(OSError):
        out.close()
    assert rec.released and board.chips["/dev/gpiochip0"].closed == 1


# ------------------------------------------------------------------------------------------------ neither API
def test_a_module_that_is_neither_api():
    not_gpiod = types.ModuleType("gpiod")
    not_gpiod.__file__ = "/usr/lib/python3/dist-packages/gpiod.py"
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:0:1"), gpiod_module=not_gpiod)
    msg = one_line(e)
    assert "is neither libgpiod's v2 nor its v1 Python binding" in msg
    assert "/usr/lib/python3/dist-packages/gpiod.py" in msg


def test_no_gpiod_installed(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gpiod(name, *a, **k):
        if name == "gpiod":
            raise ImportError("No module named 'gpiod'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_gpiod)
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:0:1"))
    assert "needs libgpiod's Python binding" in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ the real gpiod
@pytest.mark.skipif(os.path.exists("/dev/gpiochip9"), reason="/dev/gpiochip9 exists on this machine")
@pytest.mark.parametrize("spec", ["gpio:gpiochip9:3", "gpio:9:PQ.05:active_low"])
def test_real_gpiod_on_a_machine_without_the_chip(spec):
    assert hasattr(gpiod, "request_lines")  # the installed one is v2
    with pytest.raises(RejectError) as e:
        open_output(parse_reject(spec))
    assert one_line(e).endswith("no GPIO chip /dev/gpiochip9 on this machine (gpiodetect lists them)")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_real_gpiod_on_a_device_that_is_not_a_chip():
    with pytest.raises(RejectError) as e:
        open_output(parse_reject("gpio:/dev/null:3"))
    assert "cannot drive line 3 of /dev/null" in one_line(e)


# ------------------------------------------------------------------------------------------------ the FAKE chip
def edges(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_fake_chip_appends_each_write(tmp_path):
    path = tmp_path / "sub" / "edges.jsonl"
    out = open_output(parse_reject(f"fake-gpio:{path}"))
    assert isinstance(out, FakeGpioChip) and "FAKE" in out.api
    t0, w0 = time.monotonic_ns(), time.time()
    out.set(True)
    out.set(False)
    out.set(True)
    out.close()
    got = edges(path)
    assert [e["value"] for e in got] == [1, 0, 1, 0]  # close() writes 0 last
    assert all(set(e) == {"value", "wall", "mono_ns"} for e in got)
    monos = [e["mono_ns"] for e in got]
    assert monos == sorted(monos) and t0 <= monos[0] <= time.monotonic_ns()
    assert w0 - 1 <= got[0]["wall"] <= time.time() + 1
    # a second run appends
    out = open_output(parse_reject(f"fake-gpio:{path}"))
    out.close()
    assert [e["value"] for e in edges(path)] == [1, 0, 1, 0, 0]


def test_fake_chip_unwritable_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(RejectError) as e:
        open_output(parse_reject(f"fake-gpio:{blocker}/edges.jsonl"))
    msg = one_line(e)
    assert f"fake-gpio:{blocker}/edges.jsonl: cannot write the fake chip's edges" in msg


def test_fake_chip_directory_path(tmp_path):
    with pytest.raises(RejectError) as e:
        open_output(parse_reject(f"fake-gpio:{tmp_path}"))
    assert "cannot write the fake chip's edges (Is a directory)" in one_line(e)


# ------------------------------------------------------------------------------------------------ the PLC gateway
class Gateway:
    """A real local HTTP server standing in for a PLC gateway: records each request; answers `status`, after
    waiting for `release` when `hold` is set."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.hold = False
        self.release = threading.Event()
        gw = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gw.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if gw.hold:
                    gw.release.wait(5)
                try:
                    self.send_response(gw.status)
                    if 300 <= gw.status < 400:
                        self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (the timeout test)
                    pass

            def do_GET(self):  # what a followed redirect would send
                gw.requests.append({"path": self.path, "headers": dict(self.headers), "body": b""})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    g = Gateway()
    yield g
    g.close()


def test_gateway_posts_json(gateway):
    out = open_output(parse_reject(f"http://127.0.0.1:{gateway.port}/reject?line=2"))
    assert isinstance(out, HttpGateway) and out.api == "HTTP gateway"
    assert out.post({"frame": 17, "score": 0.93}) is None
    [req] = gateway.requests
    assert req["path"] == "/reject?line=2"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"frame": 17, "score": 0.93}
    assert "Authorization" not in req["headers"]
    out.close()


def test_gateway_basic_auth_never_shown(gateway):
    url = f"http://user:p%40ss@127.0.0.1:{gateway.port}/r"
    out = HttpGateway(url)
    assert out.url == f"http://127.0.0.1:{gateway.port}/r"
    assert "p%40ss" not in out.url and "p@ss" not in out.url
    assert out.post({"id": 1}) is None
    auth = gateway.requests[0]["headers"]["Authorization"]
    assert auth.startswith("Basic ")
    assert base64.b64decode(auth[len("Basic "):]).decode() == "user:p@ss"
    assert "p%40ss" not in parse_reject(url).shown


def test_gateway_ipv6_host_with_credentials_keeps_its_brackets():
    out = HttpGateway("http://user:pw@[::1]:8080/r")
    assert out.url == "http://[::1]:8080/r"
    out = HttpGateway("http://user:pw@PLC.local/r")
    assert out.url == "http://PLC.local/r"


def test_gateway_error_status(gateway):
    gateway.status = 500
    err = HttpGateway(f"http://127.0.0.1:{gateway.port}/r").post({"id": 1})
    assert err == "the gateway answered 500 Internal Server Error"
    assert len(gateway.requests) == 1


def test_a_redirect_is_a_failed_reject_not_a_bare_get(gateway):
    """urllib would follow a 302 as a GET without the payload (and with the password): refused."""
    gateway.status = 302
    err = HttpGateway(f"http://u:pw@127.0.0.1:{gateway.port}/r").post({"id": 1})
    assert err.startswith("the gateway answered 302") and "redirect is not followed" in err
    assert len(gateway.requests) == 1  # the POST only: nothing followed it


def test_gateway_unreachable():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    err = HttpGateway(f"http://user:s3cr3t@127.0.0.1:{port}/r").post({"id": 1})
    assert isinstance(err, str) and err.startswith("the gateway cannot be reached (")
    assert "refused" in err.lower()
    assert "s3cr3t" not in err
    assert time.monotonic() - t0 < 2


def test_gateway_slow_beyond_timeout(gateway, monkeypatch):
    monkeypatch.setattr(HttpGateway, "TIMEOUT_S", 0.2)
    gateway.hold = True
    t0 = time.monotonic()
    err = HttpGateway(f"http://127.0.0.1:{gateway.port}/r").post({"id": 1})
    took = time.monotonic() - t0
    gateway.release.set()
    assert isinstance(err, str) and err.startswith("the gateway cannot be reached (")
    assert "timed out" in err
    assert 0.15 <= took < 2


def test_outputs_module_names_its_fake():
    assert "FAKE" in (FakeGpioChip.__doc__ or "") and "FAKE" in FakeGpioChip.api
    assert outputs.CONSUMER == "edge-qwq-reject"
