"""SQLAlchemy 2 table definitions of the warehouse.

Entity tables carry the contract's columns (see docs/contract.md) plus lineage:
`landed_at` (when Pulse first learned of the row), `updated_at` (when it last changed) and
`run_id` (the ingest run that last changed it). Features computed "as of" a date read only
rows whose `landed_at` and event time are on or before that date.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pulse.sql.limits import MONEY_PRECISION, MONEY_SCALE
from pulse.sql.types import JSONDoc, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(MONEY_PRECISION, MONEY_SCALE)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    if TYPE_CHECKING:
        # DeclarativeBase types `__table__` as any FromClause (a class may be mapped to a
        # join or subquery); every class here is mapped to a Table via `__tablename__`.
        __table__: ClassVar[Table]


class Lineage:
    landed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    run_id: Mapped[int | None] = mapped_column(Integer)


class Account(Lineage, Base):
    __tablename__ = "accounts"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mrr: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    plan: Mapped[str | None] = mapped_column(String(64))
    segment: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    csm_email: Mapped[str | None] = mapped_column(String(254))
    domain: Mapped[str | None] = mapped_column(String(253))
    x_handle: Mapped[str | None] = mapped_column(String(15))
    seats: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    renewal_date: Mapped[date | None] = mapped_column(Date)
    #: the account's own SLA (monthly uptime promised, percent): overrides its plan's
    sla_uptime_pct: Mapped[float | None] = mapped_column(Float)


class Contact(Lineage, Base):
    __tablename__ = "contacts"
    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    x_handle: Mapped[str | None] = mapped_column(String(15))
    opted_out: Mapped[bool] = mapped_column(Boolean)


class UsageEvent(Lineage, Base):
    __tablename__ = "usage_events"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    feature: Mapped[str] = mapped_column(String(100))
    contact_id: Mapped[str | None] = mapped_column(String(64))
    component: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(8))
    __table_args__ = (Index("ix_usage_events_account_time", "account_id", "occurred_at"),)


class UsageDaily(Base):
    """Usage rolled up per account, UTC day, feature, component and landing (issue 16).

    Kept up to date by every landing of usage (sql/rollups.py): the rows of each (account,
    day) a landing touched are recomputed from `usage_events` in the landing's transaction,
    so a row landed again or corrected is never counted twice. `landed_at` is the landing of
    the events summed (their own `landed_at`), so the point-in-time rule of the features
    (`known_by`) applies to a rollup row as to the events in it. `origin` is `events` (from
    `usage_events`) or `feed` (daily usage a customer aggregated in their own warehouse, the
    `usage_daily` source). `component` is '' where the events name none.
    """

    __tablename__ = "usage_daily"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    feature: Mapped[str] = mapped_column(String(100), primary_key=True)
    component: Mapped[str] = mapped_column(String(100), primary_key=True)
    landed_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    origin: Mapped[str] = mapped_column(String(8), primary_key=True)
    #: summed quantity, and the part of it whose outcome was an error
    events: Mapped[float] = mapped_column(Float)
    errors: Mapped[float] = mapped_column(Float)
    #: how many event rows were summed, and how many of them were errors (none for the feed)
    event_rows: Mapped[int | None] = mapped_column(Integer)
    error_rows: Mapped[int | None] = mapped_column(Integer)
    #: distinct contacts of the group (distinct users over several days: `usage_daily_users`)
    active_users: Mapped[int | None] = mapped_column(Integer)
    #: the first and last event time of the group (the start of the day for the feed)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageDailyUser(Base):
    """Usage per account, UTC day, contact and landing: the exact distinct active users of any
    window (summing daily counts would count a person once per day), and the champion."""

    __tablename__ = "usage_daily_users"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    landed_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    origin: Mapped[str] = mapped_column(String(8), primary_key=True)
    events: Mapped[float] = mapped_column(Float)
    #: how many event rows were summed (the feed: 1 per row)
    event_rows: Mapped[int] = mapped_column(Integer)
    #: the contact's last event time that day (the start of the day for the feed)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageDailyFeed(Lineage, Base):
    """Daily usage aggregated in the customer's own warehouse, as landed (`usage_daily`
    source); copied into `usage_daily` (origin `feed`) by the landing. `daily_id` is derived
    from (account_id, day, feature, component): the same group landed again updates it."""

    __tablename__ = "usage_daily_feed"
    daily_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    day: Mapped[date] = mapped_column(Date)
    feature: Mapped[str] = mapped_column(String(100))
    component: Mapped[str | None] = mapped_column(String(100))
    events: Mapped[float] = mapped_column(Float)
    errors: Mapped[float | None] = mapped_column(Float)
    active_users: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_usage_daily_feed_account_day", "account_id", "day"),)


class UsageDailyUserFeed(Lineage, Base):
    """Per-user daily usage aggregated in the customer's own warehouse (`usage_daily_users`
    source); copied into `usage_daily_users` (origin `feed`). `daily_id` is derived from
    (account_id, day, contact_id)."""

    __tablename__ = "usage_daily_users_feed"
    daily_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    day: Mapped[date] = mapped_column(Date)
    contact_id: Mapped[str] = mapped_column(String(64))
    events: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_usage_daily_users_feed_account_day", "account_id", "day"),)


class PurchaseEvent(Lineage, Base):
    __tablename__ = "purchase_events"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    plan: Mapped[str | None] = mapped_column(String(64))
    mrr_after: Mapped[Decimal | None] = mapped_column(Money)
    __table_args__ = (Index("ix_purchase_events_account_time", "account_id", "occurred_at"),)


class Ticket(Lineage, Base):
    __tablename__ = "tickets"
    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    contact_id: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    #: when the team's first answer reached the customer (issue 15)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_tickets_account_time", "account_id", "opened_at"),)


class Mention(Lineage, Base):
    __tablename__ = "mentions"
    mention_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    text: Mapped[str] = mapped_column(Text)
    author_handle: Mapped[str] = mapped_column(String(64), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    author_id: Mapped[str | None] = mapped_column(String(64))
    lang: Mapped[str | None] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(Text)
    in_reply_to_id: Mapped[str | None] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.account_id"))
    #: the thread's first post (issue 15)
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    #: the brand itself wrote the post
    from_brand: Mapped[bool | None] = mapped_column(Boolean)


class Incident(Lineage, Base):
    __tablename__ = "incidents"
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    impact: Mapped[str | None] = mapped_column(String(16))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    components: Mapped[Any] = mapped_column(JSONDoc)
    regions: Mapped[Any] = mapped_column(JSONDoc)
    #: the estimated resolution time, when the incident carries one
    eta: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IngestRun(Base):
    """One attempt to land one file (or one quarantine retry)."""

    __tablename__ = "ingest_runs"
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    file: Mapped[str] = mapped_column(Text)
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # running, ok, failed
    read: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    #: optional values cleared (the row landed without them); not part of read
    fields_cleared: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    #: a backfill: history loaded after the fact, whose rows count from when they happened
    #: (basis "auto", sql/features.py); `backfill_reason` is first, explicit or lag
    backfill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    backfill_reason: Mapped[str | None] = mapped_column(String(16))
    #: median days from when the run's new rows happened to when they landed
    median_lag_days: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_ingest_runs_source_started", "source", "started_at"),)


class QuarantineRow(Base):
    """An input row that did not fit the contract, kept verbatim with the reason.

    `kind` "row": the row was stopped. `kind` "field_cleared": the row landed (its key is
    `row_key`) without the optional field `field`, whose original value is `value`.
    """

    __tablename__ = "quarantine"
    quarantine_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(32))
    file: Mapped[str] = mapped_column(Text)
    row_number: Mapped[int] = mapped_column(Integer)
    raw: Mapped[str] = mapped_column(Text)
    #: sha256 of the raw text: the same bad row seen again is the same quarantine entry
    row_hash: Mapped[str] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    landed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # open, relanded
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_run_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="row", server_default="row")
    #: the key of the landed row a "field_cleared" entry belongs to
    row_key: Mapped[str | None] = mapped_column(String(64))
    #: the value at fault (the cleared value, or the unknown account id)
    value: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index("ix_quarantine_source_status", "source", "status"),
        Index("ix_quarantine_code_status", "code", "status"),
        Index("ix_quarantine_source_row_key", "source", "row_key"),
        UniqueConstraint("source", "row_hash", name="uq_quarantine_source_row_hash"),
    )


ENTITY_TABLES = {
    "accounts": Account.__table__,
    "contacts": Contact.__table__,
    "usage": UsageEvent.__table__,
    "purchases": PurchaseEvent.__table__,
    "tickets": Ticket.__table__,
    "mentions": Mention.__table__,
    "incidents": Incident.__table__,
    "usage_daily": UsageDailyFeed.__table__,
    "usage_daily_users": UsageDailyUserFeed.__table__,
}


# --------------------------------------------------------------------------- health (issue 3)


class AccountFeatures(Base):
    """One account's point-in-time features as of one date (see sql/features.py).

    Built only from rows whose event time and `landed_at` fall on or before the as-of date
    (`basis = 'known'`), or, for history loaded after the fact, whose event time does
    (`basis = 'occurred'`). Each source group carries its freshness: the latest event time of
    the account's rows (`*_last_at`) and of the whole source (`*_source_last_at`) as of the date.
    """

    __tablename__ = "account_features"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    basis: Mapped[str] = mapped_column(String(8))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    account_age_days: Mapped[int | None] = mapped_column(Integer)
    seats: Mapped[int | None] = mapped_column(Integer)
    # usage
    active_days_7d: Mapped[int] = mapped_column(Integer)
    active_days_28d: Mapped[int] = mapped_column(Integer)
    events_7d: Mapped[float] = mapped_column(Float)
    events_28d: Mapped[float] = mapped_column(Float)
    events_prev_28d: Mapped[float] = mapped_column(Float)
    usage_trend_28d_pct: Mapped[float | None] = mapped_column(Float)
    distinct_features_28d: Mapped[int] = mapped_column(Integer)
    active_users_28d: Mapped[int] = mapped_column(Integer)
    seat_utilisation_28d: Mapped[float | None] = mapped_column(Float)
    error_rate_28d: Mapped[float | None] = mapped_column(Float)
    days_since_last_use: Mapped[int | None] = mapped_column(Integer)
    usage_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    usage_source_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # billing
    mrr: Mapped[float | None] = mapped_column(Float)
    mrr_90d_ago: Mapped[float | None] = mapped_column(Float)
    mrr_change_90d_pct: Mapped[float | None] = mapped_column(Float)
    open_failed_payments: Mapped[int] = mapped_column(Integer)
    downgrades_90d: Mapped[int] = mapped_column(Integer)
    cancelled: Mapped[bool] = mapped_column(Boolean)
    days_to_renewal: Mapped[int | None] = mapped_column(Integer)
    billing_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    billing_source_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # support
    tickets_30d: Mapped[int] = mapped_column(Integer)
    tickets_90d: Mapped[int] = mapped_column(Integer)
    open_tickets: Mapped[int] = mapped_column(Integer)
    open_urgent_tickets: Mapped[int] = mapped_column(Integer)
    resolve_hours_median_90d: Mapped[float | None] = mapped_column(Float)
    resolve_hours_mean_90d: Mapped[float | None] = mapped_column(Float)
    days_since_last_ticket: Mapped[int | None] = mapped_column(Integer)
    support_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    support_source_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # social
    mentions_28d: Mapped[int] = mapped_column(Integer)
    negative_mentions_28d: Mapped[int] = mapped_column(Integer)
    negative_share_28d: Mapped[float | None] = mapped_column(Float)
    social_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    social_source_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # incidents: 0 until outage impact is scored (a later issue)
    incident_minutes_28d: Mapped[float] = mapped_column(Float)
    incidents_source_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # surveys (issue 5): the latest rating, CSAT (share of 4 and 5) and responses in 90 days
    csat_last: Mapped[float | None] = mapped_column(Float)
    csat_90d: Mapped[float | None] = mapped_column(Float)
    csat_responses_90d: Mapped[int | None] = mapped_column(Integer)
    surveys_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # issue 12: trends against the account's own past (ratios of daily rates; slope per week
    # relative to the mean week), seat use against its own peak, payments, renewal, tone
    events_7d_vs_28d: Mapped[float | None] = mapped_column(Float)
    events_28d_vs_90d: Mapped[float | None] = mapped_column(Float)
    events_slope_12w: Mapped[float | None] = mapped_column(Float)
    active_days_7d_vs_28d: Mapped[float | None] = mapped_column(Float)
    active_days_28d_vs_90d: Mapped[float | None] = mapped_column(Float)
    active_users_28d_vs_prev: Mapped[float | None] = mapped_column(Float)
    error_rate_28d_vs_90d: Mapped[float | None] = mapped_column(Float)
    active_users_peak_90d: Mapped[float | None] = mapped_column(Float)
    active_users_peak_180d: Mapped[float | None] = mapped_column(Float)
    seat_use_vs_peak_90d: Mapped[float | None] = mapped_column(Float)
    seat_use_vs_peak_180d: Mapped[float | None] = mapped_column(Float)
    failed_payments_90d: Mapped[float | None] = mapped_column(Float)
    recovered_payments_90d: Mapped[float | None] = mapped_column(Float)
    days_since_failed_payment: Mapped[float | None] = mapped_column(Float)
    billing_term_days: Mapped[float | None] = mapped_column(Float)
    is_annual: Mapped[float | None] = mapped_column(Float)
    days_to_renewal_est: Mapped[float | None] = mapped_column(Float)
    tickets_negative_share_90d: Mapped[float | None] = mapped_column(Float)
    mentions_negative_share_90d: Mapped[float | None] = mapped_column(Float)
    negative_texts_28d: Mapped[float | None] = mapped_column(Float)
    negative_texts_90d: Mapped[float | None] = mapped_column(Float)
    tone_scored_share_90d: Mapped[float | None] = mapped_column(Float)
    tone_source: Mapped[str | None] = mapped_column(String(12))
    champion_gone: Mapped[float | None] = mapped_column(Float)
    tenure_days: Mapped[float | None] = mapped_column(Float)
    # against the account's own long baseline (the days 28 to 179 back; migration 0016)
    events_28d_vs_180d: Mapped[float | None] = mapped_column(Float)
    active_days_28d_vs_180d: Mapped[float | None] = mapped_column(Float)
    error_rate_28d_minus_180d: Mapped[float | None] = mapped_column(Float)
    # first responses to its own tickets against what customers expect (issue 15; 0019)
    first_response_hours_median_90d: Mapped[float | None] = mapped_column(Float)
    first_response_late_share_90d: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_account_features_account_as_of", "account_id", "as_of"),)


class AccountHealth(Base):
    """One account's scorecard health as of one date (models/health.py)."""

    __tablename__ = "account_health"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scorecard: Mapped[str] = mapped_column(String(32))  # standard or onboarding
    scorecard_version: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)  # None: every measure skipped
    band: Mapped[str | None] = mapped_column(String(8))  # green, amber, red
    change_7d: Mapped[float | None] = mapped_column(Float)
    change_30d: Mapped[float | None] = mapped_column(Float)
    skipped: Mapped[Any] = mapped_column(JSONDoc)  # names of the measures left out
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_account_health_account_as_of", "account_id", "as_of"),)


