"""One chunk of a file made ready to land: validated, its rejects and cleared values listed.

Shared by the landing (listeners/landing.py, in-process) and by the ingest worker process
(listeners/pipeline.py), which runs it beside the landing's inserts; kept free of the
landing's own imports so the worker starts quickly.
"""
from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pulse.listeners.contract import Source
from pulse.listeners.readers import Chunk
from pulse.listeners.validate import validate


@dataclass
class _Rejected:
    row: int
    raw: str
    field: str | None
    code: str
    reason: str
    value: str | None = None
    #: for a cleared field: the key of the row that landed without it
    row_key: str | None = None


def storable(text_: str) -> str:
    """Text any database can store: no NUL (PostgreSQL refuses it), no lone surrogates."""
    if "\x00" in text_:
        text_ = text_.replace("\x00", "\\u0000")
    try:
        text_.encode("utf-8")
    except UnicodeEncodeError:
        text_ = text_.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text_ = text_.encode("utf-8", "replace").decode("utf-8")
    return text_


def _value_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return storable(str(value))


@dataclass
class Prepared:
    """One chunk, validated: what to quarantine, what was cleared, and the rows that pass.

    In-process the rows are `clean` (a frame); from the ingest worker they come as `columns`
    already in the database's form (`_stage_columns`), with `n_clean` rows.
    """

    read: int
    rejected: list[_Rejected]
    cleared: list[_Rejected]
    given: frozenset[str]
    n_clean: int
    clean: pd.DataFrame | None = None
    columns: list[list[Any]] | None = field(default=None, repr=False)


def prepare_chunk(source: Source, chunk: Chunk, *,
                  known: Callable[[pd.Series], pd.Series] | None, now: datetime,
                  max_future: timedelta) -> Prepared:
    """Validate one chunk (vectorised) and list its rejected rows and cleared values."""
    values = chunk.values
    if source.key_of:  # the key is derived below: a value from the file is ignored
        values = values.assign(**{source.key: None})
    checked = validate(source, values, known_accounts=known, now=now, max_future=max_future)
    rejected = [_Rejected(r.row, storable(r.raw), r.field, r.code, storable(r.reason))
                for r in chunk.rejects]
    for row, fld, code, reason, value in zip(
            checked.errors.index.tolist(), checked.errors["field"].tolist(),
            checked.errors["code"].tolist(), checked.errors["reason"].tolist(),
            checked.errors["value"].tolist()):
        rejected.append(_Rejected(int(row), storable(chunk.raw_text(int(row))), fld, code,
                                  storable(reason), _value_text(value)))
    clean = checked.clean
    if source.key_of and len(clean):
        clean = clean.assign(**{source.key: derive_key(clean, source.key_of)})
    cleared: list[_Rejected] = []
    if len(checked.cleared):
        keys = clean[source.key]
        for row, c in checked.cleared.iterrows():
            cleared.append(_Rejected(
                int(row), storable(chunk.raw_text(int(row))), c["field"], c["code"],
                storable(c["reason"]), _value_text(c["value"]), str(keys.at[row])))
    given = frozenset(source.columns if chunk.given is None else chunk.given)
    return Prepared(read=len(chunk.values) + len(chunk.rejects), rejected=rejected,
                    cleared=cleared, given=given, n_clean=len(clean), clean=clean)


def derive_key(clean: pd.DataFrame, fields: tuple[str, ...]) -> pd.Series:
    """The key of rows identified by the values of `fields` (a source's `key_of`): the first
    32 hex digits of the SHA-256 of the values (text; a missing value is empty), joined by a
    separator no value holds. Fixed length, so it fits every key column; stable across
    versions, so the same group landed again finds its row."""
    parts = []
    for name in fields:
        col = clean[name]
        text_ = col.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v),
                        na_action="ignore")
        parts.append(text_.where(col.notna(), "").astype(str))
    joined = parts[0].str.cat(parts[1:], sep="\x1f") if len(parts) > 1 else parts[0]
    digests = [hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest()[:32]
               for v in joined.tolist()]
    return pd.Series(digests, index=clean.index, dtype=object)


#: kinds whose validated column marks a missing value with None (validate.py `_check`)
_NONE_KINDS = frozenset({"id", "text", "enum"})


def _stage_columns(source: Source, clean: pd.DataFrame, dialect: str) -> list[list[Any]]:
    """The contract columns of `clean` as each database stores them (see `_stage_rows`), one
    list per column."""
    cols: list[list[Any]] = []
    for f in source.fields:
        s = clean[f.name]
        # ids, texts and enums come from validation with None where a value is missing,
        # which is what the drivers want; other kinds may mark it with NaN/NaT/NA, turned
        # into None here (pd.isna over an object column is slow: skip it where not needed)
        missing = None if f.kind in _NONE_KINDS else s.isna().to_numpy()
        if f.kind == "timestamp":
            utc = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            text_ = np.strings.replace(np.datetime_as_string(utc, unit="us"), "T", " ")
            if dialect == "postgresql":
                text_ = np.strings.add(text_, "+00:00")
            arr = text_.astype(object)
        elif f.kind == "date":
            arr = s.map(lambda d: d.isoformat() if d is not None else None,
                        na_action="ignore").to_numpy(dtype=object, copy=True)
        elif f.kind == "bool":
            arr = s.astype("Int64").to_numpy(dtype=object, copy=True)
        else:
            arr = s.to_numpy(dtype=object, copy=True)
        if missing is not None and missing.any():
            arr[missing] = None
        cols.append(arr.tolist())
    return cols


def collect_chunk_garbage() -> None:
    """The cyclic collector is paused for a landing; a chunk's frames leave reference
    cycles behind: free them once the chunk is done, or memory grows with the file."""
    gc.collect(1)


class LagTally:
    """How long after it happened each row landed, tallied chunk by chunk: an hourly
    histogram of lags (memory set by the longest lag, not by the file) and the first and
    last event time. Saves a sort of every landed row in SQL on a direct load."""

    #: lags down to this many hours before `now` (timestamps a little in the future) count
    EARLY_HOURS = 48

    def __init__(self, column: str, now: datetime) -> None:
        self.column = column
        self.now = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo \
            else pd.Timestamp(now, tz="UTC")
        self.counts = np.zeros(0, dtype=np.int64)
        self.n = 0
        self.first: pd.Timestamp | None = None
        self.last: pd.Timestamp | None = None

    def add(self, times: pd.Series) -> None:
        t = times.dropna()
        if t.empty:
            return
        hours = ((self.now - t).dt.total_seconds().to_numpy() // 3600).astype(np.int64)
        bins = np.bincount(np.clip(hours + self.EARLY_HOURS, 0, None))
        if len(bins) > len(self.counts):
            self.counts = np.pad(self.counts, (0, len(bins) - len(self.counts)))
        self.counts[: len(bins)] += bins
        self.n += len(t)
        lo, hi = t.min(), t.max()
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)

    def median_days(self) -> float | None:
        """The middle lag (the row at n // 2 in lag order, as the SQL form takes it), to the
        hour: the middle of its hour."""
        if not self.n:
            return None
        hour = int(np.searchsorted(np.cumsum(self.counts), self.n // 2, side="right"))
        return (hour - self.EARLY_HOURS + 0.5) / 24.0

    def span_days(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return float((self.last - self.first).total_seconds()) / 86400.0
