"""One module per subcommand; each defines `command` (a click command). Options several commands share live
here."""
from __future__ import annotations


def frame_size_callback(min_side: int = 1):
    """A click callback for `--frame-size WIDTHxHEIGHT`: None stays None, else (height, width); a bad value is
    click's one-line BadParameter."""
    import click

    def callback(ctx, param, value):
        if value is None:
            return None
        from edge_runtime.tiling import parse_frame_size

        try:
            return parse_frame_size(value, min_side)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def finite(lo: float | None = None, hi: float | None = None, min_open: bool = False, max_open: bool = False):
    """A click float range that also refuses nan and infinities (click's FloatRange lets nan through: every
    comparison with nan is false)."""
    import math

    import click

    class Finite(click.FloatRange):
        name = "finite float"

        def convert(self, value, param, ctx):
            v = super().convert(value, param, ctx)
            if not math.isfinite(v):
                self.fail(f"{value!r} is not a finite number", param, ctx)
            return v

    return Finite(lo, hi, min_open=min_open, max_open=max_open)
