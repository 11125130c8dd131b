"""The SQL of the point-in-time features, one set-based query per source (see sql/features.py).

The dialect helpers (whole UTC days, epoch seconds, day keys, lexicon matching for SQLite and
PostgreSQL), the as-of window, and the grouped aggregates of each source: usage, billing,
support, social, surveys and incidents. `features.features_select` joins them into the rows of
`account_features`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    Numeric,
    String,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    or_,
    select,
    true,
    union,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from pulse.sql.schema import (
    Account,
    Contact,
    Incident,
    IncidentImpact,
    IngestRun,
    Mention,
    PurchaseEvent,
    SurveyResponse,
    TextInsight,
    Ticket,
    UsageDaily,
    UsageDailyUser,
)
from pulse.sql.shards import Shard, shard_of

#: The account's own long usage baseline: the days 28 to this many back (the last 28 left out).
LONG_BASELINE_DAYS = 180
#: The `text_insights.sentiment_method` values of a text the sentiment model read
#: (models/text.py: a model of the user's, else the seed model); "lexicon" and
#: "other-language" are not.
MODEL_SENTIMENT_METHODS = ("user-model", "seed-model")

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

    Arguments: the text, then one regular expression of every term. One expression, because
    PostgreSQL keeps only a few compiled regular expressions cached and would otherwise
    compile each term again for every row; SQLite runs it through the REGEXP function that
    SQLAlchemy's pysqlite dialect installs on every connection (Python's `re`, which caches
    the compiled expression), once per row instead of one GLOB per term.
    """

    type = Boolean()
    inherit_cache = True
    name = "lexicon_match"


@compiles(lexicon_match, "sqlite")
def _lexicon_sqlite(element: FunctionElement[bool], compiler: SQLCompiler, **kw: Any) -> str:
    text_, regex = (compiler.process(c, **kw) for c in element.clauses)
    return f"({text_} REGEXP {regex})"


@compiles(lexicon_match, "postgresql")
def _lexicon_pg(element: FunctionElement[bool], compiler: SQLCompiler, **kw: Any) -> str:
    text_, regex = (compiler.process(c, **kw) for c in element.clauses)
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
        regex = f"[^a-z0-9]{body}" + ("" if prefix else "[^a-z0-9]")
        out[regex] = TermPattern(raw, regex)
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
    return lexicon_match(norm, literal(regex))


# --------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class _Window:
    as_of: date
    basis: str
    #: the shard of accounts whose aggregates are wanted (None: every account)
    shard: Shard | None = None

    @property
    def end(self) -> datetime:
        """The first instant after the as-of date (UTC): rows strictly before it count."""
        return datetime.combine(self.as_of + timedelta(days=1), time(0), tzinfo=UTC)

    def since(self, days: int) -> datetime:
        """The first instant of the last `days` days ending with the as-of date."""
        return self.end - timedelta(days=days)

    def first_day(self, days: int) -> date:
        """The first calendar day of the last `days` days ending with the as-of date."""
        return self.as_of - timedelta(days=days - 1)

    @property
    def day(self) -> ColumnElement[int]:
        return literal((self.as_of - date(1970, 1, 1)).days, Integer)

    def known(self, table: Any) -> ColumnElement[bool]:
        return known_by(table, self.end, self.basis)

    @cached_property
    def shard_accounts(self) -> Any:
        """The accounts of the shard, hashed once per query (a CTE every source reads)."""
        a = Account.__table__
        accounts = select(a.c.account_id)
        condition = shard_of(a.c.account_id, self.shard)
        if condition is not None:
            accounts = accounts.where(condition)
        return accounts.cte("shard_accounts").prefix_with("MATERIALIZED")

    def mine(self, account_id: Any) -> ColumnElement[bool]:
        """The shard condition on a source's account column, applied before its GROUP BY so
        that a shard aggregates only its own accounts' rows (always true without a shard).

        `account_id IN (the shard's accounts)`: the hash runs once per account, not once per
        source row, and a source with an index on its account (the rollups, keyed by account
        and day) reads only the shard's rows. A row of an account that is not in `accounts`
        falls out, as it would at the final join on `accounts`."""
        if shard_of(account_id, self.shard) is None:
            return true()
        return account_id.in_(select(self.shard_accounts.c.account_id))


