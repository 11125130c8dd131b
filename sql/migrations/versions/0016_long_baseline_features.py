"""account_features: usage against the account's own long baseline, the days 28 to 179 back
(issue 12)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 22:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

#: the account_features columns this revision adds (nullable floats)
FEATURE_COLUMNS: tuple[str, ...] = (
    "events_28d_vs_180d", "active_days_28d_vs_180d", "error_rate_28d_minus_180d",
)


def upgrade() -> None:
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        for name in FEATURE_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        for name in reversed(FEATURE_COLUMNS):
            batch_op.drop_column(name)