class ScoringDate(Base):
    """A date being scored in shards, or published once every shard and the whole-book steps
    are done (dags/pulse_health.py). A date in state `scoring` is hidden from the risk list,
    the console and the account pages; a date scored in one process has no row and shows."""

    __tablename__ = "scoring_dates"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # scoring, published
    shards: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(250))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accounts: Mapped[int | None] = mapped_column(Integer)


class ScoringShard(Base):
    """One shard of a date scored in shards, recorded when its features, health and churn
    risk are written (models/sharded.py); the date is published once all its shards are."""

    __tablename__ = "scoring_shards"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    shards: Mapped[int] = mapped_column(Integer)
    accounts: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HealthMeasure(Base):
    """One measure of one account's health: the raw value, its points and its contribution.

    `contribution` is points x the measure's share of the weights used, so an account's
    contributions add up to its score; a skipped measure has no points and says why.
    """

    __tablename__ = "health_measures"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    measure: Mapped[str] = mapped_column(String(64), primary_key=True)
    feature: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    points: Mapped[float | None] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    contribution: Mapped[float | None] = mapped_column(Float)
    skipped: Mapped[str | None] = mapped_column(String(16))  # no_data or stale_source


class AccountFlag(Base):
    """A named warning on one account as of one date, with its evidence in words."""

    __tablename__ = "account_flags"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flag: Mapped[str] = mapped_column(String(32), primary_key=True)
    evidence: Mapped[str] = mapped_column(Text)
    details: Mapped[Any] = mapped_column(JSONDoc)  # the numbers behind the evidence
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_account_flags_flag_as_of", "flag", "as_of"),)