#: the ingest source of each landed table (listeners/contract.py)
_SOURCE_OF: dict[str, tuple[str, ...]] = {
    "usage_events": ("usage",), "purchase_events": ("purchases",),
    # the daily rollups (sql/rollups.py): rows of events and of the aggregated feeds
    "usage_daily": ("usage", "usage_daily"), "usage_daily_users": ("usage", "usage_daily_users"),
    "usage_daily_feed": ("usage_daily",), "usage_daily_users_feed": ("usage_daily_users",),
}


def backfill_landings(table: Any) -> Any:
    """The landing instants of the ingest runs of `table`'s source that were backfills (a row
    landed by a run carries the run's `started_at` as its `landed_at`, and keeps it when
    later updated)."""
    r = IngestRun.__table__
    sources = _SOURCE_OF.get(table.name, (table.name,))
    return select(r.c.started_at).where(r.c.backfill == true(), r.c.source.in_(sources))


def known_by(table: Any, end: datetime, basis: str) -> ColumnElement[bool]:
    """Whether a row of `table` (with `landed_at`) counts for a date ending at `end`.

    Callers also require the row's event time to be before `end`. "known": it had landed by
    then. "occurred": always (its event time decides). "auto": it had landed by then, or it
    first landed in a backfill run, in which case it counts from when it happened.
    """
    if basis == "occurred":
        return true()
    landed: ColumnElement[bool] = table.c.landed_at < end
    if basis == "known":
        return landed
    return or_(landed, table.c.landed_at.in_(backfill_landings(table)))


def _usage(w: _Window) -> tuple[Any, Any]:
    """Per account, from the daily rollups (sql/rollups.py): active days, events and errors in
    the last 7, 28 and the 28 before, distinct features and distinct users (contacts) in 28
    days (`usage_daily_users`; for a feed without it, the largest daily count); and the first
    and last event time known (second CTE)."""
    d, du = UsageDaily.__table__, UsageDailyUser.__table__
    in7 = d.c.day >= w.first_day(7)
    in28 = d.c.day >= w.first_day(28)
    users = (
        select(du.c.account_id, func.count(distinct(du.c.contact_id)).label("users_28d"))
        .where(du.c.day >= w.first_day(28), du.c.day <= w.as_of, w.known(du),
               w.mine(du.c.account_id))
        .group_by(du.c.account_id)
        .subquery("usage_users_28d")
    )
    days = (
        select(
            d.c.account_id,
            func.count(distinct(case((in7, d.c.day)))).label("active_days_7d"),
            func.count(distinct(case((in28, d.c.day)))).label("active_days_28d"),
            func.sum(case((in7, d.c.events), else_=0.0)).label("events_7d"),
            func.sum(case((in28, d.c.events), else_=0.0)).label("events_28d"),
            func.sum(case((in28, 0.0), else_=d.c.events)).label("events_prev_28d"),
            func.sum(case((in28, d.c.errors), else_=0.0)).label("errors_28d"),
            func.count(distinct(case((in28, d.c.feature)))).label("distinct_features_28d"),
            func.max(case((in28, d.c.active_users))).label("daily_users_max_28d"),
        )
        .where(d.c.day >= w.first_day(56), d.c.day <= w.as_of, w.known(d), w.mine(d.c.account_id))
        .group_by(d.c.account_id)
        .subquery("usage_days")
    )
    # without any user rows in 28 days (a daily feed sent without `usage_daily_users`), the
    # largest daily count of active users is what is known: a lower bound (for events it is 0
    # then, as no event named a contact)
    window = (
        select(*(c for c in days.c if c.name != "daily_users_max_28d"),
               func.coalesce(users.c.users_28d, days.c.daily_users_max_28d, 0).label(
                   "active_users_28d"))
        .select_from(days.outerjoin(users, users.c.account_id == days.c.account_id))
        .cte("usage_window")
    )
    last = (
        select(d.c.account_id, func.max(d.c.last_at).label("last_at"),
               func.min(d.c.first_at).label("first_at"))
        .where(d.c.day <= w.as_of, w.known(d), w.mine(d.c.account_id))
        .group_by(d.c.account_id)
        .cte("usage_last")
        .prefix_with("MATERIALIZED")
    )
    return window, last


