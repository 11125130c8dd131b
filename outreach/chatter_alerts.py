"""Alerts from social chatter (models/chatter.py): suspected incidents, and complaints about
an open one.

Every spike of negative posts about a component with no open incident (`suspected`) is sent,
once, to on-call (`PULSE_ONCALL_EMAIL`) and to the CSM of every account whose people wrote its
sample posts (the most recent three), with those posts and signed links to the accounts'
pages. The idempotency key `chatter_alert:{component}:{bucket}:{recipient}` makes the
pulse_social DAG's runs every 15 minutes send each alert once.

Every public complaint made while an incident is open (attached to it by
`models.chatter.incident_chatter`) reaches the CSM of the account behind it: one
`incident_complaint` alert per incident and account, with the account's complaints so far,
whether the incident hit the account (its impact row) and a signed link to the account's
page. Key: `incident_complaint:{incident}:{account}:{csm}`. Accounts without a usable CSM
address are skipped and logged; the complaints still show on the incident
(`pulse outage impact ID`).

Internal mail: no cap, no unsubscribe.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, or_, select

from pulse.core.times import utc_stamp
from pulse.sql.schema import Incident, IncidentImpact

log = logging.getLogger(__name__)

KIND = "chatter_alert"
COMPLAINT = "incident_complaint"


def plan_chatter_alerts(engine: Engine, *, since: datetime | None = None) -> list[Any]:
    """Drafts of the alerts for suspected incidents since `since` (default: 2 days ago)."""
    from pulse.core.settings import get_settings
    from pulse.models.chatter import link_accounts, suspected_incidents
    from pulse.outreach.links import account_url
    from pulse.outreach.outbox import Draft

    settings = get_settings()
    since = since or datetime.now(UTC) - timedelta(days=2)
    spikes = suspected_incidents(engine, status="suspected", since=since)
    # the sample posts of every spike with their accounts, in one pass
    linked = link_accounts(engine, [str(i) for ids in spikes["sample_mention_ids"]
                                    for i in ids]).set_index("mention_id", drop=False)
    drafts = []
    for s in spikes.itertuples(index=False):
        posts = linked.loc[[i for i in map(str, s.sample_mention_ids)  # most recent first
                            if i in linked.index]]
        samples = [{"text": str(p.text), "author_handle": p.author_handle,
                    "account_name": None if pd.isna(p.name) else str(p.name)}
                   for p in posts.itertuples(index=False)]
        known = posts.dropna(subset=["account_id"]).drop_duplicates("account_id")
        accounts = [{"account_id": str(p.account_id), "name": str(p.name),
                     "url": account_url(str(p.account_id))} for p in known.itertuples(index=False)]
        bucket = utc_stamp(pd.Timestamp(s.bucket_start))
        context = {"component": str(s.component), "bucket_start": bucket.isoformat(),
                   "negative_mentions": int(s.negative_mentions),
                   "baseline": float(s.baseline), "score": float(s.score),
                   "samples": samples, "accounts": accounts, "rule": str(s.rule),
                   "min_authors": settings.chatter_min_authors,
                   "window_minutes": settings.chatter_author_window_minutes}
        recipients = [settings.oncall_email] + sorted(
            {str(e).strip().lower() for e in known["csm_email"].dropna() if str(e).strip()})
        for to in dict.fromkeys(recipients):
            drafts.append(Draft(
                kind=KIND, template=KIND, to_email=to, automated=False, urgent=False,
                idempotency_key=f"{KIND}:{s.component}:{bucket.isoformat()}:{to}",
                context=context))
    return drafts


def _open_since(engine: Engine, since: datetime, now: datetime, aftermath: timedelta
                ) -> list[tuple[str, str, str]]:
    """(incident_id, title, status) of the incidents started before `now` that were open at
    some time from `since` on (or resolved less than `aftermath` before it), oldest first."""
    i = Incident.__table__
    with engine.connect() as conn:
        return [(str(r.incident_id), str(r.title), str(r.status)) for r in conn.execute(
            select(i.c.incident_id, i.c.title, i.c.status)
            .where(i.c.started_at < now, or_(i.c.resolved_at.is_(None),
                                             i.c.resolved_at >= since - aftermath))
            .order_by(i.c.started_at, i.c.incident_id))]


def plan_complaint_alerts(engine: Engine, *, since: datetime | None = None,
                          now: datetime | None = None, aftermath_hours: float = 2.0
                          ) -> list[Any]:
    """Drafts of the alerts to CSMs whose accounts complained publicly about an incident
    open at some time since `since` (default: 2 days before `now`); complaints created
    before `now` only. One draft per incident and account with a usable CSM address."""
    from pulse.models.chatter import incident_complaints, with_accounts
    from pulse.outreach.checkins import _plausible, csm_name
    from pulse.outreach.links import account_url
    from pulse.outreach.outbox import Draft

    now = now or datetime.now(UTC)
    since = since or now - timedelta(days=2)
    aftermath = timedelta(hours=aftermath_hours)
    im = IncidentImpact.__table__
    drafts: list[Any] = []
    incidents = _open_since(engine, since, now, aftermath)
    if not incidents:
        return drafts
    # every complaint since `since`, attached to its incident, in one pass
    every = with_accounts(engine, incident_complaints(engine, since=since, until=now,
                                                      aftermath_hours=aftermath_hours))
    every = every.dropna(subset=["account_id"])
    for incident_id, title, status in incidents:
        found = every[every["incident_id"] == incident_id]
        if found.empty:
            continue
        with engine.connect() as conn:
            impact = dict(conn.execute(select(im.c.account_id, im.c.status).where(
                im.c.incident_id == incident_id,
                im.c.account_id.in_(sorted(set(found["account_id"].astype(str)))))).all())
        found = found.assign(csm=found["csm_email"].fillna("").astype(str).str.strip()
                             .str.lower())
        usable = found["csm"].map(_plausible).astype(bool)
        if (~usable).any():
            log.info("incident %s: %d complaints from accounts without a usable CSM address",
                     incident_id, int((~usable).sum()))
        for (account_id, csm), posts in found[usable].groupby(["account_id", "csm"],
                                                              sort=True):
            context = {
                "incident_id": incident_id, "incident_title": title,
                "incident_status": status, "account_id": str(account_id),
                "account_name": str(posts["account_name"].iloc[0]),
                "url": account_url(str(account_id)),
                "impact": impact.get(str(account_id)),
                "components": sorted(set(posts["component"].astype(str))),
                "complaints": [{"text": str(p.text), "author_handle": p.author_handle,
                                "created_at": pd.Timestamp(p.created_at).isoformat(),
                                "component": str(p.component)}
                               for p in posts.itertuples(index=False)]}
            drafts.append(Draft(
                kind=COMPLAINT, template=COMPLAINT, to_email=str(csm),
                to_name=csm_name(str(csm)), account_id=str(account_id),
                incident_id=incident_id, automated=False, urgent=False,
                idempotency_key=f"{COMPLAINT}:{incident_id}:{account_id}:{csm}",
                context=context))
    return drafts


def queue_chatter_alerts(engine: Engine, *, since: datetime | None = None,
                         now: datetime | None = None) -> int:
    """Queue the alerts due (suspected incidents, complaints about open incidents); returns
    how many were new."""
    from pulse.outreach.outbox import queue

    drafts = plan_chatter_alerts(engine, since=since) + plan_complaint_alerts(
        engine, since=since, now=now)
    if not drafts:
        return 0
    report = queue(engine, drafts)
    log.info("chatter alerts: %d queued, %d already queued", report.queued, report.duplicates)
    return int(report.queued)
