"""Point-in-time features of every account as of a date, in a handful of set-based queries.

`compute_features(engine, as_of)` writes one row per account into `account_features`, keyed
(as_of, account_id), with one `INSERT ... SELECT` built from grouped aggregates (usage from
the daily rollups of sql/rollups.py, one pass over each other source); no Python touches
individual rows.
Re-running a date deletes that date's rows and inserts them again in the same transaction;
other dates are never touched. The SQL of each source lives in sql/feature_sources.py; this
module holds the catalogue, the assembled SELECT and the storage.

Point in time
-------------
"As of D" means: rows whose event time is before the end of D (UTC) and which were *known*
by then under the basis:

- `known`: the row had also landed by then (`landed_at`). A row that arrives later never
  changes D's features, so a re-run of a past date gives the answer Pulse would have given
  that day. On a warehouse loaded today with a year of history, a past date sees nothing.
- `occurred`: the landing condition is dropped; history is reconstructed from event times.
- `auto` (the default, `DEFAULT_BASIS`; resolved by `resolve_basis`, the one function the
  scoring and training commands take their basis from): rows landed by a *backfill* count
  from when they happened, every other row from when it landed. An ingest run is a backfill
  (`ingest_runs.backfill`, listeners/landing.py) when it was asked to be (`pulse ingest
  --backfill`), when it is the first run of its source that landed rows, or when the rows it
  landed first happened a median of more than `backfill_lag_days` (default 3) before they
  landed, over a span of more than that many days (history, not a few late rows). A row
  belongs to the run of its source that first landed it: its `landed_at` is that run's
  `started_at`, and later updates keep it (`known_by`). So a year of history imported today
  scores a past date from when its rows happened, while a late row in a later daily landing
  counts only from when it landed, and never changes a past date's features (leak-free).
  Rows that reach the warehouse other than through an ingest run (mentions from the X
  listener, incidents from Statuspage, survey answers) count from when they landed.
  `basis_report` says how many rows counted as backfill for a date; the features rows store
  their basis. A date with no account to score, or with accounts but no row of any source
  they are scored from (usage, billing, support, social, incidents), raises
  `NothingToScoreError` with the reason.

Usage is read from the daily rollups (`usage_daily`, `usage_daily_users`; sql/rollups.py,
docs/usage-rollups.md), whose rows keep the landing (`landed_at`) of the events they sum, so
each basis applies to a rollup row exactly as to its events; their windows are whole UTC days,
as the event windows are.

An account is scored as of D when Pulse knew it by then (`landed_at`) and it had been created
(`created_at`, when given). With `basis="occurred"`: when it had been created (or, without a
`created_at`, had landed or had a usage or purchase event by then). With `basis="auto"`: when
it had been created (when given) and it was known by then under the auto rule or had a usage
or purchase event that was; an account landed in a backfill without a `created_at` counts from
its first usage or purchase event (the backfill has no other time for it).

What the warehouse cannot give point in time: account attributes (seats, renewal date, the
fallback MRR, plan, x_handle) and a ticket's status are stored in their latest state. Seats,
the renewal date and the fallback MRR describe the warehouse's latest day of activity (usage,
billing or support, of any account, among the rows the basis counts for D:
`latest_activity_day`, so a row landed later in a daily landing never changes D), and count
on D only from the day before it on (the daily run scores yesterday). On an earlier D they
are unknown for every account (`seats`, `seat_utilisation_28d`, `days_to_renewal` empty;
`mrr` and `mrr_90d_ago` only from billing events that carry `mrr_after`): a history imported
in one go would otherwise show a cancelled account's MRR of 0, or today's seats, on the
dates before. The plan and x_handle are read as stored. Ticket resolution is read from
`resolved_at` (an event time), or, for a ticket closed without one, from when Pulse learned of
the change (`updated_at`). A ticket's first response is read from `first_response_at` (an
event time): answered after D, it was unanswered on D. A text's sentiment is read from `text_insights` whenever the model
classified it: the model's reading of a text that was known by the date.

Windows
-------
"Last N days" are the N calendar days (UTC) ending with D, D included: [D-N+1, D].

Trends against the account's own past (issue 12) compare rates per day: events_7d_vs_28d is
the last 7 days against the weekly mean of the last 28 (1 = steady), events_28d_vs_90d the
last 28 against the 28-day mean of the last 90; events_slope_12w is the least-squares slope
of weekly event totals over the 12 weeks counted back from D (a week without usage counts 0),
divided by the mean week. Seat use compares the active users of the last 28 days with the
account's own peak over 28-day blocks counted back from D (3 blocks, 84 days; 6, 168 days),
since the stored `seats` is only the current value. The billing term is the days between the
latest two `subscription_started`/`renewed` events (365 when a single start saw no renewal in
over 62 days); the next renewal is the latest of them plus whole terms. An account without
any billing term (an annual contract whose last renewal came before the billing history) is
due on the next anniversary of its creation. The champion is the
contact with the most usage in the 60 days before the last 28 (active on 3 or more of them);
gone when it has no usage in the last 28. Tenure counts from created_at or the first usage or
purchase known by D, whichever is earlier.

Social mentions belong to an account by their `account_id`, or, without one, when the
author's handle is the account's or one of its contacts' `x_handle`. Negative means: the text
contains a term of the lexicon passed in as `negative_terms` (callers pass the one in
models/negative_words.py, until the sentiment model).
First responses (issue 15): of the account's tickets opened in the last 90 days, the median
hours to the first response of those answered by D, and the share of those due (answered on
time, or whose channel's expectation in models/responses.yaml had passed by the end of D)
that were late: answered after the expectation or not answered by then. Where the ticket feed
records no first responses (on a channel, before its first ticket with one), an unanswered
ticket is no evidence either way and is left out, so such a warehouse gives no value rather
than a penalty. The expectations are configuration, read as they are today.
Incident minutes: for each incident that hit the account (`incident_impacts`, models/outage.py:
errors on an affected component inside the incident's window), the minutes of the incident's
window that fall in the last 28 days, summed over incidents; with `basis="known"`, only
incidents that had landed by then. Impacts are computed by `pulse outage refresh` (the outage
DAG); an incident whose impact was never computed counts 0.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from sqlalchemy import (
    Date,
    Engine,
    Float,
    FromClause,
    Integer,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)

from pulse.core.errors import InvalidArgumentError, NothingToScoreError
from pulse.sql.feature_sources import (
    LONG_BASELINE_DAYS,
    _billing,
    _champion,
    _first_response,
    _had_usage,
    _incident_minutes,
    _payments,
    _social,
    _source_last,
    _support,
    _surveys,
    _terms,
    _tone,
    _usage,
    _usage_source_last,
    _usage_trends,
    _user_blocks,
    _Window,
    backfill_landings,
    date_day,
    latest_activity_day,
    utc_day,
)
from pulse.sql.feature_sources import (
    known_by as known_by,  # the row rule of each basis, for models/training.py
)
from pulse.sql.schema import (
    Account,
    AccountFeatures,
    Incident,
    IngestRun,
    Mention,
    PurchaseEvent,
    Ticket,
    UsageDaily,
)
from pulse.sql.shards import Shard, shard_of
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

Basis = Literal["auto", "known", "occurred"]
BASES: tuple[str, ...] = ("auto", "known", "occurred")
#: the default of `pulse score`, `pulse churn score`, `pulse model train`, the DAGs and the demo
DEFAULT_BASIS: Basis = "auto"
#: where the usage features come from: the daily rollups (the product), or the raw events (the
#: SQL before the rollups, sql/usage_event_features.py: for comparison)
UsageSource = Literal["rollups", "events"]
USAGE_SOURCES: tuple[str, ...] = ("rollups", "events")

FEATURES_TABLE = AccountFeatures.__table__


@dataclass(frozen=True)
class Feature:
    name: str
    source: str  # account, usage, billing, support, social, incidents
    description: str


def _f(name: str, source: str, description: str) -> tuple[str, Feature]:
    return name, Feature(name, source, description)


#: Every feature a scorecard may use, with the source whose freshness it depends on.
FEATURES: dict[str, Feature] = dict([
    _f("account_age_days", "account", "days since the account was created (created_at)"),
    _f("seats", "account", "seats on the account (its current value)"),
    _f("active_days_7d", "usage", "days with any usage in the last 7 days"),
    _f("active_days_28d", "usage", "days with any usage in the last 28 days"),
    _f("events_7d", "usage", "usage events in the last 7 days (sum of quantity)"),
    _f("events_28d", "usage", "usage events in the last 28 days (sum of quantity)"),
    _f("events_prev_28d", "usage", "usage events in the 28 days before the last 28"),
    _f("usage_trend_28d_pct", "usage",
       "change of events, last 28 days against the 28 before, in percent "
       "(none when there were no events before)"),
    _f("distinct_features_28d", "usage", "distinct product features used in the last 28 days"),
    _f("active_users_28d", "usage", "distinct contacts with usage in the last 28 days"),
    _f("seat_utilisation_28d", "usage", "active users in the last 28 days per seat"),
    _f("error_rate_28d", "usage", "share of the last 28 days' events with outcome error"),
    _f("days_since_last_use", "usage", "days since the latest usage event"),
    _f("mrr", "billing", "MRR: the latest mrr_after of a billing event, else the account's mrr"),
    _f("mrr_90d_ago", "billing", "MRR before the last 90 days"),
    _f("mrr_change_90d_pct", "billing", "change of MRR over the last 90 days, in percent"),
    _f("open_failed_payments", "billing",
       "failed payments with no successful payment after them"),
    _f("downgrades_90d", "billing", "downgrades in the last 90 days"),
    _f("cancelled", "billing", "the latest cancellation is not followed by a new subscription"),
    _f("days_to_renewal", "billing", "days from the as-of date to the renewal date"),
    _f("tickets_30d", "support", "tickets opened in the last 30 days"),
    _f("tickets_90d", "support", "tickets opened in the last 90 days"),
    _f("open_tickets", "support", "tickets not resolved by the end of the as-of date"),
    _f("open_urgent_tickets", "support", "urgent tickets not resolved by then"),
    _f("resolve_hours_median_90d", "support",
       "median hours from opening to resolution, tickets resolved in the last 90 days"),
    _f("resolve_hours_mean_90d", "support", "mean of the same"),
    _f("days_since_last_ticket", "support", "days since the latest ticket was opened"),
    _f("mentions_28d", "social", "social mentions by the account or its people, last 28 days"),
    _f("negative_mentions_28d", "social",
       "of those, negative ones (models/negative_words.py, until the sentiment model)"),
    _f("negative_share_28d", "social", "negative mentions per mention, last 28 days"),
    _f("incident_minutes_28d", "incidents",
       "minutes of incidents that hit the account (errors on an affected component), "
       "last 28 days"),
    _f("csat_last", "surveys", "the latest CSAT rating (1..5) of any of its contacts"),
    _f("csat_90d", "surveys",
       "CSAT: share of ratings of 4 or 5 among its survey responses, last 90 days"),
    _f("csat_responses_90d", "surveys", "survey responses, last 90 days"),
    # issue 12: against the account's own past, all point in time
    _f("events_7d_vs_28d", "usage",
       "events in the last 7 days per the weekly mean of the last 28 (1 = steady)"),
    _f("events_28d_vs_90d", "usage",
       "events in the last 28 days per the 28-day mean of the last 90 (1 = steady)"),
    _f("events_slope_12w", "usage",
       "least-squares slope of weekly events over the last 12 weeks, per mean week "
       "(-0.05: down 5% of a usual week each week)"),
    _f("active_days_7d_vs_28d", "usage", "active days, last 7 days per the weekly mean of 28"),
    _f("active_days_28d_vs_90d", "usage",
       "active days, last 28 days per the 28-day mean of the last 90"),
    _f("active_users_28d_vs_prev", "usage",
       "active users in the last 28 days per those of the 28 days before"),
    _f("error_rate_28d_vs_90d", "usage", "error rate of the last 28 days per that of 90"),
    _f("active_users_peak_90d", "usage",
       "the account's peak of active users in a 28-day block, last 84 days (3 blocks)"),
    _f("active_users_peak_180d", "usage", "the same, last 168 days (6 blocks)"),
    _f("seat_use_vs_peak_90d", "usage",
       "active users in the last 28 days per its own peak of the last 84 days (seat use)"),
    _f("seat_use_vs_peak_180d", "usage", "the same against the peak of the last 168 days"),
    _f("failed_payments_90d", "billing", "payments failed in the last 90 days"),
    _f("recovered_payments_90d", "billing",
       "of those, the ones a later successful payment (by the as-of date) recovered"),
    _f("days_since_failed_payment", "billing", "days since the latest failed payment"),
    _f("billing_term_days", "billing",
       "the billing term: days between the last two starts or renewals, else between the "
       "last two successful payments (365 when a start, or a single payment, saw neither in "
       "over 62 days)"),
    _f("is_annual", "billing", "1 when the billing term is 180 days or more, else 0"),
    _f("days_to_renewal_est", "billing",
       "days to the next renewal: the latest start or renewal (or, for a term read from "
       "payments, the latest successful payment) plus whole billing terms; without any "
       "billing term, the next anniversary of the account's creation (an annual contract "
       "whose renewal falls outside the billing history)"),
    _f("tickets_negative_share_90d", "support",
       "negative tickets per ticket, last 90 days (sentiment model in text_insights; the "
       "lexicon for a ticket it has not scored)"),
    _f("mentions_negative_share_90d", "social", "the same for its mentions"),
    _f("negative_texts_28d", "support", "negative tickets and mentions, last 28 days"),
    _f("negative_texts_90d", "support", "negative tickets and mentions, last 90 days"),
    _f("tone_scored_share_90d", "support",
       "share of those texts the sentiment model scored (the rest: the lexicon)"),
    _f("champion_gone", "usage",
       "1 when the contact with most usage in the 60 days before the last 28 (active on 3 "
       "or more of them) has no usage in the last 28; 0 when active; none without one"),
    _f("tenure_days", "account",
       "days since the account was created or, if earlier or without created_at, its first "
       "known usage or purchase"),
    # against the account's own long baseline: the days 28 to 179 back
    _f("events_28d_vs_180d", "usage",
       "events a day in the last 28 days per events a day in its own baseline (the days 28 "
       "to 179 back, from its first usage in them; none with under 28 baseline days)"),
    _f("active_days_28d_vs_180d", "usage", "the same for active days"),
    _f("error_rate_28d_minus_180d", "usage",
       "error share of the last 28 days' events minus that of its baseline"),
    # issue 15: first responses to its own tickets against what customers expect
    _f("first_response_hours_median_90d", "support",
       "median hours to the first response, its tickets opened in the last 90 days and "
       "answered by the as-of date (none without first_response_at)"),
    _f("first_response_late_share_90d", "support",
       "share of its tickets of the last 90 days answered later than customers expect on "
       "their channel (models/responses.yaml), or still unanswered past it, among those due; "
       "none where the feed records no first responses"),
])

#: The freshness columns of each source: (the account's latest event, the source's latest).
FRESHNESS: dict[str, tuple[str | None, str]] = {
    "usage": ("usage_last_at", "usage_source_last_at"),
    "billing": ("billing_last_at", "billing_source_last_at"),
    "support": ("support_last_at", "support_source_last_at"),
    "social": ("social_last_at", "social_source_last_at"),
    "incidents": (None, "incidents_source_last_at"),
}


def _ratio(num: Any, den: Any) -> Any:
    """num / den as a float, none when den is not positive."""
    return case((den > 0, cast(num, Float) / cast(den, Float)))


def _issue12_columns(w: _Window, a: Any, usage: Any, usage_last: Any, billing: Any,
                     trends: Any, peaks: Any, champion: Any, payments: Any, terms: Any,
                     tone: Any) -> dict[str, Any]:
    """Trends against the account's own past, seat use against its own peak, payment
    failures and recovery, the billing term and next renewal, support tone, the champion and
    tenure (issue 12); every one from rows known by the as-of date."""

    def n(col: Any) -> Any:
        return func.coalesce(col, 0)

    events_7d, events_28d = n(usage.c.events_7d), n(usage.c.events_28d)
    events_90d = n(trends.c.events_90d)
    errors_28d, errors_90d = n(usage.c.errors_28d), n(trends.c.errors_90d)
    days_7d, days_28d = n(usage.c.active_days_7d), n(usage.c.active_days_28d)
    users_28d = n(usage.c.active_users_28d)
    error_rate_28d = _ratio(errors_28d, events_28d)
    error_rate_90d = _ratio(errors_90d, events_90d)
    mean_week = n(trends.c.events_84d) / 12.0
    # the baseline days the account was there for: from its oldest usage day in the window
    # (at most the 152 days 28 to 179 back)
    base_span = LONG_BASELINE_DAYS - 28
    base_days = case((trends.c.oldest_back - 27 > base_span, literal(base_span, Integer)),
                     else_=trends.c.oldest_back - 27)
    long_enough = base_days >= 28  # under 28 baseline days: none to compare with
    # the billing term: the days between the last two starts or renewals; with one start
    # only and no renewal in over two months, an annual plan (a monthly one renews monthly)
    # (renewals first; else the cadence of successful payments, for plans that renew by
    # paying; a start or a single payment (history that begins mid-term) with neither a
    # renewal nor a payment in over two months: annual)
    since_start = w.day - terms.c.last_term_day
    since_pay = w.day - terms.c.last_pay_day
    from_payments = and_(or_(terms.c.gap.is_(None), terms.c.gap < 7), terms.c.pay_gap >= 7)
    term = case((terms.c.gap >= 7, terms.c.gap),
                (from_payments, terms.c.pay_gap),
                (and_(or_(terms.c.last_term_day.is_not(None),
                          terms.c.last_pay_day.is_not(None)),
                      or_(terms.c.last_term_day.is_(None), since_start > 62),
                      or_(terms.c.last_pay_day.is_(None), since_pay > 62)),
                 literal(365, Integer)))
    since_term = case((from_payments, since_pay),
                      (terms.c.last_term_day.is_(None), since_pay), else_=since_start)
    tickets, mentions = n(tone.c.tickets), n(tone.c.mentions)
    scored, texts = n(tone.c.model_scored), n(tone.c.texts)
    first_day = case(
        (and_(usage_last.c.first_at.is_not(None),
              or_(billing.c.first_at.is_(None), usage_last.c.first_at <= billing.c.first_at)),
         utc_day(usage_last.c.first_at)),
        else_=utc_day(billing.c.first_at))
    created_day = utc_day(a.c.created_at)
    start_day = case((and_(a.c.created_at.is_not(None),
                           or_(first_day.is_(None), created_day <= first_day)), created_day),
                     else_=first_day)
    return {
        "events_7d_vs_28d": _ratio(events_7d, events_28d / 4.0),
        "events_28d_vs_90d": _ratio(events_28d, events_90d * 28.0 / 90.0),
        "events_slope_12w": case((mean_week > 0, n(trends.c.slope_num) / 143.0 / mean_week)),
        "active_days_7d_vs_28d": _ratio(days_7d, days_28d / 4.0),
        "active_days_28d_vs_90d": _ratio(days_28d, n(trends.c.active_days_90d) * 28.0 / 90.0),
        "active_users_28d_vs_prev": _ratio(users_28d, peaks.c.users_prev_28d),
        "error_rate_28d_vs_90d": case((error_rate_90d > 0, error_rate_28d / error_rate_90d)),
        "active_users_peak_90d": cast(n(peaks.c.peak_84d), Float),
        "active_users_peak_180d": cast(n(peaks.c.peak_168d), Float),
        "seat_use_vs_peak_90d": _ratio(users_28d, peaks.c.peak_84d),
        "seat_use_vs_peak_180d": _ratio(users_28d, peaks.c.peak_168d),
        "failed_payments_90d": cast(n(payments.c.failed_90d), Float),
        "recovered_payments_90d": cast(n(payments.c.recovered_90d), Float),
        "days_since_failed_payment": cast(w.day - utc_day(payments.c.last_failed), Float),
        "billing_term_days": cast(term, Float),
        "is_annual": case((term.is_(None), None), (term >= 180, 1.0), else_=0.0),
        # without any billing evidence of a term, an annual contract's anniversary: a year
        # from the account's creation, and every year after (a renewal lands on it)
        "days_to_renewal_est": case(
            (term.is_not(None), cast(term - since_term % term, Float)),
            (and_(a.c.created_at.is_not(None), created_day <= w.day),
             cast(365 - (w.day - created_day) % 365, Float))),
        "events_28d_vs_180d": case((long_enough, _ratio(
            events_28d, n(trends.c.events_base) * 28.0 / base_days))),
        "active_days_28d_vs_180d": case((long_enough, _ratio(
            days_28d, n(trends.c.active_days_base) * 28.0 / base_days))),
        "error_rate_28d_minus_180d": case((long_enough, error_rate_28d - _ratio(
            n(trends.c.errors_base), trends.c.events_base))),
        "tickets_negative_share_90d": _ratio(n(tone.c.tickets_negative), tickets),
        "mentions_negative_share_90d": _ratio(n(tone.c.mentions_negative), mentions),
        "negative_texts_28d": cast(n(tone.c.negative_28d), Float),
        "negative_texts_90d": cast(n(tone.c.negative_90d), Float),
        "tone_scored_share_90d": _ratio(scored, texts),
        "tone_source": case((texts == 0, None), (scored == texts, "model"),
                            (scored == 0, "lexicon"), else_="mixed"),
        "champion_gone": champion.c.gone,
        "tenure_days": cast(w.day - start_day, Float),
    }


def features_select(as_of: date, *, basis: Basis = DEFAULT_BASIS,
                    negative_terms: Sequence[str],
                    computed_at: datetime | None = None,
                    expectations: Mapping[str, float] | None = None,
                    shard: Shard | None = None, usage_source: UsageSource = "rollups") -> Any:
    """The SELECT that yields the `account_features` rows of `as_of`, columns in table order.

    `negative_terms` is the lexicon of a negative mention (callers pass
    `pulse.models.negative_words.NEGATIVE_TERMS`); `expectations` the first-response minutes
    customers expect per channel (default: `pulse.core.expectations.load_expectations()`,
    models/responses.yaml or PULSE_RESPONSES_EXPECTATIONS). With `shard`, only the accounts of
    that shard (sql/shards.py): every source's aggregate keeps only the shard's accounts
    before grouping, so a shard's cost falls with the shard count; a source's freshness stays
    the whole book's. `usage_source="events"` reads the usage features from the raw events instead of
    the daily rollups (the same values; for comparison).
    """
    from pulse.core.expectations import load_expectations

    basis = resolve_basis(basis)
    w = _Window(as_of, basis, shard)
    a = Account.__table__
    if usage_source == "events":
        from pulse.sql import usage_event_features as ev

        usage_fns = (ev._usage, ev._usage_trends, ev._user_blocks, ev._champion,
                     ev._had_usage, ev._usage_source_last)
    elif usage_source == "rollups":
        usage_fns = (_usage, _usage_trends, _user_blocks, _champion, _had_usage,
                     _usage_source_last)
    else:
        raise InvalidArgumentError(f"invalid value for usage: expected one of "
                                   f"{', '.join(USAGE_SOURCES)} (not {usage_source!r})")
    usage_of, trends_of, blocks_of, champion_of, had_usage_of, usage_freshness = usage_fns
    usage, usage_last = usage_of(w)
    billing, failed, mrr_now, mrr_then = _billing(w)
    support, median = _support(w)
    social, links = _social(w, negative_terms)
    outages = _incident_minutes(w)
    surveys = _surveys(w)
    trends, peaks, champion = trends_of(w), blocks_of(w), champion_of(w)
    payments, terms, tone = _payments(w, billing), _terms(w), _tone(w, links, negative_terms)
    responses, response_median = _first_response(
        w, expectations if expectations is not None else load_expectations())

    def n(col: Any) -> Any:
        return func.coalesce(col, 0)

    # The accounts' stored attributes (seats, MRR, renewal date) are their latest state: they
    # count on dates from the day before the warehouse's latest activity (the daily run
    # scores yesterday) and are unknown, for every account alike, on earlier ones. Else a
    # past date would read what came later: a cancelled account's MRR of 0, today's seats.
    current = w.day >= func.coalesce(latest_activity_day(w), w.day) - 1
    stored_mrr = case((current, a.c.mrr))
    mrr = cast(func.coalesce(mrr_now.c.mrr_after, stored_mrr), Float)
    mrr_before = cast(func.coalesce(
        mrr_then.c.mrr_after,
        case((n(billing.c.mrr_events_90d) == 0,
              func.coalesce(mrr_now.c.mrr_after, stored_mrr))),
    ), Float)
    seats = case((current, a.c.seats))
    events_28d, events_prev = n(usage.c.events_28d), n(usage.c.events_prev_28d)
    mentions = n(social.c.mentions_28d)
    created = or_(a.c.created_at.is_(None), a.c.created_at < w.end)
    # Without created_at, an account that landed later still existed once it had used the
    # product or been billed: its first event counts as its creation.
    pe = PurchaseEvent.__table__
    had_event = or_(
        had_usage_of(w, a.c.account_id),
        select(pe.c.account_id).where(pe.c.account_id == a.c.account_id,
                                      pe.c.occurred_at < w.end, w.known(pe)).exists())
    if basis == "known":
        exists = and_(a.c.landed_at < w.end, created)
    elif basis == "auto":
        # an account landed in a backfill counts from its creation; without a created_at,
        # from its first usage or purchase event (as "occurred" reads it), not from before
        # it existed: a backfill has no other time for when the row happened
        exists = and_(created, or_(a.c.landed_at < w.end,
                                   and_(a.c.created_at.is_not(None), w.known(a)), had_event))
    else:
        exists = or_(a.c.created_at < w.end,
                     and_(a.c.created_at.is_(None), or_(a.c.landed_at < w.end, had_event)))
    columns: dict[str, Any] = {
        "as_of": literal(as_of, Date),
        "account_id": a.c.account_id,
        "basis": literal(basis, String),
        "computed_at": literal(computed_at or datetime.now(UTC), UTCDateTime),
        "account_age_days": w.day - utc_day(a.c.created_at),
        "seats": seats,
        "active_days_7d": n(usage.c.active_days_7d),
        "active_days_28d": n(usage.c.active_days_28d),
        "events_7d": cast(n(usage.c.events_7d), Float),
        "events_28d": cast(events_28d, Float),
        "events_prev_28d": cast(events_prev, Float),
        "usage_trend_28d_pct": case(
            (events_prev > 0, (events_28d - events_prev) * 100.0 / events_prev)),
        "distinct_features_28d": n(usage.c.distinct_features_28d),
        "active_users_28d": n(usage.c.active_users_28d),
        "seat_utilisation_28d": case(
            (seats > 0, cast(n(usage.c.active_users_28d), Float) / cast(seats, Float))),
        "error_rate_28d": case((events_28d > 0, n(usage.c.errors_28d) / events_28d)),
        "days_since_last_use": w.day - utc_day(usage_last.c.last_at),
        "usage_last_at": usage_last.c.last_at,
        "usage_source_last_at": usage_freshness(w),
        "mrr": mrr,
        "mrr_90d_ago": mrr_before,
        "mrr_change_90d_pct": case((mrr_before > 0, (mrr - mrr_before) * 100.0 / mrr_before)),
        "open_failed_payments": n(failed.c.open_failed),
        "downgrades_90d": n(billing.c.downgrades_90d),
        "cancelled": case(
            (and_(billing.c.last_cancel.is_not(None),
                  or_(billing.c.last_start.is_(None),
                      billing.c.last_cancel > billing.c.last_start)), literal(True)),
            else_=literal(False)),
        "days_to_renewal": case((current, date_day(a.c.renewal_date) - w.day)),
        "billing_last_at": billing.c.last_at,
        "billing_source_last_at": _source_last(w, PurchaseEvent.__table__, "occurred_at"),
        "tickets_30d": n(support.c.tickets_30d),
        "tickets_90d": n(support.c.tickets_90d),
        "open_tickets": n(support.c.open_tickets),
        "open_urgent_tickets": n(support.c.open_urgent_tickets),
        "resolve_hours_median_90d": cast(median.c.resolve_median, Float),
        "resolve_hours_mean_90d": cast(support.c.resolve_mean, Float),
        "days_since_last_ticket": w.day - utc_day(support.c.last_at),
        "support_last_at": support.c.last_at,
        "support_source_last_at": _source_last(w, Ticket.__table__, "opened_at"),
        "mentions_28d": mentions,
        "negative_mentions_28d": n(social.c.negative_28d),
        "negative_share_28d": case(
            (mentions > 0, cast(n(social.c.negative_28d), Float) / cast(mentions, Float))),
        "social_last_at": social.c.last_at,
        "social_source_last_at": _source_last(w, Mention.__table__, "created_at"),
        "incident_minutes_28d": cast(func.coalesce(outages.c.minutes, 0.0), Float),
        "incidents_source_last_at": _source_last(w, Incident.__table__, "started_at"),
        "csat_last": cast(surveys.c.last_rating, Float),
        "csat_90d": case((n(surveys.c.responses_90d) > 0,
                          cast(surveys.c.happy_90d, Float) / cast(surveys.c.responses_90d,
                                                                   Float))),
        "csat_responses_90d": n(surveys.c.responses_90d),
        "surveys_last_at": surveys.c.last_at,
        "first_response_hours_median_90d": cast(response_median.c.hours_median, Float),
        "first_response_late_share_90d": _ratio(responses.c.late, responses.c.due),
    }
    columns.update(_issue12_columns(w, a, usage, usage_last, billing, trends, peaks,
                                    champion, payments, terms, tone))
    missing = set(FEATURES_TABLE.c.keys()) ^ set(columns)
    assert not missing, f"features_select and account_features disagree on {missing}"
    joined: FromClause = a
    for cte in (usage, usage_last, billing, failed, mrr_now, mrr_then, support, median, social,
                outages, surveys, trends, peaks, champion, payments, terms, tone, responses,
                response_median):
        joined = joined.outerjoin(cte, cte.c.account_id == a.c.account_id)
    query = (
        select(*(columns[c.name].label(c.name) for c in FEATURES_TABLE.columns))
        .select_from(joined)
        .where(exists)
    )
    in_shard = shard_of(a.c.account_id, shard)
    return query if in_shard is None else query.where(in_shard)


def ensure_features_schema(engine: Engine) -> None:
    """Fail early, and say what to do, when the warehouse predates the features tables."""
    from sqlalchemy import inspect

    from pulse.core.errors import ConfigError
    from pulse.sql.db import ensure_schema

    ensure_schema(engine)
    if not inspect(engine).has_table(FEATURES_TABLE.name):
        raise ConfigError(
            f"the warehouse at {engine.url.render_as_string(hide_password=True)} has no "
            "features tables yet: run `pulse db upgrade`"
        )


def resolve_basis(basis: str | None) -> Basis:
    """The basis to use: `None` means the default ("auto"); anything else must be a basis.

    The one place `pulse score`, `pulse churn score`, `pulse model train`, the DAGs and the
    demo job take their basis from, so that scoring and training read history alike.
    """
    if basis is None:
        return DEFAULT_BASIS
    if basis not in BASES:
        raise InvalidArgumentError(
            f"invalid value for basis: expected one of {', '.join(BASES)} (not {basis!r})")
    return basis  # type: ignore[return-value]


@dataclass(frozen=True)
class BasisReport:
    """Which basis a date was computed on and, for "auto", how many rows (usage, purchases,
    tickets, mentions, incidents) counted from when they happened because a backfill landed
    them after the date."""

    basis: str
    backfill_rows: int
    backfill_runs: int

    def describe(self) -> str:
        if self.basis != "auto":
            return f"{self.basis} basis"
        return (f"auto basis: {self.backfill_rows:,} rows from {self.backfill_runs:,} "
                "backfill run(s) counted from when they happened")

    def to_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "backfill_rows": self.backfill_rows,
                "backfill_runs": self.backfill_runs}


_EVENT_TABLES: tuple[tuple[Any, str], ...] = (
    (UsageDaily.__table__, "last_at"), (PurchaseEvent.__table__, "occurred_at"),
    (Ticket.__table__, "opened_at"), (Mention.__table__, "created_at"),
    (Incident.__table__, "started_at"),
)


def basis_report(engine: Engine, as_of: date, basis: str | None = None) -> BasisReport:
    """What the basis meant for `as_of`: see `BasisReport`."""
    b = resolve_basis(basis)
    if b != "auto":
        return BasisReport(b, 0, 0)
    end = _Window(as_of, b).end
    r = IngestRun.__table__
    with engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(r).where(
            r.c.backfill == literal(True), r.c.started_at >= end)).scalar_one()
        rows = 0
        if runs:
            for t, col in _EVENT_TABLES:
                # usage: the event rows summed in its daily rollups (a feed row counts one)
                what = (func.sum(func.coalesce(t.c.event_rows, 1)) if t is UsageDaily.__table__
                        else func.count())
                rows += conn.execute(select(func.coalesce(what, 0)).select_from(t).where(
                    t.c[col] < end, t.c.landed_at >= end,
                    t.c.landed_at.in_(backfill_landings(t)))).scalar_one()
    return BasisReport(b, int(rows), int(runs))


def stored_attributes_day(engine: Engine, as_of: date, basis: str | None = None
                          ) -> date | None:
    """The day the accounts' stored attributes (seats, renewal date, the MRR of accounts
    without billing events that carry it) describe, as `as_of` reads the warehouse: its latest
    day of activity among the rows the basis counts for the date (`latest_activity_day`);
    None on a warehouse without activity. They count on `as_of` only from the day before it
    on (`stored_attributes_count`)."""
    w = _Window(as_of, resolve_basis(basis))
    with engine.connect() as conn:
        day = conn.execute(select(latest_activity_day(w))).scalar_one()
    return None if day is None else date(1970, 1, 1) + timedelta(days=int(day))


def stored_attributes_count(as_of: date, day: date | None) -> bool:
    """Whether the stored attributes counted on `as_of`, given the day they describe (the
    features' rule: from the day before it on; with no activity at all, they count)."""
    return day is None or as_of >= day - timedelta(days=1)


#: The sources accounts are scored from (incidents through the minutes they cost), by the
#: column that holds each one's latest row known by the as-of date (the same on every
#: account's row of a date).
ACCOUNT_SOURCES: dict[str, str] = {name: cols[1] for name, cols in FRESHNESS.items()}


def nothing_to_score(engine: Engine, as_of: date, basis: str, *, accounts: int = 0) -> str:
    """Why nothing could be scored as of `as_of`, in words naming the first rows there are:
    no account by then, or (`accounts` > 0) accounts but no row of any source they are
    scored from."""
    u, a = UsageDaily.__table__, Account.__table__
    with engine.connect() as conn:
        first_use = conn.execute(select(func.min(u.c.first_at))).scalar_one()
        first_landed = conn.execute(select(func.min(u.c.landed_at))).scalar_one()
        stored = conn.execute(select(func.count()).select_from(a)).scalar_one()
    if not stored:
        return f"nothing to score as of {as_of}: the warehouse has no accounts (run `pulse ingest`)"
    what = {"known": "had landed", "occurred": "had happened",
            "auto": "had landed (or, for a backfill, happened)"}[basis]
    if accounts:
        msg = (f"nothing to score as of {as_of} on the {basis} basis: "
               f"{accounts:,} account{'' if accounts == 1 else 's'} existed, but no "
               f"{_or_list([SOURCE_WORDS.get(k, k) for k in ACCOUNT_SOURCES])} row {what} by then")
    else:
        msg = f"nothing to score as of {as_of} on the {basis} basis: no account {what} by then"
    if first_use is not None:
        msg += (f"; the first usage row happened on {_day(first_use)} and landed on "
                f"{_day(first_landed)}")
    if basis == "known":
        msg += "; to score history loaded after the fact use --basis auto or occurred"
    return msg


def _day(value: Any) -> str:
    return str(value)[:10]


SOURCE_WORDS = {"incidents": "incident"}


def _or_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class _NoSourceRows(Exception):
    """Raised inside the write transaction to roll it back: accounts, but no source rows."""


def reads_no_source(row: Mapping[str, Any]) -> bool:
    """Whether a features row read no row of any source an account is scored from (each
    source's latest known row is the same on every row of a date): nothing to score it on."""
    return all(row[c] is None for c in ACCOUNT_SOURCES.values())


def no_source_rows(conn: Any, where: Any) -> bool:
    """Whether the features rows `where` selects (some) read no row of any source."""
    t = FEATURES_TABLE
    seen = conn.execute(select(*(t.c[c] for c in ACCOUNT_SOURCES.values()))
                        .where(where).limit(1)).mappings().first()
    return seen is not None and reads_no_source(seen)


def compute_features(engine: Engine, as_of: date, *, basis: Basis = DEFAULT_BASIS,
                     negative_terms: Sequence[str], allow_empty: bool = False,
                     expectations: Mapping[str, float] | None = None,
                     shard: Shard | None = None, usage_source: UsageSource = "rollups") -> int:
    """Materialise every account's features as of `as_of`; returns the rows written.

    `negative_terms`: the negative-mention lexicon; `expectations`: the first-response
    minutes per channel; `usage_source`: read usage from the rollups or the raw events (see
    `features_select`).

    The date's previous rows are replaced in the same transaction; other dates are untouched.
    With `shard`, only that shard's accounts are computed and only their rows replaced (an
    empty shard is no error). A date with no account to score, or whose accounts read no row
    of any source (nothing to score them on), raises `NothingToScoreError` (with the reason;
    the date's earlier rows stay); with `allow_empty` such a date is left empty instead.
    """
    basis = resolve_basis(basis)
    query = features_select(as_of, basis=basis, negative_terms=negative_terms,
                            expectations=expectations, shard=shard,
                            usage_source=usage_source)
    t = FEATURES_TABLE
    in_shard = shard_of(t.c.account_id, shard)
    mine = t.c.as_of == as_of if in_shard is None else and_(t.c.as_of == as_of, in_shard)
    if engine.dialect.name == "sqlite" and shard is not None:
        return _compute_shard_sqlite(engine, as_of, basis, query, mine, shard)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # one large, one-off statement: compiling it (JIT) costs more than it saves,
                # and the grouped aggregates want more than the default 4 MB to sort in memory
                conn.execute(text("SET LOCAL jit = off"))
                conn.execute(text("SET LOCAL work_mem = '64MB'"))
            conn.execute(delete(t).where(mine))
            conn.execute(insert(t).from_select([c.name for c in t.columns], query))
            # (a statement that starts with WITH reports no row count on either driver)
            written = conn.execute(select(func.count()).select_from(t).where(mine)).scalar_one()
            # accounts with nothing to score them on (every source empty by the date) are no
            # scores: an error that rolls back (the date's earlier rows stay as they were), or
            # with `allow_empty` an empty date, as one without accounts
            if written and shard is None and no_source_rows(conn, mine):
                if not allow_empty:
                    raise _NoSourceRows(written)
                conn.execute(delete(t).where(mine))
                written = 0
    except _NoSourceRows as empty:
        raise NothingToScoreError(nothing_to_score(engine, as_of, basis,
                                                   accounts=int(empty.args[0]))) from None
    if shard is not None:
        log.info("features as of %s (%s), shard %s: %d accounts", as_of, basis, shard, written)
        return int(written)
    if not written and not allow_empty:
        raise NothingToScoreError(nothing_to_score(engine, as_of, basis))
    log.info("features as of %s (%s): %d accounts", as_of, basis, written)
    return int(written)


def _compute_shard_sqlite(engine: Engine, as_of: date, basis: str, query: Any, mine: Any,
                          shard: Shard) -> int:
    """A shard's features on SQLite: the query fills a temporary table first (a read of the
    warehouse, beside other writers), then one short write transaction replaces the shard's
    rows from it. SQLite has one writer at a time, so shards scored in parallel processes
    then wait only for each other's short replace, not for each other's whole query."""
    from sqlalchemy import Column, MetaData, Table

    t = FEATURES_TABLE
    batch = Table("features_batch", MetaData(),
                  *(Column(c.name, c.type) for c in t.columns), prefixes=["TEMPORARY"])
    names = [c.name for c in t.columns]
    with engine.connect() as conn:
        try:
            batch.drop(conn, checkfirst=True)
            batch.create(conn)
            conn.execute(insert(batch).from_select(names, query))
            conn.commit()  # only the temporary database was written
            with conn.begin():  # then the write lock first (as sql.db.write_transaction)
                dbapi = conn.connection.driver_connection
                if dbapi is not None and not dbapi.in_transaction:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.execute(delete(t).where(mine))
                conn.execute(insert(t).from_select(names, select(batch)))
                written = conn.execute(select(func.count()).select_from(t).where(mine)
                                       ).scalar_one()
        finally:
            conn.rollback()
            batch.drop(conn, checkfirst=True)
            conn.commit()
    log.info("features as of %s (%s), shard %s: %d accounts", as_of, basis, shard, written)
    return int(written)


def load_features(engine: Engine, as_of: date,
                  account_ids: Sequence[str] | None = None, *,
                  shard: Shard | None = None) -> pd.DataFrame:
    """The materialised features of `as_of` (one row per account, ordered by account_id),
    of `account_ids` or of one `shard` when given."""
    t = FEATURES_TABLE
    query = select(t).where(t.c.as_of == as_of).order_by(t.c.account_id)
    if account_ids is not None:
        query = query.where(t.c.account_id.in_(list(account_ids)))
    in_shard = shard_of(t.c.account_id, shard)
    if in_shard is not None:
        query = query.where(in_shard)
    from pulse.sql.db import result_frame

    with engine.connect() as conn:
        result = conn.execute(query)
        frame = result_frame(result)
    for col in t.columns:
        if isinstance(col.type, UTCDateTime):
            frame[col.name] = pd.to_datetime(frame[col.name], utc=True)
        elif isinstance(col.type, Integer | Float) and col.name in frame:
            frame[col.name] = pd.to_numeric(frame[col.name]).astype("float64")
    return frame


def feature_dates(engine: Engine) -> list[date]:
    """The as-of dates that have materialised features, oldest first."""
    t = FEATURES_TABLE
    with engine.connect() as conn:
        return list(conn.execute(select(t.c.as_of).distinct().order_by(t.c.as_of)).scalars())
