"""The console's account page (`/accounts/{id}`) and the actions only it offers.

`GET /accounts/{id}` for a signed-in user (any role; a viewer reads, never acts):

* the health history as a stacked SVG chart of the scorecard's parts (`id="health-chart"`),
  the churn probability history beside it (`id="churn-chart"`), each with a title, a
  description, a text of what moved and a table of the numbers;
* the drivers in words: the flags with their evidence, the top reasons (the risk list's),
  the measures that cost the most points, the next action;
* the timeline (`id="timeline"`), newest first, filtered by `?kind=` (repeatable, a plain
  GET form: no script) and paged by `?page=`; above it, the account's public complaints of
  the last 7 days still waiting for a brand reply past their channel's expectation
  (`id="unanswered-items"`, web/responses.py);
* the contacts with their role, last activity and opt-out state;
* the actions (POST, the session's CSRF token, audited, refused for viewers): mark handled,
  snooze, log a call, meeting or note (web/risk.py's routes, coming back here), assign the
  CSM (`POST /accounts/{id}/assign`), edit or approve a drafted check-in
  (`POST /accounts/{id}/drafts/{message_id}/edit|approve`, outreach/drafts.py).

Without a session, a signed digest link (`?t=`) opens today's read-only view of its one
account (web/console.py) with a link to sign in for this page; without either, the visitor
is sent to sign in and comes back here.
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from pulse.core.errors import ConsoleUserError, InvalidArgumentError, PulseError
from pulse.models.flag_rules import flag_words
from pulse.sql import account_page as sqla
from pulse.sql import console as sqlc
from pulse.web import auth
from pulse.web.console import error_page
from pulse.web.console import render as _page

router = APIRouter()
MAX_TEXT = 2000




_error = error_page


def _kinds(request: Request) -> list[str]:
    return [k for k in request.query_params.getlist("kind") if k in sqla.KINDS]


def _int(value: str | None, default: int = 1, digits: int = 5) -> int:
    return int(value) if value and value.isdigit() and len(value) <= digits else default


def _scored_row(engine: Any, account_id: str, as_of: date | None, card: Any
                ) -> dict[str, Any] | None:
    """The account's row of the risk list's query (snooze state, last touched, probability)."""
    if as_of is None:
        return None
    t = sqlc.scored_query(as_of, card, today=datetime.now(UTC).date())
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.account_id == account_id)).mappings().first()
    return dict(row) if row else None


def _handled(engine: Any, account_id: str, row: dict[str, Any] | None
             ) -> dict[str, Any] | None:
    """Who last marked the account handled, when, and the outcome: the risk list's row has
    it already; only an account off the list (unscored or cancelled) reads it apart."""
    if row is not None:
        return ({"actor": row["handled_by"], "at": row["handled_at"],
                 "note": row["handled_outcome"]} if row["handled_by"] else None)
    act = sqlc.ACT
    with engine.connect() as conn:
        row = conn.execute(select(act.c.actor, act.c.at, act.c.note)
                           .where(act.c.account_id == account_id, act.c.kind == "handled")
                           .order_by(act.c.activity_id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def _csm_choices(engine: Any) -> list[str]:
    """The people an account can be given to: console users who act, and every CSM named on
    an account."""
    from pulse.sql.schema import ConsoleUser

    u = ConsoleUser.__table__
    with engine.connect() as conn:
        users = conn.execute(select(u.c.email).where(u.c.disabled_at.is_(None),
                                                     u.c.role.in_(tuple(auth.ACTING_ROLES)))
                             ).scalars().all()
        named = conn.execute(select(sqlc.A.c.csm_email).where(sqlc.A.c.csm_email.is_not(None))
                             .distinct()).scalars().all()
    return sorted({str(e).strip().lower() for e in [*users, *named] if e})


_UNSUBSCRIBE = re.compile(r"https?://\S+/u/[\w.\-]+")


def _drafts(engine: Any, account_id: str) -> list[dict[str, Any]]:
    from pulse.outreach.drafts import show_draft

    out = []
    for d in sqla.checkin_drafts(engine, account_id):
        context = d.get("context") or {}
        try:
            # the customer's own unsubscribe link is theirs: not a link for the CSM to click
            text = _UNSUBSCRIBE.sub("[their unsubscribe link]",
                                    show_draft(engine, int(d["message_id"])).full_text())
            problem = None
        except PulseError as exc:
            text, problem = "", str(exc)
        out.append({**d, "text": text, "problem": problem, "note": context.get("note") or "",
                    "features": [f.get("feature") for f in context.get("features") or []
                                 if isinstance(f, dict) and f.get("feature")],
                    "feature_labels": {f.get("feature"): f.get("label") or f.get("feature")
                                       for f in context.get("features") or []
                                       if isinstance(f, dict)},
                    "renewal_date": context.get("renewal_date")})
    return out


def _charts(engine: Any, account_id: str, card: Any, until: date | None) -> dict[str, Any]:
    from pulse.models.risklist import measure_labels
    from pulse.web import account_charts as ch

    health, parts = sqla.health_parts(engine, account_id, until=until)
    labels = measure_labels(card)
    stacked = ch.stacked_health(health, parts, labels, green=float(card.green),
                                amber=float(card.amber), watch=card.watch)
    days = list(health.loc[health["score"].notna(), "as_of"])
    model: dict[date, float] = {}
    curve: dict[date, float] = {}
    if days:
        churn = sqla.churn_history(engine, account_id, days[0])
        model = {d: float(p) for d, p in zip(churn["as_of"], churn["probability"])}
        calibration = getattr(card, "calibration", None)
        if calibration is not None:
            scores = health.loc[health["score"].notna(), "score"].to_numpy(dtype=float)
            curve = dict(zip(days, (float(p) for p in calibration.probability(scores))))
    line = ch.probability_line(days, model, curve)
    return {"health": stacked, "moved": ch.what_moved(stacked),
            "drop": ch.biggest_drop(stacked), "churn_points": len(line.dots),
            "table": ch.parts_table(health, parts, stacked), "churn": line,
            "churn_basis": ("the churn model" if model and not curve else
                            "the churn model, else the scorecard's calibration curve (dashed)"
                            if model else "the scorecard's calibration curve"
                            if curve else None),
            "latest_probability": next((d["label"] for d in reversed(line.dots)), None)}


def full_page(request: Request, me: auth.Identity, account_id: str) -> Response:
    """The signed-in account page (see the module docstring)."""
    from pulse.core.errors import NotScoredError, RiskListError
    from pulse.models.risklist import account_view
    from pulse.web.responses import ACCOUNT_DAYS, account_complaints
    from pulse.web.risk import _done_message, _scorecard

    engine = request.app.state.engine
    with engine.connect() as conn:
        facts = conn.execute(select(sqlc.A).where(sqlc.A.c.account_id == account_id)
                             ).mappings().first()
    if facts is None:
        return _error(404, "No such account", f"There is no account {account_id}.")
    card = _scorecard()
    try:
        view: dict[str, Any] | None = account_view(engine, account_id, scorecard=card)
    except (NotScoredError, RiskListError):
        view = None
    as_of = date.fromisoformat(view["as_of"]) if view else None
    row = _scored_row(engine, account_id, as_of, card)
    kinds = _kinds(request)
    page = _int(request.query_params.get("page"))
    items, older = sqla.timeline(engine, account_id, kinds=kinds or None, page=page)
    here = f"/accounts/{quote(account_id, safe='')}"

    def timeline_link(p: int) -> str:
        return here + "?" + urlencode([*(("kind", k) for k in kinds), ("page", p)]) + "#timeline"

    complaints, complaints_problem = account_complaints(engine, account_id)
    flags = [{"words": flag_words(f["flag"]),
              "evidence": f["evidence"]} for f in (view or {}).get("flags", [])]
    risk = (view or {}).get("risk") or {}
    return _page(
        "account_page.html", me=me, csrf=me.csrf_token, account=dict(facts), view=view,
        row=row, risk=risk, flags=flags, handled=_handled(engine, account_id, row),
        charts=_charts(engine, account_id, card, as_of) if view else None,
        items=items, older=older, page=page, kinds=kinds, all_kinds=sqla.KINDS,
        newer_link=timeline_link(page - 1), older_link=timeline_link(page + 1),
        contacts=sqla.contacts(engine, account_id),
        complaints=complaints, complaints_problem=complaints_problem,
        complaint_days=ACCOUNT_DAYS,
        drafts=_drafts(engine, account_id), csms=_csm_choices(engine) if me.can_act else [],
        here=here, message=_done_message(request) or _said(request),
        tomorrow=datetime.now(UTC).date() + timedelta(days=1))


@router.get("/accounts/{account_id}", response_class=HTMLResponse, tags=["console"],
            summary="One account's page (signed in), or its signed digest link's read-only view")
def account(request: Request, account_id: str,
            t: str = Query(default="", max_length=2000,
                           description="A signed digest link's token")) -> Response:
    from pulse.web.console import token_view

    me = auth.identify(request)
    if me is not None:
        return full_page(request, me, account_id)
    if t:
        return token_view(request, account_id, t)
    raise auth.NotSignedIn()  # to sign in, and back here


_DONE = {"assign": "Gave {} to its new CSM.", "draft_edit": "Saved the check-in draft of {}.",
         "draft_approve": "Approved the check-in of {}: it is queued for sending."}


def _said(request: Request) -> str:
    """What this page's last action did, from fixed words."""
    words = _DONE.get(request.query_params.get("done", ""))
    return words.format(request.query_params.get("account", "")[:64]) if words else ""


