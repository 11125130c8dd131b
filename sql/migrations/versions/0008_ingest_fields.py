"""ingest fields: optional values cleared instead of rows dropped

Quarantine entries get a kind ("row" or "field_cleared"), the key of the landed row a cleared
field belongs to, and the value at fault; ingest runs count the fields they cleared.

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="row",
                                      nullable=False))
        batch_op.add_column(sa.Column("row_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("value", sa.Text(), nullable=True))
        batch_op.create_index("ix_quarantine_code_status", ["code", "status"], unique=False)
        batch_op.create_index("ix_quarantine_source_row_key", ["source", "row_key"],
                              unique=False)
    with op.batch_alter_table("ingest_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fields_cleared", sa.Integer(), server_default="0",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("ingest_runs", schema=None) as batch_op:
        batch_op.drop_column("fields_cleared")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_source_row_key")
        batch_op.drop_index("ix_quarantine_code_status")
        batch_op.drop_column("value")
        batch_op.drop_column("row_key")
        batch_op.drop_column("kind")
