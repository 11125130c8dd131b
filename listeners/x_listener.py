"""Listening to X: recent-search mentions landed through the contract, with `since_id` watermarks.

`listen(engine)` runs every configured query (`PULSE_X_QUERIES`: brand names, product terms,
our handles) against the X API v2 recent search (`GET /2/tweets/search/recent`) with
`tweepy.Client` and `tweepy.Paginator`, asking only for what is newer than the query's
watermark (`x_watermarks.since_id`). The tweets and their authors (the `author_id` expansion,
`includes.users`) become rows of the contract's `mentions` source, written to a JSON Lines
file `mentions-x-<query>.jsonl` and landed through the one landing path
(`listeners.landing.land_file`), so validation and quarantine apply as to any file.

Only after a successful landing does the watermark advance to the newest tweet id the search
returned (`meta.newest_id`). When X answers with an error (401 bad token, 403 no access,
429 rate limited when not waiting, 5xx) or cannot be reached, the query's `last_error` says
so, its `since_id` stays where it was, and the report names the query and the status; the
next run asks again from the same watermark (re-landing a tweet changes nothing: mention ids
are keys). Other queries still run.

Without a bearer token (`PULSE_X_BEARER_TOKEN`, `X_BEARER_TOKEN`, `TWITTER_BEARER_TOKEN` or
the Airflow Connection `x_default`'s password) the listener replays a JSON Lines file of
contract mentions instead (`PULSE_X_REPLAY_FILE`, else `$PULSE_HOME/landing/mentions.jsonl`,
else the demo's `$PULSE_HOME/demo/mentions.jsonl`): that is what the demo uses.

The mapping (docs/social.md)
----------------------------
==============  ===========================================================================
contract        X API v2
==============  ===========================================================================
mention_id      `id`
created_at      `created_at`
text            `text`
author_handle   `username` of the author in `includes.users` (by `author_id`)
platform        `x`
author_id       `author_id`
lang            `lang`
url             `https://x.com/<username>/status/<id>`
in_reply_to_id  the `id` of the `replied_to` entry of `referenced_tweets`
conversation_id `conversation_id` (the thread's first tweet)
from_brand      whether the author is one of the brand's own handles (`PULSE_BRAND_HANDLES`)
account_id      not set: mentions are linked to accounts by handle when features are computed
                (contact handles, the account's own handle), or by an explicit `account_id`
                in a replayed file; unlinked mentions are kept for volume and themes
==============  ===========================================================================
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from pulse.core.errors import ConfigError, InputFileError, XListenerError
from pulse.core.secrets import check_secret_shape, redact, resolve_secret
from pulse.core.settings import get_settings, own_handles
from pulse.listeners.landing import IngestResult, land_file
from pulse.sql.db import ensure_schema
from pulse.sql.schema import XWatermark

log = logging.getLogger(__name__)

CONNECTION_ID = "x_default"
MAX_RESULTS = 100  # the most recent search returns per page
TWEET_FIELDS = ["created_at", "lang", "author_id", "conversation_id", "in_reply_to_user_id",
                "referenced_tweets"]
EXPANSIONS = ["author_id"]
USER_FIELDS = ["username", "name"]
_HINTS = {
    401: "the bearer token was refused: check PULSE_X_BEARER_TOKEN, X_BEARER_TOKEN or the "
         f"Airflow Connection {CONNECTION_ID!r}",
    403: "the token's app may not use recent search (check its project and access level)",
    429: "rate limited: the next run asks again",
}


@dataclass
class QueryReport:
    """What one query did: its pages and tweets, the landing, and the watermark."""

    query: str
    since_id: str | None = None  # the watermark this run started from
    newest_id: str | None = None  # the watermark after this run
    pages: int = 0
    tweets: int = 0
    truncated: bool = False  # stopped at x_max_pages with more pages left
    landing: IngestResult | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        land = self.landing
        return {
            "query": self.query, "since_id": self.since_id, "newest_id": self.newest_id,
            "pages": self.pages, "tweets": self.tweets, "truncated": self.truncated,
            "landed": None if land is None else _landed(land), "error": self.error,
        }

    def __str__(self) -> str:
        if self.error:
            return f"{self.query!r}: {self.error}"
        land = self.landing
        landed = "nothing new" if land is None else (
            f"{land.inserted} new, {land.updated} updated, {land.unchanged} unchanged, "
            f"{land.quarantined} quarantined")
        more = " (page limit reached)" if self.truncated else ""
        return (f"{self.query!r}: {self.tweets} tweets in {self.pages} pages ({landed}); "
                f"since_id {self.since_id or '-'} -> {self.newest_id or '-'}{more}")


@dataclass
class ListenReport:
    """What one `listen` did: per query in live mode, or the replayed file."""

    mode: str  # "x" or "replay"
    queries: list[QueryReport] = field(default_factory=list)
    replay_file: str | None = None
    replay: IngestResult | None = None

    @property
    def errors(self) -> list[str]:
        return [str(q) for q in self.queries if q.error]

    @property
    def changed(self) -> int:
        """Mentions inserted or updated by this listen (0: nothing for health to read)."""
        landings = [q.landing for q in self.queries] + [self.replay]
        return sum(r.inserted + r.updated for r in landings if r is not None)

    def raise_for_errors(self) -> None:
        """Raise `XListenerError` naming every failed query (after all of them ran)."""
        if self.errors:
            raise XListenerError("; ".join(self.errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "queries": [q.to_dict() for q in self.queries],
            "replay_file": self.replay_file,
            "replay": None if self.replay is None else _landed(self.replay),
        }

    def __str__(self) -> str:
        if self.mode == "replay":
            r = self.replay
            assert r is not None
            return (f"replayed {self.replay_file}: {r.read} mentions ({r.inserted} new, "
                    f"{r.updated} updated, {r.unchanged} unchanged, "
                    f"{r.quarantined} quarantined)")
        return "; ".join(str(q) for q in self.queries) or "no queries configured"


def _landed(land: IngestResult) -> dict[str, Any]:
    return {"run_id": land.run_id, "read": land.read, "inserted": land.inserted,
            "updated": land.updated, "unchanged": land.unchanged,
            "quarantined": land.quarantined, "reasons": land.reasons}


# --------------------------------------------------------------------------- configuration


def resolve_bearer_token() -> str | None:
    """The bearer token: settings (`PULSE_X_BEARER_TOKEN`, `X_BEARER_TOKEN`,
    `TWITTER_BEARER_TOKEN`), then the Airflow Connection `x_default` (its password); None when
    none is set (replay mode)."""
    token = resolve_secret(get_settings().x_bearer_token, CONNECTION_ID)
    return check_secret_shape(token, what="the X bearer token") if token else None


def default_replay_file() -> Path:
    """`PULSE_X_REPLAY_FILE`, else `$PULSE_HOME/landing/mentions.jsonl` when it exists, else
    the demo's `$PULSE_HOME/demo/mentions.jsonl`."""
    settings = get_settings()
    if settings.x_replay_file is not None:
        return settings.x_replay_file.expanduser()
    landing = settings.landing_dir / "mentions.jsonl"
    return landing if landing.is_file() else settings.resolved_home() / "demo" / "mentions.jsonl"


