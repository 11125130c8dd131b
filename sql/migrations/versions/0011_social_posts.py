"""social posts: incident updates published on X, each at most once (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pulse.sql.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "social_posts",
        sa.Column("post_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("post_key", sa.String(length=200), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("tweet_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("posted_at", pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_social_posts")),
        sa.UniqueConstraint("post_key", name=op.f("uq_social_posts_post_key")),
    )
    with op.batch_alter_table("social_posts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_social_posts_incident_id"), ["incident_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("social_posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_social_posts_incident_id"))
    op.drop_table("social_posts")