def _usage_source_last(w: _Window) -> Any:
    """The latest usage known by the end of the as-of date, over every account (a source's
    freshness is the whole book's, whichever shard is computed)."""
    d = UsageDaily.__table__
    return select(func.max(d.c.last_at)).where(d.c.day <= w.as_of, w.known(d)).scalar_subquery()


def _had_usage(w: _Window, account_id: Any) -> Any:
    """Whether the account had usage known by the end of the as-of date (its first event
    counts as its creation when it has no `created_at`)."""
    d = UsageDaily.__table__
    return select(d.c.account_id).where(d.c.account_id == account_id, d.c.day <= w.as_of,
                                        w.known(d)).exists()


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
            .where(seen, p.c.occurred_at < before, p.c.mrr_after.is_not(None),
                   w.mine(p.c.account_id))
            .subquery()
        )
        # grouped (one row per account either way), so that SQLite indexes it for the join
        # on accounts instead of scanning it once per account (quadratic in accounts)
        return (select(ranked.c.account_id, func.max(ranked.c.mrr_after).label("mrr_after"))
                .where(ranked.c.rn == 1).group_by(ranked.c.account_id).cte(name))

    agg = (
        select(
            p.c.account_id,
            func.max(p.c.occurred_at).label("last_at"),
            func.min(p.c.occurred_at).label("first_at"),
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
        .where(seen, w.mine(p.c.account_id))
        .group_by(p.c.account_id)
        .cte("billing")
        .prefix_with("MATERIALIZED")
    )
    failed = (
        select(p.c.account_id, func.count().label("open_failed"))
        .select_from(p.outerjoin(agg, agg.c.account_id == p.c.account_id))
        .where(seen, p.c.kind == "payment_failed", w.mine(p.c.account_id),
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
        .where(seen, w.mine(t.c.account_id))
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
        .where(seen, resolved_recently, w.mine(t.c.account_id))
        .subquery()
    )
    median = (
        select(ranked.c.account_id, func.avg(ranked.c.h).label("resolve_median"))
        .where(or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2))
        .group_by(ranked.c.account_id)
        .cte("resolve_median")
    )
    return agg, median


def _social(w: _Window, negative_terms: Sequence[str]) -> tuple[Any, Any]:
    """Per account: mentions and negative mentions (lexicon) in 28 days; and the links of
    mentions to accounts (by account_id, or the author's handle)."""
    m, a, c = Mention.__table__, Account.__table__, Contact.__table__
    seen = and_(m.c.created_at < w.end, w.known(m))
    by_id = select(m.c.mention_id, m.c.account_id).where(seen, m.c.account_id.is_not(None),
                                                         w.mine(m.c.account_id))
    by_account_handle = (
        select(m.c.mention_id, a.c.account_id)
        .join_from(m, a, a.c.x_handle == m.c.author_handle)
        .where(seen, m.c.account_id.is_(None), w.known(a), w.mine(a.c.account_id))
    )
    by_contact_handle = (
        select(m.c.mention_id, c.c.account_id)
        .join_from(m, c, c.c.x_handle == m.c.author_handle)
        .where(seen, m.c.account_id.is_(None), w.known(c), w.mine(c.c.account_id))
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
    ), links


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
        .where(seen, w.mine(r.c.account_id))
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
               im.c.window_end >= w.since(28), w.known(i), w.mine(im.c.account_id))
        .group_by(im.c.account_id)
        .cte("incident_minutes")
    )


def _source_last(w: _Window, table: Any, column: str) -> Any:
    col = table.c[column]
    return select(func.max(col)).where(col < w.end, w.known(table)).scalar_subquery()


