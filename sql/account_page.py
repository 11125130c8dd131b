"""One account's page of the console (`/accounts/{id}`), in SQL.

Every read is one query for the account, grouped or limited in the database:

* `health_parts`: the account's health per scored date with each scorecard measure's part of
  it (`health_measures.contribution`: its points times its share of the weights used, so the
  parts of a date add up to its health), for the stacked chart;
* `churn_history`: the churn model's probability per scored date;
* `timeline`: everything known about the account, newest first, by kind (`KINDS`): weekly
  usage and errors, billing events, tickets, mentions with their sentiment, incidents that hit
  it, every message sent or suppressed with the rule that stopped it, survey answers, notes
  and actions (the console's activity and the playbooks' tasks). Each kind is one query
  ordered and limited in SQL; a page of the merged timeline reads at most `offset + size + 1`
  rows of each kind;
* `contacts`: the account's contacts with their role, their last activity (usage or ticket)
  and whether they opted out or their address is suppressed;
* `checkin_drafts`: the account's check-ins waiting for their CSM's approval.

`assign_csm` changes the account's CSM, with its activity row and audit entry in one
transaction. The accounts feed (`pulse ingest`) stays the source of truth: a later landing
that carries another CSM for the account replaces the console's choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    Engine,
    Float,
    and_,
    cast,
    distinct,
    func,
    or_,
    select,
    union,
    update,
)

from pulse.sql import audit
from pulse.sql.db import result_frame
from pulse.sql.feature_sources import date_day
from pulse.sql.schema import (
    LOW_RATING,
    Account,
    AccountActivity,
    AccountHealth,
    ChurnScore,
    Contact,
    HealthMeasure,
    Incident,
    IncidentImpact,
    Mention,
    OutboxMessage,
    PlaybookTask,
    PurchaseEvent,
    Suppression,
    Survey,
    SurveyResponse,
    TextInsight,
    Ticket,
    UsageDaily,
    UsageDailyUser,
)

#: the timeline's kinds, in the order the filter offers them, with their words
KINDS: dict[str, str] = {
    "usage": "Weekly usage and errors",
    "billing": "Billing",
    "tickets": "Tickets",
    "mentions": "Mentions",
    "incidents": "Incidents",
    "messages": "Messages",
    "surveys": "Survey answers",
    "notes": "Notes and actions",
}
PAGE_SIZE = 30
MAX_OFFSET = 3000  # deeper than any CSM reads; bounds the rows each kind reads
HISTORY_DAYS = 180  # the charts' span
SNIPPET = 280  # characters of a ticket's body or a mention shown in the timeline

A, ACT, H = Account.__table__, AccountActivity.__table__, AccountHealth.__table__
HM, CS = HealthMeasure.__table__, ChurnScore.__table__
P, T, M = PurchaseEvent.__table__, Ticket.__table__, Mention.__table__
DU = UsageDailyUser.__table__
INC, IMP = Incident.__table__, IncidentImpact.__table__
OB, SV, SR = OutboxMessage.__table__, Survey.__table__, SurveyResponse.__table__
TI, C, SUP, PT = (TextInsight.__table__, Contact.__table__, Suppression.__table__,
                  PlaybookTask.__table__)
_EPOCH = date(1970, 1, 1)


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


# --------------------------------------------------------------------------- charts


def health_parts(engine: Engine, account_id: str, *, days: int = HISTORY_DAYS,
                 until: date | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(health, parts): the account's health per scored date in the last `days` up to its
    latest (as_of, score, band, scorecard), and one row per date and measure (as_of, measure,
    feature, value, points, weight, part) where `part` is the measure's share of the health
    (0 when the measure was left out that day)."""
    from pulse.sql.health import shown

    latest = select(func.max(H.c.as_of)).where(H.c.account_id == account_id, shown(H.c.as_of))
    if until is not None:
        latest = latest.where(H.c.as_of <= until)
    with engine.connect() as conn:
        last = conn.execute(latest).scalar()
    cols = ["as_of", "score", "band", "scorecard"]
    if last is None:
        return pd.DataFrame(columns=cols), pd.DataFrame(
            columns=["as_of", "measure", "feature", "value", "points", "weight", "part"])
    since = last - timedelta(days=days - 1)
    health = _frame(engine, select(H.c.as_of, H.c.score, H.c.band, H.c.scorecard)
                    .where(H.c.account_id == account_id, H.c.as_of >= since,
                           H.c.as_of <= last).order_by(H.c.as_of))
    parts = _frame(engine, select(HM.c.as_of, HM.c.measure, HM.c.feature, HM.c.value,
                                  HM.c.points, HM.c.weight,
                                  func.coalesce(HM.c.contribution, 0.0).label("part"))
                   .where(HM.c.account_id == account_id, HM.c.as_of >= since,
                          HM.c.as_of <= last).order_by(HM.c.as_of, HM.c.measure))
    health["score"] = pd.to_numeric(health["score"], errors="coerce").astype("float64")
    for col in ("value", "points", "weight", "part"):
        parts[col] = pd.to_numeric(parts[col], errors="coerce").astype("float64")
    return health, parts


