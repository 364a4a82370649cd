"""The shape family's costs are computed from the shape alone; they must equal the exported graphs' counts."""
import pytest

from export.shapes import Shape, exits_for, family, heads_for, shape_cost, token_sizes
from tests.conftest import CLASSES, make_tiny_student


@pytest.mark.parametrize("overrides", [
    {},  # 32 px, 8 px tokens, dim 16, depth 3, exits 1,2
    {"dim": 48, "heads": 3, "depth": 5, "exits": (1, 3)},
    {"patch": 4, "dim": 32, "heads": 2, "depth": 2, "exits": (1,)},
    {"dim": 32, "heads": 4, "depth": 3, "exits": (1, 2), "block_heads": (2, 4, 1)},  # pruned
])
def test_analytic_flops_equal_the_exported_graphs(overrides, tmp_path):
    from edge_runtime.bundle import Bundle
    from export.onnx_export import export_bundle

    student = make_tiny_student(**overrides)
    export_bundle(student, tmp_path / "b")
    exported = [s.flops for s in Bundle.open(tmp_path / "b").stages]
    assert shape_cost(Shape.of(student.config), 32, len(CLASSES)).stage_flops == exported


def test_family_is_documented_rule():
    shapes = family(96)
    flops = [shape_cost(s, 96, 4).flops for s in shapes]
    assert flops == sorted(flops)
    assert {s.patch for s in shapes} == {8, 4}  # coarsest keeping a 12x12 grid at 96 px, and the next finer
    assert token_sizes(224) == [16, 8]
    assert all(s.exits[0] == 1 for s in shapes)  # the first exit right after the first block
    assert all(s.exits == exits_for(s.depth) and s.heads == heads_for(s.dim) for s in shapes)
    assert all(s.dim % s.heads == 0 for s in shapes)


def test_pruning_a_head_removes_its_attention_flops():
    full = Shape(8, 64, 4, 4, (1, 2))
    cut = Shape(8, 64, 4, 4, (1, 2), block_heads=(4, 2, 2, 1))
    a, b = shape_cost(full, 96, 4), shape_cost(cut, 96, 4)
    assert b.attention_flops == pytest.approx(a.attention_flops * (4 + 2 + 2 + 1) / 16)
    assert a.flops - b.flops == a.attention_flops - b.attention_flops  # only attention changed
