"""Point-in-time features of every account as of a date, in a handful of set-based queries.

`compute_features(engine, as_of)` writes one row per account into `account_features`, keyed
(as_of, account_id), with one `INSERT ... SELECT` built from grouped aggregates (two passes
over the usage table, one over each other source); no Python touches individual rows.
Re-running a date deletes that date's rows and inserts them again in the same transaction;
other dates are never touched.

Point in time
-------------
"As of D" means: rows whose event time is before the end of D (UTC) and, with the default
`basis="known"`, which had also *landed* by then (`landed_at`). A row that arrives later, or
happens later, never changes D's features, so a re-run of a past date gives the answer Pulse
would have given that day. `basis="occurred"` drops the landing condition; it reconstructs
history that was loaded in bulk after the fact (a first import, a demo world), for backtests.

An account is scored as of D when Pulse knew it by then (`landed_at`) and it had been created
(`created_at`, when given). With `basis="occurred"`: when it had been created (or, without a
`created_at`, had landed or had a usage or purchase event by then).

What the warehouse cannot give point in time: account attributes (seats, renewal date, the
fallback MRR, x_handle) and a ticket's status are stored in their latest state, so a later
update to them shows up in an earlier date's features. Ticket resolution is read from
`resolved_at` (an event time), or, for a ticket closed without one, from when Pulse learned of
the change (`updated_at`).

Windows
-------
"Last N days" are the N calendar days (UTC) ending with D, D included: [D-N+1, D].

Social mentions belong to an account by their `account_id`, or, without one, when the
author's handle is the account's or one of its contacts' `x_handle`. Negative means: the text
contains a term of the lexicon in models/negative_words.py (until the sentiment model).
Incident minutes: for each incident that hit the account (`incident_impacts`, models/outage.py:
errors on an affected component inside the incident's window), the minutes of the incident's
window that fall in the last 28 days, summed over incidents; with `basis="known"`, only
incidents that had landed by then. Impacts are computed by `pulse outage refresh` (the outage
DAG); an incident whose impact was never computed counts 0.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import pandas as pd
from sqlalchemy import (
    Boolean,
    Date,
    Engine,
    Float,
    Integer,
    Numeric,
    String,
    and_,
    case,
    cast,
    delete,
    distinct,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    union,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from pulse.core.errors import InvalidArgumentError
from pulse.sql.schema import (
    Account,
    AccountFeatures,
    Contact,
    Incident,
    IncidentImpact,
    Mention,
    PurchaseEvent,
    SurveyResponse,
    Ticket,
    UsageEvent,
)
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

Basis = Literal["known", "occurred"]
BASES: tuple[str, ...] = ("known", "occurred")

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
])

#: The freshness columns of each source: (the account's latest event, the source's latest).
FRESHNESS: dict[str, tuple[str | None, str]] = {
    "usage": ("usage_last_at", "usage_source_last_at"),
    "billing": ("billing_last_at", "billing_source_last_at"),
    "support": ("support_last_at", "support_source_last_at"),
    "social": ("social_last_at", "social_source_last_at"),
    "incidents": (None, "incidents_source_last_at"),
}


# --------------------------------------------------------------------------- SQL helpers


class utc_day(FunctionElement[int]):
    """Whole days from 1970-01-01 to the UTC calendar day of a timestamp."""

    type = Integer()
    inherit_cache = True
    name = "utc_day"


class date_day(FunctionElement[int]):
    """Whole days from 1970-01-01 to a date."""

    type = Integer()
    inherit_cache = True
    name = "date_day"


class epoch_seconds(FunctionElement[float]):
    """Seconds since 1970-01-01 UTC of a timestamp."""

    type = Float()
    inherit_cache = True
    name = "epoch_seconds"


class day_key(FunctionElement[str]):
    """A value that is the same for every instant of one UTC day (for counting days)."""

    type = String()
    inherit_cache = True
    name = "day_key"


def _arg(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = element.clauses
    return compiler.process(arg, **kw)


# SQLite stores instants as naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff" and dates as
# "YYYY-MM-DD" (sql.types.UTCDateTime); PostgreSQL as timestamptz and date.
@compiles(utc_day, "sqlite")
@compiles(date_day, "sqlite")
def _day_sqlite(element: FunctionElement[int], compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(julianday(substr({_arg(element, compiler, **kw)}, 1, 10)) - 2440587.5 AS INTEGER)"


@compiles(utc_day, "postgresql")
def _utc_day_pg(element: FunctionElement[int], compiler: SQLCompiler, **kw: Any) -> str:
    return f"(CAST(({_arg(element, compiler, **kw)}) AT TIME ZONE 'UTC' AS DATE) - DATE '1970-01-01')"


@compiles(date_day, "postgresql")
def _date_day_pg(element: FunctionElement[int], compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({_arg(element, compiler, **kw)}) - DATE '1970-01-01')"


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: FunctionElement[float], compiler: SQLCompiler, **kw: Any) -> str:
    return f"((julianday({_arg(element, compiler, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch_seconds, "postgresql")
def _epoch_pg(element: FunctionElement[float], compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {_arg(element, compiler, **kw)}) AS DOUBLE PRECISION)"


@compiles(day_key, "sqlite")
def _day_key_sqlite(element: FunctionElement[str], compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({_arg(element, compiler, **kw)}, 1, 10)"


@compiles(day_key, "postgresql")
def _day_key_pg(element: FunctionElement[str], compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({_arg(element, compiler, **kw)}) AT TIME ZONE 'UTC' AS DATE)"


class lexicon_match(FunctionElement[bool]):
    """True when padded, lower-cased text contains a lexicon term (see `term_patterns`).

    Arguments: the text, one regular expression of every term (PostgreSQL), then one GLOB
    pattern per term (SQLite). One expression, because PostgreSQL keeps only a few compiled
    regular expressions cached and would otherwise compile each term again for every row.
    """

    type = Boolean()
    inherit_cache = True
    name = "lexicon_match"


@compiles(lexicon_match, "sqlite")
def _lexicon_sqlite(element: FunctionElement[bool], compiler: SQLCompiler, **kw: Any) -> str:
    text_, _regex, *globs = (compiler.process(c, **kw) for c in element.clauses)
    return "(" + " OR ".join(f"{text_} GLOB {g}" for g in globs) + ")"


@compiles(lexicon_match, "postgresql")
def _lexicon_pg(element: FunctionElement[bool], compiler: SQLCompiler, **kw: Any) -> str:
    text_, regex, *_globs = (compiler.process(c, **kw) for c in element.clauses)
    return f"({text_} ~ {regex})"


#: Apostrophes are dropped before matching ("doesn't" reads "doesnt"); any character other
#: than a-z and 0-9 separates words.
_APOSTROPHES = "'\u2019"


def normalise_text(text: str) -> str:
    """What the lexicon is matched against: lower case, no apostrophes, padded with spaces."""
    text = text.lower()
    for ch in _APOSTROPHES:
        text = text.replace(ch, "")
    return f" {text} "


def _normalised_sql(col: ColumnElement[str]) -> ColumnElement[str]:
    expr: ColumnElement[str] = func.lower(col)
    for ch in _APOSTROPHES:
        expr = func.replace(expr, ch, "")
    return literal(" ") + expr + literal(" ")


@dataclass(frozen=True)
class TermPattern:
    term: str
    glob: str  # SQLite GLOB over normalised text
    regex: str  # PostgreSQL (POSIX) and Python regular expression over normalised text


def term_patterns(terms: Sequence[str]) -> list[TermPattern]:
    """Whole-word patterns of lexicon terms; a trailing `*` makes a term a word prefix."""
    out: dict[str, TermPattern] = {}
    for raw in terms:
        prefix = raw.strip().endswith("*")
        words = re.findall(r"[a-z0-9]+", normalise_text(raw.strip().rstrip("*")))
        if not words:
            continue
        body = " ".join(words)
        glob = f"*[^a-z0-9]{body}" + ("*" if prefix else "[^a-z0-9]*")
        regex = f"[^a-z0-9]{body}" + ("" if prefix else "[^a-z0-9]")
        out[glob] = TermPattern(raw, glob, regex)
    return list(out.values())


def matches_terms(text: str, terms: Sequence[str]) -> bool:
    """Python's twin of the SQL match (for tests and explanations)."""
    norm = normalise_text(text)
    return any(re.search(p.regex, norm) for p in term_patterns(terms))