class ChurnScore(Base):
    """The churn model's risk for one account as of one date, with its top drivers."""

    __tablename__ = "churn_scores"
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)
    drivers: Mapped[Any] = mapped_column(JSONDoc)  # [{feature, value, direction, points, text}]
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelVersion(Base):
    """The model registry: every trained churn model, its window, metrics and status."""

    __tablename__ = "model_registry"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # churn
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime)
    train_start: Mapped[date] = mapped_column(Date)
    train_end: Mapped[date] = mapped_column(Date)
    valid_start: Mapped[date] = mapped_column(Date)
    valid_end: Mapped[date] = mapped_column(Date)
    horizon_days: Mapped[int] = mapped_column(Integer)
    features: Mapped[Any] = mapped_column(JSONDoc)
    metrics: Mapped[Any] = mapped_column(JSONDoc)  # validation window: roc_auc, pr_auc, ...
    artifact_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # champion, challenger, retired
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------- outreach (issue 4)


class IncidentUpdate(Base):
    """One update of an incident (Statuspage `incident_updates`): status and what was said."""

    __tablename__ = "incident_updates"
    update_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    landed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentImpact(Base):
    """How one incident touched one account (models/outage.py), recomputed as it updates.

    `hit`: error outcomes on an affected component (in an affected region, when the incident
    names regions) inside the incident's window; `exposed`: used an affected component there
    without errors. Counts are events (rows) and requests (the rows' quantities).
    """

    __tablename__ = "incident_impacts"
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(8))  # hit, exposed
    failed_events: Mapped[int] = mapped_column(Integer)
    total_events: Mapped[int] = mapped_column(Integer)
    failed_requests: Mapped[float] = mapped_column(Float)
    total_requests: Mapped[float] = mapped_column(Float)
    affected_users: Mapped[int] = mapped_column(Integer)
    components: Mapped[Any] = mapped_column(JSONDoc)  # affected components the account used
    regions: Mapped[Any] = mapped_column(JSONDoc)
    first_affected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_affected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_incident_impacts_account", "account_id"),)


