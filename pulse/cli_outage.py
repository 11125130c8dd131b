"""CLI commands for outage (filled in by issue 4)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `pulse` app."""
