"""The usage readers of the flags as they were computed from raw `usage_events` before the
daily rollups (issue 16): sql/flags.py `champions` and `weekly_usage`, kept verbatim as the
reference; and the raw-event usage features, which live in the package
(pulse/sql/usage_event_features.py, `features_select(..., usage_source="events")`)."""
from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Engine, Float, and_, case, cast, distinct, func, select

from pulse.core.errors import InvalidArgumentError
from pulse.sql.feature_sources import day_key, utc_day
from pulse.sql.flags import _frame, _instants, _window
from pulse.sql.schema import Contact, UsageEvent
from pulse.sql.types import UTCDateTime
from pulse.sql.usage_event_features import (  # noqa: F401  (tests/test_rollups.py swaps them in)
    _champion,
    _had_usage,
    _usage,
    _usage_trends,
    _user_blocks,
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