def _matches_any(norm: ColumnElement[str], terms: Sequence[str]) -> ColumnElement[bool]:
    patterns = term_patterns(terms)
    if not patterns:
        return literal(False)
    regex = "|".join(f"(?:{p.regex})" for p in patterns)
    return lexicon_match(norm, literal(regex), *(literal(p.glob) for p in patterns))


# --------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class _Window:
    as_of: date
    basis: str

    @property
    def end(self) -> datetime:
        """The first instant after the as-of date (UTC): rows strictly before it count."""
        return datetime.combine(self.as_of + timedelta(days=1), time(0), tzinfo=UTC)

    def since(self, days: int) -> datetime:
        """The first instant of the last `days` days ending with the as-of date."""
        return self.end - timedelta(days=days)

    @property
    def day(self) -> ColumnElement[int]:
        return literal((self.as_of - date(1970, 1, 1)).days, Integer)

    def known(self, table: Any) -> ColumnElement[bool]:
        return table.c.landed_at < self.end if self.basis == "known" else true()


def _usage(w: _Window) -> tuple[Any, Any]:
    u = UsageEvent.__table__
    in7 = u.c.occurred_at >= w.since(7)
    in28 = u.c.occurred_at >= w.since(28)
    qty = u.c.quantity
    day = day_key(u.c.occurred_at)
    window = (
        select(
            u.c.account_id,
            func.count(distinct(case((in7, day)))).label("active_days_7d"),
            func.count(distinct(case((in28, day)))).label("active_days_28d"),
            func.sum(case((in7, qty), else_=0.0)).label("events_7d"),
            func.sum(case((in28, qty), else_=0.0)).label("events_28d"),
            func.sum(case((in28, 0.0), else_=qty)).label("events_prev_28d"),
            func.sum(case((and_(in28, u.c.outcome == "error"), qty), else_=0.0)).label(
                "errors_28d"),
            func.count(distinct(case((in28, u.c.feature)))).label("distinct_features_28d"),
            func.count(distinct(case((in28, u.c.contact_id)))).label("active_users_28d"),
        )
        .where(u.c.occurred_at >= w.since(56), u.c.occurred_at < w.end, w.known(u))
        .group_by(u.c.account_id)
        .cte("usage_window")
    )
    last = (
        select(u.c.account_id, func.max(u.c.occurred_at).label("last_at"))
        .where(u.c.occurred_at < w.end, w.known(u))
        .group_by(u.c.account_id)
        .cte("usage_last")
        .prefix_with("MATERIALIZED")
    )
    return window, last


