"""The console's risk list (`/`), its CSV export (`/export.csv`) and the account actions.

`GET /` shows the accounts of the latest scored date, filtered, sorted and paged in SQL
(sql/console.py): by default a CSM's own book without the snoozed accounts; admins and
viewers see every book. Each row: health and band in words with a 30-day sparkline drawn on
the server (inline SVG), churn probability, MRR in the reporting currency, the flags in
words, the top reason and the next action (models/risklist.py, for the page's accounts
only), and who touched the account last. `GET /export.csv` is the same filtered view, every
page, with cells that a spreadsheet would run as a formula defused.

`POST /accounts/{id}/snooze`, `/handled` and `/log` need a CSM or admin with the session's
CSRF token and a reason; each writes its row and its audit entry in one transaction.
"""
from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from pulse.core.errors import NotScoredError
from pulse.models.flag_rules import FLAG_WORDS, flag_words
from pulse.models.risklist import BANDS
from pulse.models.scorecard import band_legend
from pulse.sql import console as sqlc
from pulse.web import auth
from pulse.web.console import BAND_COLOURS

router = APIRouter()
MAX_NOTE = 2000


def _text(value: Any, limit: int) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    return text[:limit] if text else None


def view_of(request: Request, me: auth.Identity) -> tuple[sqlc.Filters, str, int]:
    """The filters, sort and page a request asks for; bad values fall back to the default."""
    p = request.query_params
    csm_param = (p.get("csm") or "").strip()
    csm = (None if csm_param.lower() == "all" else csm_param[:254] if csm_param
           else me.email if me.role == "csm" else None)
    band = p.get("band") if p.get("band") in BANDS else None
    flag = p.get("flag") if p.get("flag") in FLAG_WORDS else None
    renewal = p.get("renewal", "").strip()
    renewal_days = int(renewal) if renewal.isdigit() and len(renewal) <= 5 else None
    snoozed = p.get("snoozed") if p.get("snoozed") in sqlc.SNOOZED else "no"
    sort = p.get("sort") if p.get("sort") in sqlc.SORTS else "risk"
    page_s = p.get("page", "1")
    page = int(page_s) if page_s.isdigit() and len(page_s) <= 6 else 1
    filters = sqlc.Filters(csm=csm, band=band, flag=flag, segment=_text(p.get("segment"), 64),
                           plan=_text(p.get("plan"), 64), renewal_days=renewal_days,
                           snoozed=snoozed or "no", q=_text(p.get("q"), 200))
    return filters, sort or "risk", max(page, 1)


def _query(filters: sqlc.Filters, sort: str, page: int | None = None) -> str:
    pairs = {"csm": filters.csm or "all", "band": filters.band, "flag": filters.flag,
             "segment": filters.segment, "plan": filters.plan,
             "renewal": filters.renewal_days, "snoozed": filters.snoozed, "q": filters.q,
             "sort": sort, "page": page}
    return urlencode({k: v for k, v in pairs.items() if v not in (None, "")})


def sparkline(points: list[tuple[date, float]], band: str | None, *, width: int = 90,
              height: int = 24) -> Markup:
    """Health over the recent scored dates as a small inline SVG (0..100), labelled."""
    if len(points) < 2:
        return Markup('<small>no trend yet</small>')
    pad = 2
    n = len(points)
    coords = " ".join(
        f"{pad + i * (width - 2 * pad) / (n - 1):.1f},"
        f"{height - pad - max(0.0, min(100.0, s)) * (height - 2 * pad) / 100:.1f}"
        for i, (_d, s) in enumerate(points))
    label = (f"health from {points[0][1]:.0f} on {points[0][0].isoformat()} to "
             f"{points[-1][1]:.0f} on {points[-1][0].isoformat()}")
    colour = BAND_COLOURS.get(band or "", "#1f2933")
    return Markup('<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
                  'aria-label="{label}"><title>{label}</title><polyline fill="none" '
                  'stroke="{c}" stroke-width="1.5" points="{p}"/></svg>').format(
        w=width, h=height, label=label, c=colour, p=coords)


_TOUCH_WORDS = {"call": "call logged", "meeting": "meeting logged", "note": "note added",
                "handled": "marked handled", "snooze": "snoozed", "assign": "CSM assigned",
                "checkin": "check-in approved"}


