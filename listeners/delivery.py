"""Delivery events from SendGrid's Event Webhook: kept once, then applied to the outbox and the
suppression list.

`record_events` works on the whole posted batch at once: every event is validated (a bad one is
rejected with its reason, never crashing the batch), new events are inserted into
`delivery_events` (a repeat `sg_event_id` is ignored), and only the new ones change anything:

=====================  =======================================  ==========================
event                  outbox status (by custom arg outbox_id)  suppression (by address)
=====================  =======================================  ==========================
delivered              sending/sent -> delivered                -
bounce (type bounce)   sending/sent/delivered -> bounced        bounce
bounce (type blocked)  unchanged (recorded)                     -
dropped                sending/sent -> failed                   dropped, when SendGrid says
                                                                the address bounced,
                                                                unsubscribed or reported spam
spamreport             unchanged                                spamreport
unsubscribe,           unchanged                                unsubscribe
group_unsubscribe
processed, deferred,   unchanged (recorded)                     -
open, click, ...
=====================  =======================================  ==========================

A suppression, once written, is never overwritten here (the first reason stays).
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, or_, select, update

from pulse.sql.db import dialect_insert
from pulse.sql.schema import DeliveryEvent, OutboxMessage, Suppression

log = logging.getLogger(__name__)

EVENTS = DeliveryEvent.__table__
OUTBOX = OutboxMessage.__table__
SUPPRESSIONS = Suppression.__table__

KNOWN_EVENTS = frozenset({
    "processed", "deferred", "delivered", "bounce", "dropped", "open", "click", "spamreport",
    "unsubscribe", "group_unsubscribe", "group_resubscribe",
})
#: `dropped` reasons that mean the address itself must not be mailed again.
SUPPRESSING_DROP_REASONS = ("bounced address", "unsubscribed address", "spam reporting address")
_EARLIEST = datetime(2009, 1, 1, tzinfo=UTC).timestamp()  # SendGrid's events are younger
_MAX_DETAIL_KEYS = 64


@dataclass
class DeliverySummary:
    """What one batch of events did."""

    received: int = 0
    recorded: int = 0  # new events stored
    duplicates: int = 0  # already stored (same sg_event_id)
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why events were rejected
    by_event: dict[str, int] = field(default_factory=dict)  # new events per type
    status_updates: dict[str, int] = field(default_factory=dict)  # outbox rows moved
    suppressions_added: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class _Event:
    event_id: str
    event: str
    email: str
    message_id: int | None
    provider_message_id: str | None
    occurred_at: datetime
    detail: dict[str, Any]


def validate_event(raw: Any) -> _Event | str:
    """The event, or why it cannot be used."""
    if not isinstance(raw, dict):
        return "event is not a JSON object"
    event_id = raw.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id.strip():
        return "missing sg_event_id"
    if len(event_id) > 128:
        return "sg_event_id longer than 128 characters"
    kind = raw.get("event")
    if not isinstance(kind, str) or not kind:
        return "missing event"
    if kind not in KNOWN_EVENTS:
        return f"unknown event {kind[:24]!r}"
    addr = raw.get("email")
    if not isinstance(addr, str) or "@" not in addr or len(addr) > 254:
        return "missing or invalid email"
    ts = raw.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) \
            or ts < _EARLIEST or ts > 4_102_444_800:  # 2100-01-01
        return "missing or invalid timestamp"
    message_id: int | None = None
    outbox = raw.get("outbox_id")
    if outbox is not None:
        try:
            message_id = int(str(outbox))
        except ValueError:
            return f"invalid outbox_id {str(outbox)[:32]!r}"
        if message_id <= 0 or message_id > 2**31 - 1:
            return f"invalid outbox_id {str(outbox)[:32]!r}"
    provider = raw.get("sg_message_id")
    provider = provider[:128] if isinstance(provider, str) and provider else None
    detail = dict(list(raw.items())[:_MAX_DETAIL_KEYS])
    return _Event(event_id.strip(), kind, addr.strip(), message_id, provider,
                  datetime.fromtimestamp(float(ts), UTC), detail)


def record_events(engine: Engine, events: Sequence[Any], *,
                  now: datetime | None = None) -> DeliverySummary:
    """Store new events and apply them to the outbox and the suppression list (one
    transaction)."""
    now = now or datetime.now(UTC)
    summary = DeliverySummary(received=len(events))
    reasons: Counter[str] = Counter()
    good: dict[str, _Event] = {}
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, str):
            reasons[ev] += 1
            continue
        if ev.event_id in good:
            summary.duplicates += 1
            continue
        good[ev.event_id] = ev
    summary.rejected = sum(reasons.values())
    summary.reasons = dict(reasons)
    if reasons:
        log.warning("rejected %d delivery event(s): %s", summary.rejected, dict(reasons))
    if not good:
        return summary
    with engine.begin() as conn:
        new = _store_new(conn, list(good.values()), now)
        summary.duplicates += len(good) - len(new)
        summary.recorded = len(new)
        summary.by_event = dict(Counter(e.event for e in new))
        summary.status_updates = _apply_status(conn, new, now)
        summary.suppressions_added = _apply_suppressions(conn, new, now)
    log.info("delivery events: %d new, %d repeats, %d rejected; status %s; %d suppression(s)",
             summary.recorded, summary.duplicates, summary.rejected, summary.status_updates,
             summary.suppressions_added)
    return summary


def _store_new(conn: Connection, events: list[_Event], now: datetime) -> list[_Event]:
    ids = [e.event_id for e in events]
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        known.update(conn.execute(
            select(EVENTS.c.event_id).where(EVENTS.c.event_id.in_(ids[start:start + 500]))
        ).scalars())
    fresh = [e for e in events if e.event_id not in known]
    if not fresh:
        return []
    rows = [{"event_id": e.event_id, "message_id": e.message_id, "event": e.event,
             "email": e.email[:254], "provider_message_id": e.provider_message_id,
             "occurred_at": e.occurred_at, "detail": e.detail, "received_at": now}
            for e in fresh]
    # A concurrent post of the same event loses quietly here (and changes nothing below twice
    # that is not idempotent: the status updates are guarded, suppressions insert-or-ignore).
    conn.execute(dialect_insert(conn, EVENTS).on_conflict_do_nothing(index_elements=["event_id"]), rows)
    return fresh


_TRANSITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # event -> (new status, from statuses)
    "delivered": ("delivered", ("sending", "sent")),
    "bounce": ("bounced", ("sending", "sent", "delivered")),
    "dropped": ("failed", ("sending", "sent")),
}


def _apply_status(conn: Connection, events: Iterable[_Event], now: datetime) -> dict[str, int]:
    moves: dict[str, dict[int, _Event]] = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        if e.message_id is None or e.event not in _TRANSITIONS:
            continue
        if e.event == "bounce" and str(e.detail.get("type", "bounce")).lower() == "blocked":
            continue  # a block is temporary: recorded, status kept
        moves.setdefault(e.event, {})[e.message_id] = e
    done: dict[str, int] = {}
    # Order matters inside one batch: delivered first, so a later bounce of the same message
    # still lands on `bounced`.
    for kind in ("delivered", "dropped", "bounce"):
        batch = moves.get(kind)
        if not batch:
            continue
        status, sources = _TRANSITIONS[kind]
        stmt = (
            update(OUTBOX)
            .where(OUTBOX.c.message_id == bindparam("mid"),
                   or_(*(OUTBOX.c.status == s for s in sources)))
            .values(status=status, updated_at=now,
                    provider_message_id=func.coalesce(OUTBOX.c.provider_message_id,
                                                      bindparam("pid")),
                    last_error=bindparam("why"))
        )
        params = [{"mid": mid, "pid": (e.provider_message_id or "").split(".", 1)[0] or None,
                   "why": _why(e)} for mid, e in batch.items()]
        result = conn.execute(stmt, params)
        done[status] = max(result.rowcount or 0, 0)
    return done


def _why(e: _Event) -> str | None:
    if e.event == "delivered":
        return None
    parts = [e.event]
    for key in ("type", "bounce_classification", "status", "reason"):
        value = e.detail.get(key)
        if value:
            parts.append(f"{key}={str(value)[:300]}")
    return " ".join(parts)


def _suppression_reason(e: _Event) -> str | None:
    if e.event == "bounce":
        return None if str(e.detail.get("type", "bounce")).lower() == "blocked" else "bounce"
    if e.event == "dropped":
        reason = str(e.detail.get("reason", "")).strip().lower()
        return "dropped" if reason.startswith(SUPPRESSING_DROP_REASONS) else None
    if e.event == "spamreport":
        return "spamreport"
    if e.event in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribe"
    return None


def _apply_suppressions(conn: Connection, events: Iterable[_Event], now: datetime) -> int:
    rows: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        reason = _suppression_reason(e)
        addr = e.email.strip().lower()
        if reason is None or addr in rows:
            continue
        rows[addr] = {"email": addr, "reason": reason, "source": "webhook",
                      "detail": _why(e) or e.event, "created_at": now}
    if not rows:
        return 0
    emails = list(rows)
    existing: set[str] = set()
    for start in range(0, len(emails), 500):
        existing.update(conn.execute(
            select(SUPPRESSIONS.c.email).where(SUPPRESSIONS.c.email.in_(emails[start:start + 500]))
        ).scalars())
    fresh = [r for a, r in rows.items() if a not in existing]
    if fresh:
        conn.execute(
            dialect_insert(conn, SUPPRESSIONS).on_conflict_do_nothing(index_elements=["email"]), fresh)
    return len(fresh)
