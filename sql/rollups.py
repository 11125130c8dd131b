"""Daily usage rollups (issue 16): `usage_daily` and `usage_daily_users`, kept up to date as
usage lands, so that features cost accounts x days instead of events.

Incremental, and never double counted: a landing of usage (listeners/landing.py) notes the
(account, UTC day) keys it touches: the keys of the rows it brings and, for rows it updates,
the keys they had before (a corrected `occurred_at` or `account_id` moves a row from one
day to another). In the same transaction, after its rows are merged, `refresh` deletes the
rollup rows of those keys and recomputes them from the warehouse table, set-based. A row
landed twice is one row in `usage_events`, so it is summed once; a correction replaces the
old value. The cost of a landing grows with the keys it touches (the events of those
account-days), not with the warehouse.

Point in time: the rollups keep the events' `landed_at` in their key (one rollup row per
landing of an account-day; normally one landing a day, so the size stays about accounts x
days x features), so `sql.feature_sources.known_by` applies to them exactly as to the events
(a backfill landing counts from when its rows happened, a late row from when it landed).

Two origins: `events` (rolled up from `usage_events`) and `feed` (daily usage aggregated in
the customer's own warehouse: the `usage_daily` and `usage_daily_users` sources, landed into
`usage_daily_feed` / `usage_daily_users_feed` and copied here the same way).

`rebuild` recomputes every `events` rollup from `usage_events` (`pulse rollup rebuild`): after
a bulk load that bypassed the landing, or a change made to the events by hand.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    Date,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    distinct,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from pulse.sql.feature_sources import day_key
from pulse.sql.schema import (
    UsageDaily,
    UsageDailyFeed,
    UsageDailyUser,
    UsageDailyUserFeed,
    UsageEvent,
)
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

#: PostgreSQL advisory lock class of rollup refreshes: two landings touching the same
#: account-day recompute it one after the other (the second sees the first's rows)
_ROLLUP_LOCK = 731_912

#: '' inline (not a bound parameter), so a GROUP BY on COALESCE(component, '') matches the
#: same expression in the SELECT on PostgreSQL
_EMPTY: ColumnElement[str] = literal_column("''")

#: the sources whose landing refreshes rollups, and the origin of what they bring
ROLLUP_SOURCES: dict[str, str] = {
    "usage": "events", "usage_daily": "feed", "usage_daily_users": "feed"}


_EPOCH_DAY = np.datetime64("1970-01-01", "D")
#: a key held in memory is one int64: the account's code above these bits, the day (days
#: since 1970, offset to stay positive) below them
_DAY_BITS = 20
_DAY_OFFSET = 1 << 19
#: keys written to the temporary table per statement (their strings exist a slice at a time)
_KEY_SLICE = 20_000


def _day_numbers(values: pd.Series) -> np.ndarray:
    """The UTC calendar day of timestamps (aware datetimes, dates or stored text) as days
    since 1970 (int64); a missing or unreadable value gives a number below every real day."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    else:
        ts = pd.to_datetime(values.astype(str).str.slice(0, 10), format="%Y-%m-%d",
                            errors="coerce")
    days = ts.to_numpy(dtype="datetime64[D]")
    out = (days - _EPOCH_DAY).astype("int64")
    out[np.isnat(days)] = -_DAY_OFFSET - 1
    return out


