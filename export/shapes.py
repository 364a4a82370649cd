"""The student's shape family and what each shape costs, computed from the shape alone (no torch, no training).

A shape fixes everything the student's compute depends on: token size (`patch`), width (`dim`), depth,
attention heads (and, after pruning, the heads kept in each block), where the exits sit, and the stem.
The family searched by `--budget` (see `family`) is a small ladder, each rung wider and/or deeper than the
one below (compound scaling, as ViT-Ti/S/B or EfficientNet grow), so "the largest shape that fits" is
also the most capable one:

- token size: fixed by the input, not traded away: the coarsest power of two (>= 4 px) that keeps at
  least a 12x12 token grid (8 px at 96 px inputs, 16 px at 224 px). Defects are small: DESIGN.md measured
  that resolution pays more than width or depth.
- (width, depth) in LADDER, from (32, 2) to (256, 12);
- heads of 16 channels up to dim 64, of 32 above (dim 48: 3 heads, dim 128: 4). Measured on the sample
  set, 6 heads of 8 and 3 heads of 16 gave the same accuracy (96.95 %, 2000 validation images) but 6 heads
  trained 1.6 times slower on a CPU (many small matrix products); finer heads would give pruning a sixth
  of a block to remove at a time instead of a third;
- exits: after block 1 (the stem and the first block are the compute every frame pays, so an easy frame
  leaves right after them) and after block ceil(depth / 2); the last block has its own head;
- stem: log2(patch) stride-2 convolutions (3x3, then 2x2), widths doubling up to dim, the first never
  narrower than STEM_MIN_WIDTH channels: it is the only layer that sees the pixels at full resolution,
  and measured on the sample set a dim-48 student with a 12-channel first conv ended 15 points under the
  same student with 16 (80.7 % vs 95.95 %, 2000 validation images);
- MLP ratio 3.

Costs are counted the way `edge_runtime.onnx_cost` counts an exported graph (multiply-adds x 2 of every
Conv/MatMul/Gemm, batch 1), and a test checks the two agree exactly on exported students.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# (width, depth), smallest first: each rung at least as wide and as deep as the one below, one of them more
LADDER = ((32, 2), (32, 3), (48, 3), (48, 4), (64, 4), (64, 6), (96, 6), (96, 8), (128, 8), (128, 10), (192, 10),
          (192, 12), (256, 12))
MIN_GRID = 12  # tokens per side the family's coarsest token size keeps
MLP_RATIO = 3.0
STEM_MIN_WIDTH = 16


def heads_for(dim: int) -> int:
    """Heads of 16 channels up to dim 64, of 32 channels above."""
    return dim // 16 if dim <= 64 else dim // 32


def exits_for(depth: int) -> tuple[int, ...]:
    """Exit heads after block 1 and after block ceil(depth / 2), strictly inside the network."""
    return tuple(sorted({e for e in (1, math.ceil(depth / 2)) if 0 < e < depth}))


def stem_width_for(dim: int, patch: int) -> int | None:
    """The family's stem: the scaled widths, unless the first conv would be narrower than STEM_MIN_WIDTH."""
    return STEM_MIN_WIDTH if stem_channels(dim, patch)[1] < STEM_MIN_WIDTH else None


def stem_channels(dim: int, patch: int, width: int | None = None) -> list[int]:
    """Channels of the conv stem, input first: dim 64, patch 8 -> [3, 16, 32, 64]; with `width` the first
    conv has that many and each next one doubles, the last giving dim: width 16, dim 48 -> [3, 16, 32, 48]."""
    n = int(math.log2(patch))
    if width is None:
        return [3] + [max(8, dim >> (n - 1 - i)) for i in range(n)]
    return [3] + [width << i for i in range(n - 1)] + [dim]


class ShapeRules:
    """What a student shape and a student config both derive from their fields."""

    dim: int
    heads: int
    depth: int
    exits: tuple[int, ...]
    block_heads: tuple[int, ...] | None

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def heads_in(self, block: int) -> int:
        return self.block_heads[block] if self.block_heads else self.heads

    @property
    def stage_ends(self) -> list[int]:
        """Block index (exclusive) at which each stage ends: exits plus the final block."""
        return sorted(set(self.exits) | {self.depth})


@dataclass(frozen=True)
class Shape(ShapeRules):
    patch: int
    dim: int
    depth: int
    heads: int
    exits: tuple[int, ...]
    block_heads: tuple[int, ...] | None = None  # heads kept per block after pruning; None: `heads` in every block
    mlp_ratio: float = MLP_RATIO
    stem_width: int | None = None  # the stem's first conv channels (doubling after); None: scaled from dim

    def describe(self) -> str:
        heads = "/".join(map(str, self.block_heads)) if self.block_heads else str(self.heads)
        return (f"{self.patch} px tokens, dim {self.dim}, depth {self.depth}, heads {heads}, "
                f"exits after blocks {','.join(map(str, self.exits))}")

    def student_config(self) -> dict:
        """Keyword arguments of export.student.StudentConfig for this shape."""
        cfg = {"patch": self.patch, "dim": self.dim, "depth": self.depth, "heads": self.heads,
               "exits": tuple(self.exits), "mlp_ratio": self.mlp_ratio}
        if self.stem_width is not None:
            cfg["stem_width"] = self.stem_width
        if self.block_heads:
            cfg["block_heads"] = tuple(self.block_heads)
        return cfg

    @classmethod
    def of(cls, cfg) -> "Shape":
        """The shape of a StudentConfig (or anything with its attributes)."""
        bh = getattr(cfg, "block_heads", None)
        return cls(cfg.patch, cfg.dim, cfg.depth, cfg.heads, tuple(cfg.exits), tuple(bh) if bh else None,
                   cfg.mlp_ratio, getattr(cfg, "stem_width", None))


