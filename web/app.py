"""The web app: public unsubscribe links, inbound webhooks, a health check.

`create_app()` builds the FastAPI app; `pulse serve` runs it with uvicorn. Routes:

* `GET /u/{token}`: a small page that asks to confirm (mail scanners prefetch GET links,
  so a GET never unsubscribes anyone);
* `POST /u/{token}`: RFC 8058 one-click unsubscribe (what `List-Unsubscribe-Post` makes
  mail clients send, and what the page's button sends): puts the contact's address on the
  suppression list (reason `unsubscribe`, source `link`), idempotently;
* `GET /healthz`; the webhooks of `web.webhooks`; the CSAT survey pages of `web.surveys`
  (`/s/{token}`), whose `PublicGuard` middleware rate-limits the public paths per client.

The token (outreach/tokens.py) carries the contact id (or, for mail to a bare address, the
outbox message id); the address is looked up, so a link can only ever unsubscribe the one
recipient it was made for. Bad, tampered or expired links get a friendly page and a 4xx.
"""
from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import Engine, select

from pulse.core.errors import TokenError
from pulse.core.settings import get_settings
from pulse.outreach.outbox import add_suppression
from pulse.outreach.render import UNSUBSCRIBE
from pulse.outreach.tokens import verify
from pulse.sql.schema import Contact, OutboxMessage, Suppression
from pulse.web import console, surveys, webhooks

log = logging.getLogger(__name__)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never pass it on
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


class Health(BaseModel):
    status: str


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    company = html.escape(get_settings().company_name)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{html.escape(title)} - {company}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;background:#f4f5f7;color:#1f2933;margin:0}}
main{{max-width:520px;margin:60px auto;background:#fff;padding:28px 32px;border-radius:6px}}
button{{font-size:16px;padding:10px 18px;border:0;border-radius:4px;background:#1f2933;
color:#fff;cursor:pointer}}</style></head>
<body><main><p style="font-weight:bold">{company}</p><h1 style="font-size:22px">
{html.escape(title)}</h1>{body}</main></body></html>
"""
    return HTMLResponse(page, status_code=status, headers=_HEADERS)


def _mask(email: str) -> str:
    """`a***@example.com`: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _bad_link(exc: TokenError) -> HTMLResponse:
    if exc.reason == "expired":
        return _page("This link has expired",
                     "<p>Unsubscribe links stay valid for a limited time. Use the link in a "
                     "more recent email from us, or simply reply to it and we will take you "
                     "off the list.</p>", 410)
    return _page("This link does not work",
                 "<p>The link is incomplete or was changed. Please use the unsubscribe link "
                 "exactly as it appears in the email.</p>", 400)


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


def create_app(engine: Engine | None = None) -> FastAPI:
    """The Pulse web app on `engine` (default: the warehouse in settings)."""
    if engine is None:
        from pulse.sql.db import make_engine

        engine = make_engine()
    app = FastAPI(title="Pulse", summary="Customer health engine: public links and webhooks")
    app.state.engine = engine
    app.include_router(webhooks.router)
    app.include_router(surveys.router)
    app.include_router(console.router)
    app.add_middleware(surveys.PublicGuard)  # rate limit, body cap, headers: /s/ and /u/

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
            return _page("We could not find you", "<p>This address is no longer in our "
                         "records, so it receives no emails from us.</p>", 404)
        email, _ = found
        with request.app.state.engine.connect() as conn:
            done = conn.execute(select(Suppression.email).where(
                Suppression.email == email)).first() is not None
        if done:
            return _page("You are unsubscribed", f"<p>{html.escape(_mask(email))} receives "
                         "no more automated emails from us.</p>")
        action = html.escape(str(request.url.path), quote=True)
        return _page("Unsubscribe?", f"""<p>Stop automated emails (check-ins, surveys, outage
notices) to <strong>{html.escape(_mask(email))}</strong>?</p>
<form method="post" action="{action}"><input type="hidden" name="List-Unsubscribe"
value="One-Click"><button type="submit">Unsubscribe</button></form>""")

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
            return _page("We could not find you", "<p>This address is no longer in our "
                         "records, so it receives no emails from us.</p>", 404)
        email, who = found
        new = add_suppression(engine_, email, reason="unsubscribe", source="link",
                              detail=f"one-click link of {who}")
        if new:
            log.info("unsubscribed %s by link", who)
        return _page("You are unsubscribed", f"<p>Thank you. {html.escape(_mask(email))} "
                     "receives no more automated emails from us.</p>")

    return app
