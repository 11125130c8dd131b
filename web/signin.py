"""The CSM console's front door: `GET /login`, `POST /login`, `POST /logout`, and `/`.

`/` (web/risk.py) sends a visitor who is not signed in to `/login`; a signed-in user sees
the risk list, who they are (an admin also sees who else is signed in) and a sign-out
button. Sign-in attempts are rate-limited per client address and per user name
(`PULSE_LOGIN_PER_MINUTE`, `PULSE_LOGIN_USER_PER_MINUTE`) through the web app's shared
limiter (web/guard.py). The sign-in form, which has no session yet, is protected against
cross-site posts by an HMAC of a random cookie (`pulse_login`); every form after it by the
session's synchronizer token (web/auth.py).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pulse.core.settings import get_settings
from pulse.outreach.tokens import secret_key
from pulse.sql import audit
from pulse.web import auth
from pulse.web.console import error_page
from pulse.web.console import render as _page
from pulse.web.guard import Limiter, rule

log = logging.getLogger(__name__)

router = APIRouter()
LOGIN_NONCE_SECONDS = 3600




def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this site, never another site."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ord(c) < 0x20 for c in target)):
        return "/"
    return target


def _login_token(nonce: str) -> str:
    return hmac.new(secret_key(), f"login {nonce}".encode(), hashlib.sha256).hexdigest()


def _login_form(request: Request, *, status: int = 200, message: str = "", email: str = "",
                next_path: str = "/", headers: dict[str, str] | None = None) -> HTMLResponse:
    nonce = request.cookies.get(auth.LOGIN_COOKIE, "")
    if not (16 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum()):
        nonce = secrets.token_urlsafe(24)
        auth.set_cookie(request, auth.LOGIN_COOKIE, nonce, max_age=LOGIN_NONCE_SECONDS)
    return _page("login.html", status, headers=headers, csrf=_login_token(nonce),
                 message=message, email=email, next_path=next_path,
                 refused=getattr(request.state, "pulse_refused", None))


def _limited(request: Request, key: str, per_minute: int) -> float:
    """Seconds until `key` may try again (0: go ahead, counted)."""
    limiter: Limiter = request.app.state.limiter
    return limiter.take(key, rule(per_minute, per_minute), time.time())


@router.get("/login", response_class=HTMLResponse, tags=["console"],
            summary="The sign-in form")
def login_form(request: Request,
               next: Annotated[str, Query(description="Where to go after signing in")] = "/"
               ) -> Response:
    if auth.identify(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, next_path=safe_next(next))


@router.post("/login", response_class=HTMLResponse, tags=["console"],
             summary="Sign in with email and password")
def login(request: Request,
          email: Annotated[str, Form(max_length=320)] = "",
          password: Annotated[str, Form(max_length=auth.MAX_PASSWORD)] = "",
          csrf_token: Annotated[str, Form(max_length=128)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    settings = get_settings()
    address = auth.client_address(request)
    nonce = request.cookies.get(auth.LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(csrf_token.encode("utf-8"),
                                            _login_token(nonce).encode("utf-8")):
        return error_page(403, "This form has expired",
                          "Open the sign-in page again and sign in from there.")
    name = email.strip().lower()
    wait = max(_limited(request, f"login-ip {address}", settings.login_per_minute),
               _limited(request, "login-user " + hashlib.sha256(name.encode()).hexdigest()[:32],
                        settings.login_user_per_minute))
    if wait > 0:
        log.warning("sign-in attempts over the limit from %s", address)
        return _login_form(request, status=429, email=email, next_path=safe_next(next),
                           message="Too many sign-in attempts. Wait a minute and try again.",
                           headers={"Retry-After": str(max(math.ceil(wait), 1))})
    engine = request.app.state.engine
    result = auth.authenticate(engine, email, password)
    if isinstance(result, auth.Failure):
        with engine.begin() as conn:
            audit.record(conn, actor=result.user or "unknown", action=audit.SIGN_IN_FAILED,
                         address=address, detail={"via": "password", "why": result.why})
        return _login_form(request, status=401, email=email, next_path=safe_next(next),
                           message="That email and password do not match an active user.")
    user_id, address_of_user = result
    old = auth.identify(request)
    if old is not None:  # a new session on every sign-in: no fixation
        auth.drop_session(engine, old.session_hash)
    session_id = auth.start_session(engine, user_id, address_of_user, via="password",
                                    address=address)
    auth.set_session_cookie(request, session_id)
    auth.set_cookie(request, auth.LOGIN_COOKIE, "", max_age=0)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout", tags=["console"], summary="Sign out (needs the CSRF token)")
def logout(request: Request,
           identity: Annotated[auth.Identity, Depends(auth.csrf_protected)]) -> Response:
    auth.end_session(request.app.state.engine, identity, address=auth.client_address(request))
    auth.set_cookie(request, auth.SESSION_COOKIE, "", max_age=0)
    return RedirectResponse("/login", status_code=303)


def install(app: Any) -> None:
    """The router, the cookie middleware and the answers to the dependencies' refusals."""
    from pulse.web import risk

    app.include_router(router)
    app.include_router(risk.router)  # `/`: the risk list, its CSV and the account actions

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if target == "/":
                return RedirectResponse("/login", status_code=303)
            from urllib.parse import quote

            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return error_page(401, "Please sign in", "Your session has ended. Sign in again.")

    async def forbidden(request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, auth.Forbidden) else "Not allowed."
        return error_page(403, "Not allowed", message)

    app.add_exception_handler(auth.NotSignedIn, not_signed_in)
    app.add_exception_handler(auth.Forbidden, forbidden)
