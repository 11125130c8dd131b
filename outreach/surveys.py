"""CSAT surveys: when one is due, who must not get it (and why), and queueing it.

`plan_surveys(engine, now=)` finds every due trigger with a few set-based queries:

* **ticket**: a ticket whose status is `solved` (or `closed`, the state after solved) and
  whose resolution (`resolved_at`, else the row's `updated_at`) lies `survey_delay_hours`
  (24) before `now` or more, and no more than `survey_max_age_days` (7) beyond that. The
  status is read *now*: a ticket re-opened before the delay is not solved, so it is not due
  (and nothing is recorded; if it is solved again, the delay starts again). Key
  `ticket:{ticket_id}`; a ticket solved again after its survey is a new trigger
  (`ticket:{ticket_id}@{resolution}`) that the `duplicate_ticket` rule stops.
* **incident**: a resolved incident that *hit* the contact's account (`incident_impacts`),
  to each contact whose outage notice was sent (`outbox`, kind `outage_notice`, status sent
  or delivered), after the same delay. Key `incident:{incident_id}:{contact_id}`.
* **relationship** (off unless `relationship_survey_days` > 0): the admins and owners of
  every account who had no relationship survey in that many days. Key
  `relationship:{contact_id}:{YYYY-MM}`.

Triggers that already have a `surveys` row are not due again: a re-run with the same `now`
plans nothing. The fatigue rules are applied in one place (`apply_rules`), in this order,
and the first that holds is the skip reason recorded with the survey:

=================  =====================================================================
no_contact         the ticket names no contact, or one the warehouse does not know
duplicate_ticket   the ticket already had a survey (it was solved again)
opted_out          the contact opted out of email
suppressed         the contact's address is on the suppression list
churned            the account cancelled and did not come back
open_ticket        the contact has another ticket still open (or pending)
recontact          the contact had a survey queued in the last `recontact_days` (30), by
                   any trigger (one stopped by the outbox - opt-out, cap - does not count),
                   or an earlier one in this run: of several due at once the earliest is sent
invalid_address    the contact's address cannot be written to
=================  =====================================================================

`queue_due_surveys(engine, now=)` writes every planned survey as a `surveys` row (`queued`
or `skipped` with its reason and detail) and, for each queued one, an outbox message (kind
and template `csat_survey`, key `survey:{survey_key}`, automated, not urgent: quiet hours
and the per-contact cap apply when `outreach.outbox_send.send_due` sends it), in one
transaction, with the message id stored on the survey.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, and_, case, func, or_, select, update

from pulse.core.settings import Settings, get_settings
from pulse.core.times import utc_or_now
from pulse.models.outage import RESOLVED_STATUSES
from pulse.sql.db import dialect_insert, result_frame
from pulse.sql.schema import (
    Account,
    Contact,
    Incident,
    IncidentImpact,
    OutboxMessage,
    PurchaseEvent,
    Suppression,
    Survey,
    Ticket,
)

log = logging.getLogger(__name__)

KIND = TEMPLATE = "csat_survey"
CHANNEL = "email"
TRIGGERS = ("ticket", "incident", "relationship")
SKIP_REASONS = ("no_contact", "duplicate_ticket", "opted_out", "suppressed", "churned",
                "open_ticket", "recontact", "invalid_address")
SOLVED = ("solved", "closed")
OPEN = ("open", "pending")
PRIMARY_ROLES = ("admin", "owner")
#: outbox statuses of a notice that reached its contact
NOTICE_SENT = ("sent", "delivered")
#: outbox statuses that mean a queued survey never reached (or will never reach) the contact
NOT_DELIVERED = ("suppressed", "failed", "bounced")
RATINGS = {1: "Very dissatisfied", 2: "Dissatisfied", 3: "Neither satisfied nor dissatisfied",
           4: "Satisfied", 5: "Very satisfied"}
_STARTS = ("subscription_started", "renewed", "upgraded")

SURVEYS = Survey.__table__
TICKETS = Ticket.__table__
CONTACTS = Contact.__table__
OUTBOX = OutboxMessage.__table__

COLUMNS = ["survey_key", "trigger", "ticket_id", "incident_id", "account_id", "contact_id",
           "due_at", "question", "about", "subject", "title"]


@dataclass
class SurveyPlan:
    """Every survey due at `now`: `surveys` has one row per trigger with `status` (queued or
    skipped), `skip_reason` and `skip_detail`, plus what the email needs."""

    now: datetime
    surveys: pd.DataFrame

    @property
    def queued(self) -> pd.DataFrame:
        return self.surveys[self.surveys["status"] == "queued"]

    @property
    def skipped(self) -> pd.DataFrame:
        return self.surveys[self.surveys["status"] == "skipped"]

    @property
    def by_reason(self) -> Counter[str]:
        return Counter(self.skipped["skip_reason"].astype(str))

    @property
    def by_trigger(self) -> Counter[str]:
        return Counter(self.queued["trigger"].astype(str))


@dataclass
class SurveyReport:
    """What `queue_due_surveys` did."""

    now: datetime
    planned: int = 0
    queued: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> surveys
    by_trigger: Counter[str] = field(default_factory=Counter)  # queued surveys per trigger
    already_recorded: int = 0  # planned, but another run recorded them first
    survey_ids: list[int] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)
    dry_run: bool = False

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        triggers = ", ".join(f"{n} {t}" for t, n in sorted(self.by_trigger.items()))
        verb = "would queue" if self.dry_run else "queued"
        return (f"{self.now.isoformat(timespec='minutes')}: {self.planned} surveys due, "
                f"{verb} {self.queued}" + (f" ({triggers})" if triggers else "")
                + f", skipped {sum(self.skipped.values())}"
                + (f" ({skipped})" if skipped else "")
                + (f"; {self.already_recorded} already recorded" if self.already_recorded
                   else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "planned": self.planned, "queued": self.queued,
                "skipped": dict(self.skipped), "by_trigger": dict(self.by_trigger),
                "already_recorded": self.already_recorded, "survey_ids": self.survey_ids,
                "message_ids": self.message_ids, "dry_run": self.dry_run}


# --------------------------------------------------------------------------- helpers


def _frame(conn: Connection, query: Any) -> pd.DataFrame:
    result = conn.execute(query)
    return result_frame(result)


def _ts(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _quoted(text: Any) -> str:
    return "\u201c" + " ".join(str(text).split()) + "\u201d"


def ticket_question(ticket_id: str, subject: str | None) -> str:
    what = _quoted(subject) if subject and str(subject).strip() else f"#{ticket_id}"
    return f"How satisfied were you with the resolution of your ticket {what}?"


def incident_question(title: str | None) -> str:
    what = f"incident {_quoted(title)}" if title and str(title).strip() else "the incident"
    return f"How satisfied were you with our handling of {what}?"


def relationship_question(company: str) -> str:
    return f"How satisfied are you with {company} overall?"


def _compact(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- triggers


def _ticket_triggers(conn: Connection, now: datetime, s: Settings) -> pd.DataFrame:
    t = TICKETS.c
    delay = timedelta(hours=s.survey_delay_hours)
    due_before = now - delay
    oldest = due_before - timedelta(days=s.survey_max_age_days)
    resolved = func.coalesce(t.resolved_at, t.updated_at)
    past = (select(SURVEYS.c.ticket_id, func.max(SURVEYS.c.due_at).label("last_due"),
                   func.count(case((SURVEYS.c.status == "queued", 1))).label("queued_before"))
            .where(SURVEYS.c.ticket_id.is_not(None))
            .group_by(SURVEYS.c.ticket_id).subquery("past"))
    q = (select(t.ticket_id, t.account_id, t.contact_id, t.subject,
                resolved.label("resolved"), past.c.last_due, past.c.queued_before)
         .select_from(TICKETS.outerjoin(past, past.c.ticket_id == t.ticket_id))
         .where(t.status.in_(SOLVED), resolved <= due_before, resolved >= oldest))
    frame = _frame(conn, q)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS + ["queued_before"])
    frame["due_at"] = _ts(frame["resolved"]) + delay
    last_due = _ts(frame["last_due"])
    # A ticket with a survey is due again only if it was solved again after that survey.
    again = last_due.notna() & (frame["due_at"] > last_due)
    frame = frame[last_due.isna() | again].copy()
    again = again[frame.index]
    frame["survey_key"] = "ticket:" + frame["ticket_id"].astype(str)
    if again.any():
        frame.loc[again, "survey_key"] = (frame.loc[again, "survey_key"] + "@"
                                          + frame.loc[again, "due_at"].map(_compact)
                                          .astype(str))
    frame["trigger"] = "ticket"
    frame["incident_id"] = None
    frame["title"] = None
    frame["about"] = "ticket"
    frame["question"] = [ticket_question(i, sub) for i, sub in
                         zip(frame["ticket_id"], frame["subject"], strict=True)]
    frame["queued_before"] = frame["queued_before"].fillna(0).astype(int)
    return frame[COLUMNS + ["queued_before"]]


def _incident_triggers(conn: Connection, now: datetime, s: Settings) -> pd.DataFrame:
    i, im, o = Incident.__table__.c, IncidentImpact.__table__.c, OUTBOX.c
    delay = timedelta(hours=s.survey_delay_hours)
    due_before = now - delay
    oldest = due_before - timedelta(days=s.survey_max_age_days)
    notified = (select(o.incident_id, o.account_id, o.contact_id)
                .where(o.kind == "outage_notice", o.status.in_(NOTICE_SENT),
                       o.contact_id.is_not(None), o.incident_id.is_not(None))
                .distinct().subquery("notified"))
    q = (select(i.incident_id, i.title, i.resolved_at, notified.c.account_id,
                notified.c.contact_id)
         .select_from(Incident.__table__
                      .join(IncidentImpact.__table__, im.incident_id == i.incident_id)
                      .join(notified, and_(notified.c.incident_id == i.incident_id,
                                           notified.c.account_id == im.account_id)))
         .where(im.status == "hit", i.status.in_(RESOLVED_STATUSES),
                i.resolved_at.is_not(None), i.resolved_at <= due_before,
                i.resolved_at >= oldest))
    frame = _frame(conn, q)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    frame["due_at"] = _ts(frame["resolved_at"]) + delay
    frame["survey_key"] = ("incident:" + frame["incident_id"].astype(str) + ":"
                           + frame["contact_id"].astype(str))
    frame["trigger"] = "incident"
    frame["ticket_id"] = None
    frame["subject"] = None
    frame["about"] = "incident"
    frame["question"] = frame["title"].map(incident_question)
    return frame[COLUMNS]


def _relationship_triggers(conn: Connection, now: datetime, s: Settings) -> pd.DataFrame:
    every = s.relationship_survey_days
    if every <= 0:
        return pd.DataFrame(columns=COLUMNS)
    c = CONTACTS.c
    recent = (select(SURVEYS.c.contact_id)
              .where(SURVEYS.c.trigger == "relationship", SURVEYS.c.status == "queued",
                     SURVEYS.c.created_at > now - timedelta(days=every)))
    q = (select(c.contact_id, c.account_id)
         .where(func.lower(func.coalesce(c.role, "")).in_(PRIMARY_ROLES),
                c.contact_id.not_in(recent)))
    frame = _frame(conn, q)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    frame["survey_key"] = ("relationship:" + frame["contact_id"].astype(str) + ":"
                           + now.strftime("%Y-%m"))
    frame["trigger"] = "relationship"
    frame["due_at"] = pd.Timestamp(now)
    for col in ("ticket_id", "incident_id", "subject", "title"):
        frame[col] = None
    frame["about"] = "relationship"
    frame["question"] = relationship_question(s.company_name)
    return frame[COLUMNS]


def _known_keys(conn: Connection, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 1000):
        found |= set(conn.execute(select(SURVEYS.c.survey_key).where(
            SURVEYS.c.survey_key.in_(keys[start:start + 1000]))).scalars())
    return found


# --------------------------------------------------------------------------- facts and rules


def _facts(conn: Connection, contact_ids: list[str], account_ids: list[str], now: datetime,
           s: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per contact: address, name, time zone, opt-out, suppression, open tickets, last survey;
    per account: churned and its name."""
    c, t, o = CONTACTS.c, TICKETS.c, OUTBOX.c
    sup_t = Suppression.__table__
    sup = sup_t.c
    p, a = PurchaseEvent.__table__.c, Account.__table__.c
    open_tickets = (
        select(t.contact_id, func.count().label("open_tickets"),
               func.min(t.ticket_id).label("open_ticket_id"))
        .where(t.contact_id.in_(contact_ids), t.opened_at <= now,
               or_(t.status.in_(OPEN), and_(t.status.is_(None), t.resolved_at.is_(None))))
        .group_by(t.contact_id).subquery("open_t"))
    window = now - timedelta(days=s.recontact_days)
    last = (
        select(SURVEYS.c.contact_id, func.max(SURVEYS.c.created_at).label("last_survey_at"))
        .select_from(SURVEYS.outerjoin(OUTBOX, o.message_id == SURVEYS.c.message_id))
        .where(SURVEYS.c.contact_id.in_(contact_ids), SURVEYS.c.status == "queued",
               SURVEYS.c.created_at > window, SURVEYS.c.created_at <= now,
               or_(o.status.is_(None), o.status.not_in(NOT_DELIVERED)))
        .group_by(SURVEYS.c.contact_id).subquery("last_s"))
    q = (select(c.contact_id, c.email, c.name, c.timezone, c.opted_out,
                sup.reason.label("sup_reason"), open_tickets.c.open_tickets,
                open_tickets.c.open_ticket_id, last.c.last_survey_at)
         .select_from(CONTACTS
                      .outerjoin(sup_t, sup.email == func.lower(c.email))
                      .outerjoin(open_tickets, open_tickets.c.contact_id == c.contact_id)
                      .outerjoin(last, last.c.contact_id == c.contact_id))
         .where(c.contact_id.in_(contact_ids)))
    contacts = _frame(conn, q)
    billing = (
        select(p.account_id,
               func.max(case((p.kind == "cancelled", p.occurred_at))).label("last_cancel"),
               func.max(case((p.kind.in_(_STARTS), p.occurred_at))).label("last_start"))
        .where(p.account_id.in_(account_ids), p.occurred_at <= now)
        .group_by(p.account_id).subquery("billing"))
    accounts = _frame(conn, select(a.account_id, a.name.label("account_name"),
                                   billing.c.last_cancel, billing.c.last_start)
                      .select_from(Account.__table__.outerjoin(
                          billing, billing.c.account_id == a.account_id))
                      .where(a.account_id.in_(account_ids)))
    cancel, start = _ts(accounts["last_cancel"]), _ts(accounts["last_start"])
    accounts["churned"] = cancel.notna() & (start.isna() | (cancel > start))
    return contacts, accounts


