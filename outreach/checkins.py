"""Daily proactive mail after the health run: check-ins to customers, digests to CSMs.

`plan_checkins(engine, as_of)` picks every account that is red or silently dissatisfied as
of the date and has not had a check-in queued within `checkin_every_days` (default 30), and
writes one personal check-in from the account's CSM to its primary contact (an admin or
owner, else the contact who used the product most in the last 28 days). Cancelled accounts
and accounts without a contact are skipped and counted with the reason.

Two vocabularies (issue 13, outreach/vocabulary.py): the customer's email is rendered from a
`CustomerCheckin` only (the features the account relied on and stopped using, with guides;
the renewal date when near; an offer of a call; the CSM's real name), never from the
evidence. The evidence (health, band, every flag in words) is a `CsmEvidence` that goes to
the CSM's digest. A check-in is sent by a named person: an account whose `csm_email` is
missing, unusable or a shared inbox (`cs-team@...`) gets no automated check-in; its row is
recorded `suppressed` with rule `no_csm` and the evidence goes to the shared inbox's digest,
or, without any address, to `csm_queue_email`. With `checkins: approve` (the default) each
check-in is written as a `draft` for its CSM to edit and approve (outreach/drafts.py).

`plan_csm_digests(engine, as_of)` writes one digest per CSM per day listing the accounts that
entered red or got a new flag since the previous scored date, with the evidence; on the first
scored date, with nothing to compare against (every flag would be "new"), it sends a short
summary instead: how many of the CSM's accounts sit in each band and carry each flag, the
revenue at risk in all, and the ten accounts with the most revenue at risk. Then the CSAT
ratings of 1 or 2 on the CSM's accounts that arrived since then (by `rated_at`; a comment
added later brings the rating back with it), with the contact and the comment, and the
day's check-ins with their evidence. Digests are internal mail: they are not automated
customer messages, so the cap and unsubscribe do not apply; a CSM with nothing new gets
nothing, a CSM with only low ratings or check-ins still gets one.

Both return drafts for `outreach.outbox.queue`; idempotency keys carry the date, so a re-run
of the same day queues nothing new. `queue_daily(engine, as_of)` does both.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, case, func, or_, select

from pulse.core.times import utc_stamp
from pulse.outreach.links import account_url
from pulse.outreach.vocabulary import CsmEvidence, CustomerCheckin, feature_help, person_name
from pulse.sql.db import result_frame
from pulse.sql.schema import (
    LOW_RATING,
    Account,
    AccountFlag,
    AccountHealth,
    Contact,
    OutboxMessage,
    PurchaseEvent,
    Survey,
    SurveyResponse,
    UsageDaily,
    UsageDailyUser,
)

log = logging.getLogger(__name__)

CHECKIN, DIGEST = "checkin", "csm_digest"
CHECKIN_FLAGS = ("silent_dissatisfied",)
PRIMARY_ROLES = ("admin", "owner")


@dataclass
class DailyReport:
    """What `queue_daily` planned and queued."""

    as_of: date
    checkins_planned: int = 0
    digests_planned: int = 0
    queued: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: why each check-in was planned (CSM-only), and the CSM it belongs to ("" for none)
    evidence: list[CsmEvidence] = field(default_factory=list)
    evidence_csm: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return (f"{self.as_of}: {self.checkins_planned} check-ins and {self.digests_planned} "
                f"CSM digests planned, {self.queued} queued, {self.duplicates} already queued"
                + (f"; skipped: {skipped}" if skipped else ""))


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def _plausible(email: str) -> bool:
    """One address, no spaces or line breaks: good enough to write From/Reply-To with."""
    local, at, domain = email.partition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in email)
                and "@" not in domain)


def csm_name(email: str) -> str:
    """'ana.ruiz@pulse.example' -> 'Ana Ruiz' (the CSM's display name for the From line)."""
    local = email.split("@", 1)[0]
    words = [w for w in local.replace("_", ".").replace("-", ".").split(".") if w]
    return " ".join(w.capitalize() for w in words) or email


def _cancelled(engine: Engine, as_of: date) -> set[str]:
    p = PurchaseEvent.__table__
    end = pd.Timestamp(as_of + timedelta(days=1), tz="UTC").to_pydatetime()
    q = select(p.c.account_id).where(p.c.kind == "cancelled", p.c.occurred_at < end).distinct()
    return set(_frame(engine, q)["account_id"])


def _primary_contacts(engine: Engine, account_ids: list[str], as_of: date) -> pd.DataFrame:
    """One contact per account: an admin or owner first, then the most active in 28 days."""
    if not account_ids:
        return pd.DataFrame(columns=["account_id", "contact_id", "email", "name", "timezone"])
    # from the per-contact daily rollups (sql/rollups.py): days, not events, so an account
    # whose usage comes as a daily feed gets the same answer
    c, du = Contact.__table__, UsageDailyUser.__table__
    activity = (select(du.c.contact_id, func.sum(du.c.events).label("used"))
                .where(du.c.account_id.in_(account_ids),
                       du.c.day >= as_of - timedelta(days=27), du.c.day <= as_of)
                .group_by(du.c.contact_id).subquery())
    q = (select(c.c.account_id, c.c.contact_id, c.c.email, c.c.name, c.c.role, c.c.timezone,
                func.coalesce(activity.c.used, 0).label("used"))
         .select_from(c.outerjoin(activity, activity.c.contact_id == c.c.contact_id))
         .where(c.c.account_id.in_(account_ids)))
    frame = _frame(engine, q)
    if frame.empty:
        return frame
    frame["primary"] = frame["role"].fillna("").str.strip().str.lower().isin(PRIMARY_ROLES)
    frame = frame.sort_values(["account_id", "primary", "used", "contact_id"],
                              ascending=[True, False, False, True], kind="stable")
    return frame.drop_duplicates("account_id").reset_index(drop=True)


def _latest_before(engine: Engine, as_of: date) -> date | None:
    h = AccountHealth.__table__
    with engine.connect() as conn:
        return conn.execute(select(func.max(h.c.as_of)).where(h.c.as_of < as_of)).scalar()


#: a feature the account "relied on": used in at least half of the weeks of the window
#: before the recent one; "no longer uses": not used at all in the recent window
LAPSED_RECENT_DAYS, LAPSED_PRIOR_WEEKS, MAX_FEATURES = 14, 8, 3


def lapsed_features(engine: Engine, account_ids: list[str], as_of: date) -> dict[str, list[str]]:
    """Per account, the features it used in at least half of the `LAPSED_PRIOR_WEEKS` weeks
    before the last `LAPSED_RECENT_DAYS` days and not once since, most used first (at most
    `MAX_FEATURES`). One grouped query; the account's own usage only, nobody named."""
    if not account_ids:
        return {}
    # from the daily rollups (sql/rollups.py): the windows are whole UTC days, so summing
    # the account-days gives what summing the events would
    d = UsageDaily.__table__
    recent = as_of - timedelta(days=LAPSED_RECENT_DAYS - 1)  # the first day of the recent window
    weeks = [(recent - timedelta(weeks=k + 1), recent - timedelta(weeks=k))
             for k in range(LAPSED_PRIOR_WEEKS)]
    cols = [func.sum(case((and_(d.c.day >= lo, d.c.day < hi), d.c.events), else_=0))
            .label(f"w{k}") for k, (lo, hi) in enumerate(weeks)]
    q = (select(d.c.account_id, d.c.feature, *cols,
                func.sum(case((d.c.day >= recent, d.c.events), else_=0)).label("recent"))
         .where(d.c.account_id.in_(account_ids), d.c.day >= weeks[-1][0], d.c.day <= as_of)
         .group_by(d.c.account_id, d.c.feature))
    frame = _frame(engine, q)
    if frame.empty:
        return {}
    w = frame[[f"w{k}" for k in range(LAPSED_PRIOR_WEEKS)]].astype(float).fillna(0.0)
    frame["prior"] = w.sum(axis=1)
    relied = (w > 0).sum(axis=1) * 2 >= LAPSED_PRIOR_WEEKS
    lapsed = frame[relied & (frame["recent"].astype(float).fillna(0.0) <= 0)]
    lapsed = lapsed.sort_values(["account_id", "prior", "feature"],
                                ascending=[True, False, True], kind="stable")
    return {str(acc): [str(f) for f in g["feature"]]
            for acc, g in lapsed.groupby("account_id", sort=True)}


def _is_date(value: Any) -> bool:
    return value is not None and not (not isinstance(value, str) and pd.isna(value))


def plan_checkins(engine: Engine, as_of: date, *, every_days: int | None = None,
                  report: DailyReport | None = None) -> list[Any]:
    """Check-in drafts for red or silently dissatisfied accounts (see the module docstring).

    The customer's email is built from a `CustomerCheckin` (plain help: lapsed features with
    their guides, a near renewal, an offer of a call, the CSM's name); the reasons go to the
    CSM as `CsmEvidence` on `report.evidence`, for the digest. An account whose CSM is
    missing, not a usable address or a shared inbox gets a `suppressed` row (rule `no_csm`)
    instead of an automated check-in."""
    from pulse.core.settings import get_settings
    from pulse.outreach.outbox import Draft

    settings = get_settings()
    every = every_days or settings.checkin_every_days
    report = report or DailyReport(as_of)
    h, f, a = AccountHealth.__table__, AccountFlag.__table__, Account.__table__
    health = _frame(engine, select(h.c.account_id, h.c.score, h.c.band)
                    .where(h.c.as_of == as_of))
    red = health[health["band"] == "red"]
    flagged = _frame(engine, select(f.c.account_id, f.c.flag, f.c.evidence)
                     .where(f.c.as_of == as_of, f.c.flag.in_(CHECKIN_FLAGS)))
    targets = sorted(set(red["account_id"]) | set(flagged["account_id"]))
    if not targets:
        return []
    cancelled = _cancelled(engine, as_of)
    o = OutboxMessage.__table__
    since = pd.Timestamp(as_of - timedelta(days=every - 1), tz="UTC").to_pydatetime()
    # A check-in within the period, or one recorded as suppressed for want of a CSM (the CSM
    # queue heard of it then), holds the next one back.
    recent = set(_frame(engine, select(o.c.account_id).where(
        o.c.kind == CHECKIN, o.c.account_id.in_(targets), o.c.queued_at >= since,
        or_(o.c.status != "suppressed", o.c.rule == "no_csm")).distinct())["account_id"])
    accounts = _frame(engine, select(a.c.account_id, a.c.name, a.c.csm_email,
                                     a.c.renewal_date)
                      .where(a.c.account_id.in_(targets))).set_index("account_id")
    accounts["csm_email"] = accounts["csm_email"].fillna("").astype(str).str.strip().str.lower()
    # Evidence for the CSM: the flags of the day (any flag, not only the trigger).
    evidence = _frame(engine, select(f.c.account_id, f.c.flag, f.c.evidence)
                      .where(f.c.as_of == as_of, f.c.account_id.in_(targets)))
    reasons = {str(acc): tuple(zip(g["flag"], g["evidence"], strict=True))
               for acc, g in evidence.groupby("account_id")}
    keep = []
    for acc in targets:
        if acc in cancelled:
            report.skipped["cancelled account"] += 1
        elif acc in recent:
            report.skipped[f"check-in within {every} days"] += 1
        elif acc not in accounts.index:
            report.skipped["unknown account"] += 1
        else:
            keep.append(acc)
    contacts = _primary_contacts(engine, keep, as_of).set_index("account_id")
    lapsed = lapsed_features(engine, keep, as_of)
    notified = _outage_notified(engine, keep, as_of)
    scores = health.set_index("account_id")
    drafts = []
    red_ids = set(red["account_id"])
    for acc in keep:
        if acc not in contacts.index:
            report.skipped["no contact"] += 1
            continue
        person = contacts.loc[acc]
        name = None if pd.isna(person["name"]) else str(person["name"])
        csm = str(accounts.at[acc, "csm_email"])
        signer = person_name(csm) if _plausible(csm) else None
        renewal = accounts.at[acc, "renewal_date"]
        near = None
        if _is_date(renewal) and settings.checkin_renewal_days > 0:
            day = pd.Timestamp(renewal).date()
            if 0 <= (day - as_of).days <= settings.checkin_renewal_days:
                near = day.isoformat()
        helps = [x for x in (feature_help(ft, settings.help_center_url)
                             for ft in lapsed.get(acc, [])) if x is not None][:MAX_FEATURES]
        customer = CustomerCheckin(
            account_name=str(accounts.at[acc, "name"]), csm_name=signer,
            csm_email=csm if signer else None, features=tuple(helps), renewal_date=near)
        rule: str | None
        detail: str | None
        if not signer:
            rule = "no_csm"
            detail = ("the account has no CSM" if not csm else
                      f"csm_email {csm!r} is not a usable address" if not _plausible(csm)
                      else f"csm_email {csm!r} is a shared inbox, not a person")
            report.skipped["no_csm"] += 1
        elif acc in notified.index:
            # The check-in would repeat the incident: recorded, not drafted for the CSM to
            # approve in vain, and planned again the next day (the send-time rule in
            # outbox.py holds back anything queued before the notice).
            rule = "outage_week"
            detail = str(notified[acc])
            report.skipped["outage_week"] += 1
        else:
            rule = detail = None
        hold = rule is None and settings.checkins == "approve"
        score = scores["score"].get(acc)
        report.evidence.append(CsmEvidence(
            account_id=acc, account_name=str(accounts.at[acc, "name"]), contact_name=name,
            contact_email=str(person["email"]),
            reason="red" if acc in red_ids else "silent_dissatisfied",
            health=None if score is None or pd.isna(score) else round(float(score), 1),
            band=scores["band"].get(acc), flags=reasons.get(acc, ()),
            outcome=("draft" if hold else "queued") if rule is None
            else f"suppressed: {rule} ({detail})",
            url=account_url(acc)))
        report.evidence_csm.append(csm if _plausible(csm) else "")  # a shared inbox hears
        drafts.append(Draft(
            kind=CHECKIN, idempotency_key=f"checkin:{acc}:{as_of.isoformat()}",
            template=CHECKIN, to_email=str(person["email"]), to_name=name,
            account_id=acc, contact_id=str(person["contact_id"]),
            from_email=csm if signer else None,
            from_name=f"{signer} at {settings.company_name}" if signer else None,
            reply_to=csm if signer else None,
            context=customer.to_context(), rule=rule, rule_detail=detail,
            hold=hold,
        ))
    report.checkins_planned += sum(1 for d in drafts if d.rule is None)
    return drafts


def _outage_notified(engine: Engine, accounts: list[str], as_of: date) -> pd.Series:
    """The `outage_week` rule's words for each of `accounts` a critical message reached in the
    `OUTAGE_HOLD_DAYS` days up to the end of `as_of` (UTC), by account: the send-time rule in
    outbox.py, asked at planning time."""
    from pulse.outreach.outbox import last_critical, outage_week_detail

    end = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)
    with engine.connect() as conn:
        at = last_critical(conn, accounts, end - timedelta(microseconds=1))
    return outage_week_detail(pd.Series(at.index, index=at.index), at)




