"""The CSAT survey pages a customer reaches from the rating links in a survey email.

A rating link is `/s/{token}`, the token signed for the purpose `survey` with
`{"s": survey_id, "c": contact_id, "r": rating}` (outreach/tokens.py). Routes:

* `GET /s/{token}` shows the question and the chosen rating with a **Confirm** button, the
  other four ratings as alternatives, and records nothing: mail scanners and link previews
  fetch every link in a message, so a GET that recorded would answer surveys nobody
  answered (docs/surveys-web.md explains the choice);
* `POST /s/{token}` (the buttons; form field `rating`, default the link's) records the
  rating through `listeners.surveys.record_rating` (the first creates the response, another
  rating changes it, the same again changes nothing) and shows the thank-you page with an
  optional comment form;
* `POST /s/{token}/comment` (form fields `comment`, `csrf`) stores the comment
  (`listeners.surveys.record_comment`).

A rating of 1 or 2 alerts the account's CSM at once (`outreach.csat_alerts`, once per
answer; a comment written while the alert is still queued goes with it).

Bad links get a friendly page: 400 malformed or tampered, 404 unknown survey or one sent to
someone else (the same page, so a link reveals nothing about other customers), 410 expired.
Cross-site posts are refused with 403: the `Sec-Fetch-Site`/`Origin`/`Referer` headers must
not name another site, and the comment form must carry the CSRF token bound to the link and
to the `SameSite=Strict` cookie set with the form (a signed double-submit cookie).

`web.guard.RequestGuard`, an ASGI middleware, limits requests per client address (429 with
`Retry-After`), refuses bodies over 1 MiB (413) or of unknown length (411), and adds the
security headers of the public paths (`/s/`, `/u/`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Engine

from pulse.core.errors import (
    CommentTooLong,
    EmptyComment,
    InvalidRating,
    NotRated,
    SurveyAnswerError,
    SurveyExpired,
    SurveyNotFound,
    TokenError,
    WrongContact,
)
from pulse.core.settings import get_settings
from pulse.listeners.surveys import (
    MAX_COMMENT_CHARS,
    RATINGS,
    RatingResult,
    Response,
    SurveyInfo,
    check_rating,
    find_survey,
    get_response,
    record_comment,
    record_rating,
)
from pulse.outreach.csat_alerts import queue_low_rating_alerts
from pulse.outreach.tokens import secret_key, verify
from pulse.sql.schema import LOW_RATING

log = logging.getLogger(__name__)

SURVEY = "survey"  # the token purpose of rating links
LABELS = {1: "Very dissatisfied", 2: "Dissatisfied", 3: "Neither", 4: "Satisfied",
          5: "Very satisfied"}
CSRF_COOKIE = "pulse_survey_csrf"
MAX_BODY_BYTES = 1024 * 1024  # a 100,000-character comment still gets a clear answer

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(_TEMPLATES),
                   autoescape=select_autoescape(default=True, default_for_string=True))
_CSS = (_TEMPLATES / "survey.css").read_text(encoding="utf-8").strip()
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")

#: Sent with every public page: no inline script may run (there is none), only our own
#: stylesheet (by hash) applies, forms post only to us, nobody frames us, the token in the
#: URL is never passed on as a referrer, and nothing is cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

_PROBLEMS = {  # status: (title, message, hint)
    400: ("This link does not work",
          "The link is incomplete or was changed.",
          "Please use the link exactly as it appears in the email from us."),
    403: ("This request was refused",
          "For your security we only accept answers sent from our own survey page.",
          "Open the link from the email again and use the buttons on the page."),
    404: ("We could not find this survey",
          "This survey does not exist or the link was not meant for you.",
          "Please use the link in the email we sent you."),
    409: ("Please choose a rating first",
          "A comment belongs to a rating: choose how satisfied you were, then add it.",
          "Open the link from the email again."),
    410: ("This survey has closed",
          "Surveys stay open for a limited time, and this one has closed. Thank you all the "
          "same.", "If there is something you would like us to know, just reply to any email "
          "from us."),
    411: ("Request refused", "The request did not say how long it was.", None),
    413: ("Too much text", "The request was too large.",
          f"A comment may have at most {MAX_COMMENT_CHARS:,} characters."),
    429: ("Please slow down", "Too many requests came from your network in a short time.",
          "Please wait a minute and try again."),
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed or tampered link, or an invalid rating (HTML page)"},
    404: {"description": "Unknown survey, or one sent to another contact (HTML page)"},
    410: {"description": "The link or the survey has expired (HTML page)"},
    429: {"description": "Rate limit for this client exceeded; see Retry-After"},
}
_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_RESPONSES,
    403: {"description": "Cross-site post refused (Origin/Referer/Sec-Fetch-Site, CSRF)"},
    411: {"description": "Body without a Content-Length"},
    413: {"description": "Body larger than 1 MiB"},
}

router = APIRouter(prefix="/s", tags=["surveys"])


# --------------------------------------------------------------------------- pages


def render_public(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    page = _env.get_template(template).render(
        company=get_settings().company_name, css=Markup(_CSS), labels=LABELS,
        ratings=RATINGS, max_chars=MAX_COMMENT_CHARS, **context)
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def problem_page(status: int, message: str | None = None) -> HTMLResponse:
    """The friendly page for a 4xx `status`."""
    title, default, hint = _PROBLEMS[status]
    return render_public("survey_problem.html", status, title=title, message=message or default,
                   hint=hint)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, TokenError):
        return 410 if exc.reason == "expired" else 400
    if isinstance(exc, SurveyExpired):
        return 410
    if isinstance(exc, SurveyNotFound | WrongContact):
        return 404
    if isinstance(exc, NotRated):
        return 409
    return 400  # InvalidRating and anything else about the answer itself


def _link(token: str) -> tuple[int, str, int]:
    """(survey id, contact id, rating) of a valid rating link; else TokenError/InvalidRating."""
    data = verify(SURVEY, token)
    survey_id, contact_id = data.get("s"), data.get("c")
    if not isinstance(survey_id, int) or not isinstance(contact_id, str):
        raise TokenError("malformed", "this link is not complete")
    return survey_id, contact_id, check_rating(data.get("r"))


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


# --------------------------------------------------------------------------- CSRF


def _nonce(request: Request) -> str:
    """The browser's CSRF nonce (from its cookie), or a new one."""
    current = request.cookies.get(CSRF_COOKIE, "")
    return current if re.fullmatch(r"[A-Za-z0-9_-]{32}", current) else secrets.token_urlsafe(24)


