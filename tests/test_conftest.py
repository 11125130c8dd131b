"""The suite's own housekeeping: a killed run's PostgreSQL databases and schemas are dropped
by the next run, and a run still going keeps its own."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from pulse.sql.db import drop_schema
from tests.conftest import PG_URL, _drop_database, _name, _pg_admin, drop_leftovers, need_postgres


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
