"""Survey answers: the rating a customer clicked and the comment they wrote, landed in
`survey_responses` (one row per survey, ever).

`record_rating` checks the survey (it exists, was sent rather than skipped, belongs to the
contact, is still open (`expires_at`, else `created_at` + `survey_ttl_days`), the
rating is 1..5) and lands the rating with one statement,
`INSERT ... ON CONFLICT (survey_id) DO UPDATE ... WHERE rating differs ... RETURNING`, on
SQLite and PostgreSQL alike:

* the first rating creates the response (`rating_changes` 0, `first_rated_at` = now);
* another rating changes it (`rating_changes` + 1, `rated_at` = now; `first_rated_at` and
  `landed_at` never move);
* the same rating again (a double click, a reload, a second tab) changes nothing.

Concurrent clicks cannot make a second row: the primary key is the survey id and the
database settles the race inside the one statement (PostgreSQL's speculative insertion,
SQLite's single writer).

`record_comment` stores the comment of an answered survey as the customer wrote it (control
characters other than line breaks removed, line breaks normalised to `\\n`, surrounding
blanks stripped); anything longer than `MAX_COMMENT_CHARS` characters is refused with
`CommentTooLong` rather than cut, so nobody's words are silently lost. It is stored raw:
whoever shows it escapes it.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select, update

from pulse.core.errors import (
    CommentTooLong,
    EmptyComment,
    InvalidRating,
    NotRated,
    SurveyExpired,
    SurveyNotFound,
    WrongContact,
)
from pulse.core.settings import get_settings
from pulse.sql.db import dialect_insert
from pulse.sql.schema import Survey, SurveyResponse

log = logging.getLogger(__name__)

SURVEYS = Survey.__table__
RESPONSES = SurveyResponse.__table__

RATINGS = (1, 2, 3, 4, 5)
MAX_COMMENT_CHARS = 2000
#: C0 and C1 control characters, DEL, and the Unicode line/paragraph separators and
#: bidirectional overrides that can disguise text; `\n` is kept (line breaks are normalised
#: before this runs; tabs become spaces).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

Outcome = Literal["created", "changed", "unchanged"]


@dataclass(frozen=True)
class SurveyInfo:
    """What the survey page shows about a survey (no personal data)."""

    survey_id: int
    account_id: str
    contact_id: str
    question: str
    expires_at: datetime


@dataclass(frozen=True)
class Response:
    """The one response to a survey, as stored."""

    survey_id: int
    account_id: str
    contact_id: str
    rating: int
    comment: str | None
    first_rated_at: datetime
    rated_at: datetime
    commented_at: datetime | None
    rating_changes: int


@dataclass(frozen=True)
class RatingResult:
    """What `record_rating` did (`created`, `changed` or `unchanged`), the response, and
    the survey it answers."""

    outcome: Outcome
    response: Response
    survey: SurveyInfo


def _now(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


#: SQLite has one writer at a time: the threads of a process take turns on this lock rather
#: than on SQLite's busy handler, whose growing sleeps (up to 100 ms each) make the tail.
_SQLITE_WRITER = threading.Lock()


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite, one thread of this process at a time."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with _SQLITE_WRITER, engine.begin() as conn:
        yield conn


def _ttl_days() -> float:
    """How long a survey without `expires_at` stays open: `survey_ttl_days` (14), else
    the link lifetime."""
    settings = get_settings()
    return float(getattr(settings, "survey_ttl_days", settings.link_ttl_days))


def find_survey(engine: Engine, survey_id: Any, contact_id: Any, *,
                now: datetime | None = None) -> SurveyInfo:
    """The survey `survey_id` sent to `contact_id` and still open; else the error saying why.

    A survey sent to someone else answers `WrongContact` (the web page shows it exactly like
    an unknown survey, so a link reveals nothing about other customers' surveys).
    """
    if not isinstance(survey_id, int) or isinstance(survey_id, bool) or survey_id < 1:
        raise SurveyNotFound(f"no survey {survey_id!r}: expected a positive integer id")
    if not isinstance(contact_id, str) or not contact_id:
        raise WrongContact(f"survey {survey_id}: the contact id {contact_id!r} is not valid")
    with engine.connect() as conn:
        row = conn.execute(
            select(SURVEYS.c.survey_id, SURVEYS.c.account_id, SURVEYS.c.contact_id,
                   SURVEYS.c.question, SURVEYS.c.status, SURVEYS.c.created_at,
                   SURVEYS.c.expires_at)
            .where(SURVEYS.c.survey_id == survey_id)).first()
    if row is None:
        raise SurveyNotFound(f"no survey {survey_id}")
    if row.status == "skipped":
        raise SurveyNotFound(f"survey {survey_id} was skipped and never sent")
    if row.contact_id != contact_id:
        raise WrongContact(f"survey {survey_id} was not sent to contact {contact_id}")
    expires = row.expires_at or row.created_at + timedelta(days=_ttl_days())
    if _now(now) >= expires:
        raise SurveyExpired(f"survey {survey_id} closed at {expires.isoformat()}")
    return SurveyInfo(row.survey_id, row.account_id, row.contact_id, row.question, expires)


def get_response(engine: Engine, survey_id: int) -> Response | None:
    """The response to `survey_id`, if any."""
    cols = [RESPONSES.c[f] for f in Response.__dataclass_fields__]
    with engine.connect() as conn:
        row = conn.execute(select(*cols).where(RESPONSES.c.survey_id == survey_id)).first()
    return None if row is None else Response(**row._asdict())


def check_rating(rating: Any) -> int:
    """`rating` as an int in 1..5, else `InvalidRating`."""
    if isinstance(rating, str) and rating.strip().isdigit():
        rating = int(rating.strip())
    if isinstance(rating, bool) or not isinstance(rating, int) or rating not in RATINGS:
        raise InvalidRating(f"invalid rating {rating!r}: expected 1, 2, 3, 4 or 5")
    return rating


def record_rating(engine: Engine, survey_id: int, contact_id: str, rating: int, *,
                  now: datetime | None = None) -> RatingResult:
    """Land `rating` as the response of `contact_id` to survey `survey_id`: created on the
    first click, changed by a different rating, unchanged by the same one."""
    rating = check_rating(rating)
    at = _now(now)
    survey = find_survey(engine, survey_id, contact_id, now=at)
    r = RESPONSES
    stmt = dialect_insert(engine, r).values(
        survey_id=survey.survey_id, account_id=survey.account_id, contact_id=contact_id,
        rating=rating, comment=None, first_rated_at=at, rated_at=at, commented_at=None,
        rating_changes=0, landed_at=at, updated_at=at)
    stmt = stmt.on_conflict_do_update(
        index_elements=[r.c.survey_id],
        set_={"rating": stmt.excluded.rating, "rated_at": stmt.excluded.rated_at,
              "rating_changes": r.c.rating_changes + 1,
              "updated_at": stmt.excluded.updated_at},
        where=r.c.rating != stmt.excluded.rating,
    ).returning(*(r.c[f] for f in Response.__dataclass_fields__))
    with _writing(engine) as conn:
        row = conn.execute(stmt).first()
    if row is None:  # the same rating again: the WHERE kept the row as it was
        response = get_response(engine, survey.survey_id)
        assert response is not None  # it exists (the conflict), and is never deleted
        return RatingResult("unchanged", response, survey)
    response = Response(**row._asdict())
    outcome: Outcome = "created" if response.rating_changes == 0 else "changed"
    log.info("survey %d: rating %d %s", survey.survey_id, rating, outcome)
    return RatingResult(outcome, response, survey)


def clean_comment(text: str) -> str:
    """The comment as stored: line breaks normalised to `\\n`, tabs to spaces, other control
    characters removed, surrounding blanks stripped; `CommentTooLong` or `EmptyComment` if
    it does not fit."""
    if not isinstance(text, str):
        raise EmptyComment(f"a comment must be text, not {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROL.sub("", text).strip()
    if not text:
        raise EmptyComment("the comment is empty")
    if len(text) > MAX_COMMENT_CHARS:
        raise CommentTooLong(len(text), MAX_COMMENT_CHARS)
    return text


def record_comment(engine: Engine, survey_id: int, contact_id: str, comment: str, *,
                   now: datetime | None = None) -> Response:
    """Store `comment` (see `clean_comment`) on the response of `contact_id` to `survey_id`;
    a later comment replaces the earlier one. The survey must be open and rated."""
    text = clean_comment(comment)
    at = _now(now)
    survey = find_survey(engine, survey_id, contact_id, now=at)
    r = RESPONSES
    with _writing(engine) as conn:
        row = conn.execute(
            update(r).where(r.c.survey_id == survey.survey_id, r.c.contact_id == contact_id)
            .values(comment=text, commented_at=at, updated_at=at)
            .returning(*(r.c[f] for f in Response.__dataclass_fields__))).first()
    if row is None:
        raise NotRated(f"survey {survey.survey_id} has no rating yet: rate it first")
    log.info("survey %d: comment of %d characters", survey.survey_id, len(text))
    return Response(**row._asdict())