def _explain(engine: Any, as_of: date, rows: list[dict[str, Any]], scorecard: Any) -> None:
    """Add flags in words, the top reason and the next action (models/risklist.py), for
    these rows only."""
    from pulse.models.risklist import explain_accounts

    ids = [r["account_id"] for r in rows]
    if not ids:
        return
    explained = explain_accounts(engine, as_of, ids, scorecard)
    for r in rows:
        x = explained.get(r["account_id"]) or {}
        r["flags"] = x.get("flags", [])
        r["flag_words"] = [flag_words(f) for f in r["flags"]]
        r["top_reason"] = (x.get("drivers") or [None])[0]
        r["next_action"] = x.get("next_action")
        r["touched_words"] = _TOUCH_WORDS.get(r.get("touched_kind") or "", "touched")


def _scorecard() -> Any:
    from pulse.models.scorecard import load_scorecard

    return load_scorecard()


def _latest(engine: Any) -> date | None:
    from pulse.models.risklist import latest_scored_date

    try:
        return latest_scored_date(engine)
    except NotScoredError:
        return None


@router.get("/", response_class=HTMLResponse, tags=["console"],
            summary="The risk list of the latest scored date")
def risk_list(request: Request) -> Response:
    from pulse.core.fx import reporting_currency
    from pulse.web.console import render as _page

    me = auth.signed_in(request)  # else to sign in, and back to this view (filters kept)
    engine = request.app.state.engine
    others = auth.signed_in_now(engine) if me.role == "admin" else None
    filters, sort, page = view_of(request, me)
    as_of = _latest(engine)
    context: dict[str, Any] = {"me": me, "csrf": me.csrf_token, "others": others,
                               "as_of": as_of, "view": filters, "sort": sort,
                               "message": _done_message(request)}
    if as_of is None:
        return _page("risk.html", **context)
    card = _scorecard()
    total, rows = sqlc.risk_page(engine, as_of, filters, sort=sort, page=page,
                                 size=sqlc.PAGE_SIZE, scorecard=card)
    pages = max(1, math.ceil(total / sqlc.PAGE_SIZE))
    _explain(engine, as_of, rows, card)
    lines = sqlc.trends(engine, [r["account_id"] for r in rows], as_of)
    for r in rows:
        r["sparkline"] = sparkline(lines.get(r["account_id"], []), r["band"])
    return _page("risk.html", **context, rows=rows, total=total, page=page, pages=pages,
                 choices=sqlc.choices(engine, as_of), bands=BANDS, flag_words=FLAG_WORDS,
                 legend=band_legend(
                     card.green, card.watch, card.amber,
                     card.calibrated_on,
                     other_card_on=as_of.isoformat()
                     if sqlc.scorecard_labels(engine, as_of) - {card.label} else None),
                 sorts=sqlc.SORTS, currency=reporting_currency(),
                 query=_query(filters, sort), back="/?" + _query(filters, sort, page),
                 prev_query=_query(filters, sort, page - 1),
                 next_query=_query(filters, sort, page + 1))


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a `'` first
    (a number stays a number: -8.1 is no formula)."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


CSV_COLUMNS = ("account_id", "name", "csm_email", "band", "health", "change_7d", "change_30d",
               "churn_probability", "mrr_reporting", "revenue_at_risk", "renewal_date",
               "flags", "top_reason", "next_action", "snoozed_until", "touched_kind",
               "touched_by", "touched_at", "handled_by", "handled_at")


@router.get("/export.csv", tags=["console"], summary="The filtered risk list as CSV")
def export_csv(request: Request,
               me: Annotated[auth.Identity, Depends(auth.signed_in)]) -> Response:
    engine = request.app.state.engine
    filters, sort, _page = view_of(request, me)
    as_of = _latest(engine)
    rows: list[dict[str, Any]] = []
    if as_of is not None:
        card = _scorecard()
        _total, rows = sqlc.risk_page(engine, as_of, filters, sort=sort, size=None,
                                      scorecard=card)
        _explain(engine, as_of, rows, card)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        r = {**r, "flags": "; ".join(r.get("flag_words", [])),
             "health": None if r["health"] is None else round(float(r["health"]), 1),
             "churn_probability": None if r["churn_probability"] is None
             else round(float(r["churn_probability"]), 4),
             "mrr_reporting": None if r["mrr_reporting"] is None
             else round(float(r["mrr_reporting"]), 2),
             "revenue_at_risk": None if r["revenue_at_risk"] is None
             else round(float(r["revenue_at_risk"]), 2)}
        writer.writerow([csv_cell(r.get(c)) for c in CSV_COLUMNS])
    name = f"risk-list-{as_of.isoformat() if as_of else 'empty'}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


