"""The manifest's sections as typed records: the contract between the packages.

Every section has one owner that writes it and named readers; the table below is the whole contract (the
architecture page, docs/architecture.md, has it too). Units are in the field names: `_pct` is percent
(0..100), `_fraction` is 0..1, `_bytes`, `_ms`; counts are plain integers.

| section         | written by                          | read by                                              |
|-----------------|-------------------------------------|------------------------------------------------------|
| classes, input  | export                              | runtime (preprocess, labels), calib, bench, verify    |
| stages          | export (+ `quantized` by calib)     | backends, estimate, engine build, calib, inspect     |
| exit_policy     | export (+ `exit_fraction` by calib) | runtime (ExitPolicy), bench, calib, estimate         |
| student         | export                              | calib (AWQ groups), inspect                          |
| dynamic         | export (+ tune)                     | runtime (reuse window and threshold), inspect        |
| frames          | calib (frame threshold, tile mode)  | runtime (frame decision), bench, inspect             |
| quantization    | calib                               | health monitor (agreement baseline), engine build    |
|                 |                                     | (TensorRT version check), inspect                    |
| calibration     | calib                               | health monitor (input and hidden references),        |
|                 |                                     | engine verification (stored samples), inspect        |
| engines         | engine_builder (on the device)      | TensorRT backend, engine build (reuse/rebuild)       |

Each record has `from_dict` (which raises KeyError/TypeError/ValueError on a malformed section; the
bundle turns that into one BundleError line) and `to_dict` (JSON-ready). Defaults live here once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def _opt(d: dict, key: str, conv):
    v = d.get(key)
    return None if v is None else conv(v)


@dataclass(frozen=True)
class InputSpec:
    """How the runtime turns a frame into the stage-0 tensor (B, 3, H, W) float32."""

    height: int  # pixels
    width: int  # pixels
    mean: tuple[float, float, float]  # per channel, on [0, 1] pixels, RGB order
    std: tuple[float, float, float]
    layout: str = "NCHW"
    color: str = "RGB"
    mode: str = "resize"  # how a frame becomes inputs: "resize" (whole frame) or "tile" (native-scale crops)
    tile_overlap: float = 0.25  # tile mode: fraction (0..1) of a tile shared with its neighbour
    frame_size: tuple[int, int] | None = None  # tile mode: (height, width) of the camera frames it is fitted
    #                                            and built for (frames fit sets it; engines size their profile by it)

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        size = d["size"]
        if not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and 8 <= v <= 4096
                                                                     for v in size):
            raise ValueError(f"size must be [height, width] in whole pixels from 8 to 4096, got {size!r}")
        h, w = size
        mean, std = tuple(_floats(d["mean"])), tuple(_floats(d["std"]))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std need 3 values (R, G, B)")
        mode, overlap = str(d.get("mode", "resize")), float(d.get("tile_overlap", 0.25))
        if mode not in INPUT_MODES:
            raise ValueError(f"input mode {mode!r} is not one of {', '.join(INPUT_MODES)}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"tile_overlap must lie in [0, 1), got {overlap}")
        fs = d.get("frame_size")  # [width, height], as frame sizes are written everywhere else
        frame = None if fs is None else (int(fs[1]), int(fs[0]))
        return cls(int(h), int(w), mean, std, str(d.get("layout", "NCHW")), str(d.get("color", "RGB")),
                   mode, overlap, frame)

    def to_dict(self) -> dict:
        d = {"size": [self.height, self.width], "mean": list(self.mean), "std": list(self.std),
             "layout": self.layout, "color": self.color, "mode": self.mode, "tile_overlap": self.tile_overlap}
        if self.frame_size is not None:
            d["frame_size"] = [self.frame_size[1], self.frame_size[0]]
        return d


INPUT_MODES = ("resize", "tile")


@dataclass
class StageSpec:
    """Stage k: `input` in, `outputs` (hidden, logits) out. `quantized`: the .q.onnx file calib wrote."""

    index: int
    file: str
    input: str  # "image" for stage 0, "hidden_in" after
    flops: int = 0  # multiply-adds x 2, batch 1
    quantized: str | None = None
    outputs: list[str] = field(default_factory=lambda: ["hidden", "logits"])
    blocks: list[int] | None = None  # [first, end) transformer blocks of the student in this stage
    hidden_shape: list[int] | None = None  # (tokens, dim) of one frame's hidden state
    max_abs_error_vs_torch: float | None = None  # export's check of the ONNX graph against torch

    @classmethod
    def from_dict(cls, d: dict) -> "StageSpec":
        return cls(int(d["index"]), str(d["file"]), str(d["input"]), int(d.get("flops", 0)),
                   _opt(d, "quantized", str), [str(o) for o in d.get("outputs", ["hidden", "logits"])],
                   _opt(d, "blocks", lambda b: [int(i) for i in b]),
                   _opt(d, "hidden_shape", lambda s: [int(i) for i in s]),
                   _opt(d, "max_abs_error_vs_torch", float))

    def to_dict(self) -> dict:
        return {"index": self.index, "file": self.file, "input": self.input, "outputs": list(self.outputs),
                "blocks": self.blocks, "hidden_shape": self.hidden_shape, "flops": self.flops,
                "max_abs_error_vs_torch": self.max_abs_error_vs_torch, "quantized": self.quantized}


@dataclass
class ExitPolicySpec:
    """Confidence to stop at each early exit, as a defect (`early_exit`) and as ok (`early_exit_ok`).

    `default(n)` is the one place the defaults come from (edge_runtime.executor.default_thresholds)."""

    early_exit: list[float]
    early_exit_ok: list[float]
    temperatures: list[float] | None = None  # per exit, fitted by distillation and folded into the heads
    exit_fraction: list[float] | None = None  # measured share (0..1) of frames answered at each early exit

    @classmethod
    def default(cls, early_exits: int) -> "ExitPolicySpec":
        from edge_runtime.executor import default_thresholds

        defect, ok = default_thresholds(early_exits)
        return cls(defect, ok)

    @classmethod
    def from_dict(cls, d: dict) -> "ExitPolicySpec":
        return cls(_floats(d["early_exit"]), _floats(d["early_exit_ok"]), _opt(d, "temperatures", _floats),
                   _opt(d, "exit_fraction", _floats))

    def to_dict(self) -> dict:
        return {"early_exit": list(self.early_exit), "early_exit_ok": list(self.early_exit_ok),
                "temperatures": self.temperatures, "exit_fraction": self.exit_fraction}


@dataclass
class AwqGroup:
    """Linear layers that read the output of one norm (torch module paths): they share AWQ's scale."""

    norm: str
    linears: list[str]

    def to_dict(self) -> dict:
        return {"norm": self.norm, "linears": list(self.linears)}