def latest_activity_day(w: _Window) -> Any:
    """The warehouse's latest day of activity (days since 1970-01-01, a scalar; NULL without
    any): the latest day of usage, billing or support of any account among the rows the
    basis counts for the date (`known_by`, whenever they happened: a history imported in one
    go counts whole; a row that landed after the date in a daily landing does not, so it
    never changes a past date).

    The accounts' stored attributes (seats, MRR, renewal date) are their latest state: they
    describe this day, the warehouse's "now" (the day its data was taken, on a history
    imported in one go), not an earlier date. It is the whole book's, so whether an
    attribute counts on a date never depends on the account's own later history."""
    d, p, t = UsageDaily.__table__, PurchaseEvent.__table__, Ticket.__table__
    days = union_all(
        select(date_day(func.max(d.c.day)).label("day")).where(w.known(d)),
        select(utc_day(func.max(p.c.occurred_at)).label("day")).where(w.known(p)),
        select(utc_day(func.max(t.c.opened_at)).label("day")).where(w.known(t)),
    ).subquery("activity")
    # one row, computed once per query however often the features read it
    latest = select(func.max(days.c.day).label("day")).cte("latest_activity").prefix_with(
        "MATERIALIZED")
    return select(latest.c.day).scalar_subquery()


# --------------------------------------------------------------------------- issue 12


def _usage_trends(w: _Window) -> Any:
    """Per account, from the last 180 days of usage rolled up by day: events, errors and
    active days in 90 days, the least-squares slope of weekly events over the last 12
    weeks (weeks counted back from the as-of date; a week without usage counts 0), and the
    account's own long baseline: events, errors and active days in the days 28 to 179 back
    (the 152 days before the last 28), with the oldest day of usage in the window (how much
    of the baseline the account was there for).

    With x = 0..11 (oldest to latest week) and y the week's events, the slope is
    sum((x - 5.5) * y) / 143: the terms of weeks without usage are 0, so only the days with
    usage are summed. The days come from `usage_daily` (summed over its features, components
    and landings known by then).
    """
    r = UsageDaily.__table__
    day = date_day(r.c.day)
    daily = (
        select(
            r.c.account_id,
            day.label("d"),
            func.sum(r.c.events).label("events"),
            func.sum(r.c.errors).label("errors"),
        )
        .where(r.c.day >= w.first_day(LONG_BASELINE_DAYS), r.c.day <= w.as_of, w.known(r),
               w.mine(r.c.account_id))
        # by the stored day (one value per date): the rollups' key order, so SQLite groups
        # as it reads instead of sorting every row by the computed day number
        .group_by(r.c.account_id, r.c.day)
        .cte("usage_by_day")
    )
    return trend_sums(w, daily)


def trend_sums(w: _Window, daily: Any) -> Any:
    """The `usage_trends` CTE from a per-day CTE `daily` (account_id, d: the day number,
    events, errors): the sums over 90 and 84 days, the slope's numerator over 12 weeks, the
    baseline before the last 28 days, and how far back the account's usage reaches. Read
    from the rollups here, from the raw events in sql/usage_event_features.py."""
    back = w.day - daily.c.d  # 0 on the as-of date
    x = literal(11, Integer) - back // literal(7, Integer)  # the week, 0 = the latest
    in84, in90 = back < 84, back < 90
    base = back >= 28
    return (
        select(
            daily.c.account_id,
            func.sum(case((in90, daily.c.events), else_=0.0)).label("events_90d"),
            func.sum(case((in90, daily.c.errors), else_=0.0)).label("errors_90d"),
            func.sum(case((in90, 1), else_=0)).label("active_days_90d"),
            func.sum(case((in84, daily.c.events), else_=0.0)).label("events_84d"),
            func.sum(case((in84, (x - 5.5) * daily.c.events), else_=0.0)).label("slope_num"),
            func.sum(case((base, daily.c.events), else_=0.0)).label("events_base"),
            func.sum(case((base, daily.c.errors), else_=0.0)).label("errors_base"),
            func.sum(case((base, 1), else_=0)).label("active_days_base"),
            func.max(back).label("oldest_back"),
        )
        .group_by(daily.c.account_id)
        .cte("usage_trends")
    )


