"""account_features: first responses to the account's own tickets against what customers
expect (issue 15)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: the account_features columns this revision adds (nullable floats)
FEATURE_COLUMNS: tuple[str, ...] = (
    "first_response_hours_median_90d", "first_response_late_share_90d",
)


def upgrade() -> None:
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        for name in FEATURE_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        for name in reversed(FEATURE_COLUMNS):
            batch_op.drop_column(name)