@dataclass
class PruningSpec:
    """What attention-head pruning removed (export/prune.py writes it; bench and estimate read it)."""

    threshold: float  # prune_threshold: a head below this fraction of its block's best head was removed
    heads_kept: list[list[int]]  # per block, the original indices of the heads kept
    score: str  # how importance was measured
    attention_flops_before: int
    attention_flops_after: int
    flops_before: int  # the student's full-depth FLOPs before and after pruning
    flops_after: int

    @classmethod
    def from_dict(cls, d: dict) -> "PruningSpec":
        return cls(float(d["threshold"]), [[int(h) for h in b] for b in d["heads_kept"]], str(d["score"]),
                   int(d["attention_flops_before"]), int(d["attention_flops_after"]), int(d["flops_before"]),
                   int(d["flops_after"]))

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "heads_kept": [list(b) for b in self.heads_kept], "score": self.score,
                "attention_flops_before": self.attention_flops_before,
                "attention_flops_after": self.attention_flops_after,
                "flops_before": self.flops_before, "flops_after": self.flops_after}

    @property
    def attention_saved(self) -> float:
        return 1.0 - self.attention_flops_after / max(1, self.attention_flops_before)

    def summary(self) -> dict:
        """What `bench` and `estimate` report: the threshold, heads kept and the FLOPs saved."""
        return {"prune_threshold": self.threshold, "heads_kept_per_block": [len(b) for b in self.heads_kept],
                "attention_flops": {"before": self.attention_flops_before, "after": self.attention_flops_after,
                                    "saved_pct": round(100 * self.attention_saved, 2)},
                "flops": {"before": self.flops_before, "after": self.flops_after,
                          "saved_pct": round(100 * (1 - self.flops_after / max(1, self.flops_before)), 2)}}

    def describe(self) -> str:
        s = self.summary()
        return (f"pruned at prune_threshold {self.threshold:g}: heads kept per block {s['heads_kept_per_block']}; "
                f"attention FLOPs {self.attention_flops_before / 1e6:.2f} -> {self.attention_flops_after / 1e6:.2f} M "
                f"({s['attention_flops']['saved_pct']:.1f} % saved), full depth {self.flops_before / 1e6:.2f} -> "
                f"{self.flops_after / 1e6:.2f} M ({s['flops']['saved_pct']:.1f} % saved)")


