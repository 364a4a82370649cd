"""FAKE libgpiod Python modules, for testing the reject outputs on machines without a GPIO chip.

They stand in for the two real bindings `edge_runtime.reject.outputs` drives:

    FakeGpiodV2(board)   libgpiod v2 as PyPI's `gpiod` 2.x ships it: gpiod.Chip(path) (a context manager,
                         get_info().num_lines, line_offset_from_id(name)) and gpiod.request_lines(path,
                         config={offset: LineSettings}, consumer=...) returning a request with set_value(offset,
                         Value) and release(). LineSettings and gpiod.line (Direction, Value) are the REAL
                         installed package's, so the adapter is checked against the real API types.
    FakeGpiodV1(board)   libgpiod v1 as JetPack's python3-libgpiod ships it: gpiod.Chip(path), chip.num_lines(),
                         chip.get_line(offset), chip.find_line(name) (None when absent), line.request(consumer=,
                         type=LINE_REQ_DIR_OUT, flags=LINE_REQ_FLAG_ACTIVE_LOW|0, default_val=0),
                         line.set_value(0|1), line.release(), chip.close().

Both are backed by a FakeGpioBoard: FAKE chips by path (/dev/gpiochip0 ...) with N lines, optional line names,
lines marked busy (the kernel's EBUSY: another program holds them) and chips marked unreadable (EACCES). No pin
moves: every request and every write is recorded in a FakeLineRecord (consumer, direction, active_low, initial
output value, each value written with its CLOCK_MONOTONIC time in ns, released or not)."""
from __future__ import annotations

import errno
import os
import time
import types
from collections.abc import Iterable
from dataclasses import dataclass, field

import gpiod as real_gpiod  # the REAL installed package (v2): its LineSettings and line enums are reused


@dataclass
class FakeLineRecord:
    """What a program did to one FAKE line through one request."""

    offset: int
    consumer: str | None
    direction: str  # "output", "input" or "as-is"
    active_low: bool
    initial: int  # the output value the line was requested with (logical: 1 active, 0 inactive)
    writes: list[tuple[int, int]] = field(default_factory=list)  # (logical value 0|1, time.monotonic_ns())
    released: bool = False

    @property
    def values(self) -> list[int]:
        return [v for v, _ in self.writes]


@dataclass
class FakeChipState:
    """One FAKE GPIO chip: its lines, their names, which are busy, whether it can be opened."""

    path: str
    num_lines: int
    names: dict[int, str] = field(default_factory=dict)
    busy: set[int] = field(default_factory=set)
    unreadable: bool = False
    opened: int = 0  # Chip objects made on it
    closed: int = 0  # of which closed
    requests: list[FakeLineRecord] = field(default_factory=list)

    def offset_of(self, name: str) -> int | None:
        return next((o for o, n in self.names.items() if n == name), None)


class FakeGpioBoard:
    """A FAKE board's GPIO chips, by path: what both fake gpiod modules open."""

    def __init__(self):
        self.chips: dict[str, FakeChipState] = {}

    def add_chip(self, path: str, num_lines: int, names: dict[int, str] | None = None) -> FakeChipState:
        self.chips[path] = FakeChipState(path, num_lines, dict(names or {}))
        return self.chips[path]

    def open(self, path: str) -> FakeChipState:
        """The chip at `path`, or the OSError the kernel gives for it (ENOENT, EACCES)."""
        chip = self.chips.get(path)
        if chip is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if chip.unreadable:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        chip.opened += 1
        return chip

    def request(self, chip: FakeChipState, offset: int, **record) -> FakeLineRecord:
        """The kernel's line request: EBUSY when another program holds the line (or this one already does)."""
        held = any(r.offset == offset and not r.released for r in chip.requests)
        if offset in chip.busy or held:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        rec = FakeLineRecord(offset=offset, **record)
        chip.requests.append(rec)
        return rec

    def records(self, path: str) -> list[FakeLineRecord]:
        return self.chips[path].requests


