"""Replies on X to the public complaints attached to an incident, sent only after approval.

Which complaints: the negative posts on X that name a component of a confirmed incident (one
that hit an account, or that the status page moved past `investigating`) while it was open,
or up to `aftermath_hours` after it was resolved: the rule that attaches chatter spikes to
incidents (`models.chatter.incident_complaints`). Only posts from X with a tweet id can be
answered, and only recent ones (`max_age_hours`): an old post is not answered.

`plan_reply_drafts` writes one draft per author and incident (their first complaint: one
person is answered once, not once per post) into `social_posts` with status `draft`, keyed
`xreply:{incident}:{author}`. Until it is approved a draft follows the incident (its text is
rewritten as the status or the estimated resolution changes); a person approves it
(`approve_replies`, `pulse social replies approve`), which makes it `queued`, or discards it.
`x_posts.post_due` posts approved replies like any post: claimed once, at most once, within
X's 280 characters and rate limits, through `Client.create_tweet(text=...,
in_reply_to_tweet_id=...)`.

What a reply says: the @-reply to its author (the one handle X threads the reply by), an
apology, where the incident stands in plain words, the estimated resolution while it is
ahead, and the status page link from the settings. Nothing else: never the incident title
(a status page title may name a customer), never an account, a contact, a number of theirs
or any other handle. `check_reply` refuses a text that names the author's account or its
people, holds another handle or an email address, or does not fit; approval runs it again.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, exists, func, or_, select, union, update

from pulse.core.errors import InvalidArgumentError
from pulse.models.outage import RESOLVED_STATUSES
from pulse.outreach.notices import component_names
from pulse.outreach.x_posts import LIMIT, eta_ahead, eta_text, x_length
from pulse.sql.db import dialect_insert, write_transaction
from pulse.sql.schema import (
    Account,
    Contact,
    Incident,
    IncidentImpact,
    Mention,
    SocialPost,
)

log = logging.getLogger(__name__)

DRAFT, QUEUED, DISCARDED = "draft", "queued", "discarded"
KEY_PREFIX = "xreply:"
TWEET_ID = re.compile(r"^[0-9]{1,19}$")
_HANDLE = re.compile(r"@[A-Za-z0-9_]+")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[A-Za-z]{2,}")
#: where the incident stands, as a reply says it
STATES = {
    "investigating": "We are aware of it and looking into it now.",
    "identified": "We found the cause and are working on a fix.",
    "monitoring": "A fix is in place and we are watching it closely.",
    "resolved": "It is fixed now. Sorry again for the disruption.",
}


@dataclass
class ReplyReport:
    complaints: int = 0  # complaints attached to confirmed incidents, recent and answerable
    drafted: int = 0  # new drafts
    refreshed: int = 0  # drafts whose text followed the incident
    refused: list[str] = field(default_factory=list)  # drafts check_reply stopped

    def __str__(self) -> str:
        text = (f"{self.complaints} complaints, {self.drafted} new reply drafts, "
                f"{self.refreshed} drafts updated")
        if self.refused:
            text += f"; {len(self.refused)} not drafted (they would name the account)"
        return text


def compose_reply(handle: str, status: str, components: Sequence[str], url: str | None, *,
                  eta: datetime | None = None) -> str:
    """"@handle Sorry for the trouble with X. <where it stands> [ETA] Updates: link"."""
    resolved = status in RESOLVED_STATUSES
    what = f" with {', '.join(components)}" if components else ""
    parts = [f"@{handle.lstrip('@')} Sorry for the trouble{what}.",
             STATES.get(status, STATES["investigating"])]
    if eta is not None and not resolved:
        parts.append(eta_text(eta).replace("ETA", "We expect it fixed by", 1))
    if url:
        parts.append(f"Updates: {url}")
    text = " ".join(parts)
    while x_length(text) > LIMIT and len(parts) > 2:  # long component lists: say less
        parts[0] = f"@{handle.lstrip('@')} Sorry for the trouble."
        del parts[1]
        text = " ".join(parts)
    return text


def _forbidden(engine: Engine, handles: Iterable[str]) -> dict[str, set[str]]:
    """author handle -> what a reply to them must never say: the names, ids, domains,
    handles and emails of the account they belong to (by the mention's account, the account's
    handle or a contact's handle) and of its people."""
    a, c, m = Account.__table__, Contact.__table__, Mention.__table__
    hs = sorted({h.lower().lstrip("@") for h in handles})
    if not hs:
        return {}
    with engine.connect() as conn:
        links = conn.execute(union(
            select(func.lower(m.c.author_handle), m.c.account_id).where(
                func.lower(m.c.author_handle).in_(hs), m.c.account_id.is_not(None)),
            select(func.lower(a.c.x_handle), a.c.account_id).where(
                func.lower(a.c.x_handle).in_(hs)),
            select(func.lower(c.c.x_handle), c.c.account_id).where(
                func.lower(c.c.x_handle).in_(hs)))).all()
        accounts = sorted({acc for _, acc in links})
        words: dict[str, set[str]] = {}
        if accounts:
            for acc, *vals in conn.execute(select(a.c.account_id, a.c.name, a.c.domain,
                                                  a.c.x_handle).where(
                                                      a.c.account_id.in_(accounts))):
                words.setdefault(acc, set()).update({acc, *(v for v in vals if v)})
            for acc, *vals in conn.execute(select(c.c.account_id, c.c.name, c.c.email,
                                                  c.c.x_handle, c.c.contact_id).where(
                                                      c.c.account_id.in_(accounts))):
                words.setdefault(acc, set()).update(v for v in vals if v)
    out: dict[str, set[str]] = {h: set() for h in hs}
    for handle, acc in links:
        out[handle] |= words.get(acc, set())
    return out


def check_reply(text: str, handle: str, forbidden: Iterable[str]) -> str | None:
    """Why `text` may not be posted as a reply to `handle`, or None when it may."""
    handle = handle.lower().lstrip("@")
    lead = f"@{handle} "
    if not text.lower().startswith(lead):
        return f"a reply must start with the @-reply to its author ({lead.strip()})"
    body = text[len(lead):]
    if x_length(text) > LIMIT:
        return f"{x_length(text)} characters as X counts them; the limit is {LIMIT}"
    if _EMAIL.search(body):
        return "it holds an email address"
    if _HANDLE.search(body):
        return "it names a handle besides the @-reply to its author"
    low = body.lower()
    for word in sorted(forbidden, key=str):
        w = str(word).strip().lower().lstrip("@")
        if len(w) >= 3 and re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", low):
            return f"it names the customer's account or its people ({word!r})"
    return None


def plan_reply_drafts(engine: Engine, *, now: datetime | None = None,
                      status_page_url: str | None = None, max_age_hours: float = 24.0,
                      aftermath_hours: float = 2.0) -> ReplyReport:
    """Draft a reply to each author of a recent complaint attached to a confirmed incident
    (once per author and incident), and keep unapproved drafts in step with the incident."""
    from pulse.core.settings import get_settings
    from pulse.models.chatter import incident_complaints

    now = now or datetime.now(UTC)
    url = status_page_url if status_page_url is not None else get_settings().status_page_url
    report = ReplyReport()
    since = now - timedelta(hours=max_age_hours)
    found = incident_complaints(engine, since=since, until=now,
                                aftermath_hours=aftermath_hours)
    i, im, m, sp = (Incident.__table__, IncidentImpact.__table__, Mention.__table__,
                    SocialPost.__table__)
    if found.empty:
        return report
    hit = exists().where(im.c.incident_id == i.c.incident_id, im.c.status == "hit")
    with engine.connect() as conn:
        confirmed = pd.DataFrame(conn.execute(
            select(i.c.incident_id, i.c.status, i.c.components, i.c.eta)
            .where(i.c.incident_id.in_(sorted(set(found["incident_id"]))),
                   or_(hit, i.c.status != "investigating"))).all(),
            columns=["incident_id", "status", "components", "eta"])
        on_x = set(conn.execute(select(m.c.mention_id).where(
            m.c.mention_id.in_(sorted(set(found["mention_id"]))),
            func.lower(m.c.platform) == "x")).scalars())
    found = found[found["mention_id"].isin(on_x)
                  & found["mention_id"].astype(str).str.fullmatch(TWEET_ID.pattern)
                  & found["author_handle"].astype(str).str.len().gt(0)]
    found = found.merge(confirmed, on="incident_id")
    report.complaints = len(found)
    # one reply per author and incident: to their first complaint
    first = found.sort_values(["created_at", "mention_id"]).drop_duplicates(
        ["incident_id", "author_handle"])
    forbidden = _forbidden(engine, first["author_handle"])
    rows = []
    for r in first.itertuples(index=False):  # one per person to answer: a handful
        eta = None if pd.isna(r.eta) else pd.Timestamp(r.eta).to_pydatetime()
        text = compose_reply(str(r.author_handle), str(r.status),
                             component_names(r.components), url, eta=eta_ahead(eta, now))
        why = check_reply(text, str(r.author_handle), forbidden.get(str(r.author_handle), ()))
        key = f"{KEY_PREFIX}{r.incident_id}:{r.author_handle}"
        if why is not None:
            report.refused.append(f"{key}: {why}")
            log.warning("reply %s not drafted: %s", key, why)
            continue
        rows.append({"post_key": key, "incident_id": str(r.incident_id), "text": text,
                     "status": DRAFT, "in_reply_to_id": str(r.mention_id),
                     "created_at": now})
    if not rows:
        return report
    keys = [r["post_key"] for r in rows]
    stmt = dialect_insert(engine, sp)
    stmt = stmt.on_conflict_do_update(
        index_elements=["post_key"], set_={"text": stmt.excluded.text},
        where=and_(sp.c.status == DRAFT, sp.c.text != stmt.excluded.text))
    with write_transaction(engine) as conn:
        known = set(conn.execute(select(sp.c.post_key).where(sp.c.post_key.in_(keys))).scalars())
        # RETURNING names the rows inserted and the drafts whose text changed, not the others
        written = set(conn.execute(stmt.returning(sp.c.post_key), rows).scalars())
    report.drafted = len(set(keys) - known)
    report.refreshed = len(written & known)
    log.info("X reply drafts: %s", report)
    return report


# --------------------------------------------------------------------------- review


def list_replies(engine: Engine, *, status: str | None = DRAFT) -> pd.DataFrame:
    """Replies (drafts by default), oldest first, each with the complaint it answers."""
    sp, m = SocialPost.__table__, Mention.__table__
    cols = [sp.c.post_id, sp.c.incident_id, sp.c.status, m.c.author_handle,
            m.c.text.label("complaint"), sp.c.text, sp.c.created_at, sp.c.approved_at,
            sp.c.tweet_id, sp.c.error]
    q = (select(*cols).select_from(sp.outerjoin(m, m.c.mention_id == sp.c.in_reply_to_id))
         .where(sp.c.post_key.like(f"{KEY_PREFIX}%")).order_by(sp.c.post_id))
    if status:
        q = q.where(sp.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in cols])


