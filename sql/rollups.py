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

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

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


def _day_of(values: pd.Series) -> pd.Series:
    """The UTC calendar day of timestamps (aware datetimes or stored text) as dates."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC")
        return ts.dt.date
    return pd.to_datetime(values.astype(str).str.slice(0, 10), format="%Y-%m-%d").dt.date


def _values(values: Iterable[Any]) -> Any:
    """A column's values without its index (frames from different chunks line up)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object)
    return pd.Series(list(values), dtype=object).to_numpy()


class TouchedKeys:
    """The distinct (account_id, day) keys a landing touched, gathered chunk by chunk (memory
    grows with the account-days of the file, never with its rows)."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []
        self._n = 0

    def add(self, account_ids: Iterable[Any], days: Iterable[Any]) -> None:
        frame = pd.DataFrame({"account_id": _values(account_ids), "day": _values(days)})
        frame = frame.dropna().drop_duplicates()
        if frame.empty:
            return
        self._parts.append(frame)
        self._n += len(frame)
        if self._n > 200_000 and len(self._parts) > 1:  # keep the list short
            self._parts = [self.frame()]
            self._n = len(self._parts[0])

    def add_events(self, account_ids: pd.Series, occurred_at: pd.Series) -> None:
        """Keys of event rows: their account and the UTC day of their event time."""
        self.add(account_ids, _day_of(occurred_at))

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame({"account_id": [], "day": []})
        return pd.concat(self._parts, ignore_index=True).drop_duplicates()

    def __bool__(self) -> bool:
        return self._n > 0


def _touched_table(conn: Connection, keys: pd.DataFrame) -> Table:
    """A temporary table of the keys, with each day's first instant and the next day's (so
    the recompute reads the events through the (account_id, occurred_at) index)."""
    name = f"_rollup_touched_{id(keys) % 1_000_000}"
    kw: dict[str, Any] = {}
    if conn.dialect.name == "postgresql":
        kw["postgresql_on_commit"] = "DROP"
    table = Table(name, MetaData(), Column("account_id", String(64), primary_key=True),
                  Column("day", Date, primary_key=True),
                  Column("day_start", UTCDateTime), Column("day_end", UTCDateTime),
                  prefixes=["TEMPORARY"], **kw)
    table.create(conn)
    if keys.empty:
        return table
    # the driver's own bulk path, values already in the database's form: no per-row
    # SQLAlchemy type processing (a backfill touches every account-day of its history)
    days = pd.to_datetime(pd.Series(keys["day"].tolist()), format="ISO8601")
    day_text = days.dt.strftime("%Y-%m-%d")
    suffix = " 00:00:00.000000" if conn.dialect.name == "sqlite" else " 00:00:00+00:00"
    start = day_text + suffix
    end = (days + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%d") + suffix
    rows = zip(keys["account_id"].tolist(), day_text.tolist(), start.tolist(), end.tolist(),
               strict=True)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            with cur.copy(f"COPY {name} (account_id, day, day_start, day_end) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            cur.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?)", rows)
    finally:
        cur.close()
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {name}"))
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

    new = select(stage.c.account_id, day(stage)).distinct()
    old = (select(target.c.account_id, day(target)).distinct()
           .join_from(target, stage, stage.c[key] == target.c[key]))
    rows = [(a, _as_date(d)) for a, d in [*conn.execute(new).all(), *conn.execute(old).all()]]
    return pd.DataFrame(rows, columns=["account_id", "day"]).drop_duplicates()


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def refresh(conn: Connection, origin: str, keys: pd.DataFrame) -> RefreshResult:
    """Recompute the rollup rows of `origin` for the (account_id, day) `keys`, in the
    caller's transaction: delete them, then insert them again from the source table."""
    result = RefreshResult(keys=len(keys))
    if keys.empty:
        return result
    _lock(conn)
    touched = _touched_table(conn, keys)
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
