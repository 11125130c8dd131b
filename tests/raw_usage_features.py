"""The usage features as they were computed from raw `usage_events` before the daily rollups
(issue 16), kept verbatim as the reference the rollup-based SQL must equal
(tests/test_rollups.py swaps them into sql/features.py and compares every feature), with the
usage readers of the flags (sql/flags.py `champions` and `weekly_usage`)."""
from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Float, Integer, and_, case, cast, distinct, func, literal, select

from pulse.core.errors import InvalidArgumentError
from pulse.sql.feature_sources import LONG_BASELINE_DAYS, _Window, day_key, utc_day
from pulse.sql.flags import _frame, _instants, _window
from pulse.sql.schema import Contact, UsageEvent
from pulse.sql.types import UTCDateTime


def _had_usage(w: _Window, account_id: Any) -> Any:
    u = UsageEvent.__table__
    return select(u.c.account_id).where(u.c.account_id == account_id,
                                        u.c.occurred_at < w.end, w.known(u)).exists()


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
        select(u.c.account_id, func.max(u.c.occurred_at).label("last_at"),
               func.min(u.c.occurred_at).label("first_at"))
        .where(u.c.occurred_at < w.end, w.known(u))
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
               w.known(u))
        .group_by(u.c.account_id, day)
        .cte("usage_daily")
    )
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
    the blocks in the last 84 days (3 blocks) and 168 days, and the users of block 1."""
    u = UsageEvent.__table__
    block = (w.day - utc_day(u.c.occurred_at)) // literal(28, Integer)
    blocks = (
        select(u.c.account_id, block.label("b"),
               func.count(distinct(u.c.contact_id)).label("users"))
        .where(u.c.occurred_at >= w.since(168), u.c.occurred_at < w.end, w.known(u),
               u.c.contact_id.is_not(None))
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
               w.known(u), u.c.contact_id.is_not(None))
        .group_by(u.c.account_id, u.c.contact_id)
        .subquery()
    )
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
        select(ranked.c.account_id,
               case((ranked.c.recent_rows == 0, 1.0), else_=0.0).label("gone"))
        .where(ranked.c.rn == 1)
        .cte("champion")
    )


def champions(engine: Engine, as_of: date, *, basis: str = "known", prior_days: int = 60,
              gone_days: int = 21) -> pd.DataFrame:
    """Per account, its champion: the contact with the most usage in the `prior_days` days
    before the last `gone_days` days (ties: more active days, then the smaller contact_id).

    Columns: account_id, contact_id, contact_name, contact_email, contact_role,
    prior_events, prior_active_days, last_used_at (the champion's latest usage as of the
    date), others_recent (other contacts of the account with usage in the last `gone_days`).
    """
    if prior_days < 1 or gone_days < 1:
        raise InvalidArgumentError(f"prior_days and gone_days must be at least 1 (not {prior_days}, "
                         f"{gone_days})")
    w = _window(as_of, basis)
    u, c = UsageEvent.__table__, Contact.__table__
    start, recent = w.since(gone_days + prior_days), w.since(gone_days)
    seen = and_(u.c.occurred_at >= start, u.c.occurred_at < w.end, u.c.contact_id.is_not(None),
                w.known(u))
    in_prior = u.c.occurred_at < recent
    per_contact = (
        select(
            u.c.account_id, u.c.contact_id,
            func.sum(case((in_prior, u.c.quantity), else_=0.0)).label("prior_events"),
            func.count(distinct(case((in_prior, day_key(u.c.occurred_at))))).label(
                "prior_active_days"),
            func.max(u.c.occurred_at).label("last_used_at"),
            func.count(case((~in_prior, 1))).label("recent_rows"),
        )
        .where(seen)
        .group_by(u.c.account_id, u.c.contact_id)
        .cte("contact_usage")
    )
    ranked = (
        select(
            per_contact,
            func.row_number().over(
                partition_by=per_contact.c.account_id,
                order_by=(per_contact.c.prior_events.desc(),
                          per_contact.c.prior_active_days.desc(), per_contact.c.contact_id),
            ).label("rn"),
            (func.count(case((per_contact.c.recent_rows > 0, 1))).over(
                partition_by=per_contact.c.account_id)).label("active_recent"),
        )
        .subquery()
    )
    contact_known = w.known(c)
    query = (
        select(
            ranked.c.account_id, ranked.c.contact_id,
            c.c.name.label("contact_name"), c.c.email.label("contact_email"),
            c.c.role.label("contact_role"),
            cast(ranked.c.prior_events, Float).label("prior_events"),
            ranked.c.prior_active_days, ranked.c.last_used_at,
            (ranked.c.active_recent - case((ranked.c.recent_rows > 0, 1), else_=0)).label(
                "others_recent"),
        )
        .select_from(ranked.outerjoin(c, and_(c.c.contact_id == ranked.c.contact_id,
                                              c.c.account_id == ranked.c.account_id,
                                              contact_known)))
        .where(ranked.c.rn == 1, ranked.c.prior_events > 0)
        .order_by(ranked.c.account_id)
    )
    frame = _frame(engine, query)
    # a stored instant read through a labelled subquery column may come back as text
    frame["last_used_at"] = [UTCDateTime().process_result_value(v, engine.dialect)
                             for v in frame["last_used_at"]]
    _instants(frame, "last_used_at")
    for col in ("prior_events", "prior_active_days", "others_recent"):
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    return frame


def weekly_usage(engine: Engine, as_of: date, *, basis: str = "known",
                 weeks: int = 16) -> pd.DataFrame:
    """Per (account, week) of the last `weeks` weeks: week 0 is the 7 days ending with the
    as-of date, week 1 the 7 before, and so on (whole weeks, so a weekly cycle never tilts a
    comparison). One grouped query; weeks without usage have no row.

    Columns: account_id, week, events and errors (sum of quantity, all and outcome error),
    rows and error_rows (usage rows), users (distinct contacts), active_days, and
    first_week (the oldest week with usage of the account in the window, on every row).
    """
    if weeks < 2:
        raise InvalidArgumentError(f"weeks must be at least 2 (not {weeks})")
    w = _window(as_of, basis)
    u = UsageEvent.__table__
    week = ((w.day - utc_day(u.c.occurred_at)) // 7).label("week")
    error = u.c.outcome == "error"
    per_week = (
        select(
            u.c.account_id, week,
            cast(func.sum(u.c.quantity), Float).label("events"),
            cast(func.sum(case((error, u.c.quantity), else_=0.0)), Float).label("errors"),
            func.count().label("rows"),
            func.count(case((error, 1))).label("error_rows"),
            func.count(distinct(u.c.contact_id)).label("users"),
            func.count(distinct(day_key(u.c.occurred_at))).label("active_days"),
        )
        .where(u.c.occurred_at >= w.since(7 * weeks), u.c.occurred_at < w.end, w.known(u))
        .group_by(u.c.account_id, week)
        .subquery()
    )
    query = select(
        per_week,
        func.max(per_week.c.week).over(partition_by=per_week.c.account_id).label("first_week"),
    ).order_by(per_week.c.account_id, per_week.c.week)
    frame = _frame(engine, query)
    for col in ("week", "rows", "error_rows", "users", "active_days", "first_week"):
        frame[col] = pd.to_numeric(frame[col]).astype("int64")
    for col in ("events", "errors"):
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    return frame
