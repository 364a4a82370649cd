"""The student: a small ViT with a convolutional stem and early-exit heads, in one readable file.

Image (B, 3, H, W) -> conv stem, stride `patch` -> tokens (B, T, dim), T = (H/patch) * (W/patch)
-> blocks, with an exit head after each block listed in `exits` and after the last one.

Defects are small, so tokens stay fine (8 px by default, a 12x12 grid at 96 px): DESIGN.md measured
that resolution pays more than width or depth on this task.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from export.shapes import ShapeRules


@dataclass
class StudentConfig(ShapeRules):
    classes: list[str]
    ok_class: str = "ok"
    image_size: int = 96
    patch: int = 8  # pixels per token side: a power of two
    dim: int = 64
    depth: int = 6
    heads: int = 2
    mlp_ratio: float = 3.0
    exits: tuple[int, ...] = (2, 4)  # an exit head after these many blocks; the final head is implicit
    block_heads: tuple[int, ...] | None = None  # heads kept per block after pruning (None: `heads` in each)
    stem_width: int | None = None  # channels of the stem's first conv, doubling after; None: scaled from dim
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def validate(self) -> None:
        if self.patch < 2 or self.patch & (self.patch - 1):
            raise ValueError(f"patch must be a power of two >= 2, got {self.patch}")
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")
        if any(not 0 < e < self.depth for e in self.exits):
            raise ValueError(f"exits {self.exits} must lie strictly between 0 and depth {self.depth}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.block_heads is not None and (len(self.block_heads) != self.depth
                                             or any(not 1 <= h <= self.heads for h in self.block_heads)):
            raise ValueError(f"block_heads {self.block_heads} needs {self.depth} counts between 1 and {self.heads}")
        if self.ok_class not in self.classes:
            raise ValueError(f"ok_class {self.ok_class!r} is not among the classes {self.classes}")

    def to_json(self) -> str:
        d = asdict(self)
        d["exits"] = list(self.exits)
        for optional in ("block_heads", "stem_width"):  # absent when unused: older readers stay happy
            if d[optional] is None:
                d.pop(optional)
        if self.block_heads is not None:
            d["block_heads"] = list(self.block_heads)
        return json.dumps({"model_type": "edge-qwq-student", **d}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "StudentConfig":
        d = json.loads(text)
        d.pop("model_type", None)
        d.pop("prune_threshold", None)  # written by older versions; nothing ever pruned
        d["exits"] = tuple(d["exits"])
        if d.get("block_heads") is not None:
            d["block_heads"] = tuple(d["block_heads"])
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


class ConvStem(nn.Module):
    """log2(patch) stride-2 convs: (B, 3, H, W) -> (B, dim, H/patch, W/patch)."""

    def __init__(self, dim: int, patch: int, width: int | None = None):
        super().__init__()
        from export.shapes import stem_channels

        n = int(math.log2(patch))
        chans = stem_channels(dim, patch, width)  # e.g. 3 -> 16 -> 32 -> 64
        layers: list[nn.Module] = []
        for i in range(n):
            last = i == n - 1
            k = 2 if last else 3
            layers.append(nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=0 if last else 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(chans[i + 1]), nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention. qkv's output channels are [q heads | k heads | v heads], each head
    `head_dim` wide; a pruned block keeps fewer heads of the same width (export/prune.py)."""

    def __init__(self, dim: int, heads: int, head_dim: int | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim or dim // heads
        inner = self.heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.keep_heads = False  # pruning sets it to read each head's output and its gradient
        self.head_out: torch.Tensor | None = None  # (B, heads, T, head_dim) of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, heads, T, head_dim)
        att = (q @ k.transpose(-2, -1)) * (self.head_dim ** -0.5)  # (B, heads, T, T)
        y = att.softmax(dim=-1) @ v  # (B, heads, T, head_dim)
        if self.keep_heads:
            y.retain_grad()
            self.head_out = y
        return self.proj(y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, head_dim: int | None = None):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, dim)
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ExitHead(nn.Module):
    """LayerNorm, then mean and max over tokens (max keeps a small defect visible), then a linear."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(2 * dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, dim) -> (B, classes)
        x = self.norm(x)
        return self.fc(torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1))


class Student(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        config.validate()
        self.config = config
        grid = config.image_size // config.patch
        self.stem = ConvStem(config.dim, config.patch, config.stem_width)
        self.pos = nn.Parameter(torch.zeros(1, grid * grid, config.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads_in(i), config.mlp_ratio, config.head_dim)
                                    for i in range(config.depth))
        self.heads = nn.ModuleList(ExitHead(config.dim, config.num_classes) for _ in config.stage_ends)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stem(image)  # (B, dim, H/patch, W/patch)
        return x.flatten(2).transpose(1, 2) + self.pos  # (B, T, dim)

    def run_stage(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage k: image (k = 0) or hidden (B, T, dim) -> (hidden, logits (B, classes))."""
        ends = self.config.stage_ends
        start = 0 if k == 0 else ends[k - 1]
        if k == 0:
            x = self.embed(x)
        for block in self.blocks[start:ends[k]]:
            x = block(x)
        return x, self.heads[k](x)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """All exits' logits, shallowest first: a list of (B, classes)."""
        outs, x = [], image
        for k in range(len(self.config.stage_ends)):
            x, logits = self.run_stage(k, x)
            outs.append(logits)
        return outs

    def awq_groups(self) -> list[tuple[str, list[str]]]:
        """What AWQ needs to know of this model: which linear layers read the output of which norm."""
        groups = []
        for i in range(self.config.depth):
            groups.append((f"blocks.{i}.norm1", [f"blocks.{i}.attn.qkv"]))
            groups.append((f"blocks.{i}.norm2", [f"blocks.{i}.fc1"]))
        return groups


class StageModule(nn.Module):
    """One stage as its own module, for ONNX export: (input) -> (hidden, logits)."""

    def __init__(self, student: Student, k: int):
        super().__init__()
        self.student, self.k = student, k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.student.run_stage(self.k, x)


def save_student(student: Student, out: str | Path, metrics: dict | None = None) -> None:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(student.config.to_json() + "\n")
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(out / "model.safetensors"))
    if metrics is not None:
        (out / "distill_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def load_student(path: str | Path) -> Student:
    from safetensors.torch import load_file

    from export.errors import ExportError

    path = Path(path)
    cfg_path, weights = path / "config.json", path / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise ExportError(f"{path} is not a student folder: it needs config.json and model.safetensors "
                          "(write one with `edge-qwq distill`)")
    try:
        config = StudentConfig.from_json(cfg_path.read_text())
        student = Student(config)
        student.load_state_dict(load_file(str(weights)))
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
        raise ExportError(f"{path}: cannot load the student ({str(e).splitlines()[0][:200]})") from None
    return student.eval()