def _back(account_id: str, done: str) -> RedirectResponse:
    query = urlencode({"done": done, "account": account_id})
    return RedirectResponse(f"/accounts/{quote(account_id, safe='')}?{query}",
                            status_code=303)


def _exists(request: Request, account_id: str) -> bool:
    with request.app.state.engine.connect() as conn:
        return sqlc.account_exists(conn, account_id)


@router.post("/accounts/{account_id}/assign", tags=["console"],
             summary="Assign or reassign the account's CSM (CSM or admin, with CSRF)")
def assign(request: Request, account_id: str,
           me: Annotated[auth.Identity, Depends(auth.acting)],
           csm: Annotated[str, Form(max_length=320)] = "",
           reason: Annotated[str, Form(max_length=MAX_TEXT)] = "") -> Response:
    note = reason.strip()
    if not note:
        return _error(400, "A reason is needed", "Say why, so the team knows later.")
    try:
        email = auth.normalise_email(csm)
    except ConsoleUserError:
        return _error(400, "Which CSM?", "Give the CSM's email address.")
    if not _exists(request, account_id):
        return _error(404, "No such account", f"There is no account {account_id}.")
    sqla.assign_csm(request.app.state.engine, account_id, email, actor=me.email,
                    reason=note, address=auth.client_address(request))
    return _back(account_id, "assign")


