"""Set-based inputs of the account flags, and storing and reading `account_flags`.

The flags (models/flags.py) read the materialised features and health of a date; what those
do not carry comes from here, each one grouped query over the whole warehouse, point in time
like the features (sql/features.py): rows whose event time falls before the end of the as-of
date and, with `basis="known"`, which had landed by then.

* `champions`: per account, its champion (the contact with the most usage in the
  `prior_days` before the last `gone_days`) and when the champion last used the product.
* `open_failures`: per account, the failed payments no successful payment followed.
* `weekly_usage`: per account and week (7-day buckets ending with the as-of date, week 0 the
  latest), its events, errors, usage rows, active users and active days, plus the week of its
  first usage in the window: the history the silent flag compares an account with.
* `last_downgrades`: per account, its latest downgrade in the last 90 days.

`write_flags` replaces one date's rows in one transaction; other dates are never touched.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    Engine,
    Float,
    and_,
    case,
    cast,
    delete,
    distinct,
    func,
    or_,
    select,
)

from pulse.core.errors import InvalidArgumentError
from pulse.sql.db import result_frame
from pulse.sql.feature_sources import _Window, date_day
from pulse.sql.features import BASES
from pulse.sql.health import bulk_insert
from pulse.sql.schema import (
    Account,
    AccountFlag,
    AccountHealth,
    ChurnScore,
    Contact,
    PurchaseEvent,
    UsageDaily,
    UsageDailyUser,
)
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

FLAGS = AccountFlag.__table__
CHURN = ChurnScore.__table__


def _window(as_of: date, basis: str) -> _Window:
    if basis not in BASES:
        raise InvalidArgumentError(f"basis must be one of {BASES}, not {basis!r}")
    return _Window(as_of, basis)


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def _instants(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for c in columns:
        frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


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
    # from the per-contact daily rollups (sql/rollups.py): days, not events
    du, c = UsageDailyUser.__table__, Contact.__table__
    seen = and_(du.c.day >= w.first_day(gone_days + prior_days), du.c.day <= as_of,
                w.known(du))
    in_prior = du.c.day < w.first_day(gone_days)
    per_contact = (
        select(
            du.c.account_id, du.c.contact_id,
            func.sum(case((in_prior, du.c.events), else_=0.0)).label("prior_events"),
            func.count(distinct(case((in_prior, du.c.day)))).label("prior_active_days"),
            func.max(du.c.last_at).label("last_used_at"),
            func.sum(case((~in_prior, du.c.event_rows), else_=0)).label("recent_rows"),
        )
        .where(seen)
        .group_by(du.c.account_id, du.c.contact_id)
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


def open_failures(engine: Engine, as_of: date, *, basis: str = "known") -> pd.DataFrame:
    """Per account with failed payments that no successful payment followed (as the
    `open_failed_payments` feature counts them): how many, since when, how much.

    Columns: account_id, failures, first_failed_at, last_failed_at, amount, currency,
    last_success_at.
    """
    w = _window(as_of, basis)
    p = PurchaseEvent.__table__
    seen = and_(p.c.occurred_at < w.end, w.known(p))
    success = (
        select(p.c.account_id, func.max(p.c.occurred_at).label("last_success"))
        .where(seen, p.c.kind == "payment_succeeded")
        .group_by(p.c.account_id)
        .cte("last_success")
    )
    query = (
        select(
            p.c.account_id,
            func.count().label("failures"),
            func.min(p.c.occurred_at).label("first_failed_at"),
            func.max(p.c.occurred_at).label("last_failed_at"),
            cast(func.sum(p.c.amount), Float).label("amount"),
            func.max(p.c.currency).label("currency"),
            func.max(success.c.last_success).label("last_success_at"),
        )
        .select_from(p.outerjoin(success, success.c.account_id == p.c.account_id))
        .where(seen, p.c.kind == "payment_failed",
               or_(success.c.last_success.is_(None), p.c.occurred_at > success.c.last_success))
        .group_by(p.c.account_id)
        .order_by(p.c.account_id)
    )
    frame = _frame(engine, query)
    for col in ("first_failed_at", "last_failed_at", "last_success_at"):
        frame[col] = [UTCDateTime().process_result_value(v, engine.dialect)
                      for v in frame[col]]
    _instants(frame, "first_failed_at", "last_failed_at", "last_success_at")
    frame["failures"] = pd.to_numeric(frame["failures"]).astype("float64")
    frame["amount"] = pd.to_numeric(frame["amount"]).astype("float64")
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
    # from the daily rollups (sql/rollups.py); a row of an aggregated feed counts as one
    # usage row, an error row when it has errors
    d, du = UsageDaily.__table__, UsageDailyUser.__table__
    first = w.first_day(7 * weeks)

    def week_of(table: Any) -> Any:
        return ((w.day - date_day(table.c.day)) // 7).label("week")

    week_d, week_u = week_of(d), week_of(du)  # one object each: one bound parameter
    days = (
        select(
            d.c.account_id, week_d,
            cast(func.sum(d.c.events), Float).label("events"),
            cast(func.sum(d.c.errors), Float).label("errors"),
            func.sum(func.coalesce(d.c.event_rows, 1)).label("rows"),
            func.sum(func.coalesce(d.c.error_rows, case((d.c.errors > 0, 1), else_=0))).label(
                "error_rows"),
            func.count(distinct(d.c.day)).label("active_days"),
        )
        .where(d.c.day >= first, d.c.day <= as_of, w.known(d))
        .group_by(d.c.account_id, week_d)
        .subquery("usage_weeks")
    )
    users = (
        select(du.c.account_id, week_u, func.count(distinct(du.c.contact_id)).label("users"))
        .where(du.c.day >= first, du.c.day <= as_of, w.known(du))
        .group_by(du.c.account_id, week_u)
        .subquery("user_weeks")
    )
    per_week = (
        select(days.c.account_id, days.c.week, days.c.events, days.c.errors, days.c.rows,
               days.c.error_rows, func.coalesce(users.c.users, 0).label("users"),
               days.c.active_days)
        .select_from(days.outerjoin(users, and_(users.c.account_id == days.c.account_id,
                                                users.c.week == days.c.week)))
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


def last_downgrades(engine: Engine, as_of: date, *, basis: str = "known",
                    days: int = 90) -> pd.DataFrame:
    """Per account with a downgrade in the last `days` days: when the latest one happened
    (account_id, downgraded_at)."""
    w = _window(as_of, basis)
    p = PurchaseEvent.__table__
    query = (
        select(p.c.account_id, func.max(p.c.occurred_at).label("downgraded_at"))
        .where(p.c.kind == "downgraded", p.c.occurred_at >= w.since(days),
               p.c.occurred_at < w.end, w.known(p))
        .group_by(p.c.account_id)
        .order_by(p.c.account_id)
    )
    frame = _frame(engine, query)
    frame["downgraded_at"] = [UTCDateTime().process_result_value(v, engine.dialect)
                              for v in frame["downgraded_at"]]
    return _instants(frame, "downgraded_at")


# --------------------------------------------------------------------------- storing


def write_flags(engine: Engine, as_of: date, flags: pd.DataFrame, *,
                computed_at: datetime | None = None) -> int:
    """Replace the flags of `as_of` (columns account_id, flag, evidence, details); returns
    the rows written."""
    frame = flags.assign(as_of=as_of, computed_at=computed_at or datetime.now(UTC))
    with engine.begin() as conn:
        conn.execute(delete(FLAGS).where(FLAGS.c.as_of == as_of))
        bulk_insert(conn, FLAGS, frame)
    log.info("flags as of %s: %d", as_of, len(frame))
    return len(frame)


def load_flags(engine: Engine, as_of: date,
               account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored flags of `as_of` (account_id, flag, evidence, details, ...)."""
    query = select(FLAGS).where(FLAGS.c.as_of == as_of).order_by(FLAGS.c.account_id,
                                                                FLAGS.c.flag)
    if account_ids is not None:
        query = query.where(FLAGS.c.account_id.in_(list(account_ids)))
    return _frame(engine, query)