# ------------------------------------------------------------------------------------------------ libgpiod v2
class _FakeChipInfoV2:
    def __init__(self, chip: FakeChipState):
        self.name = os.path.basename(chip.path)
        self.label = "FAKE chip"
        self.num_lines = chip.num_lines


class _FakeChipV2:
    """FAKE gpiod.Chip (v2): opened on construction, closed by close() or the `with` block."""

    def __init__(self, board: FakeGpioBoard, path: str):
        self._state: FakeChipState | None = board.open(path)
        self.path = path

    def __enter__(self):
        self._check_closed()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_closed(self) -> None:
        if self._state is None:
            raise real_gpiod.ChipClosedError()

    def close(self) -> None:
        if self._state is not None:
            self._state.closed += 1
            self._state = None

    def get_info(self) -> _FakeChipInfoV2:
        self._check_closed()
        return _FakeChipInfoV2(self._state)

    def line_offset_from_id(self, id: str | int) -> int:
        """As the real one: an int is checked against the lines (ValueError), a str is looked up as a name,
        then as an offset; a name the chip does not have is OSError(ENOENT)."""
        self._check_closed()
        if isinstance(id, int):
            offset = id
        else:
            found = self._state.offset_of(id)
            if found is not None:
                return found
            try:
                offset = int(id)
            except ValueError:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)) from None
        if offset >= self._state.num_lines:
            raise ValueError("line offset of out range")
        return offset


class _FakeLineRequestV2:
    """FAKE gpiod.LineRequest (v2): set_value(offset, gpiod.line.Value), release()."""

    def __init__(self, records: dict[int, FakeLineRecord]):
        self._records = records
        self._released = False

    def set_value(self, line: int | str, value) -> None:
        if self._released:
            raise real_gpiod.RequestReleasedError()
        if not isinstance(value, real_gpiod.line.Value):
            raise TypeError(f"value must be a gpiod.line.Value, got {value!r}")
        if line not in self._records:
            raise ValueError(f"line {line} was not requested")
        self._records[line].writes.append((1 if value == real_gpiod.line.Value.ACTIVE else 0, time.monotonic_ns()))

    def release(self) -> None:
        if self._released:
            raise real_gpiod.RequestReleasedError()
        self._released = True
        for rec in self._records.values():
            rec.released = True


_DIRECTIONS = {"OUTPUT": "output", "INPUT": "input", "AS_IS": "as-is"}


class FakeGpiodV2(types.ModuleType):
    """A FAKE `gpiod` module with libgpiod v2's Python API (PyPI gpiod 2.x) over a FakeGpioBoard."""

    def __init__(self, board: FakeGpioBoard):
        super().__init__("fake_gpiod_v2", "FAKE libgpiod v2 Python binding (tests only)")
        self.board = board
        self.__file__ = __file__
        self.LineSettings = real_gpiod.LineSettings
        self.line = real_gpiod.line
        self.ChipClosedError = real_gpiod.ChipClosedError
        self.RequestReleasedError = real_gpiod.RequestReleasedError
        self.__version__ = "2.x FAKE"

        def Chip(path: str) -> _FakeChipV2:  # noqa: N802 (the real API's name)
            return _FakeChipV2(board, path)

        def request_lines(path: str, config: dict, consumer: str | None = None, event_buffer_size: int | None = None,
                          output_values: dict | None = None) -> _FakeLineRequestV2:
            with Chip(path) as chip:
                records: dict[int, FakeLineRecord] = {}
                for key, settings in config.items():
                    keys = key if isinstance(key, Iterable) and not isinstance(key, str) else (key,)
                    settings = settings if settings is not None else real_gpiod.LineSettings()
                    if not isinstance(settings, real_gpiod.LineSettings):
                        raise TypeError(f"settings must be a gpiod.LineSettings, got {settings!r}")
                    for k in keys:
                        offset = chip.line_offset_from_id(k)
                        if offset in records:
                            raise ValueError(f"line must be configured exactly once - offset {offset} repeats")
                        value = (output_values or {}).get(k, settings.output_value)
                        records[offset] = board.request(
                            chip._state, offset, consumer=consumer, direction=_DIRECTIONS[settings.direction.name],
                            active_low=bool(settings.active_low), initial=1 if value == real_gpiod.line.Value.ACTIVE else 0)
                return _FakeLineRequestV2(records)

        self.Chip = Chip
        self.request_lines = request_lines


