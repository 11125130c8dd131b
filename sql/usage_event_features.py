"""The usage features read from the raw `usage_events`: the SQL before the daily rollups
(issue 16), the reference that the rollup-based SQL of sql/feature_sources.py must equal
(tests/test_rollups.py compares every feature) and what `pulse bench scale` times against
the rollups. `features_select(..., usage_source="events")` swaps these in for their namesakes.

Cost grows with events, not with accounts x days: only for comparison, and for warehouses
that keep their raw events anyway.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, case, distinct, func, literal, select

from pulse.sql.feature_sources import (
    LONG_BASELINE_DAYS,
    _source_last,
    _Window,
    champion_gone,
    day_key,
    trend_sums,
    utc_day,
)
from pulse.sql.schema import UsageEvent


def _had_usage(w: _Window, account_id: Any) -> Any:
    u = UsageEvent.__table__
    return select(u.c.account_id).where(u.c.account_id == account_id,
                                        u.c.occurred_at < w.end, w.known(u)).exists()


def _usage_source_last(w: _Window) -> Any:
    """The latest usage event known by the end of the as-of date, over every account."""
    return _source_last(w, UsageEvent.__table__, "occurred_at")


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
        .where(u.c.occurred_at >= w.since(56), u.c.occurred_at < w.end, w.known(u),
               w.mine(u.c.account_id))
        .group_by(u.c.account_id)
        .cte("usage_window")
    )
    last = (
        select(u.c.account_id, func.max(u.c.occurred_at).label("last_at"),
               func.min(u.c.occurred_at).label("first_at"))
        .where(u.c.occurred_at < w.end, w.known(u), w.mine(u.c.account_id))
        .group_by(u.c.account_id)
        .cte("usage_last")
        .prefix_with("MATERIALIZED")
    )
    return window, last


def _usage_trends(w: _Window) -> Any:
    """Per account, from the last 180 days of usage rolled up by day: events, errors and
    active days in 90 days, the least-squares slope of weekly events over the last 12
    weeks (weeks counted back from the as-of date; a week without usage counts 0), and the
    account's own long baseline: events, errors and active days in the days 28 to 179 back
    (the 152 days before the last 28), with the oldest day of usage in the window (how much
    of the baseline the account was there for).

    With x = 0..11 (oldest to latest week) and y the week's events, the slope is
    sum((x - 5.5) * y) / 143: the terms of weeks without usage are 0, so only the days with
    usage are summed.
    """
    u = UsageEvent.__table__
    day = utc_day(u.c.occurred_at)
    daily = (
        select(
            u.c.account_id,
            day.label("d"),
            func.sum(u.c.quantity).label("events"),
            func.sum(case((u.c.outcome == "error", u.c.quantity), else_=0.0)).label("errors"),
        )
        .where(u.c.occurred_at >= w.since(LONG_BASELINE_DAYS), u.c.occurred_at < w.end,
               w.known(u), w.mine(u.c.account_id))
        .group_by(u.c.account_id, day)
        .cte("event_days")  # not "usage_daily": that would hide the table of that name
    )
    return trend_sums(w, daily)


def _user_blocks(w: _Window) -> Any:
    """Per account: distinct active users (contacts) in each 28-day block counted back from
    the as-of date (block 0 is the last 28 days), over 6 blocks (168 days); and the peak of
    the blocks in the last 84 days (3 blocks) and 168 days, and the users of block 1."""
    u = UsageEvent.__table__
    block = (w.day - utc_day(u.c.occurred_at)) // literal(28, Integer)
    blocks = (
        select(u.c.account_id, block.label("b"),
               func.count(distinct(u.c.contact_id)).label("users"))
        .where(u.c.occurred_at >= w.since(168), u.c.occurred_at < w.end, w.known(u),
               u.c.contact_id.is_not(None), w.mine(u.c.account_id))
        .group_by(u.c.account_id, block)
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
    has no usage in the last `recent_days`, 0 when it has; accounts without one are absent."""
    u = UsageEvent.__table__
    recent = u.c.occurred_at >= w.since(recent_days)
    per_contact = (
        select(
            u.c.account_id, u.c.contact_id,
            func.sum(case((recent, 0.0), else_=u.c.quantity)).label("prior_events"),
            func.count(distinct(case((~recent, day_key(u.c.occurred_at))))).label("prior_days"),
            func.count(case((recent, 1))).label("recent_rows"),
        )
        .where(u.c.occurred_at >= w.since(recent_days + prior_days), u.c.occurred_at < w.end,
               w.known(u), u.c.contact_id.is_not(None), w.mine(u.c.account_id))
        .group_by(u.c.account_id, u.c.contact_id)
        .subquery()
    )
    return champion_gone(per_contact, min_active_days)