def csrf_token(nonce: str, token: str) -> str:
    """The comment form's CSRF field: an HMAC of the cookie's nonce and the survey link."""
    mac = hmac.new(secret_key(), f"survey-comment\0{nonce}\0{token}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def _set_cookie(page: HTMLResponse, request: Request, nonce: str) -> HTMLResponse:
    secure = request.url.scheme == "https" or \
        get_settings().public_base_url.startswith("https://")
    page.set_cookie(CSRF_COOKIE, nonce, max_age=2 * 3600, path="/s/", secure=secure,
                    httponly=True, samesite="strict")
    return page


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(request: Request) -> str | None:
    """Why a POST looks cross-site, or None.

    `Sec-Fetch-Site` (sent by current browsers) must be `same-origin`; else a real `Origin`
    must be ours (`Origin: null`, which our `no-referrer` pages make browsers send, proves
    nothing either way); else a `Referer`, if any, must be ours. Ours means the public base
    URL's origin or the origin the request was addressed to.
    """
    ours = {_origin(get_settings().public_base_url)}
    host = request.headers.get("host")
    if host:
        ours.add(f"{request.url.scheme}://{host}".lower())
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site}"
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return None if origin.rstrip("/").lower() in ours else f"Origin: {origin}"
    referer = request.headers.get("referer")
    if referer and _origin(referer) not in ours:
        return f"Referer from {_origin(referer)}"
    return None


# --------------------------------------------------------------------------- routes


def _thanks(request: Request, token: str, survey: SurveyInfo, response: Response, *,
            outcome: str | None = None, notice: str | None = None, status: int = 200,
            comment_error: str | None = None, draft: str | None = None) -> HTMLResponse:
    nonce = _nonce(request)
    title = "Thank you!" if status == 200 else "Your comment was not saved"
    page = render_public("survey_thanks.html", status, title=title, question=survey.question,
                   response=response, outcome=outcome, notice=notice,
                   action=f"/s/{token}", comment_action=f"/s/{token}/comment",
                   csrf=csrf_token(nonce, token), comment_error=comment_error, draft=draft)
    return _set_cookie(page, request, nonce)


@router.get("/{token}", response_class=HTMLResponse, responses=_RESPONSES,
            summary="Show a rating link's choice (records nothing)")