def low_ratings(engine: Engine, since: datetime, until: datetime) -> pd.DataFrame:
    """CSAT responses rated 1 or 2 whose rating (or comment) arrived in [since, until), with
    the account's CSM, the contact and the survey's question; one row per survey."""
    r, s = SurveyResponse.__table__, Survey.__table__
    a, c = Account.__table__, Contact.__table__
    q = (select(r.c.survey_id, r.c.account_id, a.c.name.label("account_name"),
                a.c.csm_email, r.c.contact_id, c.c.name.label("contact_name"),
                c.c.email.label("contact_email"), r.c.rating, r.c.comment, r.c.rated_at,
                r.c.commented_at, s.c.trigger, s.c.ticket_id, s.c.incident_id, s.c.question)
         .select_from(r.join(s, s.c.survey_id == r.c.survey_id)
                      .join(a, a.c.account_id == r.c.account_id)
                      .outerjoin(c, c.c.contact_id == r.c.contact_id))
         .where(r.c.rating <= LOW_RATING,
                or_(and_(r.c.rated_at >= since, r.c.rated_at < until),
                    and_(r.c.commented_at >= since, r.c.commented_at < until))))
    frame = _frame(engine, q)
    if frame.empty:
        return frame
    rated = pd.to_datetime(frame["rated_at"], utc=True)
    frame["comment_only"] = rated < pd.Timestamp(since)  # only the comment is new
    frame["csm_email"] = frame["csm_email"].fillna("").astype(str).str.strip().str.lower()
    return frame.sort_values(["rating", "rated_at", "survey_id"]).reset_index(drop=True)


