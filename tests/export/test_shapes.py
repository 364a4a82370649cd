"""The shape family's costs are computed from the shape alone; they must equal the exported graphs' counts."""
import pytest

from export.shapes import Shape, exits_for, family, heads_for, shape_cost, token_size
from tests.conftest import CLASSES, make_tiny_student


@pytest.mark.parametrize("overrides", [
    {},  # 32 px, 8 px tokens, dim 16, depth 3, exits 1,2
    {"dim": 48, "heads": 3, "depth": 5, "exits": (1, 3)},
    {"patch": 4, "dim": 32, "heads": 2, "depth": 2, "exits": (1,)},
    {"dim": 32, "heads": 4, "depth": 3, "exits": (1, 2), "block_heads": (2, 4, 1)},  # pruned
    {"dim": 24, "heads": 2, "depth": 2, "exits": (1,), "stem_width": 16},  # a wide stem
])
def test_analytic_flops_equal_the_exported_graphs(overrides, tmp_path):
    from edge_runtime.bundle import Bundle
    from export.onnx_export import export_bundle

    student = make_tiny_student(**overrides)
    export_bundle(student, tmp_path / "b")
    exported = [s.flops for s in Bundle.open(tmp_path / "b").stages]
    assert shape_cost(Shape.of(student.config), 32, len(CLASSES)).stage_flops == exported
    assert Bundle.open(tmp_path / "b").manifest.student.stem_width == overrides.get("stem_width")


@pytest.mark.parametrize("size", [32, 64, 96, 128, 224, 256])
def test_family_is_a_ladder_each_rung_larger_and_more_capable(size):
    shapes = family(size)
    flops = [shape_cost(s, size, 4).flops for s in shapes]
    assert flops == sorted(flops) and len(set(flops)) == len(flops)
    for lo, hi in zip(shapes, shapes[1:]):  # never narrower nor shallower than the rung below
        assert hi.dim >= lo.dim and hi.depth >= lo.depth and (hi.dim, hi.depth) != (lo.dim, lo.depth)
    assert {s.patch for s in shapes} == {token_size(size)} and size // token_size(size) >= 8
    assert all(s.exits[0] == 1 for s in shapes)  # the first exit right after the first block
    assert all(s.exits == exits_for(s.depth) and s.heads == heads_for(s.dim) for s in shapes)
    assert all(s.dim % s.heads == 0 for s in shapes)
    assert all(stem_first_width(s) >= 16 for s in shapes)


def stem_first_width(shape):
    from export.shapes import stem_channels

    return stem_channels(shape.dim, shape.patch, shape.stem_width)[1]


def test_token_size_keeps_a_fine_grid():
    assert token_size(96) == 8 and token_size(224) == 16 and token_size(64) == 4


def test_pruning_a_head_removes_its_attention_flops():
    full = Shape(8, 64, 4, 4, (1, 2))
    cut = Shape(8, 64, 4, 4, (1, 2), block_heads=(4, 2, 2, 1))
    a, b = shape_cost(full, 96, 4), shape_cost(cut, 96, 4)
    assert b.attention_flops == pytest.approx(a.attention_flops * (4 + 2 + 2 + 1) / 16)
    assert a.flops - b.flops == a.attention_flops - b.attention_flops  # only attention changed
