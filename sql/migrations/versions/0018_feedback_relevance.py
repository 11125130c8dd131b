"""feedback relevance: text_insights.relevance and .dropped (issue 15)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("text_insights", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relevance", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("dropped", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("text_insights", schema=None) as batch_op:
        batch_op.drop_column("dropped")
        batch_op.drop_column("relevance")
