"""Alerts for suspected incidents found in social chatter (models/chatter.py).

Every spike of negative posts about a component with no open incident (`suspected`) is sent,
once, to on-call (`PULSE_ONCALL_EMAIL`) and to the CSM of every account whose people wrote its
sample posts (the most recent three), with those posts and signed links to the accounts'
pages. Internal mail: no cap, no
unsubscribe. The idempotency key `chatter_alert:{component}:{bucket}:{recipient}` makes the
pulse_social DAG's runs every 15 minutes send each alert once.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, or_, select

from pulse.sql.schema import Account, Contact, Mention

log = logging.getLogger(__name__)

KIND = "chatter_alert"


def _linked(engine: Engine, mention_ids: list[str]) -> pd.DataFrame:
    """mention_id, text, author_handle, account_id, name, csm_email of the sample posts."""
    m, a, c = Mention.__table__, Account.__table__, Contact.__table__
    if not mention_ids:
        return pd.DataFrame(columns=["mention_id", "text", "author_handle", "account_id",
                                     "name", "csm_email"])
    via_contact = (select(c.c.account_id).where(c.c.x_handle == m.c.author_handle)
                   .limit(1).scalar_subquery())
    q = (select(m.c.mention_id, m.c.text, m.c.author_handle, a.c.account_id, a.c.name,
                a.c.csm_email)
         .select_from(m.outerjoin(a, or_(a.c.account_id == m.c.account_id,
                                         a.c.x_handle == m.c.author_handle,
                                         a.c.account_id == via_contact)))
         .where(m.c.mention_id.in_(mention_ids)))
    with engine.connect() as conn:
        result = conn.execute(q)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return frame.drop_duplicates("mention_id")


def plan_chatter_alerts(engine: Engine, *, since: datetime | None = None) -> list[Any]:
    """Drafts of the alerts for suspected incidents since `since` (default: 2 days ago)."""
    from pulse.core.settings import get_settings
    from pulse.models.chatter import suspected_incidents
    from pulse.outreach.links import account_url
    from pulse.outreach.outbox import Draft

    settings = get_settings()
    since = since or datetime.now(UTC) - timedelta(days=2)
    spikes = suspected_incidents(engine, status="suspected", since=since)
    drafts = []
    for s in spikes.itertuples(index=False):
        posts = _linked(engine, [str(i) for i in s.sample_mention_ids])
        samples = [{"text": str(p.text), "author_handle": p.author_handle,
                    "account_name": None if pd.isna(p.name) else str(p.name)}
                   for p in posts.itertuples(index=False)]
        known = posts.dropna(subset=["account_id"]).drop_duplicates("account_id")
        accounts = [{"account_id": str(p.account_id), "name": str(p.name),
                     "url": account_url(str(p.account_id))} for p in known.itertuples(index=False)]
        bucket = pd.Timestamp(s.bucket_start)
        bucket = bucket.tz_localize("UTC") if bucket.tzinfo is None else bucket.tz_convert("UTC")
        context = {"component": str(s.component), "bucket_start": bucket.isoformat(),
                   "negative_mentions": int(s.negative_mentions),
                   "baseline": float(s.baseline), "score": float(s.score),
                   "samples": samples, "accounts": accounts}
        recipients = [settings.oncall_email] + sorted(
            {str(e).strip().lower() for e in known["csm_email"].dropna() if str(e).strip()})
        for to in dict.fromkeys(recipients):
            drafts.append(Draft(
                kind=KIND, template=KIND, to_email=to, automated=False, urgent=False,
                idempotency_key=f"{KIND}:{s.component}:{bucket.isoformat()}:{to}",
                context=context))
    return drafts


def queue_chatter_alerts(engine: Engine, *, since: datetime | None = None) -> int:
    """Queue the alerts due; returns how many were new."""
    from pulse.outreach.outbox import queue

    drafts = plan_chatter_alerts(engine, since=since)
    if not drafts:
        return 0
    report = queue(engine, drafts)
    log.info("chatter alerts: %d queued, %d already queued", report.queued, report.duplicates)
    return int(report.queued)
