"""`--budget`: the largest shape of the family that fits, chosen without training."""
import pytest

from export.errors import ExportError
from export.shapes import family, shape_cost
from export.sizing import DEFAULT_CEILING_FLOPS, choose_shape, parse_budget

TEACHER = 666_210_304  # the demo's ResNet-18 at 96 px, as bench counts it


def test_fraction_budget_takes_the_largest_shape_that_fits():
    c = choose_shape(parse_budget("0.1"), 96, 4, teacher_flops=TEACHER)
    assert c.cost.flops <= 0.1 * TEACHER
    larger = [s for s in family(96) if shape_cost(s, 96, 4).flops > c.cost.flops]
    assert larger, "the family must hold shapes above the choice"
    assert all(shape_cost(s, 96, 4).flops > 0.1 * TEACHER for s in larger)
    assert "chose" in c.reason() and "next larger" in c.reason()


def test_default_budget_does_not_grow_with_the_teacher():
    small = choose_shape(parse_budget(None), 96, 4, teacher_flops=TEACHER)
    vit_l = choose_shape(parse_budget(None), 96, 4, teacher_flops=61_600_000_000)  # ViT-L/16 at 224 px
    assert vit_l.cost.flops <= DEFAULT_CEILING_FLOPS
    assert vit_l.cost.flops <= 2 * small.cost.flops
    assert small.cost.flops <= 0.1 * TEACHER


def test_latency_budget_uses_the_estimator_and_says_what_it_assumes():
    from engine_builder.estimate import estimate_layer_costs

    b = parse_budget("0.4ms", "orin-nano")
    ms = lambda cost: estimate_layer_costs(cost.stages, "orin-nano", "fp16")["full_ms"]  # noqa: E731
    c = choose_shape(b, 96, 4, latency_ms=ms)
    assert c.used <= 0.4 and c.unit == "ms"
    assert all(ms(shape_cost(s, 96, 4)) > 0.4 for s in family(96) if shape_cost(s, 96, 4).flops > c.cost.flops)
    assert "FP16" in b.describe() and "full depth" in b.describe()


@pytest.mark.parametrize("text, target, message", [
    ("2", None, "lies in"), ("0", None, "lies in"), ("-0.1", None, "fraction"), ("fast", None, "not 'fast'"),
    ("1.5ms", None, "needs --target"), ("0ms", "orin-nano", "above 0"),
])
def test_bad_budgets_are_refused_in_one_line(text, target, message):
    with pytest.raises(ExportError, match=message) as e:
        parse_budget(text, target)
    assert "\n" not in str(e.value)


def test_a_budget_no_shape_meets_is_one_line():
    with pytest.raises(ExportError, match="no student shape fits") as e:
        choose_shape(parse_budget("0.001"), 96, 4, teacher_flops=TEACHER)
    assert "smallest" in str(e.value) and "\n" not in str(e.value)
