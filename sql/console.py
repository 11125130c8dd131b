"""The console's risk list in SQL, and the account actions behind it.

`risk_page(engine, as_of, filters, ...)` filters, sorts and pages the accounts scored as of a
date in one query (plus one count), so a page of 10,000 accounts costs what a page of 50
does. Churn probability is the churn model's where it scored the account, else the
scorecard's calibration curve drawn as a SQL CASE (the same piecewise-linear curve
`Calibration.probability` reads); MRR is converted to the reporting currency by a CASE over
the exchange rates of pulse.core.fx. Snoozes and activity (calls, meetings, notes, handled)
live in `account_snoozes` and `account_activity`; every action is written with its audit
entry in one transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from pulse.sql import audit
from pulse.sql.db import dialect_insert
from pulse.sql.schema import (
    LOW_RATING,
    Account,
    AccountActivity,
    AccountFeatures,
    AccountFlag,
    AccountHealth,
    AccountSnooze,
    ChurnScore,
    SurveyResponse,
)

SORTS = {
    "risk": "revenue at risk",
    "change_7d": "health change over 7 days (biggest drop first)",
    "change_30d": "health change over 30 days (biggest drop first)",
    "renewal": "renewal date (soonest first)",
    "churn": "churn probability",
}
SNOOZED = ("no", "yes", "all")
ACTIVITY_KINDS = ("call", "meeting", "note")
PAGE_SIZE = 50
WAKE_DROP = 10.0  # a snoozed account whose health falls this far is back on the list

H, A, F = AccountHealth.__table__, Account.__table__, AccountFeatures.__table__
C, FL = ChurnScore.__table__, AccountFlag.__table__
S, ACT = AccountSnooze.__table__, AccountActivity.__table__
SR = SurveyResponse.__table__


@dataclass(frozen=True)
class Filters:
    """What the risk list page filters by; None means any."""

    csm: str | None = None
    band: str | None = None
    flag: str | None = None
    segment: str | None = None
    plan: str | None = None
    renewal_days: int | None = None
    snoozed: str = "no"
    q: str | None = None


def _calibrated(score: ColumnElement[Any], calibration: Any) -> ColumnElement[Any]:
    """np.interp(score, health, rate) as SQL: flat outside the points, linear between."""
    if calibration is None or not calibration.health:
        return null()
    xs, ys = list(calibration.health), list(calibration.rate)
    whens: list[tuple[ColumnElement[bool], Any]] = [(score <= xs[0], literal(ys[0]))]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x1 > x0:
            whens.append((score <= x1, literal(y0) + (score - x0) * ((y1 - y0) / (x1 - x0))))
    return case((score.is_(None), null()), *whens, else_=literal(ys[-1]))


def _to_reporting(amount: ColumnElement[Any], currency: ColumnElement[Any]
                  ) -> ColumnElement[Any]:
    from pulse.core.fx import rates

    target, table = rates()
    factor = case({c: literal(float(v)) for c, v in table.items()},
                  value=func.upper(func.coalesce(currency, target)), else_=literal(1.0))
    return amount * factor


def scored_query(as_of: date, scorecard: Any, *, today: date) -> Any:
    """Every account scored as of `as_of` (cancelled ones left out), one row each, with the
    columns the page filters and sorts by. A subquery: filter and page it with SQL."""
    score = H.c.score
    probability = func.coalesce(C.c.probability,
                                _calibrated(score, getattr(scorecard, "calibration", None)))
    mrr_rep = _to_reporting(F.c.mrr, A.c.currency)
    last = (select(ACT.c.account_id, func.max(ACT.c.activity_id).label("last_id"))
            .group_by(ACT.c.account_id).subquery("last"))
    touched = ACT.alias("touched")
    last_handled = (select(ACT.c.account_id, func.max(ACT.c.activity_id).label("handled_id"))
                    .where(ACT.c.kind == "handled").group_by(ACT.c.account_id)
                    .subquery("last_handled"))
    handled = ACT.alias("handled")
    then = FL.alias("then")
    new_flag = exists().where(FL.c.as_of == H.c.as_of, FL.c.account_id == H.c.account_id,
                              ~exists().where(then.c.as_of == S.c.as_of,
                                              then.c.account_id == FL.c.account_id,
                                              then.c.flag == FL.c.flag))
    low_rating = exists().where(SR.c.account_id == H.c.account_id, SR.c.rating <= LOW_RATING,
                                SR.c.rated_at > S.c.at)
    woke = case((S.c.account_id.is_(None), null()), (S.c.until <= today, null()),
                (new_flag, "a new flag"),
                (score <= S.c.health - WAKE_DROP, f"health fell {WAKE_DROP:.0f} points or more"),
                (low_rating, "a low rating"), else_=null())
    # the renewal as of the date, as models.flags.renewal_days reads it (the risk list's):
    # the stored renewal date when it describes the date, else an annual contract's estimate
    estimable = and_(F.c.days_to_renewal.is_(None), F.c.days_to_renewal_est.is_not(None),
                     or_(F.c.is_annual == 1, F.c.billing_term_days.is_(None)))
    renew_days = case((F.c.days_to_renewal.is_not(None), F.c.days_to_renewal),
                      (estimable, cast(F.c.days_to_renewal_est, Integer)))
    estimated = case((and_(estimable, F.c.is_annual == 1), "billing"),
                     (estimable, "anniversary"))
    tier = case((C.c.probability.is_not(None), 0), (H.c.band == "red", 0),
                (H.c.band == "amber", 1), (H.c.band == "watch", 2), (H.c.band == "green", 3),
                else_=4)
    return (select(
        H.c.account_id, A.c.name, A.c.csm_email, A.c.currency, A.c.plan, A.c.segment,
        renew_days.label("days_to_renewal"), estimated.label("renewal_estimated"), F.c.mrr,
        mrr_rep.label("mrr_reporting"),
        score.label("health"), H.c.band, H.c.change_7d, H.c.change_30d,
        C.c.probability.label("model_probability"), C.c.model_version,
        probability.label("churn_probability"),
        (probability * mrr_rep).label("revenue_at_risk"), tier.label("tier"),
        S.c.until.label("snoozed_until"), S.c.reason.label("snooze_reason"),
        case((and_(S.c.until > today, woke.is_(None)), True), else_=False).label("snoozed"),
        woke.label("snooze_ended"),
        touched.c.kind.label("touched_kind"), touched.c.actor.label("touched_by"),
        touched.c.at.label("touched_at"), touched.c.note.label("touched_note"),
        handled.c.actor.label("handled_by"), handled.c.at.label("handled_at"),
        handled.c.note.label("handled_outcome"))
        .select_from(H)
        .join(A, A.c.account_id == H.c.account_id, isouter=True)
        .join(F, and_(F.c.account_id == H.c.account_id, F.c.as_of == H.c.as_of),
              isouter=True)
        .join(C, and_(C.c.account_id == H.c.account_id, C.c.as_of == H.c.as_of), isouter=True)
        .join(S, S.c.account_id == H.c.account_id, isouter=True)
        .join(last, last.c.account_id == H.c.account_id, isouter=True)
        .join(touched, touched.c.activity_id == last.c.last_id, isouter=True)
        .join(last_handled, last_handled.c.account_id == H.c.account_id, isouter=True)
        .join(handled, handled.c.activity_id == last_handled.c.handled_id, isouter=True)
        .where(H.c.as_of == as_of,
               or_(F.c.cancelled.is_(None), F.c.cancelled == False))  # noqa: E712
        .subquery("scored"))


def _where(t: Any, as_of: date, f: Filters) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if f.csm:
        cond.append(func.lower(t.c.csm_email) == f.csm.strip().lower())
    if f.band:
        cond.append(t.c.band == f.band)
    if f.flag:
        cond.append(exists().where(FL.c.as_of == as_of, FL.c.account_id == t.c.account_id,
                                   FL.c.flag == f.flag))
    if f.segment:
        cond.append(t.c.segment == f.segment)
    if f.plan:
        cond.append(t.c.plan == f.plan)
    if f.renewal_days is not None:
        cond.append(and_(t.c.days_to_renewal >= 0, t.c.days_to_renewal <= f.renewal_days))
    if f.snoozed == "no":
        cond.append(t.c.snoozed == False)  # noqa: E712
    elif f.snoozed == "yes":
        cond.append(t.c.snoozed == True)  # noqa: E712
    if f.q and f.q.strip():
        needle = f.q.strip().lower()
        cond.append(or_(func.lower(t.c.name).contains(needle, autoescape=True),
                        func.lower(t.c.account_id).contains(needle, autoescape=True)))
    return cond or [true()]


def _order(t: Any, sort: str) -> list[Any]:
    if sort == "change_7d":
        keys = [t.c.change_7d.asc().nulls_last()]
    elif sort == "change_30d":
        keys = [t.c.change_30d.asc().nulls_last()]
    elif sort == "renewal":
        keys = [t.c.days_to_renewal.asc().nulls_last()]
    elif sort == "churn":
        keys = [t.c.churn_probability.desc().nulls_last()]
    else:  # like models.risklist: model-scored and red first, then the money at stake
        keys = [t.c.tier.asc(), t.c.revenue_at_risk.desc().nulls_last()]
    return [*keys, t.c.churn_probability.desc().nulls_last(),
            t.c.mrr_reporting.desc().nulls_last(), t.c.account_id.asc()]


def risk_page(engine: Engine, as_of: date, filters: Filters, *, sort: str = "risk",
              page: int = 1, size: int | None = PAGE_SIZE, scorecard: Any = None,
              today: date | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(how many accounts match, the rows of page `page`); `size=None`: every match."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}: expected one of {', '.join(SORTS)}")
    t = scored_query(as_of, scorecard, today=today or datetime.now(UTC).date())
    cond = _where(t, as_of, filters)
    # the count of every match rides on each row (a window over the filtered rows, before
    # LIMIT), so the heavy scored query runs once; only a page past the end counts apart
    query = (select(t, func.count().over().label("_matches")).where(*cond)
             .order_by(*_order(t, sort)))
    if size is not None:
        query = query.limit(size).offset(max(page - 1, 0) * size)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        total = (rows[0]["_matches"] if rows else 0 if page <= 1 or size is None else
                 conn.execute(select(func.count()).select_from(t).where(*cond)).scalar_one())
    for r in rows:
        del r["_matches"]
        days = r["days_to_renewal"]
        r["renewal_date"] = None if days is None else as_of + timedelta(days=int(days))
    return int(total), rows


def scorecard_labels(engine: Engine, as_of: date) -> set[str]:
    """The scorecards (`Scorecard.label`) the date's accounts were scored with."""
    with engine.connect() as conn:
        return {str(v) for v in conn.execute(
            select(H.c.scorecard_version).where(H.c.as_of == as_of).distinct()).scalars()}


