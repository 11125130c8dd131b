"""the console's account actions: snoozes and activity (issue 14)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:55:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import pulse.sql.types

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_snoozes',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('until', sa.Date(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=True),
    sa.Column('health', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_account_snoozes'))
    )
    op.create_table('account_activity',
    sa.Column('activity_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('activity_id', name=op.f('pk_account_activity'))
    )
    with op.batch_alter_table('account_activity', schema=None) as batch_op:
        batch_op.create_index('ix_account_activity_account', ['account_id', 'activity_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('account_activity', schema=None) as batch_op:
        batch_op.drop_index('ix_account_activity_account')

    op.drop_table('account_activity')
    op.drop_table('account_snoozes')