@dataclass
class LayerCost:
    """One kernel of the student: FLOPs (multiply-adds x 2) and elements moved, batch 1."""

    name: str
    op: str  # Conv | MatMul | Softmax | LayerNormalization | Reduce
    flops: int
    weight_elems: int = 0
    in_elems: int = 0
    out_elems: int = 0
    attention: bool = False  # Q/K/V and output projections and the two attention products


@dataclass
class ShapeCost:
    shape: Shape
    image_size: int
    stages: list[list[LayerCost]] = field(default_factory=list)

    @property
    def stage_flops(self) -> list[int]:
        return [sum(layer.flops for layer in s) for s in self.stages]

    @property
    def flops(self) -> int:
        return sum(self.stage_flops)

    @property
    def attention_flops(self) -> int:
        return sum(layer.flops for s in self.stages for layer in s if layer.attention)


def shape_cost(shape: Shape, image_size: int, num_classes: int) -> ShapeCost:
    """Every kernel of the student of `shape` on (image_size, image_size) inputs, per stage."""
    tokens = (image_size // shape.patch) ** 2
    stages: list[list[LayerCost]] = []
    start = 0
    for k, end in enumerate(shape.stage_ends):
        layers = _stem(shape, image_size) if k == 0 else []
        for b in range(start, end):
            layers += _block(shape, b, tokens)
        layers += _head(shape.dim, tokens, num_classes, k)
        stages.append(layers)
        start = end
    return ShapeCost(shape, image_size, stages)


def _stem(shape: Shape, image_size: int) -> list[LayerCost]:
    chans, side, layers = stem_channels(shape.dim, shape.patch, shape.stem_width), image_size, []
    for i in range(len(chans) - 1):
        k = 2 if i == len(chans) - 2 else 3
        out_side = side // 2
        out = chans[i + 1] * out_side * out_side
        layers.append(LayerCost(f"stem.{i}", "Conv", 2 * out * chans[i] * k * k, chans[i + 1] * chans[i] * k * k,
                                chans[i] * side * side, out))
        side = out_side
    return layers


def _block(shape: Shape, b: int, t: int) -> list[LayerCost]:
    d, inner = shape.dim, shape.heads_in(b) * shape.head_dim  # inner: channels of the heads kept
    hidden = int(d * shape.mlp_ratio)
    h = shape.heads_in(b)
    p = f"blocks.{b}"
    return [
        LayerCost(f"{p}.norm1", "LayerNormalization", 0, 2 * d, t * d, t * d),
        LayerCost(f"{p}.attn.qkv", "MatMul", 2 * t * d * 3 * inner, 3 * inner * d, t * d, 3 * t * inner, True),
        LayerCost(f"{p}.attn.qk", "MatMul", 2 * t * t * inner, 0, 2 * t * inner, h * t * t, True),
        LayerCost(f"{p}.attn.softmax", "Softmax", 0, 0, h * t * t, h * t * t),
        LayerCost(f"{p}.attn.av", "MatMul", 2 * t * t * inner, 0, h * t * t + t * inner, t * inner, True),
        LayerCost(f"{p}.attn.proj", "MatMul", 2 * t * inner * d, inner * d, t * inner, t * d, True),
        LayerCost(f"{p}.norm2", "LayerNormalization", 0, 2 * d, t * d, t * d),
        LayerCost(f"{p}.fc1", "MatMul", 2 * t * d * hidden, d * hidden, t * d, t * hidden),
        LayerCost(f"{p}.fc2", "MatMul", 2 * t * hidden * d, hidden * d, t * hidden, t * d),
    ]


def _head(d: int, t: int, classes: int, k: int) -> list[LayerCost]:
    return [LayerCost(f"heads.{k}.norm", "LayerNormalization", 0, 2 * d, t * d, t * d),
            LayerCost(f"heads.{k}.pool", "Reduce", 0, 0, 2 * t * d, 2 * d),
            LayerCost(f"heads.{k}.fc", "MatMul", 2 * 2 * d * classes, 2 * d * classes, 2 * d, classes)]


# ---------------- the family ----------------

def token_size(image_size: int) -> int:
    """The coarsest power-of-two token size (>= 4 px) that keeps a MIN_GRID x MIN_GRID token grid."""
    patch = 4
    while image_size // (patch * 2) >= MIN_GRID and image_size % (patch * 2) == 0:
        patch *= 2
    return patch


def family(image_size: int) -> list[Shape]:
    """The ladder of shapes for this input size (see the module doc), smallest first."""
    p = token_size(image_size)
    if image_size % p:
        from export.errors import ExportError

        raise ExportError(f"input size {image_size} px is not a multiple of 4; resize the images (--size)")
    return [Shape(p, d, depth, heads_for(d), exits_for(depth), stem_width=stem_width_for(d, p)) for d, depth in LADDER]
