"""The SQL of a landing: the staging table and its load, the direct load, and the merge.

Accepted rows are bulk-loaded into a temporary staging table (executemany on SQLite, COPY on
PostgreSQL), counted against the warehouse (`_count_outcomes`) and merged with one set-based
upsert that touches only rows whose values changed (`_merge`). Immutable event sources
(`DIRECT_SOURCES`) are first tried as plain inserts straight into the warehouse table
(`DirectLoad`), which raises `_NeedsMerge` at a key that repeats or is already stored.
listeners/landing.py runs these per file, in one transaction.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    Table,
    func,
    literal,
    or_,
    select,
    text,
    true,
)

from pulse.listeners.contract import Source
from pulse.listeners.prepare import _stage_columns
from pulse.sql.db import dialect_insert
from pulse.sql.schema import ENTITY_TABLES
from pulse.sql.types import UTCDateTime

# --------------------------------------------------------------------------- staging


def _stage_table(source: Source, name: str, dialect: str) -> Table:
    target = ENTITY_TABLES[source.name]
    cols = [Column(c, target.c[c].type) for c in source.columns]
    kw: dict[str, Any] = {}
    if dialect == "postgresql":
        kw["postgresql_on_commit"] = "DROP"
    return Table(name, MetaData(), *cols, Column("_row", BigInteger), prefixes=["TEMPORARY"], **kw)


def _stage_rows(source: Source, clean: pd.DataFrame, dialect: str,
                trailing: list[Any] | None = None) -> Iterator[tuple[Any, ...]]:
    """Rows for the staging load, as each database stores them, one tuple per row (the
    columns zipped lazily: no grid of every value is built).

    SQLite gets what SQLAlchemy's SQLite types store (naive UTC text timestamps, 0/1 booleans);
    PostgreSQL gets text for COPY (timestamps with an explicit +00:00).
    """
    cols: list[Iterable[Any]] = list(_stage_columns(source, clean, dialect))
    if trailing is None:
        cols.append(clean.index.tolist())  # the row number, for staging
    else:
        cols.extend(repeat(v, len(clean)) for v in trailing)
    return zip(*cols, strict=False)


def _zip_columns(columns: list[list[Any]], trailing: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Rows from columns made by `_stage_columns` (from the ingest worker), each followed by
    the `trailing` values."""
    n = len(columns[0]) if columns else 0
    return zip(*columns, *(repeat(v, n) for v in trailing), strict=False)