# ------------------------------------------------------------------------------------------------ libgpiod v1
class _FakeLineV1:
    """FAKE gpiod.Line (v1)."""

    def __init__(self, gpiod: FakeGpiodV1, chip: _FakeChipV1, offset: int):
        self._gpiod, self._chip, self._offset = gpiod, chip, offset
        self.record: FakeLineRecord | None = None

    def offset(self) -> int:
        return self._offset

    def request(self, consumer: str, type: int = 1, flags: int = 0, default_val: int | None = None,
                default_vals=None) -> None:
        g = self._gpiod
        self._chip._check_closed()
        if default_val is not None and default_vals is not None:
            raise TypeError("Cannot pass both default_val and default_vals arguments at the same time")
        if default_val is None and default_vals is not None:
            (default_val,) = default_vals
        direction = {g.LINE_REQ_DIR_OUT: "output", g.LINE_REQ_DIR_IN: "input"}.get(type, "as-is")
        self.record = g.board.request(self._chip._state, self._offset, consumer=consumer, direction=direction,
                                      active_low=bool(flags & g.LINE_REQ_FLAG_ACTIVE_LOW), initial=int(default_val or 0))

    def set_value(self, value: int) -> None:
        self._chip._check_closed()
        if self.record is None or self.record.released:
            raise PermissionError(errno.EPERM, "line not requested")
        if not isinstance(value, int) or value not in (0, 1):
            raise TypeError(f"value must be 0 or 1, got {value!r}")
        self.record.writes.append((int(value), time.monotonic_ns()))

    def release(self) -> None:
        if self.record is not None:
            self.record.released = True


class _FakeChipV1:
    """FAKE gpiod.Chip (v1): opened on construction; num_lines(), get_line(), find_line(), close()."""

    def __init__(self, gpiod: FakeGpiodV1, path: str):
        self._gpiod = gpiod
        self._state: FakeChipState | None = gpiod.board.open(path)

    def _check_closed(self) -> None:
        if self._state is None:
            raise ValueError("I/O operation on closed file")

    def num_lines(self) -> int:
        self._check_closed()
        return self._state.num_lines

    def get_line(self, offset: int) -> _FakeLineV1:
        self._check_closed()
        if not 0 <= offset < self._state.num_lines:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return _FakeLineV1(self._gpiod, self, offset)

    def find_line(self, name: str) -> _FakeLineV1 | None:
        self._check_closed()
        offset = self._state.offset_of(name)
        return None if offset is None else _FakeLineV1(self._gpiod, self, offset)

    def close(self) -> None:
        if self._state is not None:
            self._state.closed += 1
            self._state = None


class FakeGpiodV1(types.ModuleType):
    """A FAKE `gpiod` module with libgpiod v1's Python API (JetPack's python3-libgpiod) over a FakeGpioBoard.
    Its constants have the real binding's values."""

    LINE_REQ_DIR_AS_IS, LINE_REQ_DIR_IN, LINE_REQ_DIR_OUT = 1, 2, 3
    LINE_REQ_FLAG_OPEN_DRAIN, LINE_REQ_FLAG_OPEN_SOURCE, LINE_REQ_FLAG_ACTIVE_LOW = 1, 2, 4

    def __init__(self, board: FakeGpioBoard):
        super().__init__("fake_gpiod_v1", "FAKE libgpiod v1 Python binding (tests only)")
        self.board = board
        self.__file__ = __file__

        def Chip(path: str) -> _FakeChipV1:  # noqa: N802 (the real API's name)
            return _FakeChipV1(self, path)

        self.Chip = Chip