_DONE = {"snooze": "Snoozed {}.", "handled": "Marked {} handled.",
         "call": "Logged a call with {}.", "meeting": "Logged a meeting with {}.",
         "note": "Added a note to {}."}


def _done_message(request: Request) -> str:
    """What the last action did, from fixed words (a link cannot make the page say more)."""
    words = _DONE.get(request.query_params.get("done", ""))
    return words.format(request.query_params.get("account", "")[:64]) if words else ""


def _back(target: str, done: str, account_id: str) -> RedirectResponse:
    from pulse.web.signin import safe_next

    path = safe_next(target)
    sep = "&" if "?" in path else "?"
    query = urlencode({"done": done, "account": account_id})
    return RedirectResponse(f"{path}{sep}{query}", status_code=303)


def _check(request: Request, account_id: str, reason: str | None) -> Response | None:
    from pulse.web.console import error_page

    if not reason:
        return error_page(400, "A reason is needed", "Say why, so the team knows later.")
    with request.app.state.engine.connect() as conn:
        if not sqlc.account_exists(conn, account_id):
            return error_page(404, "No such account", f"There is no account {account_id}.")
    return None


@router.post("/accounts/{account_id}/snooze", tags=["console"],
             summary="Snooze an account until a date (CSM or admin, with CSRF)")
def snooze(request: Request, account_id: str,
           me: Annotated[auth.Identity, Depends(auth.acting)],
           until: Annotated[str, Form(max_length=10)] = "",
           reason: Annotated[str, Form(max_length=MAX_NOTE)] = "",
           back: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    from pulse.web.console import error_page

    note = _text(reason, MAX_NOTE)
    refused = _check(request, account_id, note)
    if refused is not None:
        return refused
    try:
        day = date.fromisoformat(until)
    except ValueError:
        return error_page(400, "Which date?", f"Snooze until a date like 2026-12-31 "
                          f"(not {until}).")  # the template escapes it
    if day <= datetime.now(UTC).date():
        return error_page(400, "Pick a later date", "Snooze until a date after today.")
    sqlc.snooze(request.app.state.engine, account_id, day, actor=me.email, reason=note or "",
                address=auth.client_address(request))
    return _back(back, "snooze", account_id)


def _log(request: Request, me: auth.Identity, account_id: str, kind: str, reason: str,
         back: str) -> Response:
    """Write one activity (with its audit entry) and go back to the view it came from."""
    note = _text(reason, MAX_NOTE)
    refused = _check(request, account_id, note)
    if refused is not None:
        return refused
    sqlc.log_activity(request.app.state.engine, account_id, kind, actor=me.email,
                      note=note or "", address=auth.client_address(request))
    return _back(back, kind, account_id)


@router.post("/accounts/{account_id}/handled", tags=["console"],
             summary="Mark an account handled, with the outcome (CSM or admin, with CSRF)")
def handled(request: Request, account_id: str,
            me: Annotated[auth.Identity, Depends(auth.acting)],
            reason: Annotated[str, Form(max_length=MAX_NOTE)] = "",
            back: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    return _log(request, me, account_id, "handled", reason, back)


@router.post("/accounts/{account_id}/log", tags=["console"],
             summary="Log a call, a meeting or a note (CSM or admin, with CSRF)")
def log_touch(request: Request, account_id: str,
              me: Annotated[auth.Identity, Depends(auth.acting)],
              kind: Annotated[str, Form(max_length=16)] = "note",
              reason: Annotated[str, Form(max_length=MAX_NOTE)] = "",
              back: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    from pulse.web.console import error_page

    if kind not in sqlc.ACTIVITY_KINDS:
        return error_page(400, "Log what?", "Log a call, a meeting or a note.")
    return _log(request, me, account_id, kind, reason, back)
