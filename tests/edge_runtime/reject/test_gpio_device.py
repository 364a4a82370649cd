"""On a device with a real GPIO chip: the reject output drives a real line, timed by the kernel on a second
line wired to it (a jumper between two header pins). Skipped here: this machine has no GPIO chip.

    EDGE_QWQ_GPIO_OUT=gpiochip0:PQ.05 EDGE_QWQ_GPIO_IN=gpiochip0:PQ.06 \\
        python -m pytest -m gpio tests/edge_runtime/reject/test_gpio_device.py      (jetson/README.md)
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from edge_runtime.reject.scheduler import RejectScheduler
from edge_runtime.reject.spec import parse_reject

OUT, IN = os.environ.get("EDGE_QWQ_GPIO_OUT"), os.environ.get("EDGE_QWQ_GPIO_IN")
pytestmark = [pytest.mark.gpio, pytest.mark.timeout(120),
              pytest.mark.skipif(not (OUT and IN), reason="needs a real GPIO chip with two lines wired together: "
                                 "set EDGE_QWQ_GPIO_OUT and EDGE_QWQ_GPIO_IN (CHIP:LINE each; jetson/README.md)")]


def test_a_real_line_is_driven_within_2_ms_of_its_due_time():
    gpiod = pytest.importorskip("gpiod")
    if not hasattr(gpiod, "request_lines"):
        pytest.skip("the input side of this test uses libgpiod's v2 API (pip install gpiod)")
    from gpiod.line import Direction, Edge

    spec_in = parse_reject(f"gpio:{IN}")
    with gpiod.Chip(spec_in.chip) as chip:
        offset = chip.line_offset_from_id(spec_in.line) if isinstance(spec_in.line, str) else spec_in.line
    probe = gpiod.request_lines(spec_in.chip, consumer="edge-qwq-test",
                                config={offset: gpiod.LineSettings(direction=Direction.INPUT,
                                                                    edge_detection=Edge.RISING)})  # kernel time
    s = RejectScheduler(parse_reject(f"gpio:{OUT}"), delay_ms=100, pulse_ms=5).start()
    dues, rises = [], []
    try:
        for k in range(300):
            due = time.monotonic() + 0.1
            s.schedule(k + 1, due)
            dues.append(due)
            time.sleep(0.02)
            while probe.wait_edge_events(0):
                rises += [e.timestamp_ns / 1e9 for e in probe.read_edge_events()]
        time.sleep(0.2)
        while probe.wait_edge_events(0.1):
            rises += [e.timestamp_ns / 1e9 for e in probe.read_edge_events()]
    finally:
        s.close()
        probe.release()
    assert len(rises) == len(dues), "each reject is one rising edge on the wired input"
    err = np.abs(np.array(rises) - np.array(dues)) * 1e3
    print(f"reject on {OUT}, timed on {IN}: p50 {np.percentile(err, 50):.3f} ms, p99 {np.percentile(err, 99):.3f} ms, "
          f"max {err.max():.3f} ms ({s.priority})")
    assert np.percentile(err, 99) <= 2.0
