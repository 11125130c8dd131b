"""The same Alembic migrations build the same schema on SQLite and PostgreSQL."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from pulse.sql.db import alembic_config, current_revision, make_engine, upgrade
from pulse.sql.schema import Base


def test_upgrade_creates_the_models_schema_and_is_repeatable(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == upgrade(engine)  # the second run is a no-op
    tables = set(inspect(engine).get_table_names())
    assert {"accounts", "contacts", "usage_events", "purchase_events", "tickets", "mentions",
            "incidents", "quarantine", "ingest_runs"} <= tables
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    engine.dispose()


def test_downgrade_to_base_removes_everything(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