def choices(engine: Engine, as_of: date) -> dict[str, list[str]]:
    """The values the filters offer: CSMs, segments and plans of the scored accounts, read
    in one query (one distinct SELECT per filter, in a UNION ALL)."""
    scored = select(A).join(H, and_(H.c.account_id == A.c.account_id,
                                    H.c.as_of == as_of)).subquery()
    out: dict[str, list[str]] = {"csm": [], "segment": [], "plan": []}
    parts = [select(literal(key).label("filter"), col.label("value"))
             .where(col.is_not(None)).distinct()
             for key, col in (("csm", scored.c.csm_email), ("segment", scored.c.segment),
                              ("plan", scored.c.plan))]
    both = union_all(*parts).subquery()
    with engine.connect() as conn:
        for key, value in conn.execute(select(both).order_by(both.c.filter, both.c.value)):
            out[key].append(str(value))
    return out


def trends(engine: Engine, account_ids: list[str], as_of: date, *, days: int = 30
           ) -> dict[str, list[tuple[date, float]]]:
    """Each account's scored health over the `days` up to `as_of`, oldest first."""
    if not account_ids:
        return {}
    query = (select(H.c.account_id, H.c.as_of, H.c.score)
             .where(H.c.account_id.in_(account_ids), H.c.as_of <= as_of,
                    H.c.as_of > as_of - timedelta(days=days), H.c.score.is_not(None))
             .order_by(H.c.account_id, H.c.as_of))
    out: dict[str, list[tuple[date, float]]] = {}
    with engine.connect() as conn:
        for acc, day, score in conn.execute(query):
            out.setdefault(acc, []).append((day, float(score)))
    return out


