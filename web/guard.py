"""What every request goes through before a route sees it: `RequestGuard` (ASGI middleware)
and the rate limiters behind it.

* **Rate limits** per client address and group of paths: `public` (`/s/`, `/u/`) and
  `console` (`/`, `/accounts/`, `/login`, `/logout`) at `PULSE_RATE_LIMIT_PER_MINUTE` (burst
  `PULSE_RATE_LIMIT_BURST`), `webhooks` (`/webhooks/`) at
  `PULSE_RATE_LIMIT_WEBHOOKS_PER_MINUTE`; over it, 429 with `Retry-After`. The algorithm is
  GCRA (a token bucket kept as one number: the theoretical arrival time of the client's next
  request), so one atomic upsert per request decides. The store is shared by every worker
  process (`SqlLimiter`): the warehouse's `rate_limits` table on PostgreSQL (shared by every
  host too), and on SQLite a separate file, `$PULSE_HOME/ratelimit.db`, so that counting
  requests never waits for the warehouse's one writer.
* **Body caps before reading**: a `Content-Length` over the cap (1 MiB; 16 MiB on
  `/webhooks/`) is refused with 413 at once; a chunked body is counted as it streams in and
  refused with 413 (and the connection closed) the moment it passes the cap, so memory stays
  flat whatever a client sends. On the public pages a POST without a length gets 411.
* **Headers**: the public pages' security headers (`web.surveys.SECURITY_HEADERS`), and
  `Strict-Transport-Security` on every answer to a request made over https (the scheme
  uvicorn reports: the connection's, or a trusted proxy's `X-Forwarded-Proto` under
  `pulse serve --proxy-headers`).
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import Engine, Float, case, delete, literal, select
from sqlalchemy.exc import SQLAlchemyError

from pulse.core.settings import Settings, get_settings
from pulse.sql.schema import RateLimit
from pulse.web.surveys import MAX_BODY_BYTES, SECURITY_HEADERS, problem_page
from pulse.web.webhooks import MAX_BODY_BYTES as MAX_WEBHOOK_BODY_BYTES

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HSTS = "max-age=31536000"
PUBLIC_PREFIXES = ("/s/", "/u/")
GROUPS = (("public", PUBLIC_PREFIXES), ("console", ("/accounts/", "/accounts", "/login",
                                                    "/logout", "/tasks", "/export.csv")),
          ("webhooks", ("/webhooks/",)))


def allowed_hosts(settings: Settings | None = None) -> list[str]:
    """The `Host` names the app answers to: `PULSE_TRUSTED_HOSTS`, else the public base
    URL's host, localhost, 127.0.0.1 and [::1]."""
    settings = settings or get_settings()
    if settings.trusted_hosts:
        return [h.strip().lower() for h in settings.trusted_hosts if h.strip()]
    hosts = ["localhost", "127.0.0.1", "[::1]"]
    netloc = urlsplit(settings.public_base_url).netloc.rsplit("@", 1)[-1].lower()
    base = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    if base and base not in hosts:
        hosts.insert(0, base)
    return hosts


# --------------------------------------------------------------------------- limiters


@dataclass(frozen=True)
class Rule:
    """`per_minute` requests a minute on average, `burst` at once; `per_minute` 0: off."""

    per_minute: int
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        return (max(self.burst, 1) - 1) * self.interval


def rule(per_minute: int, burst: int | None = None) -> Rule:
    """A rule with the default burst (half the per-minute rate, at least 1)."""
    return Rule(per_minute, max(burst if burst is not None else per_minute // 2, 1))


class Limiter(Protocol):
    blocking: bool

    def take(self, key: str, rule: Rule, now: float) -> float:
        """0 if `key` may go ahead (counted), else the seconds until it may."""


class MemoryLimiter:
    """GCRA in this process's memory (tests, a single process)."""

    blocking = False

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    def take(self, key: str, rule: Rule, now: float) -> float:
        if rule.per_minute <= 0:
            return 0.0
        tat = max(self._tat.get(key, now), now)
        if tat - now > rule.tolerance:
            return tat - rule.tolerance - now
        self._tat[key] = tat + rule.interval
        if len(self._tat) > 100_000:  # forget clients whose bucket has refilled
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return 0.0


class SqlLimiter:
    """GCRA in a table every worker shares: one atomic upsert per request,

    `INSERT (key, now + T) ON CONFLICT (key) DO UPDATE SET tat = max(tat, now) + T
    WHERE tat <= now + tolerance RETURNING tat`: a row back means go ahead; none means
    refused (then the stored `tat` says for how long). Rows in the past mean the same as no
    row, so they are deleted now and then.
    """

    blocking = True
    prune_every = 60.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite: the threads of a process take turns, rather than meet in its busy handler
        self._lock: threading.Lock | None = (threading.Lock()
                                             if engine.dialect.name == "sqlite" else None)
        self._pruned = 0.0
        self._warned = 0.0

    def take(self, key: str, rule: Rule, now: float) -> float:
        if rule.per_minute <= 0:
            return 0.0
        try:
            if self._lock is None:
                return self._take(key, rule, now)
            with self._lock:
                return self._take(key, rule, now)
        except SQLAlchemyError as exc:  # fail open: the limiter must not take the site down
            if now - self._warned > 60:
                self._warned = now
                log.warning("rate limiter store unavailable, not limiting: %s",
                            str(exc).splitlines()[0])
            return 0.0

    def _take(self, key: str, rule: Rule, now: float) -> float:
        t = RateLimit.__table__
        from pulse.sql.db import dialect_insert

        stmt = dialect_insert(self.engine, t).values(
            key=key, tat=now + rule.interval).on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"tat": case((t.c.tat < now, literal(now, Float(53))), else_=t.c.tat)
                  + rule.interval},
            where=t.c.tat <= now + rule.tolerance,
        ).returning(t.c.tat)
        with self.engine.begin() as conn:
            if conn.execute(stmt).first() is not None:
                wait = 0.0
            else:
                tat = conn.execute(select(t.c.tat).where(t.c.key == key)).scalar()
                wait = max((tat or now) - rule.tolerance - now, 0.001)
            if now - self._pruned > self.prune_every:
                self._pruned = now
                conn.execute(delete(t).where(t.c.tat < now))
        return wait