def apply_rules(due: pd.DataFrame, contacts: pd.DataFrame, accounts: pd.DataFrame,
                s: Settings) -> pd.DataFrame:
    """`due` with `status`, `skip_reason` and `skip_detail`: the fatigue rules, in order."""
    frame = (due.merge(contacts, on="contact_id", how="left")
             .merge(accounts, on="account_id", how="left"))
    n = len(frame)
    reason = pd.Series([None] * n, index=frame.index, dtype=object)
    detail = pd.Series([None] * n, index=frame.index, dtype=object)

    def mark(mask: pd.Series, name: str, text: pd.Series | str) -> None:
        mask = mask.fillna(False).astype(bool) & reason.isna()
        reason[mask] = name
        detail[mask] = text[mask] if isinstance(text, pd.Series) else text

    contact = frame["contact_id"].fillna("").astype(str)
    mark(frame["email"].isna(),
         "no_contact", pd.Series(
             ["the ticket names no contact" if not c else f"contact {c} is not known"
              for c in contact], index=frame.index))
    queued_before = (frame["queued_before"] if "queued_before" in frame
                     else pd.Series(0, index=frame.index)).fillna(0).astype(int)
    mark(queued_before > 0, "duplicate_ticket",
         "ticket " + frame["ticket_id"].fillna("").astype(str)
         + " was solved again; it already had its survey")
    mark(frame["opted_out"], "opted_out", "contact " + contact + " opted out of email")
    mark(frame["sup_reason"].notna(), "suppressed",
         "the address is on the suppression list (" + frame["sup_reason"].fillna("")
         .astype(str) + ")")
    mark(frame["churned"], "churned", "account " + frame["account_id"].astype(str)
         + " cancelled on " + _ts(frame["last_cancel"]).dt.strftime("%Y-%m-%d").fillna("?"))
    open_count = frame["open_tickets"].fillna(0).astype(int)
    mark(open_count > 0, "open_ticket",
         "contact " + contact + " has " + open_count.astype(str) + " open ticket(s), e.g. "
         + frame["open_ticket_id"].fillna("").astype(str))
    last = _ts(frame["last_survey_at"])
    mark(last.notna(), "recontact", f"a survey within {s.recontact_days} days (queued "
         + last.dt.strftime("%Y-%m-%d %H:%M").fillna("?") + " UTC)")
    # Within this run: the earliest due survey of each contact goes, the others wait.
    order = {t: i for i, t in enumerate(TRIGGERS)}
    frame["_t"] = frame["trigger"].map(order)
    left = frame[reason.isna()].sort_values(["contact_id", "due_at", "_t", "survey_key"],
                                            kind="stable")
    first = left.groupby("contact_id", sort=False)["survey_key"].transform("first")
    later = left.index[left["survey_key"] != first]
    chosen = dict(zip(left["contact_id"], first, strict=True))
    mark(frame.index.to_series().isin(later), "recontact", pd.Series(
        [f"another survey goes to this contact in this run ({chosen.get(c, '')})"
         for c in frame["contact_id"]], index=frame.index))
    frame["status"] = ["skipped" if r is not None else "queued" for r in reason]
    frame["skip_reason"] = reason
    frame["skip_detail"] = detail
    return frame.drop(columns=["_t"])


