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