def flag_dates(engine: Engine) -> list[date]:
    """The as-of dates with stored flags, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(FLAGS.c.as_of).distinct().order_by(FLAGS.c.as_of)).scalars())


def load_churn_scores(engine: Engine, as_of: date,
                      account_ids: Sequence[str] | None = None, *, drivers: bool = True
                      ) -> pd.DataFrame:
    """The churn model's stored scores of `as_of` (account_id, model_version, probability,
    and with `drivers` the drivers, JSON parsed per row: the flags read only the
    probability); empty when the model has not scored that date."""
    query = select(CHURN.c.account_id, CHURN.c.model_version, CHURN.c.probability,
                   *([CHURN.c.drivers] if drivers else [])).where(CHURN.c.as_of == as_of)
    if account_ids is not None:
        query = query.where(CHURN.c.account_id.in_(list(account_ids)))
    frame = _frame(engine, query)
    frame["probability"] = pd.to_numeric(frame["probability"]).astype("float64")
    return frame


def flag_counts(engine: Engine, as_of: date) -> dict[str, int]:
    """How many accounts carry each flag as of `as_of`."""
    query = (select(FLAGS.c.flag, func.count()).where(FLAGS.c.as_of == as_of)
             .group_by(FLAGS.c.flag).order_by(FLAGS.c.flag))
    with engine.connect() as conn:
        return {str(k): int(v) for k, v in conn.execute(query).all()}


# --------------------------------------------------------------------------- the risk list


def load_accounts(engine: Engine, account_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The accounts' descriptive attributes as stored now (account_id, name, csm_email,
    currency, plan, segment, renewal_date)."""
    a = Account.__table__
    query = select(a.c.account_id, a.c.name, a.c.csm_email, a.c.currency, a.c.plan,
                   a.c.segment, a.c.renewal_date).order_by(a.c.account_id)
    if account_ids is not None:
        query = query.where(a.c.account_id.in_(list(account_ids)))
    return _frame(engine, query)


def load_health_history(engine: Engine, account_id: str, *,
                        until: date | None = None) -> pd.DataFrame:
    """Every stored health of one account (as_of, scorecard, score, band, change_7d,
    change_30d), oldest first, up to `until` when given."""
    from pulse.sql.health import shown

    h = AccountHealth.__table__
    query = (select(h.c.as_of, h.c.scorecard, h.c.score, h.c.band, h.c.change_7d,
                    h.c.change_30d)
             .where(h.c.account_id == account_id, shown(h.c.as_of)).order_by(h.c.as_of))
    if until is not None:
        query = query.where(h.c.as_of <= until)
    return _frame(engine, query)


def health_dates_until(engine: Engine, until: date | None = None) -> list[date]:
    """The as-of dates with stored health, oldest first, up to `until` when given; a date
    still being scored in shards is left out until it is published."""
    from pulse.sql.health import shown

    h = AccountHealth.__table__
    query = select(h.c.as_of).distinct().where(shown(h.c.as_of)).order_by(h.c.as_of)
    if until is not None:
        query = query.where(h.c.as_of <= until)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())