# --------------------------------------------------------------------------- plan and queue


def plan_surveys(engine: Engine, *, now: datetime | None = None,
                 settings: Settings | None = None) -> SurveyPlan:
    """Every survey due at `now` that has no `surveys` row yet, with the rules' verdicts."""
    now = utc_or_now(now)
    s = settings or get_settings()
    with engine.connect() as conn:
        parts = [f for f in (_ticket_triggers(conn, now, s), _incident_triggers(conn, now, s),
                             _relationship_triggers(conn, now, s)) if not f.empty]
        if not parts:
            return SurveyPlan(now, pd.DataFrame(columns=COLUMNS + ["status", "skip_reason",
                                                                   "skip_detail"]))
        due = pd.concat(parts, ignore_index=True)
        due = due.drop_duplicates("survey_key").reset_index(drop=True)
        known = _known_keys(conn, due["survey_key"].tolist())
        due = due[~due["survey_key"].isin(known)].reset_index(drop=True)
        if due.empty:
            return SurveyPlan(now, due.assign(status=[], skip_reason=[], skip_detail=[]))
        due["due_at"] = _ts(due["due_at"])
        contact_ids = sorted({str(x) for x in due["contact_id"].dropna()})
        account_ids = sorted({str(x) for x in due["account_id"].dropna()})
        contacts, accounts = _facts(conn, contact_ids, account_ids, now, s)
    planned = apply_rules(due, contacts, accounts, s)
    planned["contact_id"] = planned["contact_id"].fillna("")
    return SurveyPlan(now, planned.sort_values(["due_at", "survey_key"]).reset_index(drop=True))