def _copy_rows(cur: Any, table: str, names: list[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY rows into `table`; psycopg adapts and escapes each value (None is NULL)."""
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _load_stage(conn: Connection, stage: Table, source: Source, clean: pd.DataFrame) -> None:
    if clean.empty:
        return
    names = [*source.columns, "_row"]
    if conn.dialect.name == "postgresql":
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        _copy_rows(cur, stage.name, names, _stage_rows(source, clean, "postgresql"))
        cur.close()
    else:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.executemany(
            f"INSERT INTO {stage.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            _stage_rows(source, clean, "sqlite"),
        )
        cur.close()


class _NeedsMerge(Exception):
    """A direct load met a key that repeats or is already stored: the staged merge must
    handle the file."""


#: sources whose rows are immutable events, usually new: tried with a direct load first
DIRECT_SOURCES = frozenset({"usage", "purchases", "mentions"})


class DirectLoad:
    """Plain inserts of a file's chunks straight into the warehouse table.

    On SQLite each chunk is one executemany. On PostgreSQL one COPY stays open across the
    chunks, fed through psycopg's queued writer: a thread of psycopg's sends the rows while
    the next chunk is read and validated here, so the server's work (indexes, foreign keys)
    overlaps ours instead of waiting for it. While that COPY is open nothing else may use the
    connection (`busy`): the caller defers its other writes until `finish`.

    A key that is already in the table or repeated in the file raises `_NeedsMerge` (from
    `add` or `finish`); the caller rolls back and lands the file through the staged merge.
    """

    def __init__(self, conn: Connection, source: Source, *, now: datetime, run_id: int) -> None:
        self.conn, self.source = conn, source
        self.target = ENTITY_TABLES[source.name].name
        self.names = [*source.columns, "landed_at", "updated_at", "run_id"]
        self.postgres = conn.dialect.name == "postgresql"
        if self.postgres:
            stamp = now.astimezone(UTC).isoformat()
        else:
            stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                       timespec="microseconds")
        self.trailing: list[Any] = [stamp, stamp, run_id]
        self._stack: ExitStack | None = None
        self._copy: Any = None

    @property
    def busy(self) -> bool:
        """Whether a COPY holds the connection (other statements must wait for `finish`)."""
        return self._copy is not None

    @property
    def dialect(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    def add(self, clean: pd.DataFrame) -> None:
        if clean.empty:
            return
        self.add_rows(_stage_rows(self.source, clean, self.dialect, self.trailing))

    def add_columns(self, columns: list[list[Any]]) -> None:
        """Insert rows given as columns already in the database's form (`_stage_columns`,
        made by the ingest worker process)."""
        if not columns or not columns[0]:
            return
        self.add_rows(_zip_columns(columns, self.trailing))

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        integrity = self.conn.dialect.loaded_dbapi.IntegrityError
        try:
            if self.postgres:
                if self._copy is None:
                    self._open()
                write = self._copy.write_row
                for row in rows:
                    write(row)
            else:
                cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    cur.executemany(
                        f"INSERT INTO {self.target} ({', '.join(self.names)}) "
                        f"VALUES ({', '.join('?' * len(self.names))})", rows)
                finally:
                    cur.close()
        except integrity as exc:  # a key already in the table, or repeated
            self.abort(exc)
            raise _NeedsMerge(self.source.name) from exc

    def _open(self) -> None:
        from psycopg.copy import QueuedLibpqWriter

        stack = ExitStack()
        cur = stack.enter_context(
            self.conn.connection.driver_connection.cursor())  # type: ignore[union-attr]
        self._copy = stack.enter_context(cur.copy(
            f"COPY {self.target} ({', '.join(self.names)}) FROM STDIN",
            writer=QueuedLibpqWriter(cur)))
        self._stack = stack

    def finish(self) -> None:
        """End the COPY (PostgreSQL); the connection is free again."""
        stack, self._stack, self._copy = self._stack, None, None
        if stack is None:
            return
        try:
            stack.close()
        except self.conn.dialect.loaded_dbapi.IntegrityError as exc:
            raise _NeedsMerge(self.source.name) from exc

    def abort(self, exc: BaseException) -> None:
        """Give up the COPY after an error (the transaction is rolled back by the caller)."""
        stack, self._stack, self._copy = self._stack, None, None
        if stack is not None:
            try:
                stack.__exit__(type(exc), exc, exc.__traceback__)
            except Exception:  # the COPY's own failure report: the original error wins
                pass


def _distinct(conn: Connection, a: str, b: str) -> str:
    op = "IS NOT" if conn.dialect.name == "sqlite" else "IS DISTINCT FROM"
    return f"({a} {op} {b})"


def _any_distinct(conn: Connection, cols: list[str], left: str, right: str,
                  rprefix: str = "") -> str:
    return " OR ".join(_distinct(conn, f"{left}.{c}", f"{right}.{rprefix}{c}") for c in cols)


def _count_outcomes(conn: Connection, source: Source, stage: Table, dups: bool,
                    given: set[str]) -> tuple[int, int, int]:
    """(inserted, updated, unchanged) for the staged rows, before the merge.

    Without repeated keys each staged row is new, changed or the same as the warehouse row.
    With repeated keys (a ticket opened, then solved, in one file) the rows of a key are
    replayed in file order: the first against the warehouse, each later one against the one
    before it; when the key's last version equals the warehouse row, all its rows are unchanged.
    """
    target = ENTITY_TABLES[source.name].name
    key = source.key
    cols = [c for c in source.columns if c != key and c in given]
    if not dups:
        changed = _any_distinct(conn, cols, "t", "s")
        sql = f"""
            SELECT
              COALESCE(SUM(CASE WHEN t.{key} IS NULL THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN t.{key} IS NOT NULL AND ({changed}) THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN t.{key} IS NOT NULL AND NOT ({changed}) THEN 1 ELSE 0 END), 0)
            FROM {stage.name} s LEFT JOIN {target} t ON t.{key} = s.{key}
        """
        ins, upd, same = conn.execute(text(sql)).one()
        return int(ins), int(upd), int(same)
    lags = ", ".join(
        f"LAG({c}) OVER (PARTITION BY {key} ORDER BY _row) AS p_{c}" for c in cols
    )
    vs_prev = _any_distinct(conn, cols, "r", "r", rprefix="p_")
    vs_target = _any_distinct(conn, cols, "t", "r")
    last_vs_target = _any_distinct(conn, cols, "t", "l")
    sql = f"""
        WITH r AS (
          SELECT s.*, {lags},
                 ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY _row) AS rn,
                 ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY _row DESC) AS rd
          FROM {stage.name} s
        ),
        k AS (
          SELECT l.{key} AS k,
                 CASE WHEN t.{key} IS NULL THEN 'new'
                      WHEN {last_vs_target} THEN 'changed' ELSE 'same' END AS fate
          FROM r l LEFT JOIN {target} t ON t.{key} = l.{key}
          WHERE l.rd = 1
        ),
        c AS (
          SELECT CASE
                   WHEN k.fate = 'same' THEN 'unchanged'
                   WHEN r.rn = 1 AND k.fate = 'new' THEN 'inserted'
                   WHEN r.rn = 1 AND ({vs_target}) THEN 'updated'
                   WHEN r.rn = 1 THEN 'unchanged'
                   WHEN {vs_prev} THEN 'updated'
                   ELSE 'unchanged' END AS outcome
          FROM r JOIN k ON k.k = r.{key}
          LEFT JOIN {target} t ON t.{key} = r.{key}
        )
        SELECT outcome, COUNT(*) FROM c GROUP BY outcome
    """
    counts: dict[str, int] = {str(k): int(v) for k, v in conn.execute(text(sql)).all()}
    return (int(counts.get("inserted", 0)), int(counts.get("updated", 0)),
            int(counts.get("unchanged", 0)))


def _merge(conn: Connection, source: Source, stage: Table, dups: bool, run_id: int,
           now: datetime, given: set[str]) -> None:
    """One set-based upsert from staging into the warehouse; unchanged rows are not touched."""
    target = ENTITY_TABLES[source.name]
    key = source.key
    cols = source.columns
    if dups:
        ranked = select(
            *[stage.c[c] for c in cols],
            func.row_number().over(partition_by=stage.c[key], order_by=stage.c._row.desc())
            .label("rd"),
        ).subquery("ranked")
        base = select(*[ranked.c[c] for c in cols]).where(ranked.c.rd == 1)
    else:
        base = select(*[stage.c[c] for c in cols]).where(true())
    rows = base.add_columns(
        literal(now, UTCDateTime).label("landed_at"),
        literal(now, UTCDateTime).label("updated_at"),
        literal(run_id).label("run_id"),
    )
    stmt = dialect_insert(conn, target).from_select([*cols, "landed_at", "updated_at", "run_id"], rows)
    changed = [c for c in cols if c != key and c in given]
    stmt = stmt.on_conflict_do_update(
        index_elements=[target.c[key]],
        set_={c: stmt.excluded[c] for c in [*changed, "updated_at", "run_id"]},
        where=or_(*[target.c[c].is_distinct_from(stmt.excluded[c]) for c in changed]),
    )
    conn.execute(stmt)
