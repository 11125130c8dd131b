"""Write transactions that one caller at a time holds, on SQLite and PostgreSQL alike."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text


@contextmanager
def serialised(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction that only one caller per database (and, on PostgreSQL, per schema and
    `name`) is inside at a time; committed on leaving, rolled back on an error.

    SQLite: `BEGIN IMMEDIATE` takes the write lock up front, so a second writer waits (the
    engine's busy timeout) instead of failing later with "database is locked". PostgreSQL:
    a transaction-level advisory lock keyed by the schema and `name`; rows are still read
    with READ COMMITTED, so what the previous holder committed is seen.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return
        with conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || :n))"),
                         {"n": f"/{name}"})
            yield conn


__all__ = ["serialised"]