def make_client(token: str, *, wait_on_rate_limit: bool | None = None) -> Any:
    """A `tweepy.Client` for the X API v2 with an app-only bearer token."""
    import tweepy

    wait = get_settings().x_wait_on_rate_limit if wait_on_rate_limit is None else wait_on_rate_limit
    return tweepy.Client(bearer_token=token, wait_on_rate_limit=wait)


# --------------------------------------------------------------------------- watermarks


def watermarks(engine: Engine) -> list[XWatermark]:
    """Every query's watermark row, by query."""
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(XWatermark.__table__).order_by(XWatermark.query)).all()
    return [XWatermark(**row._mapping) for row in rows]


def _since_id(engine: Engine, query: str) -> str | None:
    t = XWatermark.__table__
    with engine.connect() as conn:
        return conn.execute(select(t.c.since_id).where(t.c.query == query)).scalar_one_or_none()


def _save_watermark(engine: Engine, query: str, *, now: datetime, since_id: str | None,
                    fetched: int, error: str | None) -> None:
    """Advance (or keep) `since_id`, add to `fetched` and set `last_error` (secrets redacted),
    in one transaction."""
    t = XWatermark.__table__
    error = redact(error) if error else error
    with engine.begin() as conn:
        row = conn.execute(select(t).where(t.c.query == query).with_for_update()).one_or_none()
        if row is None:
            conn.execute(t.insert().values(query=query, since_id=since_id, fetched=fetched,
                                           updated_at=now, last_error=error))
            return
        keep = row.since_id
        if since_id is not None and (keep is None or _id_key(since_id) > _id_key(keep)):
            keep = since_id
        conn.execute(t.update().where(t.c.query == query).values(
            since_id=keep, fetched=(row.fetched or 0) + fetched, updated_at=now,
            last_error=error))


