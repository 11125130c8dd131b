"""Sending the outbox: `send_due` reconciles, applies the rules, claims and sends.

The order of a run, and what a crash leaves behind, are described in outreach/outbox.py (the
queue and the rules live there); this module claims the due rows that pass the rules, renders
them, hands them to the transport chunk by chunk and records each chunk's results
(`SendReport`), and reconciles rows a crash left in `sending`.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, or_, select, update

from pulse.core.errors import OutboxError, PulseError
from pulse.core.settings import get_settings
from pulse.outreach.message import Outgoing, SendResult, Transport
from pulse.outreach.outbox import OUTBOX, _decide, _due_ids, _facts, _now
from pulse.outreach.render import Renderer

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    """What one `send_due` run did (or, with `dry_run`, would do)."""

    dry_run: bool = False
    considered: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # sent, retry, failed, ...
    by_rule: Counter[str] = field(default_factory=Counter)
    sent_ids: list[int] = field(default_factory=list)
    reconciled: Counter[str] = field(default_factory=Counter)  # sent, requeued, unknown
    in_doubt_elsewhere: int = 0  # `sending` rows claimed by another transport

    @property
    def sent(self) -> int:
        return self.outcomes["sent"]

    @property
    def suppressed(self) -> int:
        return self.outcomes["suppressed"]

    @property
    def deferred(self) -> int:
        return self.outcomes["deferred"]

    @property
    def failed(self) -> int:
        return self.outcomes["failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "considered": self.considered,
            "outcomes": dict(self.outcomes),
            "by_rule": dict(self.by_rule),
            "sent_ids": list(self.sent_ids),
            "reconciled": dict(self.reconciled),
            "in_doubt_elsewhere": self.in_doubt_elsewhere,
        }


# --------------------------------------------------------------------------- send


def _full_rows(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    rows = conn.execute(select(OUTBOX).where(OUTBOX.c.message_id.in_(ids))
                        .order_by(OUTBOX.c.message_id)).mappings().all()
    return [dict(r) for r in rows]


def _set_many(conn: Connection, rows: list[dict[str, Any]], now: datetime, *,
              only_status: str, **columns: bool) -> None:
    """UPDATE outbox rows by id in one executemany; `columns` name the keys each row carries."""
    if not rows:
        return
    types = {c.name: c.type for c in OUTBOX.columns}
    values: dict[str, Any] = {name: bindparam(f"b_{name}", type_=types[name])
                              for name in columns}
    values["updated_at"] = now
    stmt = (update(OUTBOX)
            .where(OUTBOX.c.message_id == bindparam("b_id"), OUTBOX.c.status == only_status)
            .values(**values))
    conn.execute(stmt, [{"b_id": r["message_id"], **{f"b_{k}": r[k] for k in columns}}
                        for r in rows])


def _render(renderer: Renderer, rows: list[dict[str, Any]]
            ) -> tuple[list[Outgoing], list[SendResult]]:
    good: list[Outgoing] = []
    bad: list[SendResult] = []
    for row in rows:
        try:
            good.append(renderer.outgoing(row))
        except PulseError as exc:
            bad.append(SendResult(row["message_id"], ok=False, error=f"render: {exc}"))
    return good, bad


def _record(engine: Engine, results: Sequence[SendResult], now: datetime,
            report: SendReport) -> None:
    sent, retry, failed = [], [], []
    for r in results:
        if r.ok:
            sent.append({"message_id": r.message_id, "provider_message_id": r.provider_message_id,
                         "sent_at": now, "status": "sent", "last_error": None})
        elif r.retryable:
            retry.append({"message_id": r.message_id, "status": "queued",
                          "last_error": (r.error or "retryable failure")[:2000]})
        else:
            failed.append({"message_id": r.message_id, "status": "failed",
                           "last_error": (r.error or "failed")[:2000]})
    with engine.begin() as conn:
        _set_many(conn, sent, now, only_status="sending", status=True,
                  provider_message_id=True, sent_at=True, last_error=True)
        _set_many(conn, retry, now, only_status="sending", status=True, last_error=True)
        _set_many(conn, failed, now, only_status="sending", status=True, last_error=True)
    report.outcomes.update({"sent": len(sent), "retry": len(retry), "failed": len(failed)})
    report.sent_ids.extend(r["message_id"] for r in sent)


def _reconcile(engine: Engine, transport: Transport, renderer: Renderer, now: datetime,
               stale_after: timedelta, report: SendReport, dry_run: bool) -> None:
    o = OUTBOX.c
    with engine.connect() as conn:
        ids = list(conn.execute(select(o.message_id).where(
            o.status == "sending", o.transport == transport.name,
            or_(o.claimed_at.is_(None), o.claimed_at <= now - stale_after))).scalars())
        report.in_doubt_elsewhere = conn.execute(
            select(func.count()).where(o.status == "sending", o.transport != transport.name)
        ).scalar_one()
        if dry_run:
            report.reconciled["would_reconcile"] = len(ids)
            return
        rows = _full_rows(conn, ids) if ids else []
    if not rows:
        return
    messages: list[Outgoing] = []
    for row in rows:
        try:
            messages.append(renderer.outgoing(row))
        except PulseError:
            messages.append(Outgoing(row["message_id"], row["kind"], row["template"],
                                     row["to_email"], row["to_name"], row["from_email"],
                                     row["from_name"], row["reply_to"], row["subject"], "",
                                     "", "", custom_args={"outbox_id": str(row["message_id"])}))
    answer = transport.reconcile(messages)
    claimed = {r["message_id"]: r["claimed_at"] for r in rows}
    accepted = [{"message_id": i, "status": "sent", "provider_message_id": pid,
                 "sent_at": claimed[i] or now}
                for i, pid in answer.items() if i in claimed and pid is not None]
    unseen = [{"message_id": i, "status": "queued",
               "last_error": "reconciled: the provider never received it"}
              for i, pid in answer.items() if i in claimed and pid is None]
    with engine.begin() as conn:
        _set_many(conn, accepted, now, only_status="sending", status=True,
                  provider_message_id=True, sent_at=True)
        _set_many(conn, unseen, now, only_status="sending", status=True, last_error=True)
    report.reconciled.update({"sent": len(accepted), "requeued": len(unseen),
                              "unknown": len(rows) - len(accepted) - len(unseen)})
    log.info("reconciled %d in-doubt messages: %d sent, %d back to queued",
             len(rows), len(accepted), len(unseen))


def send_due(engine: Engine, transport: Transport, *, now: datetime | None = None,
             limit: int | None = None, dry_run: bool = False, batch_size: int = 1000,
             progress: Callable[[int, int], None] | None = None, send_chunk: int = 1000,
             stale_after: timedelta = timedelta(0)) -> SendReport:
    """Reconcile, apply the rules, claim and send the due messages (see the module doc).

    `progress(done, total)` is called after every batch and chunk. `dry_run` evaluates the
    rules and reports what would happen; it changes nothing.
    """
    now = _now(now)
    settings = get_settings()
    renderer = Renderer(settings=settings, now=now)
    report = SendReport(dry_run=dry_run)
    _reconcile(engine, transport, renderer, now, stale_after, report, dry_run)
    window_start = now - timedelta(days=settings.cap_window_days)
    with engine.connect() as conn:
        ids = _due_ids(conn, now, limit)
    total, done = len(ids), 0
    run_counts: Counter[str] = Counter()  # dry runs only: what earlier batches would send
    for start in range(0, total, batch_size):
        batch = ids[start:start + batch_size]
        with engine.begin() as conn:
            facts = _facts(conn, batch, now, window_start)
            if facts.empty:
                done += len(batch)
                continue
            decided = _decide(facts, now, settings, run_counts)
            report.considered += len(decided)
            held = decided[decided["decision"] != "send"]
            report.by_rule.update(held["rule"].value_counts().to_dict())
            report.outcomes["suppressed"] += int((held["decision"] == "suppress").sum())
            report.outcomes["deferred"] += int((held["decision"] == "defer").sum())
            go = decided[decided["decision"] == "send"]
            if dry_run:
                report.outcomes["would_send"] += len(go)
                run_counts.update(go.loc[go["automated"].astype(bool), "key"].tolist())
                done += len(batch)
                if progress:
                    progress(done, total)
                continue
            suppress = held[held["decision"] == "suppress"].assign(status="suppressed")
            _set_many(conn, suppress[["message_id", "status", "rule", "rule_detail"]]
                      .to_dict("records"), now, only_status="queued", status=True, rule=True,
                      rule_detail=True)
            defer = held[held["decision"] == "defer"]
            _set_many(conn, defer[["message_id", "rule", "rule_detail", "not_before"]]
                      .to_dict("records"), now, only_status="queued", rule=True,
                      rule_detail=True, not_before=True)
            claimed: list[int] = []
            o = OUTBOX.c
            go_ids = go["message_id"].astype(int).tolist()
            for part in range(0, len(go_ids), 1000):
                claimed += conn.execute(
                    update(OUTBOX)
                    .where(o.message_id.in_(go_ids[part:part + 1000]), o.status == "queued")
                    .values(status="sending", claimed_at=now, attempts=o.attempts + 1,
                            transport=transport.name, updated_at=now)
                    .returning(o.message_id)).scalars().all()
        # claimed and committed: from here a crash leaves rows `sending`, reconciled later
        done += len(batch) - len(claimed)
        if progress:
            progress(done, total)
        claimed.sort()
        for part in range(0, len(claimed), send_chunk):
            chunk_ids = claimed[part:part + send_chunk]
            with engine.connect() as conn:
                rows = _full_rows(conn, chunk_ids)
            messages, broken = _render(renderer, rows)
            if broken:
                _record(engine, broken, now, report)
            try:
                results = transport.send(messages) if messages else []
            except Exception as exc:
                _abandon(engine, claimed[part + send_chunk:], messages, exc, now)
                raise OutboxError(
                    f"transport {transport.name!r} failed: {exc}; {len(messages)} messages "
                    "are in doubt and will be reconciled on the next run", report) from exc
            expected = {m.message_id for m in messages}
            _record(engine, [r for r in results if r.message_id in expected], now, report)
            missing = expected - {r.message_id for r in results}
            if missing:
                report.outcomes["in_doubt"] += len(missing)
            done += len(chunk_ids)
            if progress:
                progress(done, total)
    log.info("send_due%s: %s", " (dry run)" if dry_run else "", report.to_dict()["outcomes"])
    return report


def _abandon(engine: Engine, unsent: list[int], in_doubt: list[Outgoing], exc: Exception,
             now: datetime) -> None:
    """After a transport error: release claims never handed over, note the error on the rest."""
    o = OUTBOX.c
    error = f"transport error: {exc}"[:2000]
    with engine.begin() as conn:
        for part in range(0, len(unsent), 1000):
            conn.execute(update(OUTBOX)
                         .where(o.message_id.in_(unsent[part:part + 1000]),
                                o.status == "sending")
                         .values(status="queued", claimed_at=None, attempts=o.attempts - 1,
                                 updated_at=now))
        doubt = [m.message_id for m in in_doubt]
        for part in range(0, len(doubt), 1000):
            conn.execute(update(OUTBOX)
                         .where(o.message_id.in_(doubt[part:part + 1000]),
                                o.status == "sending")
                         .values(last_error=error, updated_at=now))


__all__ = ["SendReport", "send_due"]
