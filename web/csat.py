"""The console's CSAT page (`/csat`): response rate, CSAT, the weekly trend, the comments.

`GET /csat?weeks=N&end=YYYY-MM-DD` shows, for signed-in users of any role, the figures of
`models.csat` over N weeks (4, 8, 12, 26 or 52; by send week, Monday to Sunday) up to `end`
(default today): surveys sent,
responses, response rate, CSAT (the share of ratings of 4 and 5) and the mean rating; the
weekly trend as an SVG chart drawn here on the server (a title and a description for screen
readers, every value written on it, line and bars told apart by shape and by the legend's
words, and the same figures in a table below); and the latest comments, low ratings first.
Comments are customer text: the template escapes them.
"""
from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine, select

from pulse.sql.schema import LOW_RATING, Account, Survey, SurveyResponse
from pulse.web import auth
from pulse.web.console import render as _page

router = APIRouter()
WEEK_CHOICES = (4, 8, 12, 26, 52)
DEFAULT_WEEKS = 12
COMMENTS = 30  # comments shown, low ratings first, newest first within a rating




def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def weekly_rows(report: pd.DataFrame, first: date, last: date) -> list[dict[str, Any]]:
    """One row per week from `first` to `last` (Mondays), from `csat_report(by='week')`;
    weeks without a survey sent have zeros and no rates."""
    by_week = {pd.Timestamp(r["week"]).date(): r for r in report.to_dict("records")}
    rows = []
    week = first
    while week <= last:
        r = by_week.get(week, {})
        rows.append({"week": week, "surveys_sent": int(r.get("surveys_sent", 0) or 0),
                     "responses": int(r.get("responses", 0) or 0),
                     "response_rate": _num(r.get("response_rate")),
                     "csat": _num(r.get("csat")), "mean_rating": _num(r.get("mean_rating"))})
        week += timedelta(days=7)
    return rows


def trend_chart(rows: list[dict[str, Any]], *, width: int = 720, height: int = 260
                ) -> dict[str, Any]:
    """The geometry of the weekly chart: responses as bars (right scale), CSAT % as a line
    with a dot and its value at each week that had responses (left scale, 0 to 100); the
    line breaks over weeks without responses."""
    left, right, top, bottom = 48, 48, 22, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(rows), 1)
    step = plot_w / n
    most = max([r["responses"] for r in rows] + [1])
    base = top + plot_h

    def y_pct(v: float) -> float:
        return round(base - v / 100.0 * plot_h, 1)

    bars, dots, segments, current, labels = [], [], [], [], []
    every = max(1, math.ceil(n / 13))  # at most 13 week labels under the axis
    for i, r in enumerate(rows):
        cx = round(left + step * (i + 0.5), 1)
        h = round(r["responses"] / most * plot_h * 0.9, 1)
        bars.append({"x": round(cx - step * 0.3, 1), "y": round(base - h, 1),
                     "w": round(step * 0.6, 1), "h": h, "n": r["responses"], "cx": cx,
                     "week": r["week"]})
        if r["csat"] is not None:
            pct = 100.0 * r["csat"]
            dot = {"x": cx, "y": y_pct(pct), "pct": round(pct), "week": r["week"],
                   "n": r["responses"]}
            dots.append(dot)
            current.append(f"{dot['x']},{dot['y']}")
        else:
            if len(current) > 1:
                segments.append(" ".join(current))
            current = []
        if i % every == 0 or i == n - 1:
            labels.append({"x": cx, "text": r["week"].strftime("%d %b")})
    if len(current) > 1:
        segments.append(" ".join(current))
    rated = dots
    desc = ("No survey had a response in these weeks." if not rated else
            f"CSAT was {rated[0]['pct']}% in the week of {rated[0]['week']} "
            f"({rated[0]['n']} responses) and {rated[-1]['pct']}% in the week of "
            f"{rated[-1]['week']} ({rated[-1]['n']} responses); lowest "
            f"{min(d['pct'] for d in rated)}%, highest {max(d['pct'] for d in rated)}%. "
            f"{sum(r['responses'] for r in rows)} responses in {len(rows)} weeks, at most "
            f"{most if any(r['responses'] for r in rows) else 0} in a week.")
    return {"width": width, "height": height, "left": left, "right": width - right,
            "top": top, "base": base, "bars": bars, "dots": dots, "segments": segments,
            "labels": labels, "most": most if any(r["responses"] for r in rows) else 0,
            "grid": [{"pct": p, "y": y_pct(p)} for p in (0, 25, 50, 75, 100)],
            "desc": desc}


def latest_comments(engine: Engine, since: date, until: date, *, limit: int = COMMENTS
                    ) -> list[dict[str, Any]]:
    """The comments made from `since` to `until` (whole days): lowest rating first, newest
    first within a rating; with the account's name and CSM and the survey's trigger."""
    r, s, a = SurveyResponse.__table__, Survey.__table__, Account.__table__
    lo = datetime(since.year, since.month, since.day, tzinfo=UTC)
    hi = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    q = (select(r.c.survey_id, r.c.account_id, a.c.name.label("account_name"), a.c.csm_email,
                r.c.rating, r.c.comment, r.c.commented_at, s.c.trigger)
         .select_from(r.join(s, s.c.survey_id == r.c.survey_id)
                      .outerjoin(a, a.c.account_id == r.c.account_id))
         .where(r.c.comment.is_not(None), r.c.comment != "", r.c.commented_at >= lo,
                r.c.commented_at < hi)
         .order_by(r.c.rating, r.c.commented_at.desc(), r.c.survey_id.desc())
         .limit(limit))
    with engine.connect() as conn:
        return [dict(m) for m in conn.execute(q).mappings()]


@router.get("/csat", response_class=HTMLResponse, tags=["console"],
            summary="CSAT: response rate, share of 4 and 5, weekly trend, latest comments")
def csat_page(request: Request,
              me: Annotated[auth.Identity, Depends(auth.signed_in)],
              weeks: Annotated[str, Query(max_length=3, description="Weeks shown, the "
                                          "last one included (4, 8, 12, 26 or 52)")] = "",
              end: Annotated[str, Query(max_length=10, description="The last day shown, "
                                        "YYYY-MM-DD (default today, UTC)")] = ""
              ) -> HTMLResponse:
    from pulse.models.csat import csat_report, csat_totals

    engine = request.app.state.engine
    n = int(weeks) if weeks.strip().isdigit() else DEFAULT_WEEKS
    n = n if n in WEEK_CHOICES else DEFAULT_WEEKS
    today = datetime.now(UTC).date()
    try:
        last = min(date.fromisoformat(end.strip()), today) if end.strip() else today
    except ValueError:
        last = today
    this_week = last - timedelta(days=last.weekday())
    since = this_week - timedelta(days=7 * (n - 1))
    totals = csat_totals(engine, since=since, until=last)
    rows = weekly_rows(csat_report(engine, by="week", since=since, until=last), since,
                       this_week)
    return _page("csat.html", me=me, csrf=me.csrf_token, here="csat", weeks=n,
                 choices=WEEK_CHOICES, since=since, until=last, today=today, totals=totals,
                 rows=rows, chart=trend_chart(rows),
                 comments=latest_comments(engine, since, last), low=LOW_RATING)