def _alert(row: Any) -> dict[str, Any]:
    def val(x: Any) -> Any:
        return None if x is None or (not isinstance(x, str) and pd.isna(x)) else x

    rated = pd.Timestamp(row.rated_at)
    return {"survey_id": int(row.survey_id), "account_id": str(row.account_id),
            "account_name": val(row.account_name), "contact_id": str(row.contact_id),
            "contact_name": val(row.contact_name), "contact_email": val(row.contact_email),
            "rating": int(row.rating), "comment": val(row.comment),
            "rated_at": utc_stamp(rated).isoformat(),
            "trigger": str(row.trigger), "ticket_id": val(row.ticket_id),
            "incident_id": val(row.incident_id), "question": val(row.question),
            "comment_only": bool(row.comment_only), "url": account_url(str(row.account_id))}


def plan_csm_digests(engine: Engine, as_of: date, *, report: DailyReport | None = None
                     ) -> list[Any]:
    """One digest per CSM: accounts that entered red or got a new flag since the previous
    scored date (on the first scored date, a summary: counts and the top ten by revenue at
    risk), and CSAT ratings of 1 or 2 (with the comment) that arrived since then."""
    from pulse.core.settings import get_settings
    from pulse.outreach.outbox import Draft

    settings = get_settings()
    report = report or DailyReport(as_of)
    h = AccountHealth.__table__
    before = _latest_before(engine, as_of)
    # Low ratings: those that arrived after the previous digest's day (without one: on this
    # day), up to the end of this one; each rating is on one digest.
    first_day = before + timedelta(days=1) if before else as_of
    low = low_ratings(engine, _midnight(first_day), _midnight(as_of + timedelta(days=1)))
    if not low.empty:
        unusable = ~low["csm_email"].map(_plausible).astype(bool)
        if unusable.any():
            report.skipped["low ratings without a CSM"] += int(unusable.sum())
        low = low[~unusable]
    alerts = {str(csm): [_alert(r) for r in g.itertuples(index=False)]
              for csm, g in low.groupby("csm_email", sort=True)} if not low.empty else {}
    checkins: dict[str, list[dict[str, Any]]] = {}
    for ev, csm in zip(report.evidence, report.evidence_csm, strict=True):
        owner = csm or settings.csm_queue_email.strip().lower()
        if not _plausible(owner):
            report.skipped["check-in evidence without a CSM queue"] += 1
            continue
        checkins.setdefault(owner, []).append(ev.to_context())
    today = _frame(engine, select(h.c.account_id, h.c.score, h.c.band)
                   .where(h.c.as_of == as_of))
    if today.empty and not alerts and not checkins:
        return []
    if today.empty:
        drafts = []
    elif before is None:  # the first scored date: nothing to compare with, a summary
        drafts = _first_digests(engine, as_of, alerts, checkins, report, settings)
    else:
        drafts = _risk_digests(engine, as_of, before, today, alerts, checkins, report,
                               settings)
    covered = {d.to_email for d in drafts}
    # a CSM with only low ratings or check-ins still hears
    for csm in sorted((set(alerts) | set(checkins)) - covered):
        drafts.append(_digest(Draft, csm, as_of, before, [], alerts.get(csm, []), settings,
                              checkins.get(csm, [])))
    report.digests_planned += len(drafts)
    return drafts


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _digest(draft: Any, csm: str, as_of: date, before: date | None,
            items: list[dict[str, Any]], alerts: list[dict[str, Any]], settings: Any,
            checkins: list[dict[str, Any]] | None = None,
            first: dict[str, Any] | None = None) -> Any:
    return draft(
        kind=DIGEST, idempotency_key=f"csm_digest:{csm.lower()}:{as_of.isoformat()}",
        template=DIGEST, to_email=csm, to_name=csm_name(csm),
        urgent=False, automated=False,
        context={"csm_name": csm_name(csm), "as_of": as_of.isoformat(),
                 "since": before.isoformat() if before else None, "accounts": items,
                 "low_ratings": alerts, "checkins": checkins or [],
                 "company_name": settings.company_name, **({"first": first} if first else {})},
    )


