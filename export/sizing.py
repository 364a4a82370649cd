"""Choose the student's shape from a budget, without training: the largest shape of the family that fits.

A budget is one of:
- a fraction of the teacher's FLOPs: `0.1` means the student's full-depth FLOPs are at most 10 % of the
  teacher's (both counted on their ONNX graphs at batch 1, as `edge-qwq bench` counts them);
- a latency on a target: `1.5ms` with `--target orin-nano`: the roofline estimate of the student at
  full depth (every frame runs every stage: the worst case a per-frame deadline must cover), in FP16
  (TensorRT's precision for a bundle that is not quantized; a quantized bundle runs faster).

The default (DEFAULT_BUDGET) is a fraction of the teacher with a ceiling in absolute FLOPs, so a bigger
teacher does not make a bigger student without bound: min(10 % of the teacher, 60 MFLOPs). 60 MFLOPs
at full depth, times the 234 tiles of a 1280x960 frame at 96 px, is 14 GFLOPs: about 2.8 ms of FP16
compute on an Orin Nano at half its peak, leaving the rest of the 15 ms for capture, tiling and margin.
On the sample set the default (48 wide, 4 deep, 7.7 % of the demo teacher) matched the previous fixed
student (64 wide, 6 deep, 16.9 %) at half its compute per frame; README gives the figures.

    >>> budget = parse_budget("0.1")
    >>> budget.kind, budget.value
    ('fraction', 0.1)
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from export.errors import ExportError
from export.shapes import Shape, ShapeCost, family, shape_cost

DEFAULT_FRACTION = 0.1
DEFAULT_CEILING_FLOPS = 60_000_000
DEFAULT_BUDGET = "auto"
LATENCY_ASSUMPTIONS = "full depth (every frame runs every stage), FP16, roofline estimate"


@dataclass(frozen=True)
class Budget:
    kind: str  # "fraction" | "ms" | "auto"
    value: float = 0.0
    target: str | None = None

    def describe(self) -> str:
        if self.kind == "fraction":
            return f"{self.value:g} of the teacher's FLOPs"
        if self.kind == "ms":
            return f"{self.value:g} ms on {self.target} ({LATENCY_ASSUMPTIONS})"
        return (f"default: {DEFAULT_FRACTION:g} of the teacher's FLOPs, at most "
                f"{DEFAULT_CEILING_FLOPS / 1e6:g} MFLOPs")


def parse_budget(text: str | None, target: str | None = None) -> Budget:
    """'0.1' -> a fraction of the teacher; '1.5ms' -> a latency on TARGET; None or 'auto' -> the default."""
    text = (text or DEFAULT_BUDGET).strip().lower()
    if text == "auto":
        return Budget("auto")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*ms", text)
    if m:
        if not target:
            raise ExportError(f"a budget in milliseconds ({text}) needs --target (orin-agx, orin-nx or orin-nano)")
        value = float(m.group(1))
        if value <= 0:
            raise ExportError(f"--budget {text}: a latency budget must be above 0 ms")
        return Budget("ms", value, target)
    try:
        value = float(text)
    except ValueError:
        raise ExportError(f"--budget takes a fraction of the teacher's FLOPs (0.1) or a latency (1.5ms), "
                          f"not {text!r}") from None
    if not 0 < value <= 1:
        raise ExportError(f"--budget {text}: a fraction of the teacher's FLOPs lies in (0, 1]")
    return Budget("fraction", value)


@dataclass
class Choice:
    shape: Shape
    cost: ShapeCost
    budget: Budget
    limit: float  # FLOPs or ms the full-depth student may use
    used: float  # what the chosen shape uses, same unit
    unit: str  # "FLOPs" | "ms"
    next_larger: tuple[Shape, float] | None  # the smallest shape above the chosen one, and what it uses
    candidates: int

    def reason(self) -> str:
        def fmt(v: float) -> str:
            return _fmt(v, self.unit)

        why = (f"chose {self.shape.describe()}: {fmt(self.used)} at full depth, within the budget "
               f"({self.budget.describe()}: {fmt(self.limit)}); the largest of {self.candidates} shapes "
               "in the family that fits")
        if self.next_larger:
            why += f"; the next larger, {self.next_larger[0].describe()}, needs {fmt(self.next_larger[1])}"
        return why


def choose_shape(budget: Budget, image_size: int, num_classes: int, teacher_flops: int | None = None,
                 latency_ms: Callable[[ShapeCost], float] | None = None) -> Choice:
    """The shape of the family with the most FLOPs whose cost fits the budget (see the module doc).

    `latency_ms(cost)` (the roofline at full depth on the budget's target) is needed for a budget in ms,
    `teacher_flops` for a fraction. Raises ExportError with one line when no shape fits."""
    limit, unit, measure = _limit(budget, teacher_flops, latency_ms)
    costs = [shape_cost(s, image_size, num_classes) for s in family(image_size)]
    costs.sort(key=lambda c: (c.flops, -c.shape.patch))  # finer tokens win a tie: defects are small
    used = [measure(c) for c in costs]
    fits = [i for i, u in enumerate(used) if u <= limit]
    if not fits:
        smallest = costs[0]
        raise ExportError(f"no student shape fits the budget ({budget.describe()}: {_fmt(limit, unit)}); the "
                          f"smallest, {smallest.shape.describe()}, needs {_fmt(used[0], unit)}")
    best = max(fits, key=lambda i: (costs[i].flops, -costs[i].shape.patch))
    larger = [i for i in range(len(costs)) if costs[i].flops > costs[best].flops]
    nxt = (costs[larger[0]].shape, used[larger[0]]) if larger else None
    return Choice(costs[best].shape, costs[best], budget, limit, used[best], unit, nxt, len(costs))


def _limit(budget: Budget, teacher_flops, latency_ms):
    if budget.kind == "ms":
        if latency_ms is None:
            raise ExportError("a budget in milliseconds needs the latency estimator (engine_builder)")
        return budget.value, "ms", latency_ms
    if not teacher_flops:
        raise ExportError("a budget relative to the teacher needs the teacher's FLOPs")
    if budget.kind == "fraction":
        return budget.value * teacher_flops, "FLOPs", lambda c: c.flops
    return min(DEFAULT_FRACTION * teacher_flops, DEFAULT_CEILING_FLOPS), "FLOPs", lambda c: c.flops


def _fmt(v: float, unit: str) -> str:
    return f"{v / 1e6:.1f} MFLOPs" if unit == "FLOPs" else f"{v:.3f} ms"


def teacher_flops(teacher_dir) -> int:
    """The teacher's FLOPs at batch 1, counted on its ONNX export as `edge-qwq bench` counts them."""
    import tempfile
    from pathlib import Path

    from edge_runtime.onnx_cost import graph_flops
    from export.teacher_onnx import export_teacher_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.onnx"
        export_teacher_onnx(teacher_dir, path)
        return int(graph_flops(path))
