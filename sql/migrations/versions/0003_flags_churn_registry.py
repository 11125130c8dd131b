"""flags, churn scores, model registry

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:48:57.414461
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import pulse.sql.types
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_flags',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('flag', sa.String(length=32), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('computed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('as_of', 'account_id', 'flag', name=op.f('pk_account_flags'))
    )
    with op.batch_alter_table('account_flags', schema=None) as batch_op:
        batch_op.create_index('ix_account_flags_flag_as_of', ['flag', 'as_of'], unique=False)

    op.create_table('churn_scores',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('drivers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('computed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('as_of', 'account_id', name=op.f('pk_churn_scores'))
    )
    op.create_table('model_registry',
    sa.Column('version', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('trained_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('train_start', sa.Date(), nullable=False),
    sa.Column('train_end', sa.Date(), nullable=False),
    sa.Column('valid_start', sa.Date(), nullable=False),
    sa.Column('valid_end', sa.Date(), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('features', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('artifact_path', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('promoted_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_model_registry'))
    )


def downgrade() -> None:
    op.drop_table('model_registry')
    op.drop_table('churn_scores')
    with op.batch_alter_table('account_flags', schema=None) as batch_op:
        batch_op.drop_index('ix_account_flags_flag_as_of')

    op.drop_table('account_flags')