def _draft_of(request: Request, account_id: str, message_id: int) -> Response | None:
    drafts = {int(d["message_id"]) for d in sqla.checkin_drafts(request.app.state.engine,
                                                                 account_id)}
    if message_id not in drafts:
        return _error(409, "No such draft", "This check-in is not a draft of this account "
                      "any more (approved, or changed meanwhile).")
    return None


@router.post("/accounts/{account_id}/drafts/{message_id}/edit", tags=["console"],
             summary="Edit a drafted check-in within the customer vocabulary")
async def edit_checkin(request: Request, account_id: str, message_id: int,
                       me: Annotated[auth.Identity, Depends(auth.acting)]) -> Response:
    from pulse.outreach.drafts import edit_draft

    refused = _draft_of(request, account_id, message_id)
    if refused is not None:
        return refused
    form = await request.form()
    note = str(form.get("note") or "")[:MAX_TEXT + 1]
    subject = str(form.get("subject") or "").strip()[:300]
    drop = [str(v) for v in form.getlist("drop_feature")][:50]
    try:
        edit_draft(request.app.state.engine, message_id, note=note, drop_features=drop,
                   drop_renewal=form.get("drop_renewal") == "yes", subject=subject or None)
    except (InvalidArgumentError, PulseError) as exc:
        return _error(400, "The draft did not change", str(exc))
    sqla.record_checkin(request.app.state.engine, account_id, message_id, "edit_checkin",
                        actor=me.email, note=note.strip(),
                        address=auth.client_address(request))
    return _back(account_id, "draft_edit")


@router.post("/accounts/{account_id}/drafts/{message_id}/approve", tags=["console"],
             summary="Approve a drafted check-in: it is queued for sending")
def approve_checkin(request: Request, account_id: str, message_id: int,
                    me: Annotated[auth.Identity, Depends(auth.acting)],
                    reason: Annotated[str, Form(max_length=MAX_TEXT)] = "") -> Response:
    from pulse.outreach.drafts import approve_drafts

    refused = _draft_of(request, account_id, message_id)
    if refused is not None:
        return refused
    try:
        done = approve_drafts(request.app.state.engine, [message_id])
    except PulseError as exc:
        return _error(400, "The draft was not approved", str(exc))
    if not done:
        return _error(409, "No such draft", "This check-in was approved meanwhile.")
    sqla.record_checkin(request.app.state.engine, account_id, message_id, "approve_checkin",
                        actor=me.email, note=reason.strip() or f"message {message_id}",
                        address=auth.client_address(request))
    return _back(account_id, "draft_approve")