def _user_blocks(w: _Window) -> Any:
    """Per account: distinct active users (contacts) in each 28-day block counted back from
    the as-of date (block 0 is the last 28 days), over 6 blocks (168 days); and the peak of
    the blocks in the last 84 days (3 blocks) and 168 days, and the users of block 1. Read
    from `usage_daily_users` (one row per account, day, contact and landing), so a person
    counts once per block however many days they were active."""
    du = UsageDailyUser.__table__
    block = (w.day - date_day(du.c.day)) // literal(28, Integer)
    blocks = (
        select(du.c.account_id, block.label("b"),
               func.count(distinct(du.c.contact_id)).label("users"))
        .where(du.c.day >= w.first_day(168), du.c.day <= w.as_of, w.known(du),
               w.mine(du.c.account_id))
        .group_by(du.c.account_id, block)
        .cte("user_blocks")
    )
    return (
        select(
            blocks.c.account_id,
            func.max(case((blocks.c.b < 3, blocks.c.users))).label("peak_84d"),
            func.max(blocks.c.users).label("peak_168d"),
            func.max(case((blocks.c.b == 1, blocks.c.users))).label("users_prev_28d"),
        )
        .group_by(blocks.c.account_id)
        .cte("user_peaks")
    )


def _champion(w: _Window, *, prior_days: int = 60, recent_days: int = 28,
              min_active_days: int = 3) -> Any:
    """Per account: whether its champion is gone. The champion is the contact with the most
    usage in the `prior_days` before the last `recent_days` (active on at least
    `min_active_days` of them; ties go to the smaller contact id); gone = 1 when that contact
    has no usage in the last `recent_days`, 0 when it has; accounts without one are absent.
    Read from `usage_daily_users`."""
    du = UsageDailyUser.__table__
    recent = du.c.day >= w.first_day(recent_days)
    per_contact = (
        select(
            du.c.account_id, du.c.contact_id,
            func.sum(case((recent, 0.0), else_=du.c.events)).label("prior_events"),
            func.count(distinct(case((~recent, du.c.day)))).label("prior_days"),
            func.sum(case((recent, du.c.event_rows), else_=0)).label("recent_rows"),
        )
        .where(du.c.day >= w.first_day(recent_days + prior_days), du.c.day <= w.as_of,
               w.known(du), w.mine(du.c.account_id))
        .group_by(du.c.account_id, du.c.contact_id)
        .subquery()
    )
    return champion_gone(per_contact, min_active_days)


def champion_gone(per_contact: Any, min_active_days: int) -> Any:
    """The `champion` CTE from a per-contact subquery `per_contact` (account_id, contact_id,
    prior_events, prior_days, recent_rows): each account's champion (most prior events among
    the contacts active on `min_active_days` prior days; ties to the smaller contact id) and
    `gone`. Read from the rollups here, from the raw events in sql/usage_event_features.py."""
    ranked = (
        select(
            per_contact.c.account_id, per_contact.c.recent_rows,
            func.row_number().over(
                partition_by=per_contact.c.account_id,
                order_by=(per_contact.c.prior_events.desc(), per_contact.c.contact_id),
            ).label("rn"),
        )
        .where(per_contact.c.prior_days >= min_active_days)
        .subquery()
    )
    return (
        # grouped (one row per account either way): without it SQLite guesses the CTE small,
        # gives it no index and scans it once per account (quadratic in accounts)
        select(ranked.c.account_id,
               func.max(case((ranked.c.recent_rows == 0, 1.0), else_=0.0)).label("gone"))
        .where(ranked.c.rn == 1)
        .group_by(ranked.c.account_id)
        .cte("champion")
    )


def _payments(w: _Window, billing: Any) -> Any:
    """Per account: payments failed in the last 90 days, how many of them a later successful
    payment (known by then) recovered, and the latest failure ever."""
    p = PurchaseEvent.__table__
    in90 = p.c.occurred_at >= w.since(90)
    return (
        select(
            p.c.account_id,
            func.count(case((in90, 1))).label("failed_90d"),
            func.count(case((and_(in90, p.c.occurred_at < billing.c.last_success), 1))).label(
                "recovered_90d"),
            func.max(p.c.occurred_at).label("last_failed"),
        )
        .select_from(p.outerjoin(billing, billing.c.account_id == p.c.account_id))
        .where(p.c.occurred_at < w.end, w.known(p), p.c.kind == "payment_failed",
               w.mine(p.c.account_id))
        .group_by(p.c.account_id)
        .cte("payments")
    )