def show_reply(engine: Engine, post_id: int) -> dict[str, Any]:
    """One reply with the complaint it answers."""
    frame = list_replies(engine, status=None)
    row = frame[frame["post_id"] == post_id]
    if row.empty:
        raise InvalidArgumentError(f"no reply {post_id} (see `pulse social replies list`)")
    return {k: (None if not isinstance(v, list | dict) and pd.isna(v) else v)
            for k, v in row.iloc[0].to_dict().items()}


@dataclass
class ReviewResult:
    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # post id -> why


def approve_replies(engine: Engine, post_ids: Sequence[int], *,
                    now: datetime | None = None) -> ReviewResult:
    """Approve drafts: each is checked again (`check_reply`) and, when clean, queued for the
    next `post_due`. A post that is not a draft, or fails the check, is refused with why."""
    now = now or datetime.now(UTC)
    sp, m = SocialPost.__table__, Mention.__table__
    result = ReviewResult()
    with engine.connect() as conn:
        rows = {r.post_id: r for r in conn.execute(
            select(sp.c.post_id, sp.c.post_key, sp.c.status, sp.c.text, m.c.author_handle)
            .select_from(sp.outerjoin(m, m.c.mention_id == sp.c.in_reply_to_id))
            .where(sp.c.post_id.in_(list(post_ids))))}
    forbidden = _forbidden(engine, [r.author_handle for r in rows.values() if r.author_handle])
    ok: list[int] = []
    for pid in dict.fromkeys(post_ids):
        r = rows.get(pid)
        if r is None or not str(r.post_key).startswith(KEY_PREFIX):
            result.refused[pid] = "no such reply"
        elif r.status != DRAFT:
            result.refused[pid] = f"not a draft (it is {r.status})"
        elif not r.author_handle:
            result.refused[pid] = "the complaint it answers is no longer known"
        elif (why := check_reply(str(r.text), str(r.author_handle),
                                 forbidden.get(str(r.author_handle).lower(), ()))):
            result.refused[pid] = why
        else:
            ok.append(pid)
    if ok:
        with write_transaction(engine) as conn:
            done = conn.execute(update(sp).where(sp.c.post_id.in_(ok), sp.c.status == DRAFT)
                                .values(status=QUEUED, approved_at=now)
                                .returning(sp.c.post_id)).scalars().all()
        result.done = sorted(done)
    return result


def discard_replies(engine: Engine, post_ids: Sequence[int]) -> ReviewResult:
    """Discard drafts: they are never posted, and never drafted again."""
    sp = SocialPost.__table__
    with write_transaction(engine) as conn:
        done = conn.execute(update(sp).where(sp.c.post_id.in_(list(post_ids)),
                                             sp.c.status == DRAFT,
                                             sp.c.post_key.like(f"{KEY_PREFIX}%"))
                            .values(status=DISCARDED).returning(sp.c.post_id)).scalars().all()
    result = ReviewResult(done=sorted(done))
    result.refused = {p: "not a draft reply" for p in post_ids if p not in set(done)}
    return result


__all__ = ["ReplyReport", "ReviewResult", "approve_replies", "check_reply", "compose_reply",
           "discard_replies", "list_replies", "plan_reply_drafts", "show_reply"]
