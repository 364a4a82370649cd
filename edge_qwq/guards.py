"""Checks that keep a user's existing work from being overwritten by mistake."""
from __future__ import annotations

from pathlib import Path

from edge_runtime.errors import EdgeError


def refuse_non_empty(path, force: bool) -> None:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EdgeError(f"{p} exists and is a file, not a folder")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise EdgeError(f"{p} exists and is not empty; choose another --out or pass --force to replace it")