class Suppression(Base):
    """An address no automated message may reach (bounce, spam report, unsubscribe, ...).

    Kept apart from `contacts.opted_out`, which a later contacts file may overwrite: nothing
    ingestion does ever clears a suppression.
    """

    __tablename__ = "suppressions"
    email: Mapped[str] = mapped_column(String(254), primary_key=True)  # lower-cased
    reason: Mapped[str] = mapped_column(String(16))  # bounce, spamreport, unsubscribe, dropped, manual
    source: Mapped[str] = mapped_column(String(32))  # webhook, link, cli
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """Every intended message, written before anything is sent (outreach/outbox.py).

    `status`: queued -> sending -> sent -> delivered | bounced; or suppressed (with `rule`),
    or failed. `sending` is claimed in its own transaction before the provider is called, so
    a crash leaves the row in doubt, never forgotten; the next run reconciles it with the
    provider before sending again.
    """

    __tablename__ = "outbox"
    message_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # outage_notice, checkin, csm_digest, ...
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    contact_id: Mapped[str | None] = mapped_column(String(64), index=True)
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    to_email: Mapped[str] = mapped_column(String(254), index=True)
    to_name: Mapped[str | None] = mapped_column(String(200))
    from_email: Mapped[str] = mapped_column(String(254))
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    context: Mapped[Any] = mapped_column(JSONDoc)  # what the template was rendered from
    urgent: Mapped[bool] = mapped_column(Boolean)  # passes the cap and quiet hours
    automated: Mapped[bool] = mapped_column(Boolean)  # counts towards the cap, can unsubscribe
    status: Mapped[str] = mapped_column(String(12))
    rule: Mapped[str | None] = mapped_column(String(32))  # what suppressed or deferred it
    rule_detail: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # quiet hours
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str | None] = mapped_column(String(16))  # sendgrid, file
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    # the claim: which send_due run holds the row and until when (wall clock, renewed before
    # every chunk); another run reconciles a `sending` row only once its lease ran out
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_outbox_status_not_before", "status", "not_before"),)


