"""Daily proactive mail after the health run: check-ins to customers, digests to CSMs.

`plan_checkins(engine, as_of)` picks every account that is red or silently dissatisfied as
of the date and has not had a check-in queued within `checkin_every_days` (default 30), and
writes one personal check-in from the account's CSM to its primary contact (an admin or
owner, else the contact who used the product most in the last 28 days). Cancelled accounts,
and accounts without a CSM or a contact, are skipped and counted with the reason.

`plan_csm_digests(engine, as_of)` writes one digest per CSM per day listing the accounts that
entered red or got a new flag since the previous scored date, with the evidence. Digests are
internal mail: they are not automated customer messages, so the cap and unsubscribe do not
apply; a CSM with nothing new gets nothing.

Both return drafts for `outreach.outbox.queue`; idempotency keys carry the date, so a re-run
of the same day queues nothing new. `queue_daily(engine, as_of)` does both.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select

from sql.schema import (
    Account,
    AccountFlag,
    AccountHealth,
    Contact,
    OutboxMessage,
    PurchaseEvent,
    UsageEvent,
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

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return (f"{self.as_of}: {self.checkins_planned} check-ins and {self.digests_planned} "
                f"CSM digests planned, {self.queued} queued, {self.duplicates} already queued"
                + (f"; skipped: {skipped}" if skipped else ""))


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


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
    c, u = Contact.__table__, UsageEvent.__table__
    end = pd.Timestamp(as_of + timedelta(days=1), tz="UTC").to_pydatetime()
    activity = (select(u.c.contact_id, func.sum(u.c.quantity).label("used"))
                .where(u.c.account_id.in_(account_ids), u.c.contact_id.is_not(None),
                       u.c.occurred_at >= end - timedelta(days=28), u.c.occurred_at < end)
                .group_by(u.c.contact_id).subquery())
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


def plan_checkins(engine: Engine, as_of: date, *, every_days: int | None = None,
                  report: DailyReport | None = None) -> list[Any]:
    """Check-in drafts for red or silently dissatisfied accounts (see the module docstring)."""
    from outreach.outbox import Draft
    from pulse.settings import get_settings

    settings = get_settings()
    every = every_days or settings.checkin_every_days
    report = report or DailyReport(as_of)
    h, f, a = AccountHealth.__table__, AccountFlag.__table__, Account.__table__
    red = _frame(engine, select(h.c.account_id, h.c.score, h.c.band)
                 .where(h.c.as_of == as_of, h.c.band == "red"))
    flagged = _frame(engine, select(f.c.account_id, f.c.flag, f.c.evidence)
                     .where(f.c.as_of == as_of, f.c.flag.in_(CHECKIN_FLAGS)))
    targets = sorted(set(red["account_id"]) | set(flagged["account_id"]))
    if not targets:
        return []
    cancelled = _cancelled(engine, as_of)
    o = OutboxMessage.__table__
    since = pd.Timestamp(as_of - timedelta(days=every - 1), tz="UTC").to_pydatetime()
    recent = set(_frame(engine, select(o.c.account_id).where(
        o.c.kind == CHECKIN, o.c.account_id.in_(targets), o.c.queued_at >= since,
        o.c.status != "suppressed").distinct())["account_id"])
    accounts = _frame(engine, select(a.c.account_id, a.c.name, a.c.csm_email)
                      .where(a.c.account_id.in_(targets))).set_index("account_id")
    accounts["csm_email"] = accounts["csm_email"].fillna("").astype(str).str.strip().str.lower()
    # Evidence in words: the flags of the day (any flag, not only the trigger).
    evidence = _frame(engine, select(f.c.account_id, f.c.flag, f.c.evidence)
                      .where(f.c.as_of == as_of, f.c.account_id.in_(targets)))
    reasons = evidence.groupby("account_id")["evidence"].agg(list).to_dict()
    keep = []
    for acc in targets:
        if acc in cancelled:
            report.skipped["cancelled account"] += 1
        elif acc in recent:
            report.skipped[f"check-in within {every} days"] += 1
        elif acc not in accounts.index or not accounts.at[acc, "csm_email"]:
            report.skipped["no CSM"] += 1
        elif not _plausible(accounts.at[acc, "csm_email"]):
            report.skipped["CSM address not usable"] += 1
        else:
            keep.append(acc)
    contacts = _primary_contacts(engine, keep, as_of).set_index("account_id")
    drafts = []
    red_ids = set(red["account_id"])
    for acc in keep:
        if acc not in contacts.index:
            report.skipped["no contact"] += 1
            continue
        person = contacts.loc[acc]
        csm = str(accounts.at[acc, "csm_email"])
        drafts.append(Draft(
            kind=CHECKIN, idempotency_key=f"checkin:{acc}:{as_of.isoformat()}",
            template=CHECKIN, to_email=str(person["email"]),
            to_name=None if pd.isna(person["name"]) else str(person["name"]),
            account_id=acc, contact_id=str(person["contact_id"]),
            from_email=csm, from_name=f"{csm_name(csm)} at {settings.company_name}",
            reply_to=csm,
            context={"account_name": str(accounts.at[acc, "name"]),
                     "contact_name": None if pd.isna(person["name"]) else str(person["name"]),
                     "csm_name": csm_name(csm), "csm_email": csm,
                     "reason": "red" if acc in red_ids else "silent_dissatisfied",
                     "evidence": reasons.get(acc, []), "as_of": as_of.isoformat()},
        ))
    report.checkins_planned += len(drafts)
    return drafts


def plan_csm_digests(engine: Engine, as_of: date, *, report: DailyReport | None = None
                     ) -> list[Any]:
    """One digest per CSM: accounts that entered red or got a new flag since the last date."""
    from outreach.outbox import Draft
    from pulse.settings import get_settings

    settings = get_settings()
    report = report or DailyReport(as_of)
    h, f, a = AccountHealth.__table__, AccountFlag.__table__, Account.__table__
    before = _latest_before(engine, as_of)
    today = _frame(engine, select(h.c.account_id, h.c.score, h.c.band)
                   .where(h.c.as_of == as_of))
    if today.empty:
        return []
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
                "mrr": float(r.mrr) if r.mrr is not None else None, "currency": r.currency,
                "health": None if pd.isna(score.get(r.account_id)) else
                round(float(score.get(r.account_id)), 1),
                "entered_red": r.account_id in red_set,
                "new_flags": [{"flag": x.flag, "evidence": x.evidence}
                              for x in fl.itertuples(index=False)],
            })
        items.sort(key=lambda i: (not i["entered_red"], -(i["mrr"] or 0)))
        drafts.append(Draft(
            kind=DIGEST, idempotency_key=f"csm_digest:{str(csm).lower()}:{as_of.isoformat()}",
            template=DIGEST, to_email=str(csm), to_name=csm_name(str(csm)),
            urgent=False, automated=False,
            context={"csm_name": csm_name(str(csm)), "as_of": as_of.isoformat(),
                     "since": before.isoformat() if before else None, "accounts": items,
                     "company_name": settings.company_name},
        ))
    report.digests_planned += len(drafts)
    return drafts


def queue_daily(engine: Engine, as_of: date) -> DailyReport:
    """Plan and queue the day's check-ins and CSM digests (idempotent per date)."""
    from outreach.outbox import queue

    report = DailyReport(as_of)
    drafts = plan_checkins(engine, as_of, report=report) + plan_csm_digests(
        engine, as_of, report=report)
    if drafts:
        q = queue(engine, drafts)
        report.queued, report.duplicates = q.queued, q.duplicates
    log.info("%s", report)
    return report


__all__ = ["CHECKIN", "DIGEST", "DailyReport", "csm_name", "plan_checkins", "plan_csm_digests",
           "queue_daily"]
