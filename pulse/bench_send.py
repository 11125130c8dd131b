"""`pulse bench send` (issue 4)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `bench send` to the `bench` group."""