def _value(x: Any) -> Any:
    """None for a missing value (NaN has no place in a JSON context)."""
    return None if x is None or (not isinstance(x, str | list) and pd.isna(x)) else x


#: the first digest names this many accounts, most revenue at risk first
FIRST_DIGEST_TOP = 10


def _first_digests(engine: Engine, as_of: date, alerts: dict[str, list[dict[str, Any]]],
                   checkins: dict[str, list[dict[str, Any]]], report: DailyReport,
                   settings: Any) -> list[Any]:
    """The digests of the first scored date, when there is no earlier date to compare with
    (every flag would be "new"): per CSM, how many accounts are in each band and carry each
    flag, the revenue at risk in all, and the `FIRST_DIGEST_TOP` accounts with the most
    revenue at risk, ranked as the risk list ranks them (models/risklist.py)."""
    from pulse.core.fx import to_reporting
    from pulse.models.risklist import build_risk_list
    from pulse.outreach.outbox import Draft

    rows = pd.DataFrame(build_risk_list(engine, as_of))
    if rows.empty:
        return []
    rows["csm_email"] = rows["csm_email"].fillna("").astype(str).str.strip().str.lower()
    no_csm = ~rows["csm_email"].map(_plausible).astype(bool)
    if no_csm.any():
        report.skipped["first digest rows without a CSM"] += int(no_csm.sum())
    rows = rows[~no_csm]
    rows["_at_risk"] = to_reporting(rows["revenue_at_risk"], rows["currency"])
    currency = settings.reporting_currency.strip().upper()
    drafts = []
    for csm, group in rows.groupby("csm_email", sort=True):  # one digest per CSM
        bands = group["band"].fillna("unscored").value_counts()
        flags = Counter(f for names in group["flags"] for f in names)
        at_risk = group["_at_risk"].dropna()
        summary = {
            "accounts": len(group),
            "bands": {b: int(bands.get(b, 0)) for b in ("red", "amber", "watch", "green", "unscored")
                      if bands.get(b, 0)},
            "flagged": int(sum(1 for names in group["flags"] if names)),
            "flags": dict(sorted(flags.items(), key=lambda kv: (-kv[1], kv[0]))),
            "revenue_at_risk": round(float(at_risk.sum()), 2) if len(at_risk) else None,
            "currency": currency,
            "top": [{"account_id": r.account_id, "account_name": _value(r.name),
                     "url": account_url(str(r.account_id)), "band": _value(r.band),
                     "health": _value(r.health), "mrr": _value(r.mrr),
                     "currency": _value(r.currency),
                     "revenue_at_risk": _value(r.revenue_at_risk), "flags": list(r.flags)}
                    for r in group.head(FIRST_DIGEST_TOP).itertuples(index=False)],
        }
        drafts.append(_digest(Draft, str(csm), as_of, None, [], alerts.get(str(csm), []),
                              settings, checkins.get(str(csm), []), first=summary))
    return drafts