def _none(value: Any) -> Any:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _draft(row: Any, s: Settings, expires_at: datetime, now: datetime) -> Any:
    from pulse.outreach.outbox import Draft

    name = _none(row.name)
    return Draft(
        kind=KIND, idempotency_key=f"survey:{row.survey_key}", template=TEMPLATE,
        to_email=str(row.email), to_name=None if name is None else str(name),
        account_id=str(row.account_id), contact_id=str(row.contact_id),
        incident_id=_none(row.incident_id), urgent=False, automated=True,
        context={"survey_id": None,  # set once the survey row has its id
                 "contact_id": str(row.contact_id), "trigger": str(row.trigger),
                 "question": str(row.question), "ticket_id": _none(row.ticket_id),
                 "ticket_subject": _none(row.subject), "incident_id": _none(row.incident_id),
                 "incident_title": _none(row.title),
                 "account_name": _none(row.account_name),
                 "contact_name": None if name is None else str(name),
                 "timezone": _none(row.timezone), "issued_at": now.isoformat(),
                 "expires_at": expires_at.isoformat()},
    )


def queue_due_surveys(engine: Engine, *, now: datetime | None = None,
                      dry_run: bool = False) -> SurveyReport:
    """Plan the due surveys and record them: skipped ones with the reason, the others with
    their outbox message, in one transaction (see the module docstring). Idempotent."""
    from pulse.core.errors import InvalidDraftError
    from pulse.outreach.outbox import insert_rows, outbox_row
    from pulse.outreach.render import Renderer

    now = utc_or_now(now)
    s = get_settings()
    plan = plan_surveys(engine, now=now, settings=s)
    frame = plan.surveys.copy()
    report = SurveyReport(now, planned=len(frame), dry_run=dry_run)
    if frame.empty:
        log.info("surveys: %s", report)
        return report
    expires_at = now + timedelta(days=s.survey_ttl_days)
    renderer = Renderer(settings=s, now=now)
    outbox_rows: dict[str, dict[str, Any]] = {}
    for row in frame[frame["status"] == "queued"].itertuples():
        try:
            outbox_rows[row.survey_key] = outbox_row(_draft(row, s, expires_at, now), renderer,
                                                     s, now)
        except InvalidDraftError as exc:
            frame.loc[row.Index, ["status", "skip_reason", "skip_detail"]] = [
                "skipped", "invalid_address", str(exc)]
    report.skipped.update(Counter(frame.loc[frame["status"] == "skipped", "skip_reason"]))
    report.by_trigger.update(Counter(frame.loc[frame["status"] == "queued", "trigger"]))
    report.queued = int((frame["status"] == "queued").sum())
    if dry_run:
        log.info("surveys (dry run): %s", report)
        return report
    records = [{
        "survey_key": r.survey_key, "trigger": r.trigger, "ticket_id": _none(r.ticket_id),
        "incident_id": _none(r.incident_id), "account_id": str(r.account_id),
        "contact_id": str(r.contact_id or ""), "channel": CHANNEL, "question": r.question,
        "status": r.status, "skip_reason": _none(r.skip_reason),
        "skip_detail": _none(r.skip_detail), "due_at": r.due_at.to_pydatetime(),
        "created_at": now, "expires_at": expires_at if r.status == "queued" else None,
        "message_id": None} for r in frame.itertuples()]
    with engine.begin() as conn:
        stmt = (dialect_insert(conn, SURVEYS).on_conflict_do_nothing(index_elements=["survey_key"])
                .returning(SURVEYS.c.survey_id, SURVEYS.c.survey_key, SURVEYS.c.status))
        inserted = conn.execute(stmt, records).all() if records else []
        report.already_recorded = len(records) - len(inserted)
        ids = {key: sid for sid, key, status in inserted if status == "queued"}
        values = []
        for key, sid in ids.items():
            row = outbox_rows[key]
            row["context"] = {**row["context"], "survey_id": int(sid)}
            values.append(row)
        if values:
            messages = insert_rows(conn, values)
            links = [{"sid": ids[key], "mid": messages[f"survey:{key}"]} for key in ids
                     if f"survey:{key}" in messages]
            if links:
                from sqlalchemy import bindparam

                conn.execute(update(SURVEYS).where(SURVEYS.c.survey_id == bindparam("sid"))
                             .values(message_id=bindparam("mid")), links)
            report.survey_ids = sorted(int(x) for x in ids.values())
            report.message_ids = sorted(int(x["mid"]) for x in links)
    if report.already_recorded:  # another run got there first: count only what we wrote
        mine = {key for _, key, _ in inserted}
        frame = frame[frame["survey_key"].isin(mine)]
        report.skipped = Counter(frame.loc[frame["status"] == "skipped", "skip_reason"])
        report.by_trigger = Counter(frame.loc[frame["status"] == "queued", "trigger"])
        report.queued = int((frame["status"] == "queued").sum())
    log.info("surveys: %s", report)
    return report


