"""playbooks: the tasks their rules create (issue 14)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:55:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import pulse.sql.types
from sqlalchemy.dialects import postgresql

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('playbook_tasks',
    sa.Column('task_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('episode_start', sa.Date(), nullable=False),
    sa.Column('last_seen', sa.Date(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=254), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('steps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.Column('created_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=254), nullable=True),
    sa.Column('health_at_open', sa.Float(), nullable=True),
    sa.Column('churn_at_open', sa.Float(), nullable=True),
    sa.Column('health_at_close', sa.Float(), nullable=True),
    sa.Column('churn_at_close', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_playbook_tasks')),
    sa.UniqueConstraint('rule', 'account_id', 'episode_start', name='uq_playbook_tasks_episode')
    )
    with op.batch_alter_table('playbook_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_playbook_tasks_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_playbook_tasks_owner_state', ['owner', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('playbook_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_playbook_tasks_owner_state')
        batch_op.drop_index(batch_op.f('ix_playbook_tasks_account_id'))

    op.drop_table('playbook_tasks')
