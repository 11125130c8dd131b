"""response times: tickets' first response, mentions' conversation and brand flag (issue 15)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 22:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pulse.sql.types

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_response_at",
                                      pulse.sql.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conversation_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("from_brand", sa.Boolean(), nullable=True))
        batch_op.create_index(batch_op.f("ix_mentions_in_reply_to_id"), ["in_reply_to_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mentions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mentions_in_reply_to_id"))
        batch_op.drop_column("from_brand")
        batch_op.drop_column("conversation_id")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("first_response_at")