@dataclass
class StudentSpec:
    """The student's shape, and its own description of itself for AWQ."""

    dim: int
    depth: int
    heads: int
    patch: int  # pixels per token side
    exits: list[int]  # block index after which each exit head sits
    awq_groups: list[AwqGroup] = field(default_factory=list)
    block_heads: list[int] | None = None  # heads kept per block after pruning; None: `heads` in every block
    pruning: PruningSpec | None = None
    stem_width: int | None = None  # channels of the stem's first conv; None: scaled from dim

    @classmethod
    def from_dict(cls, d: dict) -> "StudentSpec":
        groups = [AwqGroup(str(g["norm"]), [str(n) for n in g["linears"]]) for g in d.get("awq_groups", [])]
        bh = d.get("block_heads")
        pruning = d.get("pruning")
        return cls(int(d["dim"]), int(d["depth"]), int(d["heads"]), int(d["patch"]), [int(e) for e in d["exits"]],
                   groups, None if bh is None else [int(h) for h in bh],
                   None if pruning is None else PruningSpec.from_dict(pruning),
                   None if d.get("stem_width") is None else int(d["stem_width"]))

    def to_dict(self) -> dict:
        d = {"dim": self.dim, "depth": self.depth, "heads": self.heads, "patch": self.patch,
             "exits": list(self.exits), "awq_groups": [g.to_dict() for g in self.awq_groups]}
        if self.block_heads is not None:
            d["block_heads"] = list(self.block_heads)
        if self.pruning is not None:
            d["pruning"] = self.pruning.to_dict()
        if self.stem_width is not None:
            d["stem_width"] = self.stem_width
        return d


@dataclass
class DynamicSpec:
    """The dynamic-inference settings the runtime takes when the user gives none."""

    reuse_window: int = 0  # frames a frame's (or a tile's) result may be reused while its pixels stay (0: off)
    reuse_threshold: float = 3.0  # grey levels: the largest patch change still counted as "unchanged"

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicSpec":
        return cls(int(d.get("reuse_window", 0)), float(d.get("reuse_threshold", 3.0)))

    def to_dict(self) -> dict:
        return {"reuse_window": self.reuse_window, "reuse_threshold": self.reuse_threshold}


@dataclass
class TuningSpec:
    """Where the dynamic configuration came from, when `edge-qwq tune --apply` chose it (tune/apply.py writes
    it; `inspect` and the report read it)."""

    study: str
    storage: str  # the study storage, password hidden
    trial: int | None  # the Optuna trial applied (None: the untuned configuration was kept)
    base_version: str  # the bundle's version before the configuration was applied
    objectives: dict[str, Any]  # metric, kind, weight, max_changed_pct, measured
    params: dict[str, Any]  # early_exit, early_exit_ok, reuse_window, reuse_threshold, variant
    target: str  # the latency estimate's target
    tuned_on: dict[str, Any]  # {"source", "figures"}: the split trials were scored on
    judged_on: dict[str, Any]  # {"source", "figures", "untuned_figures"}: the split the point is reported on
    time: str  # UTC, ISO 8601

    @classmethod
    def from_dict(cls, d: dict) -> "TuningSpec":
        trial = d.get("trial")
        return cls(str(d["study"]), str(d["storage"]), None if trial is None else int(trial), str(d["base_version"]),
                   dict(d.get("objectives") or {}), dict(d.get("params") or {}), str(d.get("target", "")),
                   dict(d.get("tuned_on") or {}), dict(d.get("judged_on") or {}), str(d.get("time", "")))

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FrameSpec:
    """Tile mode's frame-level decision, fitted on defect-free frames (calib/frame_threshold.py writes it).

    A frame is a defect when one of its tiles scores at least `threshold[precision]`; a tile's score is
    its defect probability (1 - p(ok)) at the exit it took, averaged with its strongest overlapping
    neighbour (`evidence`). The threshold is the smallest that keeps the false-alarm rate on the fitting
    frames at or under `false_alarm_target_fraction`, never under the tile's own 0.5."""

    threshold: dict[str, float]  # precision ("fp32" | "quantized") -> tile score for "defect"
    false_alarm_target_fraction: float
    evidence: str  # how overlapping tiles combine: "max" | "pair"
    fitted_on: dict[str, Any] = field(default_factory=dict)  # {"frames", "good_frames", "source", "frame_size"}
    measured: dict[str, Any] = field(default_factory=dict)  # per precision: false alarms and recall on the fit frames

    @classmethod
    def from_dict(cls, d: dict) -> "FrameSpec":
        th = {str(k): float(v) for k, v in d["threshold"].items()}
        if any(not 0.0 < v <= 1.0 for v in th.values()):
            raise ValueError(f"frame thresholds must lie in (0, 1], got {th}")
        return cls(th, float(d["false_alarm_target_fraction"]), str(d.get("evidence", "max")),
                   dict(d.get("fitted_on") or {}), dict(d.get("measured") or {}))

    def to_dict(self) -> dict:
        return {"threshold": dict(self.threshold), "false_alarm_target_fraction": self.false_alarm_target_fraction,
                "evidence": self.evidence, "fitted_on": self.fitted_on, "measured": self.measured}

    def threshold_for(self, precision: str) -> float | None:
        return self.threshold.get(precision)