def _id_key(value: str) -> tuple[int, str]:
    """Tweet ids are 64-bit integers: compare them as numbers (then as text)."""
    return (int(value), value) if value.isdigit() else (-1, value)


# --------------------------------------------------------------------------- mapping


def map_tweet(tweet: dict[str, Any], users: dict[str, dict[str, Any]], *,
              brand_handles: Sequence[str] | None = None) -> dict[str, Any]:
    """One X API v2 tweet object (and the `includes.users` by id) as a contract mention row.

    Values are passed on as they are, so a tweet without a known author is quarantined with
    the reason rather than guessed at. `brand_handles` (default `PULSE_BRAND_HANDLES`) are
    the brand's own accounts: their tweets are marked `from_brand`, as replies to customers.
    """
    ours = own_handles(brand_handles)
    author_id = _text(tweet.get("author_id"))
    user = users.get(author_id or "", {})
    username = _text(user.get("username"))
    tweet_id = _text(tweet.get("id"))
    replied = [r for r in tweet.get("referenced_tweets") or []
               if isinstance(r, dict) and r.get("type") == "replied_to"]
    row: dict[str, Any] = {
        "mention_id": tweet_id,
        "created_at": _text(tweet.get("created_at")),
        "text": tweet.get("text"),
        "author_handle": username,
        "platform": "x",
        "author_id": author_id,
        "lang": _text(tweet.get("lang")),
        "url": f"https://x.com/{username}/status/{tweet_id}" if username and tweet_id else None,
        "in_reply_to_id": _text(replied[0].get("id")) if replied else None,
        "conversation_id": _text(tweet.get("conversation_id")),
        "from_brand": (username.lower() in ours) if username else None,
    }
    return {k: v for k, v in row.items() if v is not None}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _page_parts(page: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(tweets, users, meta) of one page, as raw v2 objects (a tweepy Response or a dict)."""
    if isinstance(page, dict):
        data, includes, meta = page.get("data"), page.get("includes") or {}, page.get("meta")
    else:
        data, includes, meta = page.data, page.includes or {}, page.meta
    tweets = [getattr(t, "data", t) for t in data or []]
    users = [getattr(u, "data", u) for u in includes.get("users") or []]
    return tweets, users, dict(meta or {})


# --------------------------------------------------------------------------- live


def _describe(exc: Exception) -> tuple[int | None, str]:
    """(status, a one-line description) of a tweepy or network error."""
    import requests
    import tweepy

    if isinstance(exc, tweepy.HTTPException):
        response = exc.response
        status = getattr(response, "status_code", None)
        reason = getattr(response, "reason", "") or ""
        said = "; ".join(str(m) for m in exc.api_messages if m)
        if not said:
            try:
                body = response.json()
                said = str(body.get("detail") or body.get("title") or "")
            except Exception:  # not JSON: the status line says it all
                said = ""
        text_ = f"HTTP {status} {reason}".strip() + (f" ({said})" if said and said != reason
                                                     else "")
        hint = _HINTS.get(status or 0) or ("X is having trouble; the next run asks again"
                                           if (status or 0) >= 500 else "")
        if status == 429 and isinstance(exc, tweepy.TooManyRequests):
            reset = getattr(exc, "reset_time", None)
            if reset:
                hint += f" (the window resets at {datetime.fromtimestamp(reset, UTC):%H:%M:%S}Z)"
        return status, text_ + (f": {hint}" if hint else "")
    if isinstance(exc, requests.RequestException):
        return None, f"cannot reach the X API: {type(exc).__name__}: {exc}"
    return None, f"{type(exc).__name__}: {exc}"


def _land_rows(engine: Engine, rows: list[dict[str, Any]], name: str,
               now: datetime | None) -> IngestResult:
    with tempfile.TemporaryDirectory(prefix="pulse-x-") as tmp:
        path = Path(tmp) / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        return land_file(engine, path, source="mentions", now=now)


def _slug(value: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return s[:40] or "query"


def listen_query(engine: Engine, client: Any, query: str, *, now: datetime | None = None,
                 max_pages: int | None = None) -> QueryReport:
    """Fetch what is new for one query, land it, then advance its watermark.

    Never raises for an X or network error: the report's `error` says what happened, the
    watermark's `last_error` records it and `since_id` stays unchanged. Tweets of the pages
    that did arrive before an error are still landed (landing them again later is a no-op).
    """
    import requests
    import tweepy

    when = now or datetime.now(UTC)
    report = QueryReport(query=query, since_id=_since_id(engine, query))
    limit = max_pages or get_settings().x_max_pages
    brand = get_settings().brand_handles
    rows: dict[str, dict[str, Any]] = {}
    newest: str | None = None
    error: str | None = None
    paginator = tweepy.Paginator(
        client.search_recent_tweets, query, since_id=report.since_id, max_results=MAX_RESULTS,
        tweet_fields=TWEET_FIELDS, expansions=EXPANSIONS, user_fields=USER_FIELDS)
    try:
        meta: dict[str, Any] = {}
        for page in paginator:
            tweets, users, meta = _page_parts(page)
            report.pages += 1
            by_id = {str(u.get("id")): u for u in users}
            for tweet in tweets:
                row = map_tweet(tweet, by_id, brand_handles=brand)
                rows[str(row.get("mention_id"))] = row
            ids = [str(t["id"]) for t in tweets if t.get("id") is not None]
            if meta.get("newest_id"):
                ids.append(str(meta["newest_id"]))
            for tid in ids:
                if newest is None or _id_key(tid) > _id_key(newest):
                    newest = tid
            if report.pages >= limit:
                report.truncated = bool(meta.get("next_token"))
                break
    except (tweepy.TweepyException, requests.RequestException) as exc:
        status, what = _describe(exc)
        error = f"X search for query {query!r} failed: {what}"
        log.warning("%s; since_id stays at %s", error, report.since_id or "none")
    report.tweets = len(rows)
    if report.truncated:
        log.warning("query %r: stopped after %d pages (x_max_pages); older tweets of this "
                    "window are skipped", query, report.pages)
    if rows:
        try:
            report.landing = _land_rows(engine, list(rows.values()),
                                        f"mentions-x-{_slug(query)}.jsonl", now)
        except InputFileError as exc:  # nothing landed: keep the watermark, say why
            error = error or f"landing the tweets of query {query!r} failed: {exc}"
            log.warning("%s; since_id stays at %s", error, report.since_id or "none")
    report.error = error
    report.newest_id = report.since_id if error else (newest or report.since_id)
    _save_watermark(engine, query, now=when, since_id=None if error else newest,
                    fetched=report.tweets, error=error)
    return report


def replay_file(engine: Engine, path: Path | str, *, now: datetime | None = None
                ) -> ListenReport:
    """Land a JSON Lines file of contract mentions (replay mode); idempotent."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such file: without an X bearer token the listener replays a JSON Lines "
            "file of mentions (set PULSE_X_REPLAY_FILE, or PULSE_X_BEARER_TOKEN / "
            f"X_BEARER_TOKEN / the Airflow Connection {CONNECTION_ID!r} to listen to X)")
    result = land_file(engine, path, source="mentions", now=now)
    return ListenReport(mode="replay", replay_file=str(path), replay=result)


def listen(engine: Engine, *, client: Any = None, queries: Sequence[str] | None = None,
           replay: Path | str | None = None, now: datetime | None = None,
           max_pages: int | None = None) -> ListenReport:
    """Listen to X once: every query in live mode, else replay a file of mentions.

    Live mode when a `client` is given or a bearer token is configured (and no `replay` file
    is named); otherwise the replay file (`replay`, else `default_replay_file()`) is landed.
    Failed queries are in the report (`errors`, `raise_for_errors()`); the others still ran.
    """
    ensure_schema(engine)
    if client is None and replay is None:
        token = resolve_bearer_token()
        if token:
            client = make_client(token)
    if client is None:
        report = replay_file(engine, replay or default_replay_file(), now=now)
        log.info("x listener: %s", report)
        return report
    report = ListenReport(mode="x")
    for query in queries if queries is not None else get_settings().x_queries:
        report.queries.append(listen_query(engine, client, query, now=now, max_pages=max_pages))
    log.info("x listener: %s", report)
    return report
