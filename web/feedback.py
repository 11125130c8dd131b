"""The console's feedback page (`/feedback`): the week's feedback digest of each team.

`GET /feedback?week=YYYY-MM-DD&team=NAME` shows, for signed-in users of any role, the digests
`outreach.feedback_digest.build_digests` makes for the week (Monday to Sunday) that holds the
date: per team, the totals, the top themes with their items, accounts, MRR in the reporting
currency and trend against the week before (in words and signs, not colour alone), the new
themes, the accounts behind each theme (links to their console pages), and two or three
quotes with personal data scrubbed. Nothing is written: the page reads what the DAG
`pulse_feedback` classified (`text_insights`); the digests built lately are kept in memory
until the insights change. Week and team are plain GET parameters of a
form, so the page works without script. Everything is escaped.
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine, func, select

from pulse.sql.schema import TextInsight
from pulse.web import auth
from pulse.web.console import render as _page

router = APIRouter()
MAX_WEEKS = 52  # weeks offered in the selector, newest first




def slug(name: str) -> str:
    """A team's name as a piece of an HTML id."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "team"


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value)).date()


def feedback_span(engine: Engine) -> tuple[list[date], list[str]]:
    """The Mondays of the weeks that can hold feedback (newest first, at most `MAX_WEEKS`)
    and the teams feedback was routed to."""
    t = TextInsight.__table__
    with engine.connect() as conn:
        first, last = conn.execute(select(func.min(t.c.created_at),
                                          func.max(t.c.created_at))).one()
        teams = sorted(conn.execute(select(t.c.team).distinct()).scalars(),
                       key=lambda x: (x == "triage", x))
    lo, hi = _day(first), _day(last)
    if lo is None or hi is None:
        return [], []
    weeks: list[date] = []
    week = monday(hi)
    while week >= monday(lo) and len(weeks) < MAX_WEEKS:
        weeks.append(week)
        week -= timedelta(days=7)
    return weeks, [str(x) for x in teams]


#: Digests built lately are kept on the app (`app.state.feedback_digests`, so one cache per
#: app and its engine) by (week, team, the insights' version, day): building one clusters
#: the week's texts, a second or more; the same page again is read from there.
CACHED = 32


def _cache(request: Request) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    state = request.app.state
    if not hasattr(state, "feedback_digests"):
        state.feedback_digests = {}
    cache: dict[tuple[Any, ...], list[dict[str, Any]]] = state.feedback_digests
    return cache


def _version(engine: Engine) -> tuple[Any, ...]:
    """Changes whenever `text_insights` gains, loses or reclassifies a row."""
    t = TextInsight.__table__
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count(), func.max(t.c.computed_at))).one())


def default_week(weeks: list[date], today: date) -> date | None:
    """The last complete week that can hold feedback, else the newest one."""
    complete = [w for w in weeks if w + timedelta(days=7) <= today]
    return complete[0] if complete else (weeks[0] if weeks else None)


@router.get("/feedback", response_class=HTMLResponse, tags=["console"],
            summary="The feedback digests of one week, per team")
def feedback_page(request: Request,
                  me: Annotated[auth.Identity, Depends(auth.signed_in)],
                  week: Annotated[str, Query(max_length=10, description="A date of the week "
                                             "(YYYY-MM-DD; default the last complete week)")]
                  = "",
                  team: Annotated[str, Query(max_length=64, description="One team (default "
                                             "all)")] = "") -> HTMLResponse:
    from pulse.core.fx import reporting_currency
    from pulse.outreach.feedback_digest import build_digests

    engine = request.app.state.engine
    today = datetime.now(UTC).date()
    weeks, teams = feedback_span(engine)
    chosen: date | None
    try:
        chosen = monday(date.fromisoformat(week.strip())) if week.strip() else None
    except ValueError:
        chosen = None
    chosen = chosen or default_week(weeks, today)
    team = team.strip()
    team_filter = team if team in teams else None
    digests: list[dict[str, Any]] = []
    if chosen is not None:
        cache = _cache(request)
        key = (chosen, team_filter, _version(engine), today)
        if key not in cache:
            cache[key] = [d.context | {"slug": slug(d.team)} for d in build_digests(
                engine, period="week", period_end=chosen + timedelta(days=7),
                team=team_filter, write=False)]
            while len(cache) > CACHED:
                cache.pop(next(iter(cache)))
        digests = cache[key]
    if chosen is not None and chosen not in weeks:
        weeks = sorted({*weeks, chosen}, reverse=True)
    return _page("feedback.html", me=me, csrf=me.csrf_token, here="feedback",
                 weeks=weeks, teams=teams, week=chosen,
                 week_end=chosen + timedelta(days=6) if chosen else None,
                 team=team_filter, digests=digests, today=today, week_days=timedelta(days=7),
                 currency=reporting_currency())