def list_surveys(engine: Engine, *, status: str | None = None, reason: str | None = None,
                 trigger: str | None = None, limit: int | None = 100) -> pd.DataFrame:
    """Survey rows, newest first, with their outbox status and any rating."""
    from pulse.sql.schema import SurveyResponse

    r = SurveyResponse.__table__.c
    stmt = (select(*SURVEYS.c, OUTBOX.c.status.label("outbox_status"),
                   OUTBOX.c.rule.label("outbox_rule"), OUTBOX.c.sent_at, r.rating, r.rated_at)
            .select_from(SURVEYS.outerjoin(OUTBOX, OUTBOX.c.message_id == SURVEYS.c.message_id)
                         .outerjoin(SurveyResponse.__table__,
                                    r.survey_id == SURVEYS.c.survey_id))
            .order_by(SURVEYS.c.survey_id.desc()))
    if status:
        stmt = stmt.where(SURVEYS.c.status == status)
    if reason:
        stmt = stmt.where(SURVEYS.c.skip_reason == reason)
    if trigger:
        stmt = stmt.where(SURVEYS.c.trigger == trigger)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return _frame(conn, stmt)


__all__ = ["KIND", "RATINGS", "SKIP_REASONS", "TRIGGERS", "SurveyPlan", "SurveyReport",
           "apply_rules", "incident_question", "list_surveys", "plan_surveys",
           "queue_due_surveys", "relationship_question", "ticket_question"]