def _terms(w: _Window) -> Any:
    """Per account: the day of the latest `subscription_started` or `renewed` event and the
    days since the one before it (the billing term it renewed on); and the same of its
    successful payments (the billing cadence, for plans whose renewals are only payments)."""
    p = PurchaseEvent.__table__
    d = utc_day(p.c.occurred_at)
    pay = case((p.c.kind == "payment_succeeded", 1), else_=0)
    ranked = (
        select(
            p.c.account_id, pay.label("pay"), d.label("d"),
            (d - func.lag(d).over(partition_by=(p.c.account_id, pay),
                                  order_by=(p.c.occurred_at, p.c.event_id))).label("gap"),
            func.row_number().over(partition_by=(p.c.account_id, pay),
                                   order_by=(p.c.occurred_at.desc(), p.c.event_id.desc())
                                   ).label("rn"),
        )
        .where(p.c.occurred_at < w.end, w.known(p), w.mine(p.c.account_id),
               p.c.kind.in_(("subscription_started", "renewed", "payment_succeeded")))
        .subquery()
    )
    term_row, pay_row = ranked.c.pay == 0, ranked.c.pay == 1
    return (
        select(ranked.c.account_id,
               func.max(case((term_row, ranked.c.d))).label("last_term_day"),
               func.max(case((term_row, ranked.c.gap))).label("gap"),
               func.max(case((pay_row, ranked.c.d))).label("last_pay_day"),
               func.max(case((pay_row, ranked.c.gap))).label("pay_gap"))
        .where(ranked.c.rn == 1)
        .group_by(ranked.c.account_id)
        .cte("terms")
    )


def _tone(w: _Window, links: Any, negative_terms: Sequence[str]) -> Any:
    """Per account: its tickets and linked mentions of the last 90 days, which of them are
    negative, and how many the sentiment model scored. A text is negative when its
    `text_insights` row says so (models/feedback.py); a text without one falls back to the
    lexicon (tickets: subject and body)."""
    t, m, ti = Ticket.__table__, Mention.__table__, TextInsight.__table__
    ticket_text = func.coalesce(t.c.subject, "") + literal(" ") + func.coalesce(t.c.body, "")
    texts = union_all(
        select(t.c.account_id, literal("ticket").label("item_type"),
               t.c.ticket_id.label("item_id"), t.c.opened_at.label("at"),
               _normalised_sql(ticket_text).label("norm"))
        .where(t.c.opened_at >= w.since(90), t.c.opened_at < w.end, w.known(t),
               w.mine(t.c.account_id)),
        select(links.c.account_id, literal("mention").label("item_type"),
               m.c.mention_id.label("item_id"), m.c.created_at.label("at"),
               _normalised_sql(m.c.text).label("norm"))
        .join_from(links, m, m.c.mention_id == links.c.mention_id)
        .where(m.c.created_at >= w.since(90), m.c.created_at < w.end),
    ).cte("tone_texts").prefix_with("MATERIALIZED")  # each text normalised once, not per term
    lexicon = _matches_any(texts.c.norm, negative_terms)
    negative = case((ti.c.sentiment.is_not(None), ti.c.sentiment == "negative"),
                    else_=lexicon)
    # each text's verdict once (not once per count that reads it), then the counts
    marked = (
        select(texts.c.account_id, (texts.c.item_type == "ticket").label("is_ticket"),
               (texts.c.at >= w.since(28)).label("in28"),
               case((negative, 1), else_=0).label("negative"),
               case((ti.c.sentiment_method.in_(MODEL_SENTIMENT_METHODS), 1),
                    else_=0).label("model"))
        .select_from(texts.outerjoin(ti, and_(ti.c.item_type == texts.c.item_type,
                                              ti.c.item_id == texts.c.item_id)))
        .cte("tone_marked")
        .prefix_with("MATERIALIZED")
    )
    is_ticket, in28, neg = marked.c.is_ticket, marked.c.in28, marked.c.negative == 1
    return (
        select(
            marked.c.account_id,
            func.count(case((is_ticket, 1))).label("tickets"),
            func.count(case((and_(is_ticket, neg), 1))).label("tickets_negative"),
            func.count(case((~is_ticket, 1))).label("mentions"),
            func.count(case((and_(~is_ticket, neg), 1))).label("mentions_negative"),
            func.count(case((and_(in28, neg), 1))).label("negative_28d"),
            func.count(case((neg, 1))).label("negative_90d"),
            func.count().label("texts"),
            func.sum(marked.c.model).label("model_scored"),
        )
        .group_by(marked.c.account_id)
        .cte("tone")
    )


