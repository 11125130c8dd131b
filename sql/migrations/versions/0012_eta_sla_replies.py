"""incident ETA, an account's own SLA, replies on X awaiting approval (issue 13)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 18:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pulse.sql.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eta", pulse.sql.types.UTCDateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_uptime_pct", sa.Float(), nullable=True))
    with op.batch_alter_table("social_posts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_reply_to_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("approved_at", pulse.sql.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index(batch_op.f("ix_social_posts_in_reply_to_id"), ["in_reply_to_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("social_posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_social_posts_in_reply_to_id"))
        batch_op.drop_column("approved_at")
        batch_op.drop_column("in_reply_to_id")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("sla_uptime_pct")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("eta")
