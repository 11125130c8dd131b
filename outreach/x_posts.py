"""Open updates on X: a confirmed incident's public updates posted by the brand account.

`plan_incident_posts` drafts one post per public update of every confirmed incident (one
that hit at least one account, or that the status page moved past `investigating`), keyed
`x:{incident}:{update}`: a key is planned once however often it runs. `post_due` claims each
queued post with a conditional update (one run wins it), posts it with tweepy's
`Client.create_tweet`, and records the tweet id. A post is published at most once: a run that
stops after claiming leaves it `posting`, reported and never posted again by itself; X's
refusal (400/403, a duplicate) marks it `failed` with the reason; a rate limit (429) or an
outage stops the run and leaves the rest queued for the next one.

Posts say only what the status page says (title, status, the update, the estimated
resolution while the incident carries one and it is ahead, the link): never an
account, a customer or a number of theirs. Texts fit X's 280 characters as X counts them
(a link counts 23).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, or_, select, update

from pulse.models.outage import RESOLVED_STATUSES
from pulse.outreach.notices import component_names
from pulse.sql.db import dialect_insert, write_transaction
from pulse.sql.schema import Incident, IncidentImpact, IncidentUpdate, SocialPost

log = logging.getLogger(__name__)

LIMIT = 280
URL_WEIGHT = 23  # X wraps every link in t.co: it counts 23 characters whatever its length
_URL = re.compile(r"https?://\S+")


def x_length(text: str) -> int:
    """The length X counts: a link is 23; characters outside Latin and punctuation count 2
    (X's weighted length; close enough for the texts Pulse writes)."""
    links = _URL.findall(text)
    rest = _URL.sub("", text)
    weight = sum(1 if ord(ch) <= 0x10FF or 0x2000 <= ord(ch) <= 0x200D
                 or 0x2010 <= ord(ch) <= 0x201F or 0x2032 <= ord(ch) <= 0x2037 else 2
                 for ch in rest)
    return weight + URL_WEIGHT * len(links)


def eta_text(eta: datetime) -> str:
    """The estimated resolution as a public post says it, in UTC ("ETA 2 Jul 14:30 UTC.")."""
    at = eta.astimezone(UTC) if eta.tzinfo else eta.replace(tzinfo=UTC)
    return f"ETA {at.day} {at:%b %H:%M} UTC."


def compose(title: str, status: str, body: str | None, url: str | None,
            components: list[str], *, eta: datetime | None = None) -> str:
    """One post: "[Status] Title (components): update. ETA. link", the update cut to fit
    280; the ETA (the estimated resolution) only while the incident is not resolved."""
    resolved = status in RESOLVED_STATUSES
    label = "Resolved" if resolved else status.replace("_", " ").capitalize()
    head = f"[{label}] {title.strip()}"
    if components:
        head += f" ({', '.join(components)})"
    tail = f" {url}" if url else ""
    if eta is not None and not resolved:
        tail = f" {eta_text(eta)}{tail}"
    text = " ".join((body or "").split())
    room = LIMIT - x_length(head + ": " + tail) if text else 0
    if text and x_length(text) > room:
        while text and x_length(text + "…") > room:
            text = text[: max(0, len(text) - max(1, (x_length(text) - room) // 2))].rstrip()
        text = text + "…" if text else ""
    post = f"{head}: {text}{tail}" if text else f"{head}{tail}"
    if x_length(post) > LIMIT:  # a title too long on its own: cut it
        keep = LIMIT - x_length(tail) - x_length("…")  # X counts the ellipsis as 2
        post = head[: max(1, keep)].rstrip() + "…" + tail
    return post


@dataclass
class PostReport:
    planned: int = 0
    posted: int = 0
    failed: int = 0
    left_queued: int = 0
    unknown: list[str] = field(default_factory=list)  # claimed by a run that stopped
    stopped: str | None = None
    reply_drafts: int = 0  # new replies to complaints, waiting for approval (x_replies.py)

    def __str__(self) -> str:
        text = (f"{self.planned} planned, {self.posted} posted, {self.failed} refused, "
                f"{self.left_queued} left queued")
        if self.unknown:
            text += f"; {len(self.unknown)} claimed by a run that stopped (check X before "
            text += "posting them again by hand)"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        if self.reply_drafts:
            text += (f"; {self.reply_drafts} new replies to complaints wait for approval "
                     "(pulse social replies list)")
        return text


def plan_incident_posts(engine: Engine, *, now: datetime | None = None,
                        status_page_url: str | None = None) -> int:
    """Queue a post for every public update of a confirmed incident not yet planned; returns
    how many were queued (existing keys are left alone)."""
    from pulse.core.settings import get_settings

    now = now or datetime.now(UTC)
    url = status_page_url if status_page_url is not None else get_settings().status_page_url
    i, u, im, sp = (Incident.__table__, IncidentUpdate.__table__, IncidentImpact.__table__,
                    SocialPost.__table__)
    hit = exists().where(im.c.incident_id == i.c.incident_id, im.c.status == "hit")
    with engine.connect() as conn:
        rows = conn.execute(
            select(u.c.update_id, u.c.incident_id, u.c.status, u.c.body, u.c.created_at,
                   i.c.title, i.c.components, i.c.eta)
            .join(i, i.c.incident_id == u.c.incident_id)
            .where(or_(hit, i.c.status != "investigating"))
            .where(~exists().where(sp.c.post_key == "x:" + u.c.incident_id + ":" + u.c.update_id))
            .order_by(u.c.incident_id, u.c.created_at)).all()
    if not rows:
        return 0
    posts = [{"post_key": f"x:{r.incident_id}:{r.update_id}", "incident_id": r.incident_id,
              "text": compose(str(r.title), str(r.status), r.body, url,
                              component_names(r.components),
                              eta=eta_ahead(r.eta, now)),
              "status": "queued", "created_at": now} for r in rows]
    with write_transaction(engine) as conn:
        done = conn.execute(dialect_insert(engine, sp).on_conflict_do_nothing(index_elements=["post_key"])
                            .returning(sp.c.post_id), posts).all()
    return len(done)


def eta_ahead(eta: datetime | None, now: datetime) -> datetime | None:
    """The ETA while it is still ahead (a passed estimate is not said)."""
    if eta is None:
        return None
    eta = eta if eta.tzinfo else eta.replace(tzinfo=UTC)
    return eta if eta > now else None


def user_client() -> Any:
    """A `tweepy.Client` acting as the brand account (OAuth 1.0a user context, from the
    environment: PULSE_X_API_KEY, PULSE_X_API_SECRET, PULSE_X_ACCESS_TOKEN,
    PULSE_X_ACCESS_TOKEN_SECRET), talking to PULSE_X_API_HOST."""
    import tweepy

    from pulse.core.errors import ConfigError
    from pulse.core.settings import get_settings

    s = get_settings()
    keys = (s.x_api_key, s.x_api_secret, s.x_access_token, s.x_access_token_secret)
    if not all(keys):
        raise ConfigError("posting on X needs PULSE_X_API_KEY, PULSE_X_API_SECRET, "
                          "PULSE_X_ACCESS_TOKEN and PULSE_X_ACCESS_TOKEN_SECRET")
    client = tweepy.Client(consumer_key=keys[0], consumer_secret=keys[1], access_token=keys[2],
                           access_token_secret=keys[3], wait_on_rate_limit=False)
    host = s.x_api_host.strip().rstrip("/")
    if host and host != TWITTER:
        client.session = _host_session(host)
    return client


TWITTER = "https://api.twitter.com"  # where tweepy sends every request


def _host_session(host: str) -> Any:
    """A `requests.Session` that sends tweepy's requests to `host` (PULSE_X_API_HOST) instead,
    rewriting the URL before the request is signed, so the OAuth signature covers it."""
    import requests

    class HostSession(requests.Session):
        def request(self, method: str, url: str | bytes,  # type: ignore[override]
                    *args: Any, **kwargs: Any) -> requests.Response:
            if isinstance(url, str) and url.startswith(TWITTER + "/"):
                url = host + url[len(TWITTER):]
            return super().request(method, url, *args, **kwargs)

    return HostSession()


def post_due(engine: Engine, client: Any, *, now: datetime | None = None,
             limit: int = 50) -> PostReport:
    """Post queued posts (updates, and replies once approved), oldest first, each at most
    once (see the module docstring)."""
    import requests
    import tweepy

    report = PostReport()
    sp = SocialPost.__table__
    with engine.connect() as conn:
        report.unknown = list(conn.execute(select(sp.c.post_key).where(
            sp.c.status == "posting")).scalars())
        due = conn.execute(select(sp.c.post_id, sp.c.text, sp.c.in_reply_to_id)
                           .where(sp.c.status == "queued")
                           .order_by(sp.c.post_id).limit(limit)).all()
    for n, (post_id, text, in_reply_to) in enumerate(due):
        claimed_at = now or datetime.now(UTC)
        with write_transaction(engine) as conn:
            won = conn.execute(update(sp).where(and_(sp.c.post_id == post_id,
                                                     sp.c.status == "queued"))
                               .values(status="posting", claimed_at=claimed_at)).rowcount
        if not won:
            continue  # another run claimed it
        try:
            # a reply (outreach/x_replies.py, approved) threads under the complaint
            response = client.create_tweet(text=text, in_reply_to_tweet_id=in_reply_to,
                                           user_auth=True)
        except tweepy.TooManyRequests:
            _set(engine, post_id, status="queued", claimed_at=None, error="rate limited")
            report.stopped = "rate limited by X (429): the rest waits for the next run"
            report.left_queued = len(due) - n
            break
        except (tweepy.BadRequest, tweepy.Forbidden) as exc:  # X refused this post
            _set(engine, post_id, status="failed", error=_why(exc))
            report.failed += 1
            continue
        except (tweepy.Unauthorized, tweepy.TwitterServerError, requests.ConnectionError,
                requests.Timeout) as exc:
            # nothing was posted: X refused the keys or could not be reached
            _set(engine, post_id, status="queued", claimed_at=None, error=_why(exc))
            report.stopped = _why(exc)
            report.left_queued = len(due) - n
            break
        tweet_id = str((response.data or {}).get("id") or "")
        _set(engine, post_id, status="posted", tweet_id=tweet_id or None,
             posted_at=now or datetime.now(UTC), error=None)
        report.posted += 1
    return report


def _why(exc: Exception) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = "; ".join(str(m) for m in getattr(exc, "api_messages", []) or []) or str(exc)
    return f"{status} {detail}".strip() if status else detail


def _set(engine: Engine, post_id: int, **values: Any) -> None:
    sp = SocialPost.__table__
    with write_transaction(engine) as conn:
        conn.execute(update(sp).where(sp.c.post_id == post_id).values(**values))


def run(engine: Engine, *, client: Any | None = None, now: datetime | None = None
        ) -> PostReport | None:
    """Plan and post when PULSE_X_POST is on (None when it is off); draft replies to the
    complaints attached to incidents, which wait for approval."""
    from pulse.core.settings import get_settings

    if not get_settings().x_post:
        return None
    from pulse.outreach.x_replies import plan_reply_drafts

    planned = plan_incident_posts(engine, now=now)
    drafts = plan_reply_drafts(engine, now=now)
    report = post_due(engine, client if client is not None else user_client(), now=now)
    report.planned, report.reply_drafts = planned, drafts.drafted
    log.info("X posts: %s", report)
    return report


__all__ = ["PostReport", "compose", "eta_ahead", "eta_text", "plan_incident_posts", "post_due",
           "run", "user_client", "x_length"]