def _billing(w: _Window) -> tuple[Any, Any, Any, Any]:
    p = PurchaseEvent.__table__
    seen = and_(p.c.occurred_at < w.end, w.known(p))

    def latest_mrr(name: str, before: datetime) -> Any:
        ranked = (
            select(
                p.c.account_id, p.c.mrr_after,
                func.row_number().over(
                    partition_by=p.c.account_id,
                    order_by=(p.c.occurred_at.desc(), p.c.event_id.desc()),
                ).label("rn"),
            )
            .where(seen, p.c.occurred_at < before, p.c.mrr_after.is_not(None))
            .subquery()
        )
        return select(ranked.c.account_id, ranked.c.mrr_after).where(ranked.c.rn == 1).cte(name)

    agg = (
        select(
            p.c.account_id,
            func.max(p.c.occurred_at).label("last_at"),
            func.max(case((p.c.kind == "payment_succeeded", p.c.occurred_at))).label(
                "last_success"),
            func.max(case((p.c.kind == "cancelled", p.c.occurred_at))).label("last_cancel"),
            func.max(case((p.c.kind.in_(("subscription_started", "renewed", "upgraded")),
                           p.c.occurred_at))).label("last_start"),
            func.count(case((and_(p.c.kind == "downgraded", p.c.occurred_at >= w.since(90)),
                             1))).label("downgrades_90d"),
            func.count(case((and_(p.c.mrr_after.is_not(None), p.c.occurred_at >= w.since(90)),
                             1))).label("mrr_events_90d"),
        )
        .where(seen)
        .group_by(p.c.account_id)
        .cte("billing")
        .prefix_with("MATERIALIZED")
    )
    failed = (
        select(p.c.account_id, func.count().label("open_failed"))
        .select_from(p.outerjoin(agg, agg.c.account_id == p.c.account_id))
        .where(seen, p.c.kind == "payment_failed",
               or_(agg.c.last_success.is_(None), p.c.occurred_at > agg.c.last_success))
        .group_by(p.c.account_id)
        .cte("failed_payments")
    )
    return agg, failed, latest_mrr("mrr_now", w.end), latest_mrr("mrr_then", w.since(90))


