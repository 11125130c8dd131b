"""Alerts for public complaints the brand left unanswered (issue 15).

A customer's post (models/responses.py) that the sentiment model reads as negative, with no
brand reply once its channel's expectation has passed (`models/responses.yaml`: X 15
minutes, Facebook 60, ...), is sent once to the social team (`PULSE_SOCIAL_TEAM_EMAIL`) with
the post, its link and, when known, the account behind it (its own `account_id`, else the
account or contact whose handle wrote it) and a signed link to the account's page. Key:
`unanswered_post:{mention_id}:{recipient}`, so runs every 15 minutes alert once per post.
The console lists the same posts while they wait (`/responses`, and the account's page) with
the state of their alert (`alerts_of`).

Internal mail: no cap, no unsubscribe.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

log = logging.getLogger(__name__)

KIND = "unanswered_post"


#: how much earlier than the window a brand reply is still read: a reply stamped before its
#: post (clock skew) counts as immediate (models/responses.py)
_SKEW = timedelta(hours=1)

COLUMNS = ["item_id", "channel", "author", "text", "url", "asked_at", "expected", "waited",
           "account_id", "account_name"]


def unanswered_complaints(engine: Engine, *, now: datetime | None = None,
                          since: datetime | None = None,
                          expectations: dict[str, float] | None = None,
                          account_id: str | None = None) -> pd.DataFrame:
    """Negative customer posts since `since` (default 2 days before `now`) with no brand
    reply by `now` although their channel's expectation has passed; oldest first.

    Columns `COLUMNS`: the post (`item_id` is its mention_id, `url` its link as landed),
    `expected` and `waited` minutes, and the account behind it when known (`account_id`,
    `account_name`: the post's own account, else the account or contact whose handle wrote
    it). With `account_id`, only that account's posts (the model reads only those)."""
    from pulse.models.chatter import link_accounts
    from pulse.models.responses import complaints, load_expectations, mark, post_asks

    now = now or datetime.now(UTC)
    since = since or now - timedelta(days=2)
    frame = post_asks(engine, since=since - _SKEW)
    frame = frame[frame["first_response_at"].isna()
                  & (frame["asked_at"] >= pd.Timestamp(since))
                  & (frame["asked_at"] <= pd.Timestamp(now))]
    late = mark(frame, expectations or load_expectations(), now=now)
    late = late[late["late_unanswered"]]
    if late.empty:
        return pd.DataFrame(columns=COLUMNS)
    linked = link_accounts(engine, late["item_id"].astype(str).tolist()).set_index("mention_id")
    ids = late["item_id"].astype(str)
    late = late.assign(account_id=ids.map(linked["account_id"]),
                       account_name=ids.map(linked["name"]))
    if account_id is not None:
        late = late[late["account_id"].eq(account_id)]
        if late.empty:
            return pd.DataFrame(columns=COLUMNS)
    late = late[complaints(late["text"]).to_numpy()]
    late = late.assign(waited=(pd.Timestamp(now) - late["asked_at"]).dt.total_seconds() / 60)
    late = late.sort_values(["asked_at", "item_id"]).reset_index(drop=True)
    out = late[COLUMNS].copy()
    for col in ("author", "url", "account_id", "account_name"):  # missing: None, not NaN
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _recipient() -> str:
    from pulse.core.settings import get_settings

    return get_settings().social_team_email.strip().lower()


def _key(mention_id: Any, to: str) -> str:
    return f"{KIND}:{mention_id}:{to}"


def plan_unanswered_alerts(engine: Engine, *, now: datetime | None = None,
                           since: datetime | None = None) -> list[Any]:
    """Drafts of the alerts to the social team, one per unanswered complaint."""
    from pulse.outreach.links import account_url
    from pulse.outreach.outbox import Draft

    late = unanswered_complaints(engine, now=now, since=since)
    if late.empty:
        return []
    to = _recipient()
    drafts = []
    for p in late.itertuples(index=False):
        account_id = None if p.account_id is None else str(p.account_id)
        context = {
            "mention_id": str(p.item_id), "text": str(p.text), "author_handle": p.author,
            "channel": str(p.channel), "post_url": None if p.url is None else str(p.url),
            "created_at": pd.Timestamp(p.asked_at).isoformat(),
            "expected_minutes": float(p.expected), "waited_minutes": round(float(p.waited)),
            "account_id": account_id,
            "account_name": None if account_id is None or p.account_name is None
            else str(p.account_name),
            "url": None if account_id is None else account_url(account_id)}
        drafts.append(Draft(kind=KIND, template=KIND, to_email=to, account_id=account_id,
                            automated=False, urgent=False,
                            idempotency_key=_key(p.item_id, to), context=context))
    return drafts


def alerts_of(engine: Engine, mention_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The alert queued for each post to today's social-team address, by mention_id: its
    status, when it was queued and sent, and to whom (posts without one are absent)."""
    from pulse.sql.schema import OutboxMessage

    ob = OutboxMessage.__table__
    to = _recipient()
    keys = {_key(i, to): str(i) for i in dict.fromkeys(mention_ids)}
    out: dict[str, dict[str, Any]] = {}
    if not keys:
        return out
    chunk = list(keys)
    with engine.connect() as conn:
        for i in range(0, len(chunk), 500):
            rows = conn.execute(select(ob.c.idempotency_key, ob.c.status, ob.c.queued_at,
                                       ob.c.sent_at, ob.c.to_email)
                                .where(ob.c.kind == KIND,
                                       ob.c.idempotency_key.in_(chunk[i:i + 500])))
            for key, status, queued_at, sent_at, to_email in rows:
                out[keys[key]] = {"status": status, "queued_at": queued_at,
                                  "sent_at": sent_at, "to": to_email}
    return out


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
