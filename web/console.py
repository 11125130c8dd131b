"""The CSM console's templates and headers, and the read-only account view of signed links.

`GET /accounts/{account_id}?t=TOKEN` without a session (web/account.py) shows one account: health and band with the trend (an
SVG chart of its health history, drawn on the server: no script), the flags with their
evidence, the scorecard measures that cost the most points, churn risk and its drivers, and
the next action. The token (`outreach.links.account_url`) is signed, expires, and names the
one account it opens: a link can never show another customer. Everything is escaped.
"""
from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pulse.core.errors import PulseError, TokenError
from pulse.outreach.links import CONSOLE
from pulse.outreach.tokens import verify

log = logging.getLogger(__name__)

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(_TEMPLATES),
                   autoescape=select_autoescape(default=True, default_for_string=True))
_CSS = (_TEMPLATES / "console.css").read_text(encoding="utf-8").strip()
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")


def console_headers(*, form_action: str = "'none'") -> dict[str, str]:
    """The console pages' headers: the one inline stylesheet is allowed by its hash; no other
    style, no script at all; forms post only where `form_action` says."""
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; "
                                   "img-src 'self' data:; frame-ancestors 'none'; "
                                   f"base-uri 'none'; form-action {form_action}",
        "X-Content-Type-Options": "nosniff",
    }


_HEADERS = console_headers()
BAND_COLOURS = {"red": "#c81e1e", "amber": "#b7791f", "watch": "#2b6cb0",
                "green": "#2f855a"}


def health_chart(history: list[dict[str, Any]], *, width: int = 560, height: int = 140
                 ) -> dict[str, Any]:
    """Points of an SVG polyline of health (0..100) over the dates, plus band guides."""
    scored = [h for h in history if h.get("score") is not None]
    if len(scored) < 2:
        return {"points": "", "dots": [], "width": width, "height": height}
    n = len(scored)
    pad = 8

    def x(i: int) -> float:
        return round(pad + i * (width - 2 * pad) / (n - 1), 1)

    def y(v: float) -> float:
        return round(height - pad - v * (height - 2 * pad) / 100.0, 1)

    dots = [{"x": x(i), "y": y(float(h["score"])), "label": f"{h['as_of']}: {h['score']}",
             "colour": BAND_COLOURS.get(h.get("band") or "", "#1f2933")}
            for i, h in enumerate(scored)]
    return {"points": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots,
            "width": width, "height": height, "y40": y(40), "y70": y(70),
            "first": scored[0]["as_of"], "last": scored[-1]["as_of"]}


_FORM_HEADERS = console_headers(form_action="'self'")


def render(template: str, status: int = 200, *, forms: bool = True,
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """A console page from its template, with the console's stylesheet and headers: forms post
    to this site (`forms=False`: nowhere, for the read-only signed-link view); `headers` add
    to them (a cookie, say)."""
    body = _env.get_template(template).render(css=Markup(_CSS), **context)
    base = _FORM_HEADERS if forms else _HEADERS
    return HTMLResponse(body, status_code=status, headers={**base, **(headers or {})})


def error_page(status: int, title: str, message: str) -> HTMLResponse:
    """The console's error page."""
    return render("console_error.html", status, title=title, message=message)


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return render(template, status, forms=False, **context)


def token_view(request: Request, account_id: str, t: str) -> HTMLResponse:
    """The read-only view of the one account a signed digest link names (web/account.py
    serves `GET /accounts/{id}`: this view when nobody is signed in)."""
    from pulse.models.risklist import account_view

    try:
        data = verify(CONSOLE, t)
    except TokenError as exc:
        status = 410 if exc.reason == "expired" else 400
        return _page("console_error.html", status, title="This link does not work" if
                     status == 400 else "This link has expired",
                     message="Open the account from a more recent digest."
                     if status == 410 else "The link is incomplete or was changed.")
    if data.get("a") != account_id:
        return _page("console_error.html", 403, title="Not this account",
                     message="This link opens another account.")
    try:
        view = account_view(request.app.state.engine, account_id)
    except PulseError as exc:
        return _page("console_error.html", 404, title="Nothing to show yet",
                     message=str(exc))
    from urllib.parse import quote

    from pulse.models.flag_rules import FLAG_WORDS

    target = quote(f"/accounts/{quote(account_id, safe='')}", safe="")
    return _page("account.html", view=view, chart=health_chart(view["history"]),
                 colours=BAND_COLOURS, flag_words=FLAG_WORDS, sign_in=f"/login?next={target}")