def _values(values: Iterable[Any]) -> Any:
    """A column's values without its index (frames from different chunks line up)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object)
    return pd.Series(list(values), dtype=object).to_numpy()


def _new_touched_table(conn: Connection) -> Table:
    """An empty temporary table of (account_id, day) keys, with each day's first instant and
    the next day's (so the recompute reads the events through the (account_id, occurred_at)
    index)."""
    name = f"_rollup_touched_{next(_TABLE_NUMBERS)}"
    kw: dict[str, Any] = {}
    if conn.dialect.name == "postgresql":
        kw["postgresql_on_commit"] = "DROP"
    table = Table(name, MetaData(), Column("account_id", String(64), primary_key=True),
                  Column("day", Date, primary_key=True),
                  Column("day_start", UTCDateTime), Column("day_end", UTCDateTime),
                  prefixes=["TEMPORARY"], **kw)
    table.create(conn)
    return table


_TABLE_NUMBERS = itertools.count(1)


def _write_keys(conn: Connection, table: Table, accounts: np.ndarray, days: np.ndarray, *,
                distinct: bool) -> None:
    """Write keys (`accounts` strings, `days` as days since 1970) to the temporary `table`,
    a slice at a time, through the driver's own bulk path with values already in the
    database's form (no per-row SQLAlchemy type processing: a backfill touches every
    account-day of its history). Keys may repeat ones already there unless `distinct`
    (PostgreSQL's COPY takes only new keys; SQLite ignores repeats)."""
    postgres = conn.dialect.name == "postgresql"
    assert distinct or not postgres
    suffix = " 00:00:00+00:00" if postgres else " 00:00:00.000000"
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        copy = (cur.copy(f"COPY {table.name} (account_id, day, day_start, day_end) FROM STDIN")
                if postgres else None)
        with (copy if copy is not None else contextlib.nullcontext()) as cp:
            for at in range(0, len(days), _KEY_SLICE):
                day = pd.Series(_EPOCH_DAY + days[at:at + _KEY_SLICE])
                day_text = day.dt.strftime("%Y-%m-%d")
                next_text = (day + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%d")
                rows = zip(accounts[at:at + _KEY_SLICE].tolist(), day_text.tolist(),
                           (day_text + suffix).tolist(), (next_text + suffix).tolist(),
                           strict=True)
                if cp is not None:
                    for row in rows:
                        cp.write_row(row)
                else:
                    cur.executemany(f"INSERT OR IGNORE INTO {table.name} VALUES (?, ?, ?, ?)",
                                    rows)
                del day, day_text, next_text, rows
    finally:
        cur.close()
    if postgres:  # all keys in one go: let the planner know the table's size
        conn.execute(text(f"ANALYZE {table.name}"))


class TouchedKeys:
    """The distinct (account_id, day) keys a landing touched, gathered chunk by chunk, so
    that memory never grows with the rows of the file.

    On SQLite each chunk's keys go straight into the temporary table the refresh reads (in
    the landing's transaction; repeats ignored by its primary key), so memory stays that
    of one chunk. On PostgreSQL a direct load's COPY holds the connection until the file is
    in, so the keys wait in memory: one int64 each (the account's code and the day),
    deduplicated as they come, 8 bytes per account-day plus one entry per account."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._table: Table | None = None
        self._spill = conn.dialect.name != "postgresql"
        self._accounts = pd.Index([], dtype=object)
        self._parts: list[np.ndarray] = []
        self._any = False

    def add_events(self, account_ids: Iterable[Any], occurred_at: Iterable[Any]) -> None:
        """Keys of event rows: their account and the UTC day of their event time."""
        accounts = _values(account_ids)
        days = _day_numbers(pd.Series(_values(occurred_at)))
        keep = pd.notna(accounts) & (days >= -_DAY_OFFSET)
        if not keep.all():
            accounts, days = accounts[keep], days[keep]
        if len(accounts) == 0:
            return
        self._any = True
        uniq, inverse = np.unique(accounts.astype(str), return_inverse=True)
        if self._spill:
            # the chunk's distinct keys, into the table (its primary key drops repeats)
            pairs = np.unique((inverse.astype("int64") << _DAY_BITS) | (days + _DAY_OFFSET))
            if self._table is None:
                self._table = _new_touched_table(self._conn)
            _write_keys(self._conn, self._table, uniq.astype(object)[pairs >> _DAY_BITS],
                        (pairs & ((1 << _DAY_BITS) - 1)) - _DAY_OFFSET, distinct=False)
            return
        codes = self._accounts.get_indexer(uniq)
        new = codes < 0
        if new.any():  # accounts first met in this chunk get the next codes
            codes[new] = len(self._accounts) + np.arange(int(new.sum()))
            self._accounts = self._accounts.append(pd.Index(uniq[new].tolist(), dtype=object))
        keys = np.unique((codes.astype("int64")[inverse] << _DAY_BITS) | (days + _DAY_OFFSET))
        self._parts.append(keys)
        if len(self._parts) >= 16:  # one sorted array, merged as it comes
            self._parts = [np.unique(np.concatenate(self._parts))]

    def table(self) -> Table:
        """The temporary table of every key gathered (written now if they waited)."""
        if self._table is None:
            self._table = _new_touched_table(self._conn)
        if self._parts:
            keys = np.unique(np.concatenate(self._parts))
            self._parts = []
            _write_keys(self._conn, self._table,
                        self._accounts.to_numpy(dtype=object)[keys >> _DAY_BITS],
                        (keys & ((1 << _DAY_BITS) - 1)) - _DAY_OFFSET, distinct=True)
        return self._table

    def __bool__(self) -> bool:
        return self._any


def _touched_table(conn: Connection, keys: pd.DataFrame) -> Table:
    """The temporary table of `keys` (distinct `account_id`, `day` pairs)."""
    table = _new_touched_table(conn)
    if not keys.empty:
        days = keys["day"]
        if not pd.api.types.is_datetime64_any_dtype(days):
            days = pd.to_datetime(pd.Series(days.tolist()), format="ISO8601")
        numbers = (days.to_numpy(dtype="datetime64[D]") - _EPOCH_DAY).astype("int64")
        _write_keys(conn, table, keys["account_id"].to_numpy(dtype=object), numbers,
                    distinct=True)
    return table


def _lock(conn: Connection) -> None:
    """One rollup writer at a time (PostgreSQL), with room to group and sort in memory."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, 0)"), {"a": _ROLLUP_LOCK})
        conn.execute(text("SET LOCAL work_mem = '64MB'"))