def _support(w: _Window) -> tuple[Any, Any]:
    t = Ticket.__table__
    seen = and_(t.c.opened_at < w.end, w.known(t))
    resolved = case(
        (t.c.resolved_at.is_not(None), t.c.resolved_at),
        (t.c.status.in_(("solved", "closed")), t.c.updated_at),
    )
    is_open = or_(resolved.is_(None), resolved >= w.end)
    resolved_recently = and_(resolved >= w.since(90), resolved < w.end)
    hours = (epoch_seconds(resolved) - epoch_seconds(t.c.opened_at)) / 3600.0
    agg = (
        select(
            t.c.account_id,
            func.max(t.c.opened_at).label("last_at"),
            func.count(case((t.c.opened_at >= w.since(30), 1))).label("tickets_30d"),
            func.count(case((t.c.opened_at >= w.since(90), 1))).label("tickets_90d"),
            func.count(case((is_open, 1))).label("open_tickets"),
            func.count(case((and_(is_open, t.c.priority == "urgent"), 1))).label(
                "open_urgent_tickets"),
            func.avg(case((resolved_recently, hours))).label("resolve_mean"),
        )
        .where(seen)
        .group_by(t.c.account_id)
        .cte("support")
    )
    ranked = (
        select(
            t.c.account_id,
            hours.label("h"),
            func.row_number().over(partition_by=t.c.account_id, order_by=hours).label("rn"),
            func.count().over(partition_by=t.c.account_id).label("n"),
        )
        .where(seen, resolved_recently)
        .subquery()
    )
    median = (
        select(ranked.c.account_id, func.avg(ranked.c.h).label("resolve_median"))
        .where(or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2))
        .group_by(ranked.c.account_id)
        .cte("resolve_median")
    )
    return agg, median


def _social(w: _Window, negative_terms: Sequence[str]) -> Any:
    m, a, c = Mention.__table__, Account.__table__, Contact.__table__
    seen = and_(m.c.created_at < w.end, w.known(m))
    by_id = select(m.c.mention_id, m.c.account_id).where(seen, m.c.account_id.is_not(None))
    by_account_handle = (
        select(m.c.mention_id, a.c.account_id)
        .join_from(m, a, a.c.x_handle == m.c.author_handle)
        .where(seen, m.c.account_id.is_(None), w.known(a))
    )
    by_contact_handle = (
        select(m.c.mention_id, c.c.account_id)
        .join_from(m, c, c.c.x_handle == m.c.author_handle)
        .where(seen, m.c.account_id.is_(None), w.known(c))
    )
    links = union(by_id, by_account_handle, by_contact_handle).cte("mention_links")
    recent = (
        select(m.c.mention_id, _normalised_sql(m.c.text).label("norm"))
        .where(seen, m.c.created_at >= w.since(28))
        .cte("recent_mentions")
        .prefix_with("MATERIALIZED")
    )
    negative = _matches_any(recent.c.norm, negative_terms)
    return (
        select(
            links.c.account_id,
            func.max(m.c.created_at).label("last_at"),
            func.count(recent.c.mention_id).label("mentions_28d"),
            func.count(case((negative, 1))).label("negative_28d"),
        )
        .select_from(
            links.join(m, m.c.mention_id == links.c.mention_id)
            .outerjoin(recent, recent.c.mention_id == links.c.mention_id)
        )
        .group_by(links.c.account_id)
        .cte("social")
    )


