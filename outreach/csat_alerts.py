"""A CSAT rating of 1 or 2 alerts the account's CSM at once, not with the next digest.

`queue_low_rating_alerts(engine, survey_ids=[...])` is called by the survey page right after
it lands a rating (and again after a comment), and by the hourly `pulse_surveys` DAG over the
last `SWEEP_HOURS` as a sweep. Each low answer gets one outbox message, kind and template
`csat_alert`, keyed `csat_alert:{survey_id}`: the page and the sweep may both run, a crash
between the rating's commit and the alert's is caught by the next sweep, and neither can
queue it twice (the key), so each answer alerts exactly once.

The alert is CSM vocabulary (internal mail, not automated: no cap, no quiet hours, no
unsubscribe): the account, the contact, the question, the rating and the comment, escaped
like every value in a template. It goes to the account's `csm_email`; without a usable one,
to `csm_queue_email`; without that either, it is recorded `suppressed` with rule `no_csm`
(addressed to our own sender address, never sent), so that no intended message vanishes.

While the alert is still `queued`, a later call for the same survey refreshes it (a comment
written after the rating, or a changed low rating, goes with it); once it is claimed or sent,
the comment reaches the CSM with the next digest (outreach/checkins.py), as before.

Seam for the console: `low_rating_alerts` says *what* needs the CSM's attention
(`LowRatingAlert`, one per answer, `key` included); `alert_drafts` is the email channel. When
the console has tasks, a `tasks` channel fed by the same alerts and keyed by the same `key`
belongs beside it in `_deliver`, in the same transaction.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update

from pulse.core.settings import Settings, get_settings
from pulse.outreach.checkins import _plausible, csm_name
from pulse.outreach.links import account_url
from pulse.outreach.outbox import OUTBOX, Draft, insert_rows, outbox_row
from pulse.outreach.render import Renderer
from pulse.sql.schema import LOW_RATING, Account, Contact, Survey, SurveyResponse

log = logging.getLogger(__name__)

KIND = TEMPLATE = "csat_alert"
#: how far back the DAG's sweep looks for low answers without an alert
SWEEP_HOURS = 48
LABELS = {1: "Very dissatisfied", 2: "Dissatisfied"}


@dataclass(frozen=True)
class LowRatingAlert:
    """One answer rated `LOW_RATING` or less, with what its CSM needs to act on it."""

    survey_id: int
    account_id: str
    account_name: str | None
    csm_email: str  # as stored, lower-cased ("" when none)
    contact_id: str
    contact_name: str | None
    contact_email: str | None
    rating: int
    comment: str | None
    rated_at: datetime
    question: str | None
    trigger: str
    ticket_id: str | None
    incident_id: str | None

    @property
    def key(self) -> str:
        """The idempotency key of this answer's alert, in every channel."""
        return f"{KIND}:{self.survey_id}"

    def to_context(self) -> dict[str, Any]:
        return {"survey_id": self.survey_id, "account_id": self.account_id,
                "account_name": self.account_name, "url": account_url(self.account_id),
                "contact_id": self.contact_id, "contact_name": self.contact_name,
                "contact_email": self.contact_email, "rating": self.rating,
                "label": LABELS.get(self.rating, ""), "comment": self.comment,
                "rated_at": self.rated_at.isoformat(), "question": self.question,
                "trigger": self.trigger, "ticket_id": self.ticket_id,
                "incident_id": self.incident_id}


@dataclass
class AlertReport:
    """What `queue_low_rating_alerts` did."""

    found: int = 0  # low answers in scope
    queued: int = 0  # new alerts (queued, or recorded suppressed for want of a CSM)
    refreshed: int = 0  # still-queued alerts given the answer's current rating and comment
    already: int = 0  # alerted before, and already on their way

    def __str__(self) -> str:
        return (f"{self.found} low CSAT ratings: {self.queued} alerts queued, "
                f"{self.refreshed} refreshed, {self.already} already sent")


