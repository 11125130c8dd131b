"""foundation: contract entities, quarantine, ingest runs

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 11:40:12.305775
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pulse.sql.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('mrr', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('plan', sa.String(length=64), nullable=True),
    sa.Column('segment', sa.String(length=64), nullable=True),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('csm_email', sa.String(length=254), nullable=True),
    sa.Column('domain', sa.String(length=253), nullable=True),
    sa.Column('x_handle', sa.String(length=15), nullable=True),
    sa.Column('seats', sa.Integer(), nullable=True),
    sa.Column('created_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('renewal_date', sa.Date(), nullable=True),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_accounts'))
    )
    op.create_table('incidents',
    sa.Column('incident_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('started_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('impact', sa.String(length=16), nullable=True),
    sa.Column('resolved_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('components', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('regions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('incident_id', name=op.f('pk_incidents'))
    )
    op.create_table('ingest_runs',
    sa.Column('run_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('file', sa.Text(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=True),
    sa.Column('started_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('read', sa.Integer(), nullable=False),
    sa.Column('inserted', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('quarantined', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_ingest_runs'))
    )
    with op.batch_alter_table('ingest_runs', schema=None) as batch_op:
        batch_op.create_index('ix_ingest_runs_source_started', ['source', 'started_at'], unique=False)

    op.create_table('quarantine',
    sa.Column('quarantine_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('file', sa.Text(), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('row_hash', sa.String(length=64), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=True),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolved_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_run_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('quarantine_id', name=op.f('pk_quarantine')),
    sa.UniqueConstraint('source', 'row_hash', name='uq_quarantine_source_row_hash')
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_run_id'), ['run_id'], unique=False)
        batch_op.create_index('ix_quarantine_source_status', ['source', 'status'], unique=False)

    op.create_table('contacts',
    sa.Column('contact_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=100), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('locale', sa.String(length=35), nullable=True),
    sa.Column('x_handle', sa.String(length=15), nullable=True),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_contacts_account_id_accounts')),
    sa.PrimaryKeyConstraint('contact_id', name=op.f('pk_contacts'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_account_id'), ['account_id'], unique=False)

    op.create_table('mentions',
    sa.Column('mention_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('author_handle', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('author_id', sa.String(length=64), nullable=True),
    sa.Column('lang', sa.String(length=16), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('in_reply_to_id', sa.String(length=64), nullable=True),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_mentions_account_id_accounts')),
    sa.PrimaryKeyConstraint('mention_id', name=op.f('pk_mentions'))
    )
    with op.batch_alter_table('mentions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mentions_author_handle'), ['author_handle'], unique=False)
        batch_op.create_index(batch_op.f('ix_mentions_created_at'), ['created_at'], unique=False)

    op.create_table('purchase_events',
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('plan', sa.String(length=64), nullable=True),
    sa.Column('mrr_after', sa.Numeric(precision=18, scale=4), nullable=True),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_purchase_events_account_id_accounts')),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_purchase_events'))
    )
    with op.batch_alter_table('purchase_events', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_events_account_time', ['account_id', 'occurred_at'], unique=False)

    op.create_table('tickets',
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('opened_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('contact_id', sa.String(length=64), nullable=True),
    sa.Column('resolved_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_tickets_account_id_accounts')),
    sa.PrimaryKeyConstraint('ticket_id', name=op.f('pk_tickets'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_account_time', ['account_id', 'opened_at'], unique=False)

    op.create_table('usage_events',
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('feature', sa.String(length=100), nullable=False),
    sa.Column('contact_id', sa.String(length=64), nullable=True),
    sa.Column('component', sa.String(length=100), nullable=True),
    sa.Column('region', sa.String(length=64), nullable=True),
    sa.Column('quantity', sa.Float(), nullable=False),
    sa.Column('outcome', sa.String(length=8), nullable=False),
    sa.Column('landed_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', pulse.sql.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_usage_events_account_id_accounts')),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_usage_events'))
    )
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.create_index('ix_usage_events_account_time', ['account_id', 'occurred_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_events_account_time')

    op.drop_table('usage_events')
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_account_time')

    op.drop_table('tickets')
    with op.batch_alter_table('purchase_events', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_events_account_time')

    op.drop_table('purchase_events')
    with op.batch_alter_table('mentions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mentions_created_at'))
        batch_op.drop_index(batch_op.f('ix_mentions_author_handle'))

    op.drop_table('mentions')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_account_id'))

    op.drop_table('contacts')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantine_source_status')
        batch_op.drop_index(batch_op.f('ix_quarantine_run_id'))

    op.drop_table('quarantine')
    with op.batch_alter_table('ingest_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_ingest_runs_source_started')

    op.drop_table('ingest_runs')
    op.drop_table('incidents')
    op.drop_table('accounts')