def _surveys(w: _Window) -> Any:
    """Per account: the latest rating, CSAT (share of 4 and 5) and responses in 90 days.

    A response counts from its first rating (and, with basis "known", once it had landed);
    its rating is the latest the contact gave.
    """
    r = SurveyResponse.__table__
    seen = and_(r.c.first_rated_at < w.end, w.known(r))
    ranked = (
        select(r.c.account_id, r.c.rating, r.c.first_rated_at,
               func.row_number().over(partition_by=r.c.account_id,
                                      order_by=(r.c.first_rated_at.desc(),
                                                r.c.survey_id.desc())).label("rn"))
        .where(seen)
        .subquery()
    )
    recent = ranked.c.first_rated_at >= w.since(90)
    return (
        select(
            ranked.c.account_id,
            func.max(case((ranked.c.rn == 1, ranked.c.rating))).label("last_rating"),
            func.max(ranked.c.first_rated_at).label("last_at"),
            func.count(case((recent, 1))).label("responses_90d"),
            func.count(case((and_(recent, ranked.c.rating >= 4), 1))).label("happy_90d"),
        )
        .group_by(ranked.c.account_id)
        .cte("surveys")
    )


def _incident_minutes(w: _Window) -> Any:
    """Per account: minutes of the windows of incidents that hit it, clipped to the last 28
    days (models/outage.py stores who was hit)."""
    im, i = IncidentImpact.__table__, Incident.__table__
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    lo = literal((w.since(28) - epoch).total_seconds(), Float)
    hi = literal((w.end - epoch).total_seconds(), Float)
    s, e = epoch_seconds(im.c.window_start), epoch_seconds(im.c.window_end)
    start, end = case((s > lo, s), else_=lo), case((e < hi, e), else_=hi)
    minutes = case((end > start, (end - start) / 60.0), else_=0.0)
    # rounded: SQLite's julianday arithmetic is exact only to about 50 microseconds
    total = cast(func.round(cast(func.sum(minutes), Numeric(20, 6)), 4), Float)
    return (
        select(im.c.account_id, total.label("minutes"))
        .join_from(im, i, i.c.incident_id == im.c.incident_id)
        .where(im.c.status == "hit", im.c.window_start < w.end,
               im.c.window_end >= w.since(28), w.known(i))
        .group_by(im.c.account_id)
        .cte("incident_minutes")
    )


def _source_last(w: _Window, table: Any, column: str) -> Any:
    col = table.c[column]
    return select(func.max(col)).where(col < w.end, w.known(table)).scalar_subquery()