def _sqlite_store() -> Engine:
    from pulse.sql.db import make_engine

    path = get_settings().resolved_home() / "ratelimit.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a scratch file, not the warehouse: no migrations
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS rate_limits "
                             "(key VARCHAR(200) NOT NULL PRIMARY KEY, tat FLOAT NOT NULL)")
    return engine


def shared_limiter(engine: Engine) -> SqlLimiter:
    """The limiter every worker shares: the warehouse's table on PostgreSQL, else the
    SQLite file `$PULSE_HOME/ratelimit.db`."""
    if engine.dialect.name == "postgresql":
        return SqlLimiter(engine)
    return SqlLimiter(_sqlite_store())


# --------------------------------------------------------------------------- the guard


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class RequestGuard:
    """ASGI middleware: rate limits per group and client, body caps counted as the body
    streams in, security headers on the public pages, HSTS over https."""

    def __init__(self, app: ASGIApp, *, limiter: Limiter | None = None,
                 rules: dict[str, Rule] | None = None, max_body: int = MAX_BODY_BYTES,
                 max_webhook_body: int = MAX_WEBHOOK_BODY_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        settings = get_settings()
        self.limiter: Limiter = limiter or MemoryLimiter()
        public = rule(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.rules = rules or {"public": public, "console": public,
                               "webhooks": rule(settings.rate_limit_webhooks_per_minute)}
        self.max_body = max_body
        self.max_webhook_body = max_webhook_body
        self.clock = clock

    async def _wait(self, group: str, client: str) -> float:
        limit = self.rules.get(group)
        if limit is None or limit.per_minute <= 0:
            return 0.0
        key, now = f"{group} {client}", self.clock()
        if not self.limiter.blocking:
            return self.limiter.take(key, limit, now)
        from anyio import to_thread

        return await to_thread.run_sync(self.limiter.take, key, limit, now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        group = "console" if path == "/" else next(
            (g for g, prefixes in GROUPS if path.startswith(prefixes)), None)
        public = group == "public"
        https = scope.get("scheme") == "https"
        started = refused = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # we already answered: whatever the app says now goes nowhere
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = _raw({k: v for k, v in SECURITY_HEADERS.items()
                              if k.lower().encode() not in present}) if public else []
                if https and b"strict-transport-security" not in present:
                    extra.append((b"strict-transport-security", HSTS.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        async def answer(status: int, headers: dict[str, str] | None = None) -> None:
            nonlocal refused
            await self._refuse(guarded_send, status, public, headers or {})
            refused = True

        if group is not None:
            client = scope.get("client")
            wait = await self._wait(group, client[0] if client else "unknown")
            if wait > 0:
                await answer(429, {"Retry-After": str(max(math.ceil(wait), 1))})
                return
        cap = self.max_webhook_body if group == "webhooks" else self.max_body
        headers = scope.get("headers") or []
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None:
            if not length.strip().isdigit() or int(length) > cap:
                await answer(413, {"Connection": "close"})
                return
        elif public and scope.get("method") == "POST" and \
                any(k == b"transfer-encoding" for k, _ in headers):
            await answer(411, {"Connection": "close"})
            return
        received, cut = 0, False

        async def guarded_receive() -> Message:
            nonlocal received, cut
            if refused or cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    cut = True
                    log.warning("refused a body over %d bytes on %s", cap, path.split("/")[1])
                    if not started:
                        await answer(413, {"Connection": "close"})
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not (refused or cut):
                raise  # ours went out: the app's complaint about the cut body is moot

    async def _refuse(self, send: Send, status: int, public: bool,
                      headers: dict[str, str]) -> None:
        if public:
            page = problem_page(status)
            body, raw = page.body, _raw(dict(page.headers))
        else:
            detail = {411: "a length is required", 413: "request body too large",
                      429: "too many requests"}[status]
            body = json.dumps({"detail": detail}).encode()
            raw = _raw({"content-type": "application/json",
                        "content-length": str(len(body))})
        raw += _raw(headers)
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
