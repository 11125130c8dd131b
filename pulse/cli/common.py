"""Pieces every `pulse` sub-command module shares: output formats, the data basis, dates and
times, the migrated warehouse."""
from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

import typer
from rich.console import Console

from pulse.core.formats import Format, ListFormat
from pulse.core.times import as_utc

out = Console()
err = Console(stderr=True)


def open_engine() -> Any:
    """The configured warehouse engine, as it is (commands that create the schema use this)."""
    from pulse.sql.db import make_engine

    return make_engine()


class Basis(str, Enum):
    auto = "auto"
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


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 option value as an aware UTC time (naive means UTC); empty means None."""
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"expected an ISO 8601 time such as 2026-06-15T12:00:00Z "
                                 f"(not {value!r})") from None
    return as_utc(ts)


def warehouse() -> Any:
    """The configured warehouse, refused with "run `pulse db upgrade`" unless migrated."""
    from pulse.sql.db import ensure_schema, make_engine

    engine = make_engine()
    ensure_schema(engine)
    return engine


__all__ = ["Basis", "Format", "ListFormat", "err", "open_engine", "out", "parse_day", "parse_time", "warehouse"]