class DeliveryEvent(Base):
    """One SendGrid Event Webhook event, kept once (by `sg_event_id`)."""

    __tablename__ = "delivery_events"
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)  # sg_event_id
    message_id: Mapped[int | None] = mapped_column(Integer, index=True)  # outbox, from custom_args
    event: Mapped[str] = mapped_column(String(24))
    email: Mapped[str | None] = mapped_column(String(254))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[Any] = mapped_column(JSONDoc)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------- surveys (issue 5)


class Survey(Base):
    """One intended CSAT survey: sent through the outbox, or skipped with the rule why.

    `survey_key` makes each trigger survey once (`ticket:{ticket_id}`,
    `incident:{incident_id}:{contact_id}`, `relationship:{contact_id}:{period}`).
    """

    __tablename__ = "surveys"
    survey_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    survey_key: Mapped[str] = mapped_column(String(255), unique=True)
    trigger: Mapped[str] = mapped_column(String(16))  # ticket, incident, relationship
    ticket_id: Mapped[str | None] = mapped_column(String(64), index=True)
    incident_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    contact_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # email
    question: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))  # queued, skipped
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    skip_detail: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[int | None] = mapped_column(Integer)  # the outbox row


#: a CSAT rating of this or less is low: an alert to the CSM, a snoozed account woken, an
#: unhappy answer in the figures
LOW_RATING = 2