def low_rating_alerts(conn: Connection | Engine, *, survey_ids: Sequence[int] | None = None,
                      since: datetime | None = None) -> list[LowRatingAlert]:
    """The answers rated 1 or 2: those of `survey_ids`, or rated since `since`; one query."""
    r, s = SurveyResponse.__table__, Survey.__table__
    a, c = Account.__table__, Contact.__table__
    q = (select(r.c.survey_id, r.c.account_id, a.c.name.label("account_name"), a.c.csm_email,
                r.c.contact_id, c.c.name.label("contact_name"),
                c.c.email.label("contact_email"), r.c.rating, r.c.comment, r.c.rated_at,
                s.c.question, s.c.trigger, s.c.ticket_id, s.c.incident_id)
         .select_from(r.join(s, s.c.survey_id == r.c.survey_id)
                      .outerjoin(a, a.c.account_id == r.c.account_id)
                      .outerjoin(c, c.c.contact_id == r.c.contact_id))
         .where(r.c.rating <= LOW_RATING)
         .order_by(r.c.survey_id))
    if survey_ids is not None:
        q = q.where(r.c.survey_id.in_([int(x) for x in survey_ids]))
    if since is not None:
        q = q.where(r.c.rated_at >= since)
    if isinstance(conn, Engine):
        with conn.connect() as c2:
            rows = c2.execute(q).all()
    else:
        rows = conn.execute(q).all()
    return [LowRatingAlert(
        survey_id=int(x.survey_id), account_id=str(x.account_id),
        account_name=x.account_name, csm_email=(x.csm_email or "").strip().lower(),
        contact_id=str(x.contact_id), contact_name=x.contact_name,
        contact_email=x.contact_email, rating=int(x.rating), comment=x.comment,
        rated_at=x.rated_at if x.rated_at.tzinfo else x.rated_at.replace(tzinfo=UTC),
        question=x.question, trigger=str(x.trigger), ticket_id=x.ticket_id,
        incident_id=x.incident_id) for x in rows]


def alert_drafts(alerts: Sequence[LowRatingAlert], settings: Settings) -> list[Draft]:
    """The email channel: one draft per alert, to the CSM, else the CSM queue, else recorded
    suppressed (`no_csm`)."""
    queue_address = settings.csm_queue_email.strip().lower()
    drafts = []
    for alert in alerts:
        rule = detail = None
        if _plausible(alert.csm_email):
            to, to_name, via_queue = alert.csm_email, csm_name(alert.csm_email), False
        elif _plausible(queue_address):
            to, to_name, via_queue = queue_address, None, True
        else:
            to, to_name, via_queue = settings.sender_email, None, True
            rule = "no_csm"
            detail = (f"account {alert.account_id} has no usable csm_email "
                      f"({alert.csm_email!r}) and PULSE_CSM_QUEUE_EMAIL is not set")
        drafts.append(Draft(
            kind=KIND, idempotency_key=alert.key, template=TEMPLATE, to_email=to,
            to_name=to_name, account_id=alert.account_id, contact_id=None,  # to the CSM
            automated=False, urgent=False, rule=rule, rule_detail=detail,
            context={**alert.to_context(), "csm_name": to_name, "via_queue": via_queue}))
    return drafts


def _deliver(conn: Connection, alerts: Sequence[LowRatingAlert], settings: Settings,
             now: datetime, *, refresh: bool, report: AlertReport) -> None:
    """Write every channel's rows of `alerts` in the caller's transaction (today: email)."""
    renderer = Renderer(settings=settings, now=now)
    rows = [outbox_row(d, renderer, settings, now) for d in alert_drafts(alerts, settings)]
    written = insert_rows(conn, rows)
    report.queued += len(written)
    known = [r for r in rows if r["idempotency_key"] not in written]
    if known and refresh:
        o = OUTBOX.c
        stmt = (update(OUTBOX)
                .where(o.idempotency_key == bindparam("k"), o.status == "queued")
                .values(subject=bindparam("s"), context=bindparam("c", type_=o.context.type),
                        updated_at=now))
        result = conn.execute(stmt, [{"k": r["idempotency_key"], "s": r["subject"],
                                      "c": r["context"]} for r in known])
        refreshed = max(int(result.rowcount or 0), 0)
        report.refreshed += refreshed
        report.already += len(known) - refreshed
    else:
        report.already += len(known)


def queue_low_rating_alerts(engine: Engine, *, survey_ids: Sequence[int] | None = None,
                            since: datetime | None = None, now: datetime | None = None
                            ) -> AlertReport:
    """Alert the CSMs of the low answers of `survey_ids` (the survey page, which also
    refreshes an alert still queued), or of those rated since `since` (the sweep; default
    the last `SWEEP_HOURS`); idempotent per answer."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    if survey_ids is None and since is None:
        since = now - timedelta(hours=SWEEP_HOURS)
    report = AlertReport()
    with engine.begin() as conn:
        alerts = low_rating_alerts(conn, survey_ids=survey_ids, since=since)
        report.found = len(alerts)
        if alerts:
            _deliver(conn, alerts, settings, now, refresh=survey_ids is not None,
                     report=report)
    if report.found:
        log.info("csat alerts: %s", report)
    return report


__all__ = ["KIND", "SWEEP_HOURS", "AlertReport", "LowRatingAlert", "alert_drafts",
           "low_rating_alerts", "queue_low_rating_alerts"]
