"""The reject outputs: a GPIO line (libgpiod v2 as PyPI ships it, v1 as JetPack's python3-libgpiod ships
it), a PLC gateway over HTTP, and a fake chip that writes its edges to a file (named as a fake everywhere).

Each output has `set(active: bool)` (the line's logical level: active means "reject"; active_low is the
chip's business) and `close()` (the line goes inactive and is released). `open_output(spec)` opens one or
raises RejectError in one line: a chip that does not exist, a line that does not exist or is taken, no
permission to open the chip. The HTTP output has `post(payload)` instead of levels (a gateway gets one
request per reject). They run in the reject worker process (`edge_runtime.reject.worker`), never in the
frame loop's.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edge_runtime.reject.spec import RejectError, RejectSpec

CONSUMER = "edge-qwq-reject"  # what `gpioinfo` shows as the line's user


def open_output(spec: RejectSpec, gpiod_module=None):
    """The output `spec` names, opened. gpiod_module: the gpiod module to use (default: the installed one;
    tests give a fake chip's module, since this machine has no GPIO chip)."""
    if spec.kind == "fake-gpio":
        return FakeGpioChip(spec.path)
    if spec.kind == "http":
        return HttpGateway(spec.url)
    gpiod = gpiod_module if gpiod_module is not None else _import_gpiod()
    if hasattr(gpiod, "request_lines"):
        return GpioV2Line(gpiod, spec)
    if hasattr(gpiod, "LINE_REQ_DIR_OUT"):
        return GpioV1Line(gpiod, spec)
    raise RejectError(f"--reject {spec.shown}: this gpiod module ({getattr(gpiod, '__file__', gpiod)}) is neither "
                      "libgpiod's v2 nor its v1 Python binding; install python3-libgpiod or `pip install gpiod`")


def _import_gpiod():
    try:
        import gpiod
    except ImportError:
        raise RejectError("--reject gpio:... needs libgpiod's Python binding: `pip install gpiod` (v2), or "
                          "JetPack's `apt install python3-libgpiod` (v1)") from None
    return gpiod


def _chip_error(spec: RejectSpec, e: OSError) -> RejectError:
    import errno

    if e.errno == errno.ENOENT:
        return RejectError(f"--reject {spec.shown}: no GPIO chip {spec.chip} on this machine (gpiodetect lists them)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return RejectError(f"--reject {spec.shown}: no permission to open {spec.chip}; add the service's user to "
                           "the chip's group (gpio) or allow the device (jetson/README.md)")
    if e.errno == errno.EBUSY:
        return RejectError(f"--reject {spec.shown}: line {spec.line} of {spec.chip} is in use by another program "
                           "(gpioinfo shows which)")
    return RejectError(f"--reject {spec.shown}: cannot drive line {spec.line} of {spec.chip} ({e.strerror or e})")


class GpioV2Line:
    """libgpiod >= 2 (PyPI `gpiod` 2.x): one line requested as an output, inactive."""

    api = "libgpiod v2"

    def __init__(self, gpiod, spec: RejectSpec):

        self.spec = spec
        self._value = gpiod.line.Value
        try:
            with gpiod.Chip(spec.chip) as chip:
                self.offset = self._offset(chip, spec)
            settings = gpiod.LineSettings(direction=gpiod.line.Direction.OUTPUT,
                                          output_value=gpiod.line.Value.INACTIVE, active_low=spec.active_low)
            self._req = gpiod.request_lines(spec.chip, consumer=CONSUMER, config={self.offset: settings})
        except OSError as e:
            raise _chip_error(spec, e) from None
        except ValueError as e:  # an offset beyond the chip's lines
            raise RejectError(f"--reject {spec.shown}: {spec.chip} has no line {spec.line} ({e})") from None

    @staticmethod
    def _offset(chip, spec: RejectSpec) -> int:
        n = chip.get_info().num_lines
        if isinstance(spec.line, int):
            if spec.line >= n:
                raise RejectError(f"--reject {spec.shown}: {spec.chip} has {n} lines (0..{n - 1}), no line "
                                  f"{spec.line}")
            return spec.line
        try:
            return chip.line_offset_from_id(spec.line)
        except (OSError, ValueError):
            raise RejectError(f"--reject {spec.shown}: {spec.chip} has no line named {spec.line} "
                              "(gpioinfo lists the names)") from None

    def set(self, active: bool) -> None:
        self._req.set_value(self.offset, self._value.ACTIVE if active else self._value.INACTIVE)

    def close(self) -> None:
        try:
            self.set(False)
        finally:
            self._req.release()


class GpioV1Line:
    """libgpiod 1.x (JetPack's python3-libgpiod): gpiod.Chip(...).get_line(offset) or find_line(name),
    requested as an output with the active-low flag where asked."""

    api = "libgpiod v1"

    def __init__(self, gpiod, spec: RejectSpec):
        self.spec = spec
        try:
            self._chip = gpiod.Chip(spec.chip)
        except OSError as e:
            raise _chip_error(spec, e) from None
        try:
            self._line = self._find(gpiod, spec)
            flags = gpiod.LINE_REQ_FLAG_ACTIVE_LOW if spec.active_low else 0
            self._line.request(consumer=CONSUMER, type=gpiod.LINE_REQ_DIR_OUT, flags=flags, default_val=0)
        except OSError as e:
            self._chip.close()
            raise _chip_error(spec, e) from None
        except RejectError:
            self._chip.close()
            raise

    def _find(self, gpiod, spec: RejectSpec):
        if isinstance(spec.line, int):
            n = self._chip.num_lines()
            if spec.line >= n:
                raise RejectError(f"--reject {spec.shown}: {spec.chip} has {n} lines (0..{n - 1}), no line "
                                  f"{spec.line}")
            return self._chip.get_line(spec.line)
        line = self._chip.find_line(spec.line)
        if line is None:
            raise RejectError(f"--reject {spec.shown}: {spec.chip} has no line named {spec.line} "
                              "(gpioinfo lists the names)")
        return line

    def set(self, active: bool) -> None:
        self._line.set_value(1 if active else 0)

    def close(self) -> None:
        try:
            self.set(False)
        finally:
            self._line.release()
            self._chip.close()


class FakeGpioChip:
    """A FAKE GPIO chip with one line, for dry runs, tests and benchmarks on machines without GPIO: no pin
    moves. Every write is appended to `path` as one JSON line {"value": 0|1, "wall": s, "mono_ns": ns},
    timed when the write reaches it (time.monotonic_ns is the system-wide CLOCK_MONOTONIC)."""

    api = "FAKE chip (no pin moves)"

    def __init__(self, path: str):
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise RejectError(f"--reject fake-gpio:{path}: cannot write the fake chip's edges ({e.strerror})") \
                from None

    def set(self, active: bool) -> None:
        mono_ns, wall = time.monotonic_ns(), time.time()
        os.write(self._fd, (json.dumps({"value": int(active), "wall": wall, "mono_ns": mono_ns}) + "\n").encode())

    def close(self) -> None:
        try:
            self.set(False)
        finally:
            os.close(self._fd)


class HttpGateway:
    """A PLC gateway: `post(payload)` sends one JSON POST and returns None (2xx) or why it failed. A
    user:password@ in the URL is sent as Basic authentication, never shown."""

    api = "HTTP gateway"
    TIMEOUT_S = 2.0

    def __init__(self, url: str):
        import base64
        from urllib.parse import urlsplit, urlunsplit

        u = urlsplit(url)
        self.headers = {"Content-Type": "application/json", "User-Agent": "edge-qwq-reject"}
        if u.username is not None:
            from urllib.parse import unquote

            cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
            u = u._replace(netloc=u.netloc.rsplit("@", 1)[1])  # the host as given: [::1] stays bracketed
        self.url = urlunsplit(u)
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # a redirected POST would arrive as a bare GET
                return None

        self._opener = urllib.request.build_opener(NoRedirect)

    def post(self, payload: dict) -> str | None:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url, data=json.dumps(payload).encode(), headers=self.headers,
                                     method="POST")
        try:
            with self._opener.open(req, timeout=self.TIMEOUT_S) as r:
                r.read(65536)
                return None
        except urllib.error.HTTPError as e:
            moved = " (a redirect is not followed: give the gateway's final URL)" if 300 <= e.code < 400 else ""
            return f"the gateway answered {e.code} {e.reason}{moved}"
        except (OSError, ValueError) as e:
            return f"the gateway cannot be reached ({getattr(e, 'reason', None) or e})"

    def close(self) -> None:
        pass