def churn_history(engine: Engine, account_id: str, since: date) -> pd.DataFrame:
    """The churn model's probability of the account per scored date from `since`."""
    frame = _frame(engine, select(CS.c.as_of, CS.c.probability, CS.c.model_version)
                   .where(CS.c.account_id == account_id, CS.c.as_of >= since)
                   .order_by(CS.c.as_of))
    frame["probability"] = pd.to_numeric(frame["probability"], errors="coerce")
    return frame


# --------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class Item:
    """One line of the timeline; `tone` is a word shown as a label (never colour alone)."""

    at: datetime
    kind: str
    title: str
    detail: str = ""
    tone: str = ""
    who: str = ""


def _at(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str):
        return _at(datetime.fromisoformat(value))
    raise TypeError(f"not an instant: {value!r}")


def _snip(text: Any, limit: int = SNIPPET) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _num(v: Any, digits: int = 0) -> str:
    return "—" if v is None else f"{float(v):,.{digits}f}"


def _usage(engine: Engine, acc: str, n: int) -> list[Item]:
    """The account's weekly usage, from the daily rollups (sql/rollups.py): the same for
    usage landed as events or as daily aggregates."""
    d, du = UsageDaily.__table__, UsageDailyUser.__table__
    # Monday weeks: day 4 since 1970-01-01 (1970-01-05) was a Monday
    week_d = ((date_day(d.c.day) + 3) // 7).label("week")
    week_u = ((date_day(du.c.day) + 3) // 7).label("week")
    weeks = (select(week_d, func.max(d.c.last_at).label("last_at"),
                    cast(func.sum(d.c.events), Float).label("events"),
                    cast(func.sum(d.c.errors), Float).label("errors"))
             .where(d.c.account_id == acc).group_by(week_d).subquery("weeks"))
    users = (select(week_u, func.count(distinct(du.c.contact_id)).label("users"))
             .where(du.c.account_id == acc).group_by(week_u).subquery("week_users"))
    query = (select(weeks.c.week, weeks.c.last_at, weeks.c.events, weeks.c.errors,
                    func.coalesce(users.c.users, 0))
             .select_from(weeks.outerjoin(users, users.c.week == weeks.c.week))
             .order_by(weeks.c.week.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for w, last_at, events, errors, users in conn.execute(query):
            start = _EPOCH + timedelta(days=int(w) * 7 - 3)
            events, errors = float(events or 0), float(errors or 0)
            share = f" ({100 * errors / events:.1f}% of events)" if events else ""
            out.append(Item(_at(last_at), "usage",
                            f"Week of {start.isoformat()}: {_num(events)} events, "
                            f"{_num(errors)} errors{share}",
                            f"{int(users or 0)} active user{'s' if users != 1 else ''}",
                            "errors" if events and errors / events >= 0.05 else ""))
    return out


_BILLING_WORDS = {"payment_failed": "payment failed", "payment_succeeded": "payment succeeded",
                  "subscription_started": "subscription started", "renewed": "renewed",
                  "downgrade": "downgrade", "upgrade": "upgrade", "cancelled": "cancelled",
                  "refund": "refund"}


def _billing(engine: Engine, acc: str, n: int) -> list[Item]:
    query = (select(P.c.occurred_at, P.c.kind, P.c.amount,
                    func.coalesce(P.c.currency, A.c.currency), P.c.plan, P.c.mrr_after)
             .select_from(P.outerjoin(A, A.c.account_id == P.c.account_id))
             .where(P.c.account_id == acc)
             .order_by(P.c.occurred_at.desc(), P.c.event_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for at, kind, amount, currency, plan, mrr_after in conn.execute(query):
            words = _BILLING_WORDS.get(kind, str(kind).replace("_", " "))
            detail = "; ".join(x for x in (
                f"plan {plan}" if plan else "",
                f"MRR after {_num(mrr_after, 2)} {currency or ''}".strip()
                if mrr_after is not None else "") if x)
            out.append(Item(_at(at), "billing",
                            f"{words.capitalize()}: {_num(amount, 2)} {currency or ''}".strip(),
                            detail, "failed" if kind == "payment_failed" else ""))
    return out


def _tickets(engine: Engine, acc: str, n: int) -> list[Item]:
    query = (select(T.c.opened_at, T.c.ticket_id, T.c.subject, T.c.body, T.c.status,
                    T.c.priority, T.c.channel, T.c.resolved_at, TI.c.sentiment)
             .select_from(T.outerjoin(TI, and_(TI.c.item_type == "ticket",
                                               TI.c.item_id == T.c.ticket_id)))
             .where(T.c.account_id == acc)
             .order_by(T.c.opened_at.desc(), T.c.ticket_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for (at, tid, subject, body, status, priority, channel, resolved,
             sentiment) in conn.execute(query):
            state = ", ".join(x for x in (
                status or "", f"priority {priority}" if priority else "",
                f"by {channel}" if channel else "",
                f"resolved {_at(resolved).date().isoformat()}" if resolved else "") if x)
            out.append(Item(_at(at), "tickets", f"Ticket {tid}" + (f": {_snip(subject, 160)}" if subject else ""),
                            "; ".join(x for x in (state, _snip(body)) if x),
                            sentiment or ""))
    return out


def _mention_ids(acc: str) -> Any:
    handles = union(select(A.c.x_handle).where(A.c.account_id == acc,
                                               A.c.x_handle.is_not(None)),
                    select(C.c.x_handle).where(C.c.account_id == acc,
                                               C.c.x_handle.is_not(None))).subquery()
    return or_(M.c.account_id == acc,
               and_(M.c.account_id.is_(None),
                    M.c.author_handle.in_(select(handles.c.x_handle))))


def _mentions(engine: Engine, acc: str, n: int) -> list[Item]:
    query = (select(M.c.created_at, M.c.platform, M.c.author_handle, M.c.text,
                    TI.c.sentiment)
             .select_from(M.outerjoin(TI, and_(TI.c.item_type == "mention",
                                               TI.c.item_id == M.c.mention_id)))
             .where(_mention_ids(acc))
             .order_by(M.c.created_at.desc(), M.c.mention_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for at, platform, author, text, sentiment in conn.execute(query):
            out.append(Item(_at(at), "mentions", f"@{author} on {platform}", _snip(text),
                            sentiment or "not scored", author))
    return out


def _incidents(engine: Engine, acc: str, n: int) -> list[Item]:
    at = func.coalesce(IMP.c.first_affected_at, INC.c.started_at)
    query = (select(at.label("at"), INC.c.incident_id, INC.c.title, INC.c.impact,
                    INC.c.status, IMP.c.failed_events, IMP.c.total_events,
                    IMP.c.affected_users)
             .select_from(IMP.join(INC, INC.c.incident_id == IMP.c.incident_id))
             .where(IMP.c.account_id == acc, IMP.c.status == "hit")
             .order_by(at.desc(), INC.c.incident_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for when, iid, title, impact, status, failed, total, users in conn.execute(query):
            out.append(Item(_at(when), "incidents", f"Incident {iid}: {_snip(title, 160)}",
                            f"{_num(failed)} of {_num(total)} events failed for "
                            f"{int(users or 0)} user{'s' if users != 1 else ''}; "
                            f"impact {impact or 'unknown'}, {status}", "hit"))
    return out


_MESSAGE_WORDS = {"checkin": "Check-in", "outage_notice": "Outage notice",
                  "survey": "Survey", "csat_survey": "Survey", "csm_digest": "CSM digest"}


def _messages(engine: Engine, acc: str, n: int) -> list[Item]:
    at = func.coalesce(OB.c.sent_at, OB.c.queued_at)
    query = (select(at.label("at"), OB.c.message_id, OB.c.kind, OB.c.to_email, OB.c.subject,
                    OB.c.status, OB.c.rule, OB.c.rule_detail)
             .where(OB.c.account_id == acc)
             .order_by(at.desc(), OB.c.message_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for when, _mid, kind, to, subject, status, rule, rule_detail in conn.execute(query):
            words = _MESSAGE_WORDS.get(kind, str(kind).replace("_", " ").capitalize())
            if status == "suppressed":
                detail = f"suppressed by the rule {rule or 'unknown'}" + (
                    f": {_snip(rule_detail, 200)}" if rule_detail else "")
            elif status == "draft":
                detail = "a draft waiting for approval"
            else:
                detail = str(status) + (f" (rule {rule}: {_snip(rule_detail, 200)})"
                                        if rule else "")
            out.append(Item(_at(when), "messages", f"{words} to {to}: {_snip(subject, 160)}",
                            detail, str(status)))
    return out


def _surveys(engine: Engine, acc: str, n: int) -> list[Item]:
    query = (select(SR.c.rated_at, SR.c.rating, SR.c.comment, SR.c.contact_id, SV.c.trigger,
                    C.c.name, C.c.email)
             .select_from(SR.outerjoin(SV, SV.c.survey_id == SR.c.survey_id)
                          .outerjoin(C, C.c.contact_id == SR.c.contact_id))
             .where(SR.c.account_id == acc)
             .order_by(SR.c.rated_at.desc(), SR.c.survey_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for at, rating, comment, cid, trigger, name, email in conn.execute(query):
            out.append(Item(_at(at), "surveys",
                            f"Rated {rating} of 5" + (f" after a {trigger}" if trigger else ""),
                            f"“{_snip(comment, 600)}”" if comment else "no comment",
                            "low rating" if rating is not None and rating <= LOW_RATING
                            else "", name or email or cid or ""))
    return out


_ACTIVITY_WORDS = {"call": "Call logged", "meeting": "Meeting logged", "note": "Note",
                   "handled": "Marked handled", "snooze": "Snoozed",
                   "assign": "CSM assigned", "checkin": "Check-in approved"}


def _notes(engine: Engine, acc: str, n: int) -> list[Item]:
    acts = (select(ACT.c.at, ACT.c.kind, ACT.c.note, ACT.c.actor)
            .where(ACT.c.account_id == acc)
            .order_by(ACT.c.at.desc(), ACT.c.activity_id.desc()).limit(n))
    tasks = (select(PT.c.created_at, PT.c.title, PT.c.owner, PT.c.state, PT.c.outcome,
                    PT.c.skip_reason, PT.c.closed_at, PT.c.closed_by, PT.c.due_date)
             .where(PT.c.account_id == acc)
             .order_by(PT.c.created_at.desc(), PT.c.task_id.desc()).limit(n))
    out = []
    with engine.connect() as conn:
        for at, kind, note, actor in conn.execute(acts):
            out.append(Item(_at(at), "notes", _ACTIVITY_WORDS.get(kind, str(kind)),
                            note or "", kind, actor))
        for (at, title, owner, state, outcome, skip, closed_at, closed_by,
             due) in conn.execute(tasks):
            detail = f"owner {owner}, due {due.isoformat()}"
            if state == "done":
                detail += f"; done {_at(closed_at).date().isoformat()} by {closed_by}: {outcome}"
            elif state == "skipped":
                detail += f"; skipped by {closed_by}: {skip}"
            out.append(Item(_at(at), "notes", f"Playbook task: {title}", detail,
                            f"task {state}"))
    return out


_SOURCES = {"usage": _usage, "billing": _billing, "tickets": _tickets,
            "mentions": _mentions, "incidents": _incidents, "messages": _messages,
            "surveys": _surveys, "notes": _notes}


def timeline(engine: Engine, account_id: str, *, kinds: list[str] | None = None,
             page: int = 1, size: int | None = None) -> tuple[list[Item], bool]:
    """(the items of page `page`, newest first; whether an older page exists) of the kinds
    asked for (default: all); `size` items a page (default `PAGE_SIZE`)."""
    size = size or PAGE_SIZE
    chosen = [k for k in KINDS if kinds is None or k in kinds]
    offset = min(max(page - 1, 0) * size, MAX_OFFSET)
    need = offset + size + 1
    items: list[Item] = []
    for kind in chosen:
        items.extend(_SOURCES[kind](engine, account_id, need))
    items.sort(key=lambda i: i.at, reverse=True)
    return items[offset:offset + size], len(items) > offset + size


# --------------------------------------------------------------------------- contacts


def contacts(engine: Engine, account_id: str) -> list[dict[str, Any]]:
    """The account's contacts: name, email, role, last activity (their latest usage or
    ticket), opted out, and the suppression of their address if any."""
    # the per-contact daily rollups (sql/rollups.py) keep each day's last use: no event scan,
    # and an account whose usage comes as a daily feed shows it too
    used = (select(DU.c.contact_id, func.max(DU.c.last_at).label("last_used"))
            .where(DU.c.account_id == account_id)
            .group_by(DU.c.contact_id).subquery("used"))
    wrote = (select(T.c.contact_id, func.max(T.c.opened_at).label("last_ticket"))
             .where(T.c.account_id == account_id, T.c.contact_id.is_not(None))
             .group_by(T.c.contact_id).subquery("wrote"))
    query = (select(C.c.contact_id, C.c.name, C.c.email, C.c.role, C.c.opted_out,
                    used.c.last_used, wrote.c.last_ticket,
                    SUP.c.reason.label("suppressed"))
             .select_from(C.outerjoin(used, used.c.contact_id == C.c.contact_id)
                          .outerjoin(wrote, wrote.c.contact_id == C.c.contact_id)
                          .outerjoin(SUP, SUP.c.email == func.lower(func.trim(C.c.email))))
             .where(C.c.account_id == account_id).order_by(C.c.name, C.c.contact_id))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for r in rows:
        seen = [x for x in (r["last_used"], r["last_ticket"]) if x is not None]
        r["last_activity"] = max(_at(x) for x in seen) if seen else None
        r["last_activity_kind"] = None if not seen else (
            "used the product" if r["last_used"] is not None
            and _at(r["last_used"]) == r["last_activity"] else "opened a ticket")
    return rows


# --------------------------------------------------------------------------- drafts, CSM


def checkin_drafts(engine: Engine, account_id: str) -> list[dict[str, Any]]:
    """The account's check-ins waiting for approval, oldest first."""
    query = (select(OB.c.message_id, OB.c.to_email, OB.c.to_name, OB.c.subject, OB.c.queued_at,
                    OB.c.context)
             .where(OB.c.account_id == account_id, OB.c.status == "draft")
             .order_by(OB.c.message_id))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def assign_csm(engine: Engine, account_id: str, csm_email: str, *, actor: str, reason: str,
               address: str | None = None) -> str | None:
    """Make `csm_email` the account's CSM (audited, with an activity row); the previous
    CSM's email."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        before = conn.execute(select(A.c.csm_email).where(A.c.account_id == account_id)
                              ).scalar_one()
        conn.execute(update(A).where(A.c.account_id == account_id)
                     .values(csm_email=csm_email, updated_at=now))
        conn.execute(ACT.insert().values(
            account_id=account_id, kind="assign", actor=actor, at=now,
            note=f"from {before or 'nobody'} to {csm_email}: {reason}"))
        audit.record(conn, actor=actor, action="assign_csm", target=account_id, reason=reason,
                     detail={"from": before, "to": csm_email}, address=address, at=now)
    return before


def record_checkin(engine: Engine, account_id: str, message_id: int, action: str, *,
                   actor: str, note: str, address: str | None = None) -> None:
    """The activity row and audit entry of a draft check-in edited or approved."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if action == "approve_checkin":
            conn.execute(ACT.insert().values(account_id=account_id, kind="checkin",
                                             actor=actor, at=now, note=note or None))
        audit.record(conn, actor=actor, action=action, target=account_id, reason=note or None,
                     detail={"message_id": message_id}, address=address, at=now)
