"""The web app: public unsubscribe links, inbound webhooks, a health check.

`create_app()` builds the FastAPI app; `pulse serve` runs it with uvicorn. Routes:

* `GET /u/{token}`: a small page that asks to confirm (mail scanners prefetch GET links,
  so a GET never unsubscribes anyone);
* `POST /u/{token}`: RFC 8058 one-click unsubscribe (what `List-Unsubscribe-Post` makes
  mail clients send, and what the page's button sends): puts the contact's address on the
  suppression list (reason `unsubscribe`, source `link`), idempotently;
* `GET /healthz`; the webhooks of `web.webhooks`; the CSAT survey pages of `web.surveys`
  (`/s/{token}`); the CSM console's account page of `web.account`
  (a signed digest link's read-only view of `web.console` without a session); the console's sign-in
  (`/login`, `/logout`) of `web.signin` and its risk list (`/`) of `web.risk`; the playbooks' tasks (`/tasks`)
  of `web.tasks`, the feedback digests (`/feedback`) of `web.feedback`, CSAT (`/csat`) of
  `web.csat`, with `web.auth` behind them.

Every request passes `TrustedHostMiddleware` (only the hosts of `guard.allowed_hosts`) and
`guard.RequestGuard` (rate limits shared by the workers, body caps, security headers, HSTS).
`/docs`, `/redoc` and `/openapi.json` exist only with `PULSE_WEB_API_DOCS=true`.

The token (outreach/tokens.py) carries the contact id (or, for mail to a bare address, the
outbox message id); the address is looked up, so a link can only ever unsubscribe the one
recipient it was made for. Bad, tampered or expired links get a friendly page and a 4xx.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy import Engine, select
from starlette.middleware.trustedhost import TrustedHostMiddleware

from pulse.core.errors import TokenError
from pulse.core.settings import get_settings
from pulse.outreach.outbox import add_suppression
from pulse.outreach.render import UNSUBSCRIBE
from pulse.outreach.tokens import verify
from pulse.sql.schema import Contact, OutboxMessage, Suppression
from pulse.web import account, auth, guard, serving, signin, surveys, tasks, webhooks

log = logging.getLogger(__name__)

class Health(BaseModel):
    status: str


def _page(title: str, body: Markup, status: int = 200) -> HTMLResponse:
    """An unsubscribe page: the survey pages' layout and stylesheet (allowed by its hash in
    the Content-Security-Policy), no inline style, no script."""
    return surveys.render_public("public_page.html", status, title=title, body=body)


_GONE = Markup("<p>This address is no longer in our records, so it receives no emails from "
               "us.</p>")


def _mask(email: str) -> str:
    """`a***@example.com`: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _bad_link(exc: TokenError) -> HTMLResponse:
    if exc.reason == "expired":
        return _page("This link has expired",
                     Markup("<p>Unsubscribe links stay valid for a limited time. Use the link in a "
                     "more recent email from us, or simply reply to it and we will take you "
                     "off the list.</p>"), 410)
    return _page("This link does not work",
                 Markup("<p>The link is incomplete or was changed. Please use the unsubscribe link "
                 "exactly as it appears in the email.</p>"), 400)


def _recipient(engine: Engine, data: dict[str, Any]) -> tuple[str, str] | None:
    """(email, who) for a token's data: the contact's address, or the message's."""
    with engine.connect() as conn:
        if isinstance(data.get("c"), str):
            email = conn.execute(select(Contact.email).where(
                Contact.contact_id == data["c"])).scalar_one_or_none()
            return (email.strip().lower(), f"contact {data['c']}") if email else None
        if isinstance(data.get("m"), int):
            email = conn.execute(select(OutboxMessage.to_email).where(
                OutboxMessage.message_id == data["m"])).scalar_one_or_none()
            return (email.strip().lower(), f"message {data['m']}") if email else None
    return None


def create_app(engine: Engine | None = None, *, limiter: guard.Limiter | None = None
               ) -> FastAPI:
    """The Pulse web app on `engine` (default: the warehouse in settings), rate-limited
    through `limiter` (default: the store every worker shares, `guard.shared_limiter`)."""
    if engine is None:
        from pulse.sql.db import make_engine

        engine = make_engine()
    settings = get_settings()
    docs = settings.web_api_docs  # off by default: the public app does not describe itself
    app = FastAPI(title="Pulse", summary="Customer health engine: public links and webhooks",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.engine = engine
    app.include_router(webhooks.router)
    app.include_router(surveys.router)
    app.include_router(account.router)  # /accounts/{id}: the account page and its actions
    app.include_router(tasks.router)  # /tasks: the playbooks' tasks
    from pulse.web import csat, feedback, responses  # the console's report pages

    app.include_router(feedback.router)  # /feedback: the feedback digests by week and team
    app.include_router(csat.router)  # /csat: CSAT figures, weekly trend, comments
    app.include_router(responses.router)  # /responses: unanswered public complaints
    signin.install(app)  # /login, /logout, / and the answers to "sign in first" and 403
    app.state.limiter = limiter or guard.shared_limiter(engine)  # sign-in attempts use it too
    # innermost first: the session cookies; rate limits, body caps and headers; then the
    # Host check, outermost
    app.add_middleware(auth.SessionCookies)
    app.add_middleware(guard.RequestGuard, limiter=app.state.limiter)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=guard.allowed_hosts(settings),
                       www_redirect=False)
    serving.install_access_log_filter()  # no link token in uvicorn's access log

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        return Health(status="ok")

    @app.get("/u/{token}", response_class=HTMLResponse, tags=["public"])
    def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
        """Ask the recipient to confirm; a GET changes nothing."""
        try:
            data = verify(UNSUBSCRIBE, token)
        except TokenError as exc:
            return _bad_link(exc)
        found = _recipient(request.app.state.engine, data)
        if found is None:
            return _page("We could not find you", _GONE, 404)
        email, _ = found
        with request.app.state.engine.connect() as conn:
            done = conn.execute(select(Suppression.email).where(
                Suppression.email == email)).first() is not None
        if done:
            return _page("You are unsubscribed", Markup(
                "<p>{} receives no more automated emails from us.</p>").format(_mask(email)))
        return _page("Unsubscribe?", Markup("""<p>Stop automated emails (check-ins, surveys, outage
notices) to <strong>{}</strong>?</p>
<form method="post" action="{}"><input type="hidden" name="List-Unsubscribe"
value="One-Click"><button type="submit" class="primary">Unsubscribe</button></form>""").format(
            _mask(email), str(request.url.path)))

    @app.post("/u/{token}", response_class=HTMLResponse, tags=["public"])
    def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """One-click unsubscribe (RFC 8058): suppress the recipient's address."""
        try:
            data = verify(UNSUBSCRIBE, token)
        except TokenError as exc:
            return _bad_link(exc)
        engine_: Engine = request.app.state.engine
        found = _recipient(engine_, data)
        if found is None:
            return _page("We could not find you", _GONE, 404)
        email, who = found
        new = add_suppression(engine_, email, reason="unsubscribe", source="link",
                              detail=f"one-click link of {who}")
        if new:
            log.info("unsubscribed %s by link", who)
        return _page("You are unsubscribed", Markup(
            "<p>Thank you. {} receives no more automated emails from us.</p>").format(
            _mask(email)))

    return app