def survey_page(token: str, request: Request) -> HTMLResponse:
    """The question and the link's rating with a Confirm button (a POST), the other four
    ratings as alternatives and, once answered, the comment form. A GET records nothing:
    mail scanners prefetch links."""
    try:
        survey_id, contact_id, chosen = _link(token)
        survey = find_survey(_engine(request), survey_id, contact_id)
    except (TokenError, SurveyAnswerError) as exc:
        return problem_page(_status_of(exc))
    response = get_response(_engine(request), survey.survey_id)
    nonce = _nonce(request)
    page = render_public("survey_rate.html", title="How did we do?", question=survey.question,
                   chosen=chosen, response=response, action=f"/s/{token}",
                   comment_action=f"/s/{token}/comment", csrf=csrf_token(nonce, token),
                   comment_error=None, draft=None)
    return _set_cookie(page, request, nonce) if response else page


@router.post("/{token}", response_class=HTMLResponse, responses=_POST_RESPONSES,
             summary="Record a rating (the first creates the response, another changes it)")
def rate(token: str, request: Request,
         rating: Annotated[str | None, Form(description="1..5; default: the link's")] = None,
         ) -> HTMLResponse:
    """Record the rating (the form's, else the link's) as this survey's one response and
    show the thank-you page with the comment form."""
    why = cross_site(request)
    if why:
        log.warning("refused a cross-site rating post (%s)", why)
        return problem_page(403)
    try:
        survey_id, contact_id, chosen = _link(token)
        value = chosen if rating in (None, "") else check_rating(rating)
        result: RatingResult = record_rating(_engine(request), survey_id, contact_id, value)
    except (TokenError, SurveyAnswerError) as exc:
        status = _status_of(exc)
        return problem_page(status, "That is not one of the ratings we offer."
                            if isinstance(exc, InvalidRating) else None)
    if result.outcome != "unchanged":
        _alert_csm(request, result.response)
    notice = {"created": "We have recorded your answer.",
              "changed": "We have changed your answer.",
              "unchanged": "We already had this answer."}[result.outcome]
    return _thanks(request, token, result.survey, result.response, outcome=result.outcome,
                   notice=notice)


@router.post("/{token}/comment", response_class=HTMLResponse,
             responses={**_POST_RESPONSES,
                        409: {"description": "The survey has no rating yet"},
                        422: {"description": "Empty comment, or longer than "
                              f"{MAX_COMMENT_CHARS:,} characters: refused, not cut"}},
             summary="Add or replace the comment of an answered survey")
def comment(token: str, request: Request,
            comment: Annotated[str, Form(description=f"At most {MAX_COMMENT_CHARS:,} "
                                         "characters")] = "",
            csrf: Annotated[str, Form(description="The form's CSRF token")] = "",
            ) -> HTMLResponse:
    """Store the comment on the response (raw; escaped wherever shown)."""
    why = cross_site(request)
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if why is None and not (nonce and csrf and hmac.compare_digest(
            csrf.encode("utf-8", "replace"), csrf_token(nonce, token).encode("ascii"))):
        why = "missing or wrong CSRF token"
    if why:
        log.warning("refused a comment post (%s)", why)
        return problem_page(403)
    engine = _engine(request)
    try:
        survey_id, contact_id, _ = _link(token)
        survey = find_survey(engine, survey_id, contact_id)
    except (TokenError, SurveyAnswerError) as exc:
        return problem_page(_status_of(exc))
    try:
        response = record_comment(engine, survey_id, contact_id, comment)
    except (CommentTooLong, EmptyComment) as exc:
        current = get_response(engine, survey.survey_id)
        if current is None:
            return problem_page(409)
        message = str(exc)[0].upper() + str(exc)[1:] + "."
        return _thanks(request, token, survey, current, status=422, comment_error=message,
                       draft=comment)
    except SurveyAnswerError as exc:
        return problem_page(_status_of(exc))
    _alert_csm(request, response)  # a low rating's alert, if still queued, takes the comment
    return _thanks(request, token, survey, response, notice="Thank you for your comment.")


def _alert_csm(request: Request, response: Response) -> None:
    """A rating of 1 or 2 alerts the account's CSM now (outreach/csat_alerts.py). The answer
    is already stored: a failure here is logged and the DAG's hourly sweep queues the alert
    (one per answer either way), so the customer's page never fails for it."""
    if response.rating > LOW_RATING:
        return
    try:
        queue_low_rating_alerts(_engine(request), survey_ids=[response.survey_id])
    except Exception:  # noqa: BLE001 - never the customer's problem; the sweep retries
        log.exception("survey %d: the CSM alert was not queued now (the sweep will)",
                      response.survey_id)
