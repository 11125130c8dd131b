"""Alerts for public complaints the brand left unanswered (issue 15).

A customer's post (models/responses.py) that the sentiment model reads as negative, with no
brand reply once its channel's expectation has passed (`models/responses.yaml`: X 15
minutes, Facebook 60, ...), is sent once to the social team (`PULSE_SOCIAL_TEAM_EMAIL`) with
the post, its link and, when known, the account behind it (its own `account_id`, else the
account or contact whose handle wrote it) and a signed link to the account's page. Key:
`unanswered_post:{mention_id}:{recipient}`, so runs every 15 minutes alert once per post.

Internal mail: no cap, no unsubscribe.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine

log = logging.getLogger(__name__)

KIND = "unanswered_post"


def unanswered_complaints(engine: Engine, *, now: datetime | None = None,
                          since: datetime | None = None,
                          expectations: dict[str, float] | None = None) -> pd.DataFrame:
    """Negative customer posts since `since` (default 2 days before `now`) with no brand
    reply by `now` although their channel's expectation has passed."""
    from pulse.models.responses import asks, complaints, load_expectations, mark

    now = now or datetime.now(UTC)
    since = since or now - timedelta(days=2)
    frame = asks(engine)
    frame = frame[frame["kind"].eq("mention") & frame["first_response_at"].isna()
                  & (frame["asked_at"] >= pd.Timestamp(since))
                  & (frame["asked_at"] <= pd.Timestamp(now))]
    late = mark(frame, expectations or load_expectations(), now=now)
    late = late[late["late_unanswered"]]
    if late.empty:
        return late
    late = late[complaints(late["text"]).to_numpy()]
    late = late.assign(waited=(pd.Timestamp(now) - late["asked_at"]).dt.total_seconds() / 60)
    return late.sort_values(["asked_at", "item_id"]).reset_index(drop=True)


def plan_unanswered_alerts(engine: Engine, *, now: datetime | None = None,
                           since: datetime | None = None) -> list[Any]:
    """Drafts of the alerts to the social team, one per unanswered complaint."""
    from pulse.core.settings import get_settings
    from pulse.models.chatter import link_accounts
    from pulse.outreach.links import account_url
    from pulse.outreach.outbox import Draft

    late = unanswered_complaints(engine, now=now, since=since)
    if late.empty:
        return []
    to = get_settings().social_team_email.strip().lower()
    linked = link_accounts(engine, late["item_id"].astype(str).tolist()).set_index(
        "mention_id")
    drafts = []
    for p in late.itertuples(index=False):
        found = p.item_id in linked.index
        account_id = (str(linked.at[p.item_id, "account_id"])
                      if found and pd.notna(linked.at[p.item_id, "account_id"]) else None)
        account_name = (None if account_id is None
                        else str(linked.at[p.item_id, "name"]))
        context = {
            "mention_id": str(p.item_id), "text": str(p.text), "author_handle": p.author,
            "channel": str(p.channel), "post_url": None if pd.isna(p.url) else str(p.url),
            "created_at": pd.Timestamp(p.asked_at).isoformat(),
            "expected_minutes": float(p.expected), "waited_minutes": round(float(p.waited)),
            "account_id": account_id,
            "account_name": account_name,
            "url": None if account_id is None else account_url(account_id)}
        drafts.append(Draft(kind=KIND, template=KIND, to_email=to, account_id=account_id,
                            automated=False, urgent=False,
                            idempotency_key=f"{KIND}:{p.item_id}:{to}", context=context))
    return drafts


def queue_unanswered_alerts(engine: Engine, *, now: datetime | None = None,
                            since: datetime | None = None) -> int:
    """Queue the alerts due; returns how many were new."""
    from pulse.outreach.outbox import queue

    drafts = plan_unanswered_alerts(engine, now=now, since=since)
    if not drafts:
        return 0
    report = queue(engine, drafts)
    log.info("unanswered complaints: %d alerts queued, %d already queued", report.queued,
             report.duplicates)
    return int(report.queued)
