"""Proactive outage notices: the customers an incident actually hit, with their own numbers.

`plan_outage_notices(engine, now=)` reads the stored impact of every incident
(`incident_impacts`, models/outage.py) and drafts one notice per relevant contact of each
**hit** account (exposed accounts used the component without errors: they are not told):

* who: the contacts who had errors in the incident's window (the affected users), plus the
  account's admins and owners; an account whose errors came only from API keys (no contact)
  hears through its admins and owners, or, without any, through all its contacts. Opted-out
  or suppressed contacts are still drafted: the outbox records the rule that stops them.
* when: stage `started` while the incident is open, `update-<status>` when a major or critical
  incident moves to a new status (identified, monitoring), `resolved` once it is resolved. The
  idempotency key `notice:{incident}:{stage}:{contact}` makes every stage reach a contact once,
  however often the DAG runs.
* what: the incident, the contact's account's failed and total requests, affected users,
  components (by the names customers know, from outreach/components.yaml) and regions, first
  and last affected times, the latest update (what we are doing) and where to follow it.
  Each stage says its own thing: `started` what is affected, what we are doing, when the
  next update comes, and an apology; an update what changed and the estimated resolution
  (the incident's `eta` while it is ahead, in the contact's time zone); `resolved` the
  account's own totals and the cause when the last update gives it. Subject lines carry the status.
* recency: only incidents still open, or resolved within `window_hours` (48) of now: an
  outage from last month is not news.
* urgency: notices of major and critical incidents are urgent (they pass the frequency cap and
  quiet hours, never an opt-out or a hard bounce).

`queue_outage_notices` plans and queues them; it returns the counts and the latency from the
incident landing to its first queued notice.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sqlalchemy import Engine, or_, select

from pulse.core.times import utc_stamp
from pulse.models.outage import RESOLVED_STATUSES
from pulse.sql.db import result_frame
from pulse.sql.schema import Contact, Incident, IncidentImpact, IncidentUpdate

log = logging.getLogger(__name__)

NOTICE = "outage_notice"
URGENT_IMPACTS = ("major", "critical")
UPDATE_STATUSES = ("identified", "monitoring")
PRIMARY_ROLES = ("admin", "owner")


@dataclass
class NoticeReport:
    """What `queue_outage_notices` did."""

    incidents: int = 0
    hit_accounts: int = 0
    planned: int = 0
    queued: int = 0
    duplicates: int = 0
    by_stage: Counter[str] = field(default_factory=Counter)
    latency_seconds: dict[str, float] = field(default_factory=dict)  # incident -> landed..queued

    def __str__(self) -> str:
        stages = ", ".join(f"{n} {s}" for s, n in sorted(self.by_stage.items()))
        return (f"{self.incidents} incidents with {self.hit_accounts} hit accounts: "
                f"{self.planned} notices planned ({stages or 'none'}), {self.queued} queued, "
                f"{self.duplicates} already queued")


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return utc_stamp(pd.Timestamp(value)).isoformat()


CATALOGUE = Path(__file__).with_name("components.yaml")


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    doc = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8")) or {}
    return {"components": {str(k).lower(): str(v) for k, v in
                           (doc.get("components") or {}).items()},
            "regions": {str(k).lower(): str(v) for k, v in (doc.get("regions") or {}).items()},
            "next_update_hours": doc.get("next_update_hours")}


def component_name(component: str) -> str:
    """The name customers know a component by (outreach/components.yaml), or the id made
    readable ("bulk_export" -> "Bulk export")."""
    key = str(component).strip()
    known = _catalogue()["components"].get(key.lower())
    if known:
        return known
    words = key.replace("_", " ").replace("-", " ").split()
    return " ".join(words).capitalize() if words else key


def component_names(components: Any) -> list[str]:
    """Display names, each once, in the given order."""
    if components is None or isinstance(components, float):
        return []
    return list(dict.fromkeys(component_name(c) for c in components if str(c).strip()))


def region_names(regions: Any) -> list[str]:
    """The names customers know regions by (outreach/components.yaml `regions`), or the id
    made readable ("us-central" -> "US Central": two-letter parts in capitals), each once."""
    if regions is None or isinstance(regions, float):
        return []
    known = _catalogue()["regions"]
    names = []
    for r in regions:
        key = str(r).strip()
        if not key:
            continue
        words = key.replace("_", " ").replace("-", " ").split()
        names.append(known.get(key.lower()) or " ".join(
            w.upper() if len(w) == 2 else w.capitalize() for w in words))
    return list(dict.fromkeys(names))


def stage_kind(stage: str) -> str:
    """started, update or resolved: what a notice's wording depends on (the stage key
    `update-identified` is an update)."""
    return "update" if stage.startswith("update") else stage


def stage_of(status: str, impact: str | None, latest_update_status: str | None) -> str:
    """The notice stage an incident is at."""
    if status in RESOLVED_STATUSES:
        return "resolved"
    if (impact or "").lower() in URGENT_IMPACTS and latest_update_status in UPDATE_STATUSES:
        return f"update-{latest_update_status}"
    return "started"


def recipients(engine: Engine, incident_id: str, hit: pd.DataFrame) -> pd.DataFrame:
    """Contacts to tell about one incident: (account_id, contact_id, email, name, timezone,
    affected: bool) for the hit accounts in `hit`."""
    from pulse.models.outage import affected_contacts

    accounts = hit["account_id"].tolist()
    c = Contact.__table__
    contacts = _frame(engine, select(c.c.account_id, c.c.contact_id, c.c.email, c.c.name,
                                     c.c.role, c.c.timezone)
                      .where(c.c.account_id.in_(accounts)))
    if contacts.empty:
        return contacts.assign(affected=pd.Series(dtype=bool))
    users = set(affected_contacts(engine, incident_id)["contact_id"])
    contacts["affected"] = contacts["contact_id"].isin(users)
    contacts["primary"] = contacts["role"].fillna("").str.strip().str.lower().isin(
        PRIMARY_ROLES)
    chosen = contacts["affected"] | contacts["primary"]
    nobody = ~chosen.groupby(contacts["account_id"]).transform("any")
    return contacts[chosen | nobody].drop(columns=["role", "primary"]).reset_index(drop=True)


WINDOW_HOURS = 48.0


def plan_outage_notices(engine: Engine, *, incident_id: str | None = None,
                        now: datetime | None = None, window_hours: float = WINDOW_HOURS,
                        report: NoticeReport | None = None) -> list[Any]:
    """Drafts of every notice due now (see the module docstring)."""
    from pulse.core.settings import get_settings
    from pulse.outreach.outbox import Draft

    settings = get_settings()
    report = report if report is not None else NoticeReport()
    i, im, up = Incident.__table__, IncidentImpact.__table__, IncidentUpdate.__table__
    q = select(im).where(im.c.status == "hit")
    if incident_id is not None:
        q = q.where(im.c.incident_id == incident_id)
    impacts = _frame(engine, q)
    if impacts.empty:
        return []
    ids = sorted(impacts["incident_id"].unique())
    now = now or datetime.now(UTC)
    recent = now - timedelta(hours=window_hours)
    incidents = _frame(engine, select(i.c.incident_id, i.c.title, i.c.status, i.c.impact,
                                      i.c.started_at, i.c.resolved_at, i.c.landed_at,
                                      i.c.components, i.c.eta)
                       .where(i.c.incident_id.in_(ids),
                              or_(i.c.resolved_at.is_(None), i.c.resolved_at >= recent))
                       ).set_index("incident_id")
    updates = _frame(engine, select(up.c.incident_id, up.c.status, up.c.body, up.c.created_at)
                     .where(up.c.incident_id.in_(ids)))
    latest = (updates.sort_values(["incident_id", "created_at"]).groupby("incident_id").last()
              if not updates.empty else pd.DataFrame(columns=["status", "body"]))
    drafts = []
    for inc_id, hit in impacts.groupby("incident_id", sort=True):
        if inc_id not in incidents.index:
            continue
        inc = incidents.loc[inc_id]
        last = latest.loc[inc_id] if inc_id in latest.index else None
        last_status = None if last is None else str(last["status"])
        stage = stage_of(str(inc["status"]), inc["impact"], last_status)
        urgent = str(inc["impact"] or "").lower() in URGENT_IMPACTS
        people = recipients(engine, str(inc_id), hit)
        eta = _iso(inc["eta"])  # told while it is ahead: a passed estimate is not news
        report.incidents += 1
        report.hit_accounts += len(hit)
        shared = {
            "incident_id": str(inc_id), "title": str(inc["title"]),
            "stage": stage_kind(stage), "stage_key": stage,
            "affected_components": component_names(inc["components"]),
            "next_update_hours": _catalogue()["next_update_hours"],
            "status": str(inc["status"]), "impact": inc["impact"],
            "started_at": _iso(inc["started_at"]), "resolved_at": _iso(inc["resolved_at"]),
            "latest_update": None if last is None or pd.isna(last["body"]) else str(last["body"]),
            "status_page_url": settings.status_page_url,
            "eta": eta if eta and datetime.fromisoformat(eta) > now else None,
        }
        per_account = hit.set_index("account_id")
        credits = (_service_credits(engine, hit["account_id"].tolist(), inc["resolved_at"])
                   if stage == "resolved" else {})
        for p in people.itertuples(index=False):
            a = per_account.loc[p.account_id]
            drafts.append(Draft(
                kind=NOTICE, idempotency_key=f"notice:{inc_id}:{stage}:{p.contact_id}",
                template=NOTICE, to_email=str(p.email),
                to_name=None if pd.isna(p.name) else str(p.name),
                account_id=str(p.account_id), contact_id=str(p.contact_id),
                incident_id=str(inc_id), urgent=urgent, automated=True,
                context={**shared,
                         "contact_name": None if pd.isna(p.name) else str(p.name),
                         "timezone": p.timezone, "you_were_affected": bool(p.affected),
                         "failed_requests": float(a["failed_requests"]),
                         "total_requests": float(a["total_requests"]),
                         "failed_events": int(a["failed_events"]),
                         "affected_users": int(a["affected_users"]),
                         "components": component_names(a["components"]),
                         "regions": region_names(a["regions"]),
                         "first_affected_at": _iso(a["first_affected_at"]),
                         "last_affected_at": _iso(a["last_affected_at"]),
                         "service_credit": credits.get(str(p.account_id))},
            ))
            report.by_stage[stage] += 1
    report.planned += len(drafts)
    return drafts


def _service_credits(engine: Engine, accounts: list[str], resolved_at: Any
                     ) -> dict[str, dict[str, Any]]:
    """The service credit each account's SLA gives (its own, else its plan's: outreach/sla.py)
    for the month the
    incident was resolved in, counting every resolved incident that hit the account that
    month: account id -> what the notice says, for the accounts owed one."""
    from pulse.outreach.sla import account_sla, downtime_minutes, month_bounds, service_credit
    from pulse.sql.schema import Account

    if resolved_at is None or pd.isna(resolved_at):
        return {}
    when = utc_stamp(pd.Timestamp(resolved_at))
    start, end = month_bounds(when.to_pydatetime())
    a, i, im = Account.__table__, Incident.__table__, IncidentImpact.__table__
    plans = _frame(engine, select(a.c.account_id, a.c.plan, a.c.mrr, a.c.currency,
                                  a.c.sla_uptime_pct).where(a.c.account_id.in_(accounts)))
    plans["sla"] = [account_sla(p, own) for p, own in zip(plans["plan"],
                                                          plans["sla_uptime_pct"], strict=True)]
    plans = plans[plans["sla"].notna()]
    if plans.empty:
        return {}
    windows = _frame(engine, select(im.c.account_id, i.c.started_at, i.c.resolved_at)
                     .join(i, i.c.incident_id == im.c.incident_id)
                     .where(im.c.status == "hit", im.c.account_id.in_(plans["account_id"]),
                            i.c.resolved_at.is_not(None), i.c.resolved_at >= start,
                            i.c.started_at < end))
    for col in ("started_at", "resolved_at"):
        windows[col] = pd.to_datetime(windows[col], utc=True)
    spans = {str(k): list(zip(g["started_at"].dt.to_pydatetime(),
                              g["resolved_at"].dt.to_pydatetime(), strict=True))
             for k, g in windows.groupby("account_id")}
    out: dict[str, dict[str, Any]] = {}
    for acc in plans.itertuples(index=False):  # the hit accounts of one incident
        down = downtime_minutes(spans.get(str(acc.account_id), []), start, end)
        credit = service_credit(acc.sla, downtime=down, month_start=start, fee=acc.mrr,
                                currency=acc.currency)
        if credit is not None:
            out[str(acc.account_id)] = credit.to_context()
    return out


def queue_outage_notices(engine: Engine, *, incident_id: str | None = None,
                         now: datetime | None = None) -> NoticeReport:
    """Plan and queue every notice due; idempotent (keys per incident, stage and contact)."""
    from pulse.outreach.outbox import queue
    from pulse.sql.schema import OutboxMessage

    report = NoticeReport()
    now = now or datetime.now(UTC)
    drafts = plan_outage_notices(engine, incident_id=incident_id, now=now, report=report)
    if drafts:
        q = queue(engine, drafts, now=now)
        report.queued, report.duplicates = q.queued, q.duplicates
    # Latency: from the incident landing in the warehouse to its first queued notice.
    o, i = OutboxMessage.__table__, Incident.__table__
    first = _frame(engine, select(o.c.incident_id, o.c.queued_at).where(o.c.kind == NOTICE))
    if not first.empty:
        first = first.groupby("incident_id")["queued_at"].min()
        landed = _frame(engine, select(i.c.incident_id, i.c.landed_at).where(
            i.c.incident_id.in_(first.index.tolist()))).set_index("incident_id")["landed_at"]
        for inc_id, queued_at in first.items():
            if inc_id in landed.index:
                delta = pd.Timestamp(queued_at) - pd.Timestamp(landed[inc_id])
                report.latency_seconds[str(inc_id)] = max(0.0, delta.total_seconds())
    log.info("outage notices: %s", report)
    return report
