"""The output formats that commands and benchmarks share (`--format table|json|csv`)."""
from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    table = "table"
    json = "json"


class ListFormat(str, Enum):
    """Formats of commands that list rows."""

    table = "table"
    csv = "csv"
    json = "json"


__all__ = ["Format", "ListFormat"]