def _risk_digests(engine: Engine, as_of: date, before: date | None, today: pd.DataFrame,
                  alerts: dict[str, list[dict[str, Any]]],
                  checkins: dict[str, list[dict[str, Any]]], report: DailyReport,
                  settings: Any) -> list[Any]:
    """The digests of CSMs whose accounts entered red or got a new flag (with their alerts)."""
    from pulse.outreach.outbox import Draft

    h, f, a = AccountHealth.__table__, AccountFlag.__table__, Account.__table__
    prev = (_frame(engine, select(h.c.account_id, h.c.band.label("prev_band"))
                   .where(h.c.as_of == before)) if before else
            pd.DataFrame(columns=["account_id", "prev_band"]))
    flags = _frame(engine, select(f.c.account_id, f.c.flag, f.c.evidence)
                   .where(f.c.as_of == as_of))
    prev_flags = (_frame(engine, select(f.c.account_id, f.c.flag).where(f.c.as_of == before))
                  if before else pd.DataFrame(columns=["account_id", "flag"]))
    new_flags = flags.merge(prev_flags.assign(_old=True), on=["account_id", "flag"],
                            how="left")
    new_flags = new_flags[new_flags["_old"].isna()].drop(columns="_old")
    merged = today.merge(prev, on="account_id", how="left")
    entered_red = merged[(merged["band"] == "red") & (merged["prev_band"] != "red")]
    changed = sorted(set(entered_red["account_id"]) | set(new_flags["account_id"]))
    if not changed:
        return []
    cancelled = _cancelled(engine, as_of)
    changed = [x for x in changed if x not in cancelled]
    accounts = _frame(engine, select(a.c.account_id, a.c.name, a.c.csm_email, a.c.mrr,
                                     a.c.currency).where(a.c.account_id.in_(changed)))
    accounts["csm_email"] = accounts["csm_email"].fillna("").astype(str).str.strip().str.lower()
    no_csm = ~accounts["csm_email"].map(_plausible).astype(bool)
    if no_csm.any():
        report.skipped["digest rows without a CSM"] += int(no_csm.sum())
    accounts = accounts[~no_csm]
    score = today.set_index("account_id")["score"]
    red_set = set(entered_red["account_id"])
    by_flag = new_flags.groupby("account_id")
    drafts = []
    for csm, group in accounts.sort_values(["csm_email", "account_id"]).groupby("csm_email"):
        items = []
        for r in group.itertuples(index=False):
            fl = (by_flag.get_group(r.account_id) if r.account_id in by_flag.groups
                  else pd.DataFrame(columns=["flag", "evidence"]))
            items.append({
                "account_id": r.account_id, "account_name": r.name,
                "url": account_url(str(r.account_id)),
                "mrr": float(r.mrr) if r.mrr is not None else None, "currency": r.currency,
                "health": None if pd.isna(score.get(r.account_id)) else
                round(float(score.get(r.account_id)), 1),
                "entered_red": r.account_id in red_set,
                "new_flags": [{"flag": x.flag, "evidence": x.evidence}
                              for x in fl.itertuples(index=False)],
            })
        items.sort(key=lambda i: (not i["entered_red"], -(i["mrr"] or 0)))
        drafts.append(_digest(Draft, str(csm), as_of, before, items,
                              alerts.get(str(csm), []), settings, checkins.get(str(csm), [])))
    return drafts


def queue_daily(engine: Engine, as_of: date) -> DailyReport:
    """Plan and queue the day's check-ins and CSM digests (idempotent per date)."""
    from pulse.outreach.outbox import queue

    report = DailyReport(as_of)
    drafts = plan_checkins(engine, as_of, report=report) + plan_csm_digests(
        engine, as_of, report=report)
    if drafts:
        q = queue(engine, drafts)
        report.queued, report.duplicates = q.queued, q.duplicates
    log.info("%s", report)
    return report


__all__ = ["CHECKIN", "DIGEST", "DailyReport", "csm_name", "low_ratings", "plan_checkins",
           "plan_csm_digests", "queue_daily"]
