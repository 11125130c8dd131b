"""The console's unanswered public complaints (`/responses`), issue 15.

`GET /responses?days=N` shows, for signed-in users of any role, the negative customer posts of
the last N days (1, 2, 7 or 30; default 7) that no brand post has answered although their
channel's expectation (models/responses.yaml) has passed: the same posts the social team is
alerted about once each (outreach/response_alerts.py), longest waiting first, each with how
long it has waited against what customers expect there, the channel, the author, the text, a
link to the post (only http and https links become links), the account behind it when known
(a link to its page) and the state of its alert. A post leaves the list once the brand
answers it. The account's page shows its own (`account_complaints`). Everything is escaped.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from pulse.web import auth
from pulse.web.console import error_page
from pulse.web.console import render as _page

router = APIRouter()
DAY_CHOICES = (1, 2, 7, 30)
DEFAULT_DAYS = 7
ACCOUNT_DAYS = 7  # the account page's window
SNIPPET = 600  # characters of a post shown


def waited_words(minutes: float) -> str:
    """How long a post has waited, as a person says it: "45 min", "3 h 20 min", "2 days 4 h"."""
    m = int(minutes)
    if m < 60:
        return f"{m} min"
    if m < 24 * 60:
        h, rest = divmod(m, 60)
        return f"{h} h {rest} min" if rest else f"{h} h"
    d, rest = divmod(m, 24 * 60)
    h = rest // 60
    return (f"{d} day{'s' if d != 1 else ''}" + (f" {h} h" if h else ""))


def _expected_words(minutes: float) -> str:
    if minutes < 1:
        return f"{round(minutes * 60)} s"
    return waited_words(minutes)


def complaint_rows(engine: Engine, *, now: datetime, since: datetime,
                   account_id: str | None = None) -> list[dict[str, Any]]:
    """The unanswered complaints as the pages show them, longest waiting first."""
    from pulse.outreach.render import _safe_url
    from pulse.outreach.response_alerts import alerts_of, unanswered_complaints

    late = unanswered_complaints(engine, now=now, since=since, account_id=account_id)
    if late.empty:
        return []
    alerts = alerts_of(engine, late["item_id"].astype(str).tolist())
    rows = []
    for r in late.to_dict("records"):
        text = " ".join(str(r["text"] or "").split())
        rows.append({
            "mention_id": str(r["item_id"]), "channel": str(r["channel"]),
            "author": r["author"], "text": text if len(text) <= SNIPPET
            else text[:SNIPPET - 1] + "…",
            "link": _safe_url(r["url"]) or None, "asked_at": r["asked_at"].to_pydatetime(),
            "waited": waited_words(float(r["waited"])),
            "waited_minutes": float(r["waited"]),
            "expected": _expected_words(float(r["expected"])),
            "account_id": r["account_id"], "account_name": r["account_name"],
            "alert": alerts.get(str(r["item_id"]))})
    return sorted(rows, key=lambda x: (-x["waited_minutes"], x["mention_id"]))


def account_complaints(engine: Engine, account_id: str, *, now: datetime | None = None,
                       days: int = ACCOUNT_DAYS) -> tuple[list[dict[str, Any]], str | None]:
    """One account's unanswered complaints of the last `days` (the account page's block), and
    why they cannot be listed (a broken expectations file, say) instead of failing the page."""
    from pulse.core.errors import PulseError

    now = now or datetime.now(UTC)
    try:
        return complaint_rows(engine, now=now, since=now - timedelta(days=days),
                              account_id=account_id), None
    except PulseError as exc:
        return [], str(exc)


@router.get("/responses", response_class=HTMLResponse, tags=["console"],
            summary="Public complaints still waiting for an answer past what customers expect")
def responses_page(request: Request,
                   me: Annotated[auth.Identity, Depends(auth.signed_in)],
                   days: Annotated[str, Query(max_length=3, description="Posts of the last "
                                              "N days (1, 2, 7 or 30)")] = "") -> HTMLResponse:
    from pulse.core.errors import PulseError
    from pulse.core.settings import get_settings

    n = int(days) if days.strip().isdigit() else DEFAULT_DAYS
    n = n if n in DAY_CHOICES else DEFAULT_DAYS
    now = datetime.now(UTC)
    try:
        rows = complaint_rows(request.app.state.engine, now=now, since=now - timedelta(days=n))
    except PulseError as exc:
        return error_page(503, "The complaints cannot be listed", str(exc))
    return _page("responses.html", me=me, csrf=me.csrf_token, here="responses", days=n,
                 choices=DAY_CHOICES, rows=rows, now=now,
                 team=get_settings().social_team_email.strip().lower())