@dataclass
class RefreshResult:
    keys: int = 0
    daily_rows: int = 0
    user_rows: int = 0


def keys_of_stage(conn: Connection, source: str, stage: Table) -> pd.DataFrame:
    """The keys a staged landing of `source` touches: those of the staged rows and, for the
    rows already in the warehouse, the keys they have there (before the merge moves them)."""
    target = {"usage": UsageEvent.__table__, "usage_daily": UsageDailyFeed.__table__,
              "usage_daily_users": UsageDailyUserFeed.__table__}[source]
    key = "event_id" if source == "usage" else "daily_id"

    def day(table: Any) -> Any:
        return day_key(table.c.occurred_at) if source == "usage" else table.c.day

    new = select(stage.c.account_id, day(stage).label("day"))
    old = (select(target.c.account_id, day(target).label("day"))
           .join_from(target, stage, stage.c[key] == target.c[key]))
    # one distinct set (UNION), its days converted column-wise
    frame = pd.DataFrame(conn.execute(new.union(old)).all(), columns=["account_id", "day"])
    frame["day"] = _EPOCH_DAY + _day_numbers(frame["day"])
    return frame


def refresh(conn: Connection, origin: str, keys: pd.DataFrame | TouchedKeys) -> RefreshResult:
    """Recompute the rollup rows of `origin` for the (account_id, day) `keys` (a frame, or
    the keys a landing gathered), in the caller's transaction: delete them, then insert them
    again from the source table."""
    if isinstance(keys, TouchedKeys):
        if not keys:
            return RefreshResult()
        _lock(conn)
        touched = keys.table()
        result = RefreshResult(keys=int(conn.execute(
            select(func.count()).select_from(touched)).scalar_one()))
    else:
        if keys.empty:
            return RefreshResult()
        _lock(conn)
        touched = _touched_table(conn, keys)
        result = RefreshResult(keys=len(keys))
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        # PostgreSQL misjudges the day-range join (and, right after a bulk load, knows
        # nothing of the tables) and scans the whole events table: drive it from the keys
        # instead (index lookups), so a landing's cost follows the account-days it touched,
        # never the warehouse (SQLite plans it so by itself)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
    d, du = UsageDaily.__table__, UsageDailyUser.__table__
    for table in (d, du):
        # driven by the keys (row-value IN): the primary key (account_id, day, ...) finds
        # each key's rows, whatever the size of the rollups
        conn.execute(delete(table).where(
            tuple_(table.c.account_id, table.c.day).in_(
                select(touched.c.account_id, touched.c.day)),
            table.c.origin == origin))
    if origin == "events":
        daily, users = _events_select(touched), _event_users_select(touched)
    else:
        daily, users = _feed_select(touched), _feed_users_select(touched)
    result.daily_rows = conn.execute(
        insert(d).from_select(list(daily.selected_columns.keys()), daily)).rowcount
    result.user_rows = conn.execute(
        insert(du).from_select(list(users.selected_columns.keys()), users)).rowcount
    if postgres:
        conn.execute(text("SET LOCAL enable_seqscan TO DEFAULT"))
    touched.drop(conn)
    log.debug("rollups of %d account-days refreshed (%s): %d daily rows, %d user rows",
              result.keys, origin, result.daily_rows, result.user_rows)
    return result