class SurveyResponse(Base):
    """The one response to a survey: the latest rating and comment, and when."""

    __tablename__ = "survey_responses"
    survey_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    contact_id: Mapped[str] = mapped_column(String(64))
    rating: Mapped[int] = mapped_column(Integer)  # 1..5
    comment: Mapped[str | None] = mapped_column(Text)
    first_rated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    commented_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rating_changes: Mapped[int] = mapped_column(Integer)
    landed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_survey_responses_account_rated", "account_id", "rated_at"),)


# --------------------------------------------------------------------------- social and feedback (issue 6)


class XWatermark(Base):
    """Per configured X search query: the newest tweet id fetched (`since_id` next time)."""

    __tablename__ = "x_watermarks"
    query: Mapped[str] = mapped_column(String(512), primary_key=True)
    since_id: Mapped[str | None] = mapped_column(String(32))
    fetched: Mapped[int] = mapped_column(Integer)  # tweets fetched in all, over every run
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class TextInsight(Base):
    """What Pulse understood of one piece of customer text (a mention, a ticket, a survey
    comment): sentiment, feedback kind, and where it was routed, each with its confidence."""

    __tablename__ = "text_insights"
    item_type: Mapped[str] = mapped_column(String(16), primary_key=True)  # mention, ticket, comment
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # of the item
    text: Mapped[str] = mapped_column(Text)
    sentiment: Mapped[str] = mapped_column(String(8))  # negative, neutral, positive
    sentiment_score: Mapped[float] = mapped_column(Float)  # probability of the label
    # user-model or seed-model (the sentiment model read it), lexicon or other-language
    sentiment_method: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # bug, feature_request, complaint, praise, question
    kind_confidence: Mapped[float] = mapped_column(Float)
    team: Mapped[str] = mapped_column(String(64))  # a taxonomy team, or "triage"
    component: Mapped[str | None] = mapped_column(String(64))
    route_confidence: Mapped[float] = mapped_column(Float)
    route_method: Mapped[str] = mapped_column(String(16))  # classifier or keywords
    theme_key: Mapped[str | None] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: evidence that a social post is about the product (models/relevance.py); None: not judged
    relevance: Mapped[float | None] = mapped_column(Float)
    #: why the item is not feedback: "off_topic" or "brand"; None: it is feedback
    dropped: Mapped[str | None] = mapped_column(String(16))
    __table_args__ = (Index("ix_text_insights_team_created", "team", "created_at"),)


class SuspectedIncident(Base):
    """A spike of negative chatter about a component with no open incident (or attached to
    the open one), per 15-minute bucket."""

    __tablename__ = "suspected_incidents"
    suspect_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    component: Mapped[str] = mapped_column(String(64))
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    negative_mentions: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)  # robust z-score of the bucket
    status: Mapped[str] = mapped_column(String(12))  # suspected, attached
    incident_id: Mapped[str | None] = mapped_column(String(64))
    sample_mention_ids: Mapped[Any] = mapped_column(JSONDoc)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("component", "bucket_start",
                                       name="uq_suspected_incidents_component_bucket"),)


class RateLimit(Base):
    """The web app's shared rate limiter (web/guard.py): per limited group and client, the
    theoretical arrival time (GCRA, unix seconds) of its next request. A row whose `tat` is
    past means the same as no row, so old rows may be deleted at any time."""

    __tablename__ = "rate_limits"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # "group client"
    tat: Mapped[float] = mapped_column(Float(53))