def features_select(as_of: date, *, basis: Basis = "known",
                    negative_terms: Sequence[str] | None = None,
                    computed_at: datetime | None = None) -> Any:
    """The SELECT that yields the `account_features` rows of `as_of`, columns in table order."""
    if basis not in BASES:
        raise InvalidArgumentError(f"basis must be one of {BASES}, not {basis!r}")
    if negative_terms is None:
        from pulse.models.negative_words import NEGATIVE_TERMS

        negative_terms = NEGATIVE_TERMS
    w = _Window(as_of, basis)
    a = Account.__table__
    usage, usage_last = _usage(w)
    billing, failed, mrr_now, mrr_then = _billing(w)
    support, median = _support(w)
    social = _social(w, negative_terms)
    outages = _incident_minutes(w)
    surveys = _surveys(w)

    def n(col: Any) -> Any:
        return func.coalesce(col, 0)

    mrr = cast(func.coalesce(mrr_now.c.mrr_after, a.c.mrr), Float)
    mrr_before = cast(func.coalesce(
        mrr_then.c.mrr_after,
        case((n(billing.c.mrr_events_90d) == 0, func.coalesce(mrr_now.c.mrr_after, a.c.mrr))),
    ), Float)
    events_28d, events_prev = n(usage.c.events_28d), n(usage.c.events_prev_28d)
    mentions = n(social.c.mentions_28d)
    if basis == "known":
        exists = and_(a.c.landed_at < w.end, or_(a.c.created_at.is_(None), a.c.created_at < w.end))
    else:
        # Without created_at, an account that landed later still existed once it had used
        # the product or been billed: its first event counts as its creation.
        u, pe = UsageEvent.__table__, PurchaseEvent.__table__
        had_event = or_(
            select(u.c.account_id).where(u.c.account_id == a.c.account_id,
                                         u.c.occurred_at < w.end).exists(),
            select(pe.c.account_id).where(pe.c.account_id == a.c.account_id,
                                          pe.c.occurred_at < w.end).exists())
        exists = or_(a.c.created_at < w.end,
                     and_(a.c.created_at.is_(None), or_(a.c.landed_at < w.end, had_event)))
    columns: dict[str, Any] = {
        "as_of": literal(as_of, Date),
        "account_id": a.c.account_id,
        "basis": literal(basis, String),
        "computed_at": literal(computed_at or datetime.now(UTC), UTCDateTime),
        "account_age_days": w.day - utc_day(a.c.created_at),
        "seats": a.c.seats,
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
            (a.c.seats > 0, cast(n(usage.c.active_users_28d), Float) / cast(a.c.seats, Float))),
        "error_rate_28d": case((events_28d > 0, n(usage.c.errors_28d) / events_28d)),
        "days_since_last_use": w.day - utc_day(usage_last.c.last_at),
        "usage_last_at": usage_last.c.last_at,
        "usage_source_last_at": select(func.max(usage_last.c.last_at)).scalar_subquery(),
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
        "days_to_renewal": date_day(a.c.renewal_date) - w.day,
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
    }
    missing = set(FEATURES_TABLE.c.keys()) ^ set(columns)
    assert not missing, f"features_select and account_features disagree on {missing}"
    joined = a
    for cte in (usage, usage_last, billing, failed, mrr_now, mrr_then, support, median, social,
                outages, surveys):
        joined = joined.outerjoin(cte, cte.c.account_id == a.c.account_id)
    return (
        select(*(columns[c.name].label(c.name) for c in FEATURES_TABLE.columns))
        .select_from(joined)
        .where(exists)
    )


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


def compute_features(engine: Engine, as_of: date, *, basis: Basis = "known",
                     negative_terms: Sequence[str] | None = None) -> int:
    """Materialise every account's features as of `as_of`; returns the rows written.

    The date's previous rows are replaced in the same transaction; other dates are untouched.
    """
    query = features_select(as_of, basis=basis, negative_terms=negative_terms)
    t = FEATURES_TABLE
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # one large, one-off statement: compiling it (JIT) costs more than it saves, and
            # the grouped aggregates want more than the default 4 MB to sort in memory
            conn.execute(text("SET LOCAL jit = off"))
            conn.execute(text("SET LOCAL work_mem = '64MB'"))
        conn.execute(delete(t).where(t.c.as_of == as_of))
        conn.execute(insert(t).from_select([c.name for c in t.columns], query))
        # (a statement that starts with WITH reports no row count on either driver)
        written = conn.execute(
            select(func.count()).select_from(t).where(t.c.as_of == as_of)).scalar_one()
    log.info("features as of %s (%s): %d accounts", as_of, basis, written)
    return int(written)


def load_features(engine: Engine, as_of: date,
                  account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The materialised features of `as_of` (one row per account, ordered by account_id)."""
    t = FEATURES_TABLE
    query = select(t).where(t.c.as_of == as_of).order_by(t.c.account_id)
    if account_ids is not None:
        query = query.where(t.c.account_id.in_(list(account_ids)))
    with engine.connect() as conn:
        result = conn.execute(query)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
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