def _events_daily_columns(u: Any, day: Any) -> list[Any]:
    qty = u.c.quantity
    return [
        u.c.account_id.label("account_id"), day.label("day"), u.c.feature.label("feature"),
        func.coalesce(u.c.component, _EMPTY).label("component"),
        u.c.landed_at.label("landed_at"), literal("events").label("origin"),
        func.sum(qty).label("events"),
        func.sum(case((u.c.outcome == "error", qty), else_=0.0)).label("errors"),
        func.count().label("event_rows"),
        func.sum(case((u.c.outcome == "error", 1), else_=0)).label("error_rows"),
        func.count(distinct(u.c.contact_id)).label("active_users"),
        func.min(u.c.occurred_at).label("first_at"), func.max(u.c.occurred_at).label("last_at"),
    ]


def _events_select(touched: Table) -> Any:
    u = UsageEvent.__table__
    return (
        select(*_events_daily_columns(u, touched.c.day))
        .join_from(touched, u, and_(u.c.account_id == touched.c.account_id,
                                    u.c.occurred_at >= touched.c.day_start,
                                    u.c.occurred_at < touched.c.day_end))
        .group_by(u.c.account_id, touched.c.day, u.c.feature,
                  func.coalesce(u.c.component, _EMPTY), u.c.landed_at)
    )


def _event_users_columns(u: Any, day: Any) -> list[Any]:
    return [
        u.c.account_id.label("account_id"), day.label("day"),
        u.c.contact_id.label("contact_id"), u.c.landed_at.label("landed_at"),
        literal("events").label("origin"), func.sum(u.c.quantity).label("events"),
        func.count().label("event_rows"), func.max(u.c.occurred_at).label("last_at"),
    ]


def _event_users_select(touched: Table) -> Any:
    u = UsageEvent.__table__
    return (
        select(*_event_users_columns(u, touched.c.day))
        .join_from(touched, u, and_(u.c.account_id == touched.c.account_id,
                                    u.c.occurred_at >= touched.c.day_start,
                                    u.c.occurred_at < touched.c.day_end))
        .where(u.c.contact_id.is_not(None))
        .group_by(u.c.account_id, touched.c.day, u.c.contact_id, u.c.landed_at)
    )


def _feed_select(touched: Table) -> Any:
    f = UsageDailyFeed.__table__
    return (
        select(
            f.c.account_id.label("account_id"), f.c.day.label("day"),
            f.c.feature.label("feature"),
            func.coalesce(f.c.component, _EMPTY).label("component"),
            f.c.landed_at.label("landed_at"), literal("feed").label("origin"),
            func.sum(f.c.events).label("events"),
            func.sum(func.coalesce(f.c.errors, 0.0)).label("errors"),
            literal(None).label("event_rows"), literal(None).label("error_rows"),
            func.max(f.c.active_users).label("active_users"),
            func.min(touched.c.day_start).label("first_at"),
            func.min(touched.c.day_start).label("last_at"),
        )
        .join_from(touched, f, and_(f.c.account_id == touched.c.account_id,
                                    f.c.day == touched.c.day))
        .group_by(f.c.account_id, f.c.day, f.c.feature,
                  func.coalesce(f.c.component, _EMPTY), f.c.landed_at)
    )


