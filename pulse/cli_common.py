"""Pieces every `pulse` sub-command module shares: output formats, the data basis, dates."""
from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum

import typer


class Format(str, Enum):
    table = "table"
    json = "json"


class Basis(str, Enum):
    known = "known"
    occurred = "occurred"


def parse_day(value: str | None, *, default: date | None = None) -> date:
    """A YYYY-MM-DD option value; empty means `default`, else today (UTC)."""
    if not value:
        return default or datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date YYYY-MM-DD (not {value!r})") from None