# --------------------------------------------------------------------------- issue 15


def _expected_seconds(channel: Any, expectations: Mapping[str, float]) -> Any:
    """The first-response time customers expect on a ticket's channel, in seconds: its
    lower-cased channel's (a ticket without one is `unknown`), else the `default`."""
    key = func.lower(func.coalesce(channel, literal("unknown")))
    named = {k: v for k, v in expectations.items() if k != "default"}
    default = literal(float(expectations.get("default", 60.0)) * 60.0, Float)
    if not named:
        return default
    return case(*((key == literal(k), literal(float(v) * 60.0, Float))
                  for k, v in sorted(named.items())), else_=default)


#: the slack of the on-time comparison, in seconds: SQLite's julianday arithmetic is exact
#: only to about 50 microseconds, so an answer at exactly the expectation stays on time
_ON_TIME_SLACK = 0.001


def _first_response(w: _Window, expectations: Mapping[str, float]) -> tuple[Any, Any]:
    """Per account, its tickets opened in the last 90 days against the first-response time
    customers expect on their channel (`expectations`, minutes per lower-cased channel with a
    `default`; models/responses.yaml):

    * `due`: tickets answered on time, or whose expectation had passed by the end of the
      as-of date; `late`: of those, the ones not answered on time (answered later, or still
      unanswered then; a `first_response_at` after the date is not an answer yet);
    * the median hours to the first response of those answered by then (second CTE).

    A ticket without `first_response_at` is evidence of a late answer only where the feed
    records first responses: on a channel, from the first ticket opened on it that has one
    (known by the date). Before that, or on a channel that never records one, a ticket counts
    neither way, so a warehouse without first responses gives no value (not a penalty).
    """
    t = Ticket.__table__
    seen = and_(t.c.opened_at < w.end, w.known(t))
    channel = func.lower(func.coalesce(t.c.channel, literal("unknown")))
    answered_by_then = and_(t.c.first_response_at.is_not(None), t.c.first_response_at < w.end)
    recording = (
        select(channel.label("channel"), func.min(t.c.opened_at).label("since"))
        .where(seen, answered_by_then)
        .group_by(channel)
        .cte("response_channels")
    )
    expected = _expected_seconds(t.c.channel, expectations)
    waited = epoch_seconds(t.c.first_response_at) - epoch_seconds(t.c.opened_at)
    on_time = and_(answered_by_then, waited <= expected + _ON_TIME_SLACK)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    end = literal((w.end - epoch).total_seconds(), Float)
    passed = epoch_seconds(t.c.opened_at) + expected <= end
    recent = (
        select(t.c.account_id, on_time.label("on_time"), passed.label("passed"),
               case((answered_by_then, waited / 3600.0)).label("hours"))
        .select_from(t.join(recording, and_(recording.c.channel == channel,
                                            t.c.opened_at >= recording.c.since)))
        .where(seen, t.c.opened_at >= w.since(90), w.mine(t.c.account_id))
        .cte("response_tickets")
    )
    due = or_(recent.c.on_time, recent.c.passed)
    agg = (
        select(recent.c.account_id,
               func.count(case((due, 1))).label("due"),
               func.count(case((and_(due, ~recent.c.on_time), 1))).label("late"))
        .group_by(recent.c.account_id)
        .cte("first_response")
    )
    ranked = (
        select(recent.c.account_id, recent.c.hours,
               func.row_number().over(partition_by=recent.c.account_id,
                                      order_by=recent.c.hours).label("rn"),
               func.count().over(partition_by=recent.c.account_id).label("n"))
        .where(recent.c.hours.is_not(None))
        .subquery()
    )
    median = (
        select(ranked.c.account_id, func.avg(ranked.c.hours).label("hours_median"))
        .where(or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2))
        .group_by(ranked.c.account_id)
        .cte("first_response_median")
    )
    return agg, median
