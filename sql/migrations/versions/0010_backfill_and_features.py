"""ingest runs that were backfills, and point-in-time trend/seat/payment/renewal/tone features
(issue 12)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 12:40:00
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: the account_features columns this revision adds (nullable floats, and tone_source)
FEATURE_COLUMNS: tuple[str, ...] = (
    "events_7d_vs_28d", "events_28d_vs_90d", "events_slope_12w",
    "active_days_7d_vs_28d", "active_days_28d_vs_90d",
    "active_users_28d_vs_prev", "error_rate_28d_vs_90d",
    "active_users_peak_90d", "active_users_peak_180d",
    "seat_use_vs_peak_90d", "seat_use_vs_peak_180d",
    "failed_payments_90d", "recovered_payments_90d", "days_since_failed_payment",
    "billing_term_days", "is_annual", "days_to_renewal_est",
    "tickets_negative_share_90d", "mentions_negative_share_90d",
    "negative_texts_28d", "negative_texts_90d", "tone_scored_share_90d",
    "tone_source", "champion_gone", "tenure_days",
)


def upgrade() -> None:
    with op.batch_alter_table("ingest_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backfill", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("backfill_reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("median_lag_days", sa.Float(), nullable=True))
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        for name in FEATURE_COLUMNS:
            kind: sa.types.TypeEngine[Any] = (
                sa.String(length=12) if name == "tone_source" else sa.Float())
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account_features", schema=None) as batch_op:
        for name in reversed(FEATURE_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("ingest_runs", schema=None) as batch_op:
        batch_op.drop_column("median_lag_days")
        batch_op.drop_column("backfill_reason")
        batch_op.drop_column("backfill")
