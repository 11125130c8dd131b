"""Storing and reading scorecard health: `account_health` and `health_measures`.

Writes replace one as-of date in one transaction (delete, then a bulk load: COPY on
PostgreSQL, the driver's executemany on SQLite); other dates are never touched.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import JSON, Connection, Date, Engine, Float, Table, delete, select

from pulse.core.times import utc_stamp
from pulse.sql.db import result_frame
from pulse.sql.schema import AccountHealth, HealthMeasure
from pulse.sql.shards import Shard, shard_of
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

HEALTH = AccountHealth.__table__
MEASURES = HealthMeasure.__table__


def write_health(engine: Engine, as_of: date, health: pd.DataFrame,
                 measures: pd.DataFrame, *, computed_at: datetime | None = None,
                 shard: Shard | None = None) -> int:
    """Replace the health and measure rows of `as_of` (of one `shard`'s accounts when given);
    returns the accounts written.

    `health` has account_id, scorecard, scorecard_version, score, band, change_7d,
    change_30d, skipped (a list of measure names); `measures` has account_id, measure, feature,
    value, points, weight, contribution, skipped.
    """
    now = computed_at or datetime.now(UTC)
    h = health.assign(as_of=as_of, computed_at=now)
    m = measures.assign(as_of=as_of)
    with engine.begin() as conn:
        for table in (MEASURES, HEALTH):
            stale = delete(table).where(table.c.as_of == as_of)
            in_shard = shard_of(table.c.account_id, shard)
            conn.execute(stale if in_shard is None else stale.where(in_shard))
        bulk_insert(conn, HEALTH, h)
        bulk_insert(conn, MEASURES, m)
    log.info("health as of %s: %d accounts, %d measures", as_of, len(h), len(m))
    return len(h)


def bulk_insert(conn: Connection, table: Table, frame: pd.DataFrame) -> None:
    """Insert a frame's rows (columns named as the table's) as each database loads fastest."""
    if frame.empty:
        return
    names = [c.name for c in table.columns]
    dialect = conn.dialect.name
    columns = [_db_values(frame[c.name], c, dialect) for c in table.columns]
    rows = list(zip(*columns, strict=True))
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect == "postgresql":
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            data = buf.getvalue()
            with cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as cp:
                for start in range(0, len(data), 1 << 20):
                    cp.write(data[start:start + (1 << 20)])
        else:
            cur.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) "
                f"VALUES ({', '.join('?' * len(names))})", rows)
    finally:
        cur.close()


def _db_values(series: pd.Series, column: Any, dialect: str) -> list[Any]:
    """A column's values as the database stores them (what SQLAlchemy's types would bind)."""
    kind = column.type
    if isinstance(kind, JSON):
        return [json.dumps(v) for v in series.to_numpy(dtype=object)]
    missing = pd.isna(series).to_numpy()
    if isinstance(kind, UTCDateTime):
        out = [_instant(v, dialect) for v in series.to_numpy(dtype=object)]
    elif isinstance(kind, Date):
        out = [v.isoformat() for v in series.to_numpy(dtype=object)]
    elif isinstance(kind, Float):
        out = series.astype("float64").tolist()
    else:
        out = series.to_numpy(dtype=object).tolist()
    return [None if miss else v for v, miss in zip(out, missing, strict=True)]


def _instant(value: Any, dialect: str) -> str | None:
    if value is None or pd.isna(value):
        return None
    ts = pd.Timestamp(value)
    ts = utc_stamp(ts)
    text = ts.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text + "+00:00" if dialect == "postgresql" else text


def load_health(engine: Engine, as_of: date,
                account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored health of `as_of`, one row per account (skipped as a list of names)."""
    query = select(HEALTH).where(HEALTH.c.as_of == as_of).order_by(HEALTH.c.account_id)
    if account_ids is not None:
        query = query.where(HEALTH.c.account_id.in_(list(account_ids)))
    return _frame(engine, query)


def load_measures(engine: Engine, as_of: date,
                  account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored measures of `as_of`, one row per account and measure."""
    query = select(MEASURES).where(MEASURES.c.as_of == as_of).order_by(
        MEASURES.c.account_id, MEASURES.c.measure)
    if account_ids is not None:
        query = query.where(MEASURES.c.account_id.in_(list(account_ids)))
    return _frame(engine, query)


def load_scores(engine: Engine, as_of: date) -> pd.DataFrame:
    """account_id, scorecard, score and skipped (the names of the measures left out) of every
    account scored as of `as_of` (empty when none)."""
    query = select(HEALTH.c.account_id, HEALTH.c.scorecard, HEALTH.c.score,
                   HEALTH.c.skipped).where(HEALTH.c.as_of == as_of)
    frame = _frame(engine, query)
    frame["score"] = pd.to_numeric(frame["score"]).astype("float64")
    return frame


def health_dates(engine: Engine) -> list[date]:
    """The as-of dates with stored health, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(HEALTH.c.as_of).distinct().order_by(HEALTH.c.as_of)).scalars())


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def shown(as_of: Any) -> Any:
    """The condition "the date `as_of` (a column) may be shown": not being scored in shards
    (`scoring_dates`, models/sharded.py). A date scored in one process has no mark."""
    from sqlalchemy import exists

    from pulse.sql.schema import ScoringDate

    sd = ScoringDate.__table__
    return ~exists().where(sd.c.as_of == as_of, sd.c.state == "scoring")

