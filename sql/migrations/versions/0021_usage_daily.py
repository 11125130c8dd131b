"""daily usage rollups: usage_daily and usage_daily_users, and the aggregated feeds (issue 16)

Existing usage is rolled up here, set-based (the same SQL as `pulse rollup rebuild`, frozen
in this file so that later changes to sql/rollups.py cannot change what this step did).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 04:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pulse.sql.types

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_DAY = {
    "sqlite": "substr(occurred_at, 1, 10)",
    "postgresql": "CAST(occurred_at AT TIME ZONE 'UTC' AS DATE)",
}


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("feature", sa.String(length=100), nullable=False),
        sa.Column("component", sa.String(length=100), nullable=False),
        sa.Column("landed_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("events", sa.Float(), nullable=False),
        sa.Column("errors", sa.Float(), nullable=False),
        sa.Column("event_rows", sa.Integer(), nullable=True),
        sa.Column("error_rows", sa.Integer(), nullable=True),
        sa.Column("active_users", sa.Integer(), nullable=True),
        sa.Column("first_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "feature", "component", "landed_at",
                                "origin", name=op.f("pk_usage_daily")),
    )
    op.create_table(
        "usage_daily_users",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("landed_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("events", sa.Float(), nullable=False),
        sa.Column("event_rows", sa.Integer(), nullable=False),
        sa.Column("last_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "contact_id", "landed_at", "origin",
                                name=op.f("pk_usage_daily_users")),
    )
    op.create_table(
        "usage_daily_feed",
        sa.Column("daily_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("feature", sa.String(length=100), nullable=False),
        sa.Column("component", sa.String(length=100), nullable=True),
        sa.Column("events", sa.Float(), nullable=False),
        sa.Column("errors", sa.Float(), nullable=True),
        sa.Column("active_users", sa.Integer(), nullable=True),
        sa.Column("landed_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"],
                                name=op.f("fk_usage_daily_feed_account_id_accounts")),
        sa.PrimaryKeyConstraint("daily_id", name=op.f("pk_usage_daily_feed")),
    )
    op.create_index("ix_usage_daily_feed_account_day", "usage_daily_feed",
                    ["account_id", "day"], unique=False)
    op.create_table(
        "usage_daily_users_feed",
        sa.Column("daily_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Float(), nullable=False),
        sa.Column("landed_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"],
                                name=op.f("fk_usage_daily_users_feed_account_id_accounts")),
        sa.PrimaryKeyConstraint("daily_id", name=op.f("pk_usage_daily_users_feed")),
    )
    op.create_index("ix_usage_daily_users_feed_account_day", "usage_daily_users_feed",
                    ["account_id", "day"], unique=False)
    day = _DAY.get(op.get_bind().dialect.name, _DAY["sqlite"])
    op.execute(f"""
        INSERT INTO usage_daily (account_id, day, feature, component, landed_at, origin,
                                 events, errors, event_rows, error_rows, active_users,
                                 first_at, last_at)
        SELECT account_id, {day}, feature, COALESCE(component, ''), landed_at, 'events',
               SUM(quantity), SUM(CASE WHEN outcome = 'error' THEN quantity ELSE 0.0 END),
               COUNT(*), SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END),
               COUNT(DISTINCT contact_id), MIN(occurred_at), MAX(occurred_at)
        FROM usage_events
        GROUP BY account_id, {day}, feature, COALESCE(component, ''), landed_at
    """)
    op.execute(f"""
        INSERT INTO usage_daily_users (account_id, day, contact_id, landed_at, origin, events,
                                       event_rows, last_at)
        SELECT account_id, {day}, contact_id, landed_at, 'events', SUM(quantity), COUNT(*),
               MAX(occurred_at)
        FROM usage_events
        WHERE contact_id IS NOT NULL
        GROUP BY account_id, {day}, contact_id, landed_at
    """)


def downgrade() -> None:
    op.drop_index("ix_usage_daily_users_feed_account_day", table_name="usage_daily_users_feed")
    op.drop_table("usage_daily_users_feed")
    op.drop_index("ix_usage_daily_feed_account_day", table_name="usage_daily_feed")
    op.drop_table("usage_daily_feed")
    op.drop_table("usage_daily_users")
    op.drop_table("usage_daily")
