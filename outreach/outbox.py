"""The outbox: every intended message is a row before anything is sent.

`queue` writes drafts as `queued` rows, keyed by an idempotency key (a second attempt with
the same key is a no-op). `send_due` (outreach/outbox_send.py) then, in this order:

1. **reconciles** rows a crash left in `sending` with the transport that claimed them, once
   their lease has run out: accepted -> `sent` (with the provider's id), never seen -> back
   to `queued`;
2. takes the **due** queued rows (`not_before` empty or past) and applies the rules at send
   time, set-based, batch by batch (state may have changed since queueing):

   =============  =============================================================  =========
   rule           stops a message when                                           urgent?
   =============  =============================================================  =========
   opted_out      the contact opted out of everything (`contacts.opted_out`)     stops
   suppressed     the address is on the suppression list (bounce, spam report,   stops
                  unsubscribe, manual, ...)
   churned        automated mail to an account whose last cancellation was not   stops
                  followed by a new subscription
   quiet_hours    automated mail inside quiet hours in the contact's own time     passes
                  zone: the row stays `queued` with `not_before` = the end of
                  quiet hours (it waits, it is not dropped)
   outage_week    a check-in to an account that an outage notice reached (any     passes
                  of its contacts) in the last `OUTAGE_HOLD_DAYS` (7) days, or
                  that one goes to in this run: `suppressed`
   outage_day     any other automated mail to a contact an outage notice          passes
                  reached on the same day, the contact's local day (its time
                  zone, else UTC), or goes to in this run: `suppressed`
   cap            the contact (or address) already had `cap_per_contact`          passes
                  automated messages in the last `cap_window_days`, counting
                  those earlier in this run: `suppressed` (a late check-in is
                  worse than none)
   =============  =============================================================  =========

   Collisions between programmes (issue 13) are decided here, at send time, not when a
   programme plans its mail: so they hold whatever order the programmes run in, for mail
   queued before the notice and for check-ins a CSM approves days after they were drafted.
   Outage notices are *critical* (`CRITICAL_KINDS`, and any urgent message): this rule
   never stops them, and they are what it looks for: a critical message handed over
   (`sending`, `sent`, `delivered`; a bounce reached nobody), or due in this run and not
   stopped by an earlier rule. Internal mail (`automated=False`) is not concerned. These
   rules come before the cap (a contact told of an outage twice has often used up the cap:
   the outage is the reason worth recording); what they hold back counts for no cap.

   A planner may also write a row already `suppressed` with its rule (`Draft.rule`): a
   check-in for an account without a named CSM is recorded with rule `no_csm` (and listed
   in the CSM queue's digest), so that every intended message is either sent or recorded.

   Urgent messages (outage notices of major or critical incidents) pass the cap and quiet
   hours but never an opt-out or the suppression list; they do count towards the cap of
   the messages after them.
3. **claims** the rest (`sending`, `claimed_at`, `attempts + 1`, the transport's name, a
   lease: `lease_owner`, `lease_expires_at`) and commits, then renders them and calls the
   transport chunk by chunk (after renewing the chunk's lease), recording each chunk's
   results as soon as it returns: `sent` (+ provider id), a retryable failure back to
   `queued` (with `last_error`), a permanent one `failed`.

A crash at any point leaves every row either untouched, claimed (reconciled once its lease
ran out, or at once when its owner process is gone) or recorded. Runs may overlap: the
rules and claim are serialised per batch and a live lease is never taken over (see
outreach/outbox_send.py); `stale_after` applies to claims made without a lease.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, Engine, and_, case, func, literal, or_, select

from pulse.core import locales
from pulse.core.errors import (
    HeaderInjectionError,
    InvalidArgumentError,
    InvalidDraftError,
    OutboxError,
    TemplateError,
)
from pulse.core.settings import Settings, get_settings
from pulse.core.times import utc_or_now
from pulse.outreach.render import Renderer, one_line, template_spec
from pulse.sql.db import dialect_insert
from pulse.sql.schema import Contact, OutboxMessage, PurchaseEvent, Suppression

log = logging.getLogger(__name__)

OUTBOX = OutboxMessage.__table__
CONTACTS = Contact.__table__
SUPPRESSIONS = Suppression.__table__
PURCHASES = PurchaseEvent.__table__

STATUSES = ("draft", "queued", "sending", "sent", "suppressed", "failed", "delivered", "bounced")
RULES = ("opted_out", "suppressed", "churned", "quiet_hours", "cap", "no_csm", "outage_week",
         "outage_day")
#: statuses of messages that reached (or may have reached) the provider: they count for the cap
HANDED_OVER = ("sending", "sent", "delivered", "bounced")
#: what "reached the contact" means for the collision rules (a bounce reached nobody)
REACHED = ("sending", "sent", "delivered")
#: critical messages: no collision rule stops them (so are urgent ones of any kind)
CRITICAL_KINDS = ("outage_notice",)
#: kinds an outage notice holds back from its whole account for `OUTAGE_HOLD_DAYS`
AFTER_OUTAGE_KINDS = ("checkin",)
OUTAGE_HOLD_DAYS = 7
SUPPRESSION_REASONS = ("bounce", "spamreport", "unsubscribe", "dropped", "manual")
_STARTS = ("subscription_started", "renewed", "upgraded")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+$")
_LINE_BREAK = re.compile(r"[\r\n\u2028\u2029\x85]")


@dataclass(frozen=True)
class Draft:
    """A message someone intends to send; `queue` turns it into an outbox row."""

    kind: str
    idempotency_key: str
    template: str
    to_email: str
    context: dict[str, Any]
    to_name: str | None = None
    account_id: str | None = None
    contact_id: str | None = None
    incident_id: str | None = None
    urgent: bool = False
    automated: bool = True
    from_email: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    # Set by a planner that already knows the message must not go (a check-in without a
    # named CSM: `no_csm`): the row is written `suppressed` with this rule, never sent.
    rule: str | None = None
    rule_detail: str | None = None
    # Written as a `draft` that a person approves before it is queued (outreach/drafts.py).
    hold: bool = False


@dataclass
class QueueReport:
    queued: int = 0
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- queue


def _address(value: str | None, what: str, key: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidDraftError(f"draft {key!r} has no {what}")
        return None
    if _LINE_BREAK.search(value):
        raise HeaderInjectionError(
            f"refused draft {key!r}: {what} {value!r} contains a line break (header injection)")
    address = value.strip().lower()
    if not _ADDRESS.match(address):
        raise InvalidDraftError(
            f"invalid {what} in draft {key!r}: expected one address like name@example.com "
            f"(not {value!r})")
    return address


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise InvalidArgumentError(f"a template context cannot hold a {type(value).__name__} ({value!r})")


def outbox_row(draft: Draft, renderer: Renderer, settings: Settings, now: datetime
               ) -> dict[str, Any]:
    """The outbox row of a draft (subject rendered, addresses checked); raises
    `InvalidDraftError` / `HeaderInjectionError` for a draft that cannot be sent."""
    key = draft.idempotency_key
    if not key or len(key) > 255:
        raise InvalidDraftError(f"idempotency key must be 1-255 characters (not {key!r})")
    if not draft.kind or len(draft.kind) > 32:
        raise InvalidDraftError(f"draft {key!r}: kind must be 1-32 characters "
                                f"(not {draft.kind!r})")
    if draft.rule is not None and draft.rule not in RULES:
        raise InvalidDraftError(f"draft {key!r}: invalid rule {draft.rule!r}: expected one of "
                                f"{', '.join(RULES)}")
    try:
        template_spec(draft.template)
    except TemplateError as exc:
        raise InvalidDraftError(f"draft {key!r}: {exc}") from None
    try:
        context = json.loads(json.dumps(draft.context or {}, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidDraftError(f"draft {key!r}: {exc}") from None
    to_name = one_line(draft.to_name) or None
    from_name = one_line(draft.from_name or settings.sender_name) or None
    subject = renderer.subject(draft.template, context, to_name=to_name)
    return {
        "idempotency_key": key,
        "kind": draft.kind,
        "account_id": draft.account_id,
        "contact_id": draft.contact_id,
        "incident_id": draft.incident_id,
        "to_email": _address(draft.to_email, "to_email", key, required=True),
        "to_name": to_name,
        "from_email": _address(draft.from_email or settings.sender_email, "from_email", key,
                               required=True),
        "from_name": from_name,
        "reply_to": _address(draft.reply_to, "reply_to", key, required=False),
        "template": draft.template,
        "subject": subject,
        "context": context,
        "urgent": bool(draft.urgent),
        "automated": bool(draft.automated),
        "status": "suppressed" if draft.rule else "draft" if draft.hold else "queued",
        "rule": draft.rule,
        "rule_detail": one_line(draft.rule_detail) if draft.rule else None,
        "queued_at": now,
        "updated_at": now,
        "attempts": 0,
    }


def queue(engine: Engine, drafts: Sequence[Draft], *, now: datetime | None = None,
          chunk_size: int = 1000) -> QueueReport:
    """Write drafts as `queued` outbox rows in one transaction; known keys are skipped.

    Subjects are rendered now and stored. Addresses are lower-cased; a line break in an
    address raises `HeaderInjectionError` (nothing is queued); line breaks and other control
    characters in names and subjects are folded into spaces.
    """
    now = utc_or_now(now)
    settings = get_settings()
    renderer = Renderer(settings=settings, now=now)
    rows: dict[str, dict[str, Any]] = {}
    for draft in drafts:  # rendering subjects is per draft by nature
        if draft.idempotency_key not in rows:
            rows[draft.idempotency_key] = outbox_row(draft, renderer, settings, now)
    report = QueueReport(duplicates=len(drafts) - len(rows))
    with engine.begin() as conn:
        ids = insert_rows(conn, list(rows.values()), chunk_size=chunk_size)
    report.queued = len(ids)
    report.duplicates += len(rows) - len(ids)
    log.info("queued %d messages (%d duplicates)", report.queued, report.duplicates)
    return report


def insert_rows(conn: Connection, rows: Sequence[dict[str, Any]], *, chunk_size: int = 1000
                ) -> dict[str, int]:
    """Insert outbox rows (from `outbox_row`) inside the caller's transaction, skipping known
    idempotency keys; returns {key: message_id} of the rows written now. Callers that must
    write something else in the same transaction (a survey and its message) use this."""
    ids: dict[str, int] = {}
    for start in range(0, len(rows), chunk_size):
        stmt = (dialect_insert(conn, OUTBOX).on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(OUTBOX.c.message_id, OUTBOX.c.idempotency_key))
        ids.update({k: int(m) for m, k in conn.execute(stmt, rows[start:start + chunk_size])})
    return ids


# --------------------------------------------------------------------------- suppressions


def add_suppression(engine: Engine | Connection, email: str, *, reason: str, source: str,
                    detail: str | None = None, now: datetime | None = None) -> bool:
    """Put an address on the suppression list; True if it was not there yet (idempotent)."""
    address = (email or "").strip().lower()
    if not address or _LINE_BREAK.search(address) or not _ADDRESS.match(address):
        raise InvalidDraftError(f"invalid email address {email!r}: expected name@example.com")
    if reason not in SUPPRESSION_REASONS:
        raise InvalidDraftError(f"invalid suppression reason {reason!r}: expected one of "
                                f"{', '.join(SUPPRESSION_REASONS)}")
    row = {"email": address, "reason": reason, "source": source, "detail": detail,
           "created_at": utc_or_now(now)}

    def run(conn: Connection) -> bool:
        stmt = dialect_insert(conn, SUPPRESSIONS).values(**row).on_conflict_do_nothing(index_elements=["email"])
        return len(conn.execute(stmt.returning(SUPPRESSIONS.c.email)).all()) == 1

    if isinstance(engine, Connection):
        return run(engine)
    with engine.begin() as conn:
        return run(conn)


def list_suppressions(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(SUPPRESSIONS).order_by(SUPPRESSIONS.c.created_at.desc(),
                                                           SUPPRESSIONS.c.email)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in SUPPRESSIONS.columns])


def list_messages(engine: Engine, *, status: str | None = None, kind: str | None = None,
                  limit: int | None = 100) -> pd.DataFrame:
    """Outbox rows, newest first (without the context and bodies)."""
    cols = [c for c in OUTBOX.columns if c.name != "context"]
    stmt = select(*cols).order_by(OUTBOX.c.message_id.desc())
    if status:
        stmt = stmt.where(OUTBOX.c.status == status)
    if kind:
        stmt = stmt.where(OUTBOX.c.kind == kind)
    if limit:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in cols])


# --------------------------------------------------------------------------- rules


def _clock(value: str, what: str) -> int:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        from pulse.core.errors import ConfigError

        raise ConfigError(f"invalid {what} {value!r}: expected HH:MM") from None
    return parsed.hour * 60 + parsed.minute


def _zone(name: Any) -> tuple[str, ZoneInfo]:
    """The IANA zone `name` (else UTC, as `locales.zone` falls back) and the name it goes by."""
    found = locales.zone(name)
    return found.key, found


def quiet_until(now: datetime, tz: str | None, settings: Settings) -> datetime | None:
    """The end of quiet hours (UTC) if `now` falls inside them in `tz`, else None."""
    start = _clock(settings.quiet_start, "quiet_start")
    end = _clock(settings.quiet_end, "quiet_end")
    if start == end:
        return None
    _, zone = _zone(tz or "UTC")
    local = now.astimezone(zone)
    minutes = local.hour * 60 + local.minute
    if start > end:  # wraps midnight (21:00-08:00)
        if not (minutes >= start or minutes < end):
            return None
        day = local.date() + timedelta(days=1 if minutes >= start else 0)
    else:
        if not (start <= minutes < end):
            return None
        day = local.date()
    until = datetime.combine(day, time(end // 60, end % 60), tzinfo=zone)
    return until.astimezone(UTC)


def _due_ids(conn: Connection, now: datetime, limit: int | None) -> list[int]:
    o = OUTBOX.c
    # urgent, then critical messages first: a notice is decided before the mail it holds back
    stmt = (select(o.message_id)
            .where(o.status == "queued", or_(o.not_before.is_(None), o.not_before <= now))
            .order_by(o.urgent.desc(), case((o.kind.in_(CRITICAL_KINDS), 0), else_=1),
                      o.queued_at, o.message_id))
    if limit:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt).scalars())


def _facts(conn: Connection, ids: list[int], now: datetime, window_start: datetime
           ) -> pd.DataFrame:
    """The due rows with what the rules need: contact, suppression, churn, cap count."""
    o = OUTBOX.c
    c = CONTACTS.c
    s = SUPPRESSIONS.c
    p = PURCHASES.c
    due = select(o.account_id).where(o.message_id.in_(ids)).scalar_subquery()
    billing = (
        select(p.account_id,
               func.max(case((p.kind == "cancelled", p.occurred_at))).label("last_cancel"),
               func.max(case((p.kind.in_(_STARTS), p.occurred_at))).label("last_start"))
        .where(p.account_id.in_(due), p.occurred_at <= now)
        .group_by(p.account_id)
        .subquery("billing")
    )
    prev = OUTBOX.alias("prev")
    pv = prev.c
    handed = func.coalesce(pv.sent_at, pv.claimed_at)
    prior = (
        select(func.count(func.distinct(pv.message_id)))
        .where(or_(and_(o.contact_id.is_not(None), pv.contact_id == o.contact_id),
                   pv.to_email == o.to_email),
               pv.automated.is_(True), pv.status.in_(HANDED_OVER),
               handed > window_start, handed <= now)
        .scalar_subquery()
    )
    # the last critical message that reached each account of the batch (7 days) and each
    # person, by contact id and by address (2 days: enough to hold any local day, which
    # `_decide` compares in the contact's time zone); one grouped pass over the few recent
    # critical messages of the batch's accounts and people
    batch = (select(o.account_id, o.contact_id, o.to_email).where(o.message_id.in_(ids))
             .cte("batch"))
    recent = (
        select(pv.account_id, pv.contact_id, pv.to_email, handed.label("at"))
        .where(*reached_critical(pv, now - timedelta(days=OUTAGE_HOLD_DAYS), now),
               or_(pv.account_id.in_(select(batch.c.account_id)),
                   pv.contact_id.in_(select(batch.c.contact_id)),
                   pv.to_email.in_(select(batch.c.to_email))))
        .cte("recent_critical")
    )
    rc = recent.c
    day = now - timedelta(days=2)
    by_account = (select(rc.account_id, func.max(rc.at).label("at"))
                  .group_by(rc.account_id).subquery("notice_account"))
    by_contact = (select(rc.contact_id, func.max(rc.at).label("at")).where(rc.at > day)
                  .group_by(rc.contact_id).subquery("notice_contact"))
    by_email = (select(rc.to_email, func.max(rc.at).label("at")).where(rc.at > day)
                .group_by(rc.to_email).subquery("notice_email"))
    stmt = (
        select(o.message_id, o.kind, o.contact_id, o.account_id, o.to_email, o.urgent,
               o.automated, o.queued_at, c.opted_out, c.timezone,
               s.reason.label("sup_reason"), s.source.label("sup_source"),
               s.created_at.label("sup_at"), billing.c.last_cancel,
               case((and_(billing.c.last_cancel.is_not(None),
                          or_(billing.c.last_start.is_(None),
                              billing.c.last_cancel > billing.c.last_start)), literal(True)),
                    else_=literal(False)).label("churned"),
               prior.label("prior"), by_account.c.at.label("account_notice_at"),
               by_contact.c.at.label("contact_notice_at"), by_email.c.at.label("email_notice_at"))
        .select_from(OUTBOX.outerjoin(CONTACTS, c.contact_id == o.contact_id)
                     .outerjoin(SUPPRESSIONS, s.email == o.to_email)
                     .outerjoin(billing, billing.c.account_id == o.account_id)
                     .outerjoin(by_account, by_account.c.account_id == o.account_id)
                     .outerjoin(by_contact, by_contact.c.contact_id == o.contact_id)
                     .outerjoin(by_email, by_email.c.to_email == o.to_email))
        .where(o.message_id.in_(ids), o.status == "queued")
    )
    rows = conn.execute(stmt).mappings().all()
    frame = pd.DataFrame(rows, columns=list(stmt.selected_columns.keys()))
    if frame.empty:
        return frame
    # the person's last notice, by contact id or by address
    frame["contact_notice_at"] = pd.concat(
        [pd.to_datetime(frame[col], utc=True) for col in ("contact_notice_at", "email_notice_at")],
        axis=1).max(axis=1)
    frame = frame.sort_values(["urgent", "queued_at", "message_id"],
                              ascending=[False, True, True], kind="stable")
    return frame.reset_index(drop=True)


def _decide(frame: pd.DataFrame, now: datetime, settings: Settings,
            run_counts: Counter[str],
            run_notified: tuple[set[str], set[str]] | None = None) -> pd.DataFrame:
    """Add `rule`, `rule_detail`, `not_before` and `decision` (send, suppress, defer)."""
    n = len(frame)
    rule = pd.Series([None] * n, index=frame.index, dtype=object)
    detail = pd.Series([None] * n, index=frame.index, dtype=object)
    automated = frame["automated"].astype(bool)
    urgent = frame["urgent"].astype(bool)

    def mark(mask: pd.Series, name: str, text: pd.Series | str) -> None:
        mask = mask & rule.isna()
        rule[mask] = name
        detail[mask] = text[mask] if isinstance(text, pd.Series) else text

    mark(frame["opted_out"].fillna(False).astype(bool), "opted_out",
         "contact " + frame["contact_id"].fillna("?").astype(str) + " opted out of email")
    sup_at = pd.to_datetime(frame["sup_at"], utc=True).dt.strftime("%Y-%m-%d").fillna("?")
    mark(frame["sup_reason"].notna(), "suppressed",
         frame["to_email"].astype(str) + " is on the suppression list ("
         + frame["sup_reason"].fillna("").astype(str) + " via "
         + frame["sup_source"].fillna("").astype(str) + " on " + sup_at + ")")
    cancel = pd.to_datetime(frame["last_cancel"], utc=True).dt.strftime("%Y-%m-%d").fillna("?")
    mark(automated & frame["churned"].astype(bool), "churned",
         "account " + frame["account_id"].fillna("?").astype(str) + " cancelled on " + cancel)

    # quiet hours: one computation per distinct time zone, not per row
    not_before = pd.Series([None] * n, index=frame.index, dtype=object)
    zones = frame["timezone"].fillna("UTC").astype(str)
    candidates = automated & ~urgent & rule.isna()
    window = f"{settings.quiet_start}-{settings.quiet_end}"
    for tz in zones[candidates].unique():
        until = quiet_until(now, tz, settings)
        if until is None:
            continue
        name, zone = _zone(tz)
        local = until.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        in_zone = candidates & (zones == tz)
        mark(in_zone, "quiet_hours", f"quiet hours {window} in {name}: waits until {local}")
        not_before[in_zone] = until

    # one person per key: a contact's messages go under the first address they have here,
    # so mail to that bare address counts with them
    emails = frame["to_email"].astype(str)
    key = emails.groupby(frame["contact_id"]).transform("first").where(
        frame["contact_id"].notna(), emails)
    # after an outage notice (issue 13): the more specific reason, so before the cap
    week, day = _collisions(frame, now, key, zones, candidates=automated & rule.isna(),
                            going=(urgent | frame["kind"].isin(CRITICAL_KINDS)) & rule.isna(),
                            earlier=run_notified)
    mark(week.notna(), "outage_week", week)
    mark(day.notna(), "outage_day", day)

    # the cap: earlier messages in the window plus those earlier in this run
    sendable = rule.isna()
    earlier = (frame.loc[sendable & automated].groupby(key[sendable & automated]).cumcount()
               .reindex(frame.index).fillna(0).astype(int))
    before_run = key.map(lambda k: run_counts.get(k, 0)) if run_counts else 0
    used = frame["prior"].fillna(0).astype(int) + before_run + earlier
    cap = settings.cap_per_contact
    mark(sendable & automated & ~urgent & (used >= cap), "cap",
         used.astype(str) + f" automated messages to this contact in the last "
         f"{settings.cap_window_days} days (cap {cap})")

    out = frame.assign(rule=rule, rule_detail=detail, not_before=not_before, key=key)
    out["decision"] = "send"
    out.loc[out["rule"].notna(), "decision"] = "suppress"
    out.loc[out["rule"] == "quiet_hours", "decision"] = "defer"
    return out


def reached_critical(cols: Any, since: datetime, until: datetime) -> list[Any]:
    """The conditions on outbox columns `cols` (a table or alias's `.c`) of a critical message
    (an outage notice, or anything urgent) that reached its recipient in (since, until]: what
    holds back a check-in (`outage_week`) and the contact's other mail (`outage_day`)."""
    handed = func.coalesce(cols.sent_at, cols.claimed_at)
    return [or_(cols.urgent.is_(True), cols.kind.in_(CRITICAL_KINDS)),
            cols.status.in_(REACHED), handed > since, handed <= until]


def last_critical(conn: Connection, accounts: Sequence[str], until: datetime) -> pd.Series:
    """When a critical message last reached each of `accounts` in the `OUTAGE_HOLD_DAYS` days
    up to `until`, by account (the accounts none reached are absent)."""
    if not accounts:
        return pd.Series(dtype="datetime64[ns, UTC]")
    o = OUTBOX.c
    handed = func.coalesce(o.sent_at, o.claimed_at)
    rows = conn.execute(
        select(o.account_id, func.max(handed))
        .where(o.account_id.in_(list(accounts)),
               *reached_critical(o, until - timedelta(days=OUTAGE_HOLD_DAYS), until))
        .group_by(o.account_id)).all()
    return pd.Series(pd.to_datetime([r[1] for r in rows], utc=True),
                     index=[r[0] for r in rows], dtype="datetime64[ns, UTC]")


def outage_week_detail(account_ids: pd.Series, at: pd.Series) -> pd.Series:
    """The `outage_week` rule's words for the check-ins held back because an outage notice
    reached their account at `at` (UTC timestamps, aligned with `account_ids`)."""
    at = pd.to_datetime(at, utc=True)
    until = (at + pd.Timedelta(days=OUTAGE_HOLD_DAYS)).dt.strftime("%Y-%m-%d %H:%M UTC")
    return ("an outage notice reached account " + account_ids.astype(str) + " on "
            + at.dt.strftime("%Y-%m-%d %H:%M UTC")
            + f": no check-in for {OUTAGE_HOLD_DAYS} days, until " + until)


def _collisions(frame: pd.DataFrame, now: datetime, key: pd.Series, zones: pd.Series, *,
                candidates: pd.Series, going: pd.Series,
                earlier: tuple[set[str], set[str]] | None = None
                ) -> tuple[pd.Series, pd.Series]:
    """The rule details of the mail an outage notice holds back (None where none does):
    `outage_week` (check-ins to its account for `OUTAGE_HOLD_DAYS`) and `outage_day`
    (anything else to its contact on the contact's local day). `going`: the critical rows of
    this batch that nothing stopped so far; `candidates`: the rows these rules may stop;
    `earlier`: the accounts and people (keys) earlier batches of a dry run would notify."""
    run_accounts, run_people = earlier or (set(), set())
    critical = frame["urgent"].astype(bool) | frame["kind"].isin(CRITICAL_KINDS)
    late = candidates & ~critical
    none = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    week, day = none.copy(), none.copy()
    account = frame["account_id"]

    at = pd.to_datetime(frame["account_notice_at"], utc=True)
    held = late & frame["kind"].isin(AFTER_OUTAGE_KINDS) & account.notna()
    run_accounts = run_accounts | set(account[going].dropna())
    now_run = held & account.isin(run_accounts)
    before = held & at.notna() & ~now_run
    ids = account.fillna("?").astype(str)
    week[now_run] = ("an outage notice goes to account " + ids[now_run] + " in this run: "
                     f"no check-in for {OUTAGE_HOLD_DAYS} days")
    week[before] = outage_week_detail(ids[before], at[before])

    # the contact's own day: one conversion per distinct time zone
    at = pd.to_datetime(frame["contact_notice_at"], utc=True)
    run_people = run_people | set(key[going])
    now_run = late & key.isin(run_people)
    day[now_run] = ("an outage notice goes to this contact in this run: nothing else the "
                    "same day")
    seen = late & at.notna() & ~now_run
    for tz in zones[seen].unique():
        name, zone = _zone(tz)
        here = seen & (zones == tz)
        local = at[here].dt.tz_convert(name).dt.date
        today = local == now.astimezone(zone).date()
        same = today[today].index
        day[same] = ("an outage notice reached this contact today ("
                     + local[same].astype(str) + f" in {name}): nothing else the same day")
    return week, day


__all__ = ["CRITICAL_KINDS", "Draft", "HeaderInjectionError", "InvalidDraftError", "OutboxError",
           "OUTAGE_HOLD_DAYS", "QueueReport", "RULES", "STATUSES", "add_suppression",
           "last_critical", "list_messages", "list_suppressions", "outage_week_detail", "queue",
           "quiet_until", "reached_critical"]