def _feed_users_select(touched: Table) -> Any:
    f = UsageDailyUserFeed.__table__
    return (
        select(
            f.c.account_id.label("account_id"), f.c.day.label("day"),
            f.c.contact_id.label("contact_id"), f.c.landed_at.label("landed_at"),
            literal("feed").label("origin"), func.sum(f.c.events).label("events"),
            func.count().label("event_rows"), func.min(touched.c.day_start).label("last_at"),
        )
        .join_from(touched, f, and_(f.c.account_id == touched.c.account_id,
                                    f.c.day == touched.c.day))
        .group_by(f.c.account_id, f.c.day, f.c.contact_id, f.c.landed_at)
    )


# --------------------------------------------------------------------------- rebuild


@dataclass
class RebuildResult:
    """What `rebuild` did: accounts covered, events read, rollup rows written."""

    accounts: int = 0
    events: int = 0
    daily_rows: int = 0
    user_rows: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rebuild(engine: Engine, *, batch_accounts: int = 5_000,
            progress: Callable[[RebuildResult, int], None] | None = None) -> RebuildResult:
    """Recompute every `events` rollup from `usage_events`, `batch_accounts` accounts per
    transaction (set-based: one grouped INSERT ... SELECT per table and batch); feed rows are
    left as they are. `progress(done_so_far, total_accounts)` after each batch.

    Each batch replaces its accounts' rollups in one transaction, so features read either
    the old or the new rollups of an account, never a mix.
    """
    import time as time_

    from pulse.sql.db import ensure_schema, write_transaction

    ensure_schema(engine)
    started = time_.perf_counter()
    u = UsageEvent.__table__
    d, du = UsageDaily.__table__, UsageDailyUser.__table__
    with engine.connect() as conn:
        ids = list(conn.execute(select(u.c.account_id).distinct().order_by(u.c.account_id))
                   .scalars())
    total = RebuildResult()
    day = day_key(u.c.occurred_at)
    with write_transaction(engine) as conn:  # accounts whose events are all gone
        _lock(conn)
        for table in (d, du):
            conn.execute(delete(table).where(
                table.c.origin == "events",
                ~exists().where(u.c.account_id == table.c.account_id)))
    for start in range(0, len(ids), batch_accounts):
        lo, hi = ids[start], ids[min(start + batch_accounts, len(ids)) - 1]
        mine = and_(u.c.account_id >= lo, u.c.account_id <= hi)
        with write_transaction(engine) as conn:
            _lock(conn)
            for table in (d, du):
                conn.execute(delete(table).where(
                    table.c.origin == "events", table.c.account_id >= lo,
                    table.c.account_id <= hi))
            daily = (select(*_events_daily_columns(u, day)).where(mine)
                     .group_by(u.c.account_id, day, u.c.feature,
                               func.coalesce(u.c.component, _EMPTY), u.c.landed_at))
            users = (select(*_event_users_columns(u, day))
                     .where(mine, u.c.contact_id.is_not(None))
                     .group_by(u.c.account_id, day, u.c.contact_id, u.c.landed_at))
            conn.execute(insert(d).from_select(list(daily.selected_columns.keys()), daily))
            conn.execute(insert(du).from_select(list(users.selected_columns.keys()), users))
            mine_d = and_(d.c.origin == "events", d.c.account_id >= lo, d.c.account_id <= hi)
            events, rows = conn.execute(select(func.coalesce(func.sum(d.c.event_rows), 0),
                                               func.count()).where(mine_d)).one()
            users_n = conn.execute(select(func.count()).select_from(du).where(
                du.c.origin == "events", du.c.account_id >= lo,
                du.c.account_id <= hi)).scalar_one()
        total.accounts += min(batch_accounts, len(ids) - start)
        total.events += int(events)
        total.daily_rows += int(rows)
        total.user_rows += int(users_n)
        total.seconds = time_.perf_counter() - started
        if progress:
            progress(total, len(ids))
        log.info("rollups rebuilt for %d of %d accounts (%d events, %d daily rows)",
                 total.accounts, len(ids), total.events, total.daily_rows)
    total.seconds = time_.perf_counter() - started
    return total
