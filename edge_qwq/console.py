"""One rich console for human output (stderr), so stdout stays clean for JSON."""
from __future__ import annotations

import contextlib

from rich.console import Console

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress_callback(description: str):
    """A rich progress bar driven by callback(done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as p:
        task = p.add_task(description, total=None)

        def cb(done: int, total: int) -> None:
            p.update(task, completed=done, total=total)

        yield cb