# --------------------------------------------------------------------------- actions


def account_exists(conn: Connection, account_id: str) -> bool:
    return conn.execute(select(A.c.account_id).where(A.c.account_id == account_id)
                        ).first() is not None


def _activity(conn: Connection, account_id: str, kind: str, note: str | None, actor: str,
              at: datetime) -> None:
    conn.execute(insert(ACT).values(account_id=account_id, kind=kind, note=note or None,
                                    actor=actor, at=at))


def snooze(engine: Engine, account_id: str, until: date, *, actor: str, reason: str,
           address: str | None = None) -> None:
    """Snooze the account until `until` (it leaves the default list until then, or until
    something new happens), audited."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        latest = conn.execute(select(H.c.as_of, H.c.score).where(H.c.account_id == account_id)
                              .order_by(H.c.as_of.desc()).limit(1)).first()
        values = {"until": until, "reason": reason, "actor": actor, "at": now,
                  "as_of": latest[0] if latest else None,
                  "health": latest[1] if latest else None}
        conn.execute(dialect_insert(conn, S).values(account_id=account_id, **values)
                     .on_conflict_do_update(index_elements=[S.c.account_id], set_=values))
        _activity(conn, account_id, "snooze", f"until {until.isoformat()}: {reason}", actor,
                  now)
        audit.record(conn, actor=actor, action="snooze", target=account_id, reason=reason,
                     detail={"until": until.isoformat()}, address=address, at=now)


def log_activity(engine: Engine, account_id: str, kind: str, *, actor: str, note: str,
                 address: str | None = None) -> None:
    """Log a call, a meeting, a note, or mark the account handled (`kind="handled"`, the
    note its outcome), audited."""
    if kind not in (*ACTIVITY_KINDS, "handled"):
        raise ValueError(f"unknown activity {kind!r}: expected one of "
                         f"{', '.join((*ACTIVITY_KINDS, 'handled'))}")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _activity(conn, account_id, kind, note, actor, now)
        audit.record(conn, actor=actor, action="handled" if kind == "handled" else f"log_{kind}",
                     target=account_id, reason=note, detail={"kind": kind}, address=address,
                     at=now)