class SocialPost(Base):
    """One post Pulse means to publish on X (outreach/x_posts.py): planned once per key,
    claimed by one run, posted at most once. `status`: queued, posting (claimed: the outcome
    of a run that stopped here is unknown, so it is never posted again by itself), posted,
    failed (X refused it); a reply to a complaint (outreach/x_replies.py) starts as a draft
    and is queued once approved, or discarded."""

    __tablename__ = "social_posts"
    post_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_key: Mapped[str] = mapped_column(String(200), unique=True)
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    tweet_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: a reply's complaint: the tweet id it answers (`reply.in_reply_to_tweet_id`)
    in_reply_to_id: Mapped[str | None] = mapped_column(String(64), index=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------- console (issue 14)


class ConsoleUser(Base):
    """Someone who may sign in to the CSM console (`pulse user add`): an argon2 password hash,
    or none for a user who signs in only through the SSO proxy's trusted header. `role`:
    admin, csm or viewer (a viewer reads, never acts). A disabled user cannot sign in."""

    __tablename__ = "console_users"
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-cased
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2id, PHC string
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsoleSession(Base):
    """A signed-in browser: the SHA-256 of its session id (the cookie holds the id, the
    warehouse only its hash), its CSRF token (synchronizer token), when it was last seen
    (idle expiry) and when it began (absolute expiry). Signing out deletes the row."""

    __tablename__ = "console_sessions"
    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("console_users.user_id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(8))  # password, header
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    address: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """Who did what, when and why (sql/audit.py): sign-ins and sign-outs, failed sign-ins,
    users added or disabled, and every action a console page takes."""

    __tablename__ = "audit_log"
    audit_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(254), index=True)  # a user's email, or cli:NAME
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(254), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[Any | None] = mapped_column(JSONDoc)  # what changed, in a few fields
    address: Mapped[str | None] = mapped_column(String(64))  # the client's address


class AccountSnooze(Base):
    """An account a CSM snoozed: it leaves the default risk list until `until`, or until
    something new happens (a flag it did not have on `as_of`, health 10 points under
    `health`, a low rating after `at`). One row per account, the latest snooze;
    `account_activity` keeps the history."""

    __tablename__ = "account_snoozes"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[date] = mapped_column(Date)
    as_of: Mapped[date | None] = mapped_column(Date)  # the latest scored date when snoozed
    health: Mapped[float | None] = mapped_column(Float)  # its health then
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccountActivity(Base):
    """What a CSM did about an account from the console: a call, a meeting or a note logged,
    marked handled, snoozed. The risk list shows the latest as "last touched"."""

    __tablename__ = "account_activity"
    activity_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # call, meeting, note, handled, snooze
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_account_activity_account", "account_id", "activity_id"),)


class PlaybookTask(Base):
    """A task a playbook rule created (models/playbooks.py): one per account, rule and
    episode (the rule holding on consecutive scored dates of the account). `episode_start`
    and `last_seen` are the first and latest scored dates of the episode. Its state is open,
    done (with an outcome) or skipped (with a reason); the account's health and churn
    probability are kept as they were when the task was created and when it was closed, so
    plays can be measured later (`models.playbooks.later_outcomes`)."""

    __tablename__ = "playbook_tasks"
    __table_args__ = (UniqueConstraint("rule", "account_id", "episode_start",
                                       name="uq_playbook_tasks_episode"),
                      Index("ix_playbook_tasks_owner_state", "owner", "state"))
    task_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    episode_start: Mapped[date] = mapped_column(Date)
    last_seen: Mapped[date] = mapped_column(Date)
    title: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(254))  # the CSM's email, or queue:NAME
    due_date: Mapped[date] = mapped_column(Date)
    steps: Mapped[Any] = mapped_column(JSONDoc)  # [text, ...]
    state: Mapped[str] = mapped_column(String(8))  # open, done, skipped
    outcome: Mapped[str | None] = mapped_column(Text)  # done: what happened
    skip_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(254))
    health_at_open: Mapped[float | None] = mapped_column(Float)
    churn_at_open: Mapped[float | None] = mapped_column(Float)
    health_at_close: Mapped[float | None] = mapped_column(Float)
    churn_at_close: Mapped[float | None] = mapped_column(Float)
