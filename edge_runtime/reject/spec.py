"""`--reject SPEC`: where the reject signal goes, parsed and checked before anything opens.

    gpio:CHIP:LINE[:active_low]   a digital output through the Linux GPIO character device (libgpiod).
                                  CHIP: gpiochip0, /dev/gpiochip0 or 0; LINE: an offset (105) or a line
                                  name (PQ.05, as `gpioinfo` lists it); active_low: the line is driven low to
                                  reject (an opto-isolator wired to 3.3 V)
    http://HOST[:PORT]/PATH       a PLC gateway: one JSON POST per reject at its due time (https:// too; a
                                  user:password@ in the URL becomes Basic authentication and is never shown)
    fake-gpio:FILE                a FAKE chip, for dry runs, tests and benchmarks: no pin moves; every write to
                                  its one line is appended to FILE as JSON ({"value", "wall", "mono_ns"})
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_runtime.errors import EdgeError
from edge_runtime.sources import redact_url

FORMS = "gpio:CHIP:LINE[:active_low], http://HOST[:PORT]/PATH or fake-gpio:FILE"


class RejectError(EdgeError):
    """A malformed --reject, a GPIO chip or line that does not exist, an output that cannot be opened."""


@dataclass(frozen=True)
class RejectSpec:
    kind: str  # "gpio", "http" or "fake-gpio"
    chip: str = ""  # gpio: /dev/gpiochipN (or the name as given when it is not a number or a gpiochip name)
    line: int | str = 0  # gpio: an offset, or a line name
    active_low: bool = False
    url: str = ""  # http: as given (it may hold a password: only `shown` leaves the process)
    path: str = ""  # fake-gpio: the file the fake chip writes its edges to

    @property
    def value(self) -> str:
        """The --reject value that gives this spec again (an http:// URL as given: with its password)."""
        if self.kind == "gpio":
            return f"gpio:{self.chip}:{self.line}{':active_low' if self.active_low else ''}"
        return self.url if self.kind == "http" else f"fake-gpio:{self.path}"

    @property
    def shown(self) -> str:
        """What messages, /status and the store show: never a password."""
        return redact_url(self.url) if self.kind == "http" else self.value


def parse_reject(spec: str) -> RejectSpec:
    """RejectSpec, or RejectError naming what is wrong (never the password of an http:// URL)."""
    if spec.startswith(("http://", "https://")):
        return _parse_http(spec)
    if spec.startswith("fake-gpio:"):
        path = spec[len("fake-gpio:"):]
        if not path:
            raise RejectError("--reject fake-gpio:FILE needs the file the fake chip writes its edges to")
        return RejectSpec("fake-gpio", path=path)
    if spec.startswith("gpio:"):
        return _parse_gpio(spec)
    raise RejectError(f"--reject {redact_url(spec)}: give {FORMS}")


def _parse_gpio(spec: str) -> RejectSpec:
    parts = spec.split(":")[1:]
    active_low = bool(parts) and parts[-1].lower() in ("active_low", "active-low", "low")
    if active_low:
        parts = parts[:-1]
    if len(parts) != 2 or not all(parts):
        raise RejectError(f"--reject {spec}: give gpio:CHIP:LINE[:active_low], e.g. gpio:gpiochip0:105 or "
                          "gpio:0:PQ.05:active_low")
    chip, line = parts
    if re.fullmatch(r"\d+", chip):
        chip = f"/dev/gpiochip{int(chip)}"
    elif re.fullmatch(r"gpiochip\d+", chip):
        chip = f"/dev/{chip}"
    elif not chip.startswith("/dev/"):
        raise RejectError(f"--reject {spec}: CHIP is gpiochipN, /dev/gpiochipN or N (gpiodetect lists them)")
    if re.fullmatch(r"\d+", line):
        return RejectSpec("gpio", chip=chip, line=int(line), active_low=active_low)
    if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.\-]*", line):  # not "-1": gpiod v2 would take it as offset -1
        raise RejectError(f"--reject {spec}: LINE is an offset or a line name as gpioinfo lists it")
    return RejectSpec("gpio", chip=chip, line=line, active_low=active_low)


def _parse_http(spec: str) -> RejectSpec:
    shown = redact_url(spec)
    try:
        u = urlsplit(spec)
        port = u.port
    except ValueError:
        raise RejectError(f"--reject {shown}: not a valid URL (http://HOST[:PORT]/PATH)") from None
    if not u.hostname:
        raise RejectError(f"--reject {shown}: the PLC gateway's URL has no host (http://HOST[:PORT]/PATH)")
    if port == 0:
        raise RejectError(f"--reject {shown}: port 0 is not a port")
    return RejectSpec("http", url=spec)


def check_timing(delay_ms: float, pulse_ms: float) -> None:
    """The delay (camera to ejector) and the pulse must be finite, the delay >= 0 and the pulse > 0."""
    import math

    if not math.isfinite(delay_ms) or delay_ms < 0:
        raise RejectError(f"--reject-delay-ms must be a time in ms >= 0, got {delay_ms:g}")
    if not math.isfinite(pulse_ms) or pulse_ms <= 0 or pulse_ms > 10_000:
        raise RejectError(f"--reject-pulse-ms must be in (0, 10000] ms, got {pulse_ms:g}")
