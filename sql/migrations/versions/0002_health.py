"""health: point-in-time features, scorecard health and measures

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:23:37.249558
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pulse.sql.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_features',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('basis', sa.String(length=8), nullable=False),
    sa.Column('computed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('account_age_days', sa.Integer(), nullable=True),
    sa.Column('seats', sa.Integer(), nullable=True),
    sa.Column('active_days_7d', sa.Integer(), nullable=False),
    sa.Column('active_days_28d', sa.Integer(), nullable=False),
    sa.Column('events_7d', sa.Float(), nullable=False),
    sa.Column('events_28d', sa.Float(), nullable=False),
    sa.Column('events_prev_28d', sa.Float(), nullable=False),
    sa.Column('usage_trend_28d_pct', sa.Float(), nullable=True),
    sa.Column('distinct_features_28d', sa.Integer(), nullable=False),
    sa.Column('active_users_28d', sa.Integer(), nullable=False),
    sa.Column('seat_utilisation_28d', sa.Float(), nullable=True),
    sa.Column('error_rate_28d', sa.Float(), nullable=True),
    sa.Column('days_since_last_use', sa.Integer(), nullable=True),
    sa.Column('usage_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('usage_source_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('mrr', sa.Float(), nullable=True),
    sa.Column('mrr_90d_ago', sa.Float(), nullable=True),
    sa.Column('mrr_change_90d_pct', sa.Float(), nullable=True),
    sa.Column('open_failed_payments', sa.Integer(), nullable=False),
    sa.Column('downgrades_90d', sa.Integer(), nullable=False),
    sa.Column('cancelled', sa.Boolean(), nullable=False),
    sa.Column('days_to_renewal', sa.Integer(), nullable=True),
    sa.Column('billing_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('billing_source_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('tickets_30d', sa.Integer(), nullable=False),
    sa.Column('tickets_90d', sa.Integer(), nullable=False),
    sa.Column('open_tickets', sa.Integer(), nullable=False),
    sa.Column('open_urgent_tickets', sa.Integer(), nullable=False),
    sa.Column('resolve_hours_median_90d', sa.Float(), nullable=True),
    sa.Column('resolve_hours_mean_90d', sa.Float(), nullable=True),
    sa.Column('days_since_last_ticket', sa.Integer(), nullable=True),
    sa.Column('support_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('support_source_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('mentions_28d', sa.Integer(), nullable=False),
    sa.Column('negative_mentions_28d', sa.Integer(), nullable=False),
    sa.Column('negative_share_28d', sa.Float(), nullable=True),
    sa.Column('social_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('social_source_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('incident_minutes_28d', sa.Float(), nullable=False),
    sa.Column('incidents_source_last_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('as_of', 'account_id', name=op.f('pk_account_features'))
    )
    with op.batch_alter_table('account_features', schema=None) as batch_op:
        batch_op.create_index('ix_account_features_account_as_of', ['account_id', 'as_of'], unique=False)

    op.create_table('account_health',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('scorecard', sa.String(length=32), nullable=False),
    sa.Column('scorecard_version', sa.String(length=64), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('band', sa.String(length=8), nullable=True),
    sa.Column('change_7d', sa.Float(), nullable=True),
    sa.Column('change_30d', sa.Float(), nullable=True),
    sa.Column('skipped', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('computed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('as_of', 'account_id', name=op.f('pk_account_health'))
    )
    with op.batch_alter_table('account_health', schema=None) as batch_op:
        batch_op.create_index('ix_account_health_account_as_of', ['account_id', 'as_of'], unique=False)

    op.create_table('health_measures',
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('measure', sa.String(length=64), nullable=False),
    sa.Column('feature', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('points', sa.Float(), nullable=True),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('contribution', sa.Float(), nullable=True),
    sa.Column('skipped', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('as_of', 'account_id', 'measure', name=op.f('pk_health_measures'))
    )


def downgrade() -> None:
    op.drop_table('health_measures')
    with op.batch_alter_table('account_health', schema=None) as batch_op:
        batch_op.drop_index('ix_account_health_account_as_of')

    op.drop_table('account_health')
    with op.batch_alter_table('account_features', schema=None) as batch_op:
        batch_op.drop_index('ix_account_features_account_as_of')

    op.drop_table('account_features')
