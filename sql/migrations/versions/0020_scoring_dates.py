"""scoring dates and shards: a date scored in shards shows only once published (issue 16)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 01:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pulse.sql.types

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scoring_dates",
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("started_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("accounts", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("as_of", name=op.f("pk_scoring_dates")),
    )
    op.create_table(
        "scoring_shards",
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("finished_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("as_of", "shard", name=op.f("pk_scoring_shards")),
    )


def downgrade() -> None:
    op.drop_table("scoring_shards")
    op.drop_table("scoring_dates")
