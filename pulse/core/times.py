"""Times in UTC, one way everywhere: a naive time is taken as UTC, an aware one converted."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a time without a zone is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_now(value: datetime | None) -> datetime:
    """`value` in UTC (see `as_utc`), or the current time when None."""
    return datetime.now(UTC) if value is None else as_utc(value)


def utc_stamp(value: pd.Timestamp) -> pd.Timestamp:
    """A pandas Timestamp in UTC; one without a zone is taken as UTC."""
    return value.tz_localize(UTC) if value.tzinfo is None else value.tz_convert(UTC)