@dataclass
class QuantizationSpec:
    """What calib did to the stages, and what it measured (on `eval_images` labelled images)."""

    mode: str  # "int8" | "int4" | "mixed"
    trt_version: str  # the TensorRT the Q/DQ graphs were made for, "10.3": INT4 needs >= 10
    calibration_method: str
    plan: dict[str, dict[str, str]]  # "stage{k}" -> {layer node: "int8" | "int4" | "fp16"}
    eval_images: int
    fp32_accuracy_pct: float  # full depth
    fp32_accuracy_early_exit_pct: float
    accuracy_pct: float  # quantized, full depth
    accuracy_early_exit_pct: float
    fp32_agreement_pct: float  # early-exit decisions equal to FP32's: the health monitor's baseline
    weight_bytes_fp32: int
    weight_bytes_quantized: int
    opset: int | None = None
    report: str = "quant_report.json"

    @classmethod
    def from_dict(cls, d: dict) -> "QuantizationSpec":
        plan = {str(s): {str(k): str(v) for k, v in layers.items()} for s, layers in d["plan"].items()}
        return cls(str(d["mode"]), str(d["trt_version"]), str(d["calibration_method"]), plan,
                   int(d["eval_images"]), float(d["fp32_accuracy_pct"]), float(d["fp32_accuracy_early_exit_pct"]),
                   float(d["accuracy_pct"]), float(d["accuracy_early_exit_pct"]), float(d["fp32_agreement_pct"]),
                   int(d["weight_bytes_fp32"]), int(d["weight_bytes_quantized"]), _opt(d, "opset", int),
                   str(d.get("report", "quant_report.json")))

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def trt_min(self) -> tuple[int, int]:
        major, _, minor = self.trt_version.partition(".")
        return int(major), int(minor or 0)

    @property
    def has_int4(self) -> bool:
        return any(p == "int4" for layers in self.plan.values() for p in layers.values())


@dataclass
class InputStat:
    mean: float
    std: float


@dataclass
class CalibrationSpec:
    """The calibration set's statistics (the health monitor's references) and a few stored inputs."""

    images: int
    source: str
    resized_images: int
    input_stats: dict[str, InputStat]  # brightness, contrast (grey levels), sharpness (Laplacian variance)
    hidden_range: list[tuple[float, float]]  # per stage: (min, max) of the FP32 hidden state
    samples: str | None = None  # .npy in the bundle: (N, 3, H, W) float32 stage-0 inputs, preprocessed
    samples_count: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "CalibrationSpec":
        stats = {str(k): InputStat(float(v["mean"]), float(v["std"])) for k, v in d.get("input_stats", {}).items()}
        ranges = [(float(lo), float(hi)) for lo, hi in d.get("hidden_range", [])]
        return cls(int(d.get("images", 0)), str(d.get("source", "")), int(d.get("resized_images", 0)), stats,
                   ranges, _opt(d, "samples", str), int(d.get("samples_count", 0)))

    def to_dict(self) -> dict:
        return {"images": self.images, "source": self.source, "resized_images": self.resized_images,
                "input_stats": {k: {"mean": s.mean, "std": s.std} for k, s in self.input_stats.items()},
                "hidden_range": [[lo, hi] for lo, hi in self.hidden_range],
                "samples": self.samples, "samples_count": self.samples_count}


@dataclass
class EngineStage:
    file: str  # engines/<fingerprint>/stage{k}.engine
    source: str  # the ONNX file it was built from
    source_sha256: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EngineEntry:
    """TensorRT engines built on one device (fingerprint), and their verification against ONNX Runtime."""

    precision: str  # "fp32" | "quantized"
    stages: list[EngineStage]
    active: bool = False  # verified: the runtime may load them
    device: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # builder flags, optimisation profile
    options: dict[str, Any] = field(default_factory=dict)
    timing_cache: str | None = None
    tolerances: dict[str, float] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)  # {"inputs", "stages", "failure"?}

    @classmethod
    def from_dict(cls, d: dict) -> "EngineEntry":
        stages = [EngineStage(str(s["file"]), str(s["source"]), s.get("source_sha256")) for s in d.get("stages", [])]
        return cls(str(d["precision"]), stages, bool(d.get("active", False)), dict(d.get("device") or {}),
                   dict(d.get("plan") or {}), dict(d.get("options") or {}), d.get("timing_cache"),
                   dict(d.get("tolerances") or {}), dict(d.get("verification") or {}))

    def to_dict(self) -> dict:
        return {"device": self.device, "precision": self.precision, "plan": self.plan, "options": self.options,
                "stages": [s.to_dict() for s in self.stages], "timing_cache": self.timing_cache,
                "tolerances": self.tolerances, "verification": self.verification, "active": self.active}

    @property
    def failure(self) -> str | None:
        return self.verification.get("failure")
