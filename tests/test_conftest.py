"""The suite's own housekeeping: a killed run's PostgreSQL databases and schemas are dropped
by the next run, and a run still going keeps its own; a finished test's warehouse is emptied for
the next; a prebuilt world is built once and every
later warehouse is an independent copy of it."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, select, text

from pulse.sql.db import drop_schema, make_engine
from pulse.sql.schema import Account
from tests.conftest import (
    _PREBUILT,
    PG_URL,
    _copy_of_template,
    _drop_database,
    _emptied,
    _name,
    _pg_admin,
    drop_leftovers,
    need_postgres,
    prebuilt,
)

ACCOUNTS = Account.__table__


def _ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(ACCOUNTS.c.account_id)).scalars())


def _add(engine: Engine, account_id: str) -> None:
    with engine.begin() as conn:
        now = datetime.now(UTC)
        conn.execute(insert(ACCOUNTS).values(account_id=account_id, name=account_id, mrr=100,
                                             currency="USD", landed_at=now, updated_at=now))


def test_a_prebuilt_world_is_built_once_and_copied(engine: Engine) -> None:
    """The first call builds into the test's warehouse and keeps a copy; a later call with the
    same key replaces the warehouse with that copy (what was written since is gone) and builds
    nothing; the kept copy never sees what the tests write; the engine keeps working."""
    key = _name("prebuilt-test")
    builds: list[int] = []

    def build() -> None:
        builds.append(1)
        _add(engine, "ACC-BUILT")

    try:
        prebuilt(engine, key, build)
        assert builds == [1] and _ids(engine) == {"ACC-BUILT"}
        _add(engine, "ACC-LATER")  # a test writes into its copy
        assert _ids(engine) == {"ACC-BUILT", "ACC-LATER"}
        prebuilt(engine, key, build)  # the next test with the same key
        assert builds == [1] and _ids(engine) == {"ACC-BUILT"}
        _add(engine, "ACC-AGAIN")
        prebuilt(engine, key, build)
        assert builds == [1] and _ids(engine) == {"ACC-BUILT"}
    finally:
        kept = _PREBUILT.pop((key, engine.dialect.name), None)
        if kept is not None and engine.dialect.name == "postgresql":
            _drop_database(kept)


@pytest.mark.postgres
def test_a_finished_warehouse_is_emptied_for_the_next_test_or_dropped(pg_template: str) -> None:
    """A warehouse a test wrote into comes back as a new copy of the template would be: no
    rows, every sequence at its start, no session left on it. One whose catalogue the test
    changed (a table of its own) is not reused."""
    name, url = _copy_of_template(pg_template)
    admin = _pg_admin()
    try:
        eng = make_engine(url)
        _add(eng, "ACC-1")
        with eng.begin() as conn:
            first = conn.execute(text("SELECT nextval('ingest_runs_run_id_seq')")).scalar_one()
            conn.execute(text("SELECT nextval('ingest_runs_run_id_seq')"))
        leftover = eng.connect()  # a session the test never closed: it is ended
        leftover.execute(text("SELECT 1"))
        assert _emptied(name, pg_template)
        leftover.invalidate()  # ended by _emptied: nothing to roll back
        leftover.close()
        assert _ids(eng) == set()
        with eng.begin() as conn:
            assert conn.execute(text("SELECT nextval('ingest_runs_run_id_seq')")).scalar_one() \
                == first
        _add(eng, "ACC-2")
        assert _ids(eng) == {"ACC-2"}
        with eng.begin() as conn:
            conn.execute(text("CREATE TABLE a_tests_own (x int)"))
        eng.dispose()
        assert not _emptied(name, pg_template)
    finally:
        _drop_database(name)
        admin.dispose()


@pytest.mark.postgres
def test_the_next_run_drops_what_a_killed_run_left() -> None:
    need_postgres()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)  # a process that has exited: a killed run's
    dead_db, dead_schema = f"pulse_t_{dead}_0a1b2c3d4e", f"pulse_tmpl_{dead}_5f6a7b8c9d"
    live_db = _name("pulse_t")  # this run's: its process is alive
    assert live_db.startswith(f"pulse_t_{os.getpid()}_")
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            for db in (dead_db, live_db):
                conn.execute(text(f'CREATE DATABASE "{db}"'))
            conn.execute(text(f'CREATE SCHEMA "{dead_schema}"'))
        dropped = drop_leftovers()
        assert {dead_db, dead_schema} <= set(dropped) and live_db not in dropped
        with admin.connect() as conn:
            dbs = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
            schemas = set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
        assert live_db in dbs and dead_db not in dbs and dead_schema not in schemas
    finally:
        admin.dispose()
        for db in (dead_db, live_db):
            _drop_database(db)
        drop_schema(PG_URL, dead_schema)
