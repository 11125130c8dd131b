"""Sending the outbox: `send_due` reconciles, applies the rules, claims and sends.

The order of a run, and what a crash leaves behind, are described in outreach/outbox.py (the
queue and the rules live there); this module claims the due rows that pass the rules, renders
them, hands them to the transport chunk by chunk and records each chunk's results
(`SendReport`), and reconciles rows a crash left in `sending`.

Runs may overlap (five DAGs and the CLI call `send_due`). Each call is one *owner* (host, pid
and a random part) and claims rows with a *lease*: `lease_owner` and `lease_expires_at`,
measured on the wall clock (a run's logical `now` may lie in the past), `outbox_lease_seconds`
long. The rules and the claim of each batch run in one serialised transaction (BEGIN
IMMEDIATE on SQLite, an advisory lock and `FOR UPDATE SKIP LOCKED` on PostgreSQL), so two runs
never claim one row and the frequency cap counts what the other run just claimed. Before a
chunk goes to the transport its lease is renewed, and only rows still held by this run are
sent; a heartbeat keeps renewing while the transport works. Reconcile takes over only
`sending` rows whose lease ran out, or whose owner is a process of this host that is gone
(a kill -9); a run that ends, however it ends, lets its remaining leases run out at once.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update

from pulse.core.errors import OutboxError, PulseError, TransportAuthError
from pulse.core.secrets import redact
from pulse.core.settings import get_settings
from pulse.core.times import utc_or_now
from pulse.outreach.message import Outgoing, SendResult, Transport
from pulse.outreach.outbox import CRITICAL_KINDS, OUTBOX, _decide, _due_ids, _facts
from pulse.outreach.render import Renderer
from pulse.sql.locks import serialised
from pulse.sql.schema import Contact

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
    held_elsewhere: int = 0  # `sending` rows of this transport under another run's live lease

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
            "held_elsewhere": self.held_elsewhere,
        }


# --------------------------------------------------------------------------- leases

CLAIM_LOCK = "pulse.outbox.claim"


def _wall() -> datetime:
    """Leases are measured on this clock, never on a run's logical `now`."""
    return datetime.now(UTC)


def _host() -> str:
    """This host and kernel boot (and PID namespace): where a lease owner's pid means
    something."""
    parts = [socket.gethostname()[:40]]
    for path, size in (("/proc/sys/kernel/random/boot_id", 8), ("/proc/self/ns/pid", 0)):
        try:
            value = (os.readlink(path) if path.endswith("/pid")
                     else Path(path).read_text().strip())
        except OSError:
            return "|".join(parts)  # no /proc: the owner's liveness is never judged here
        parts.append(value.strip("pid:[]")[:size or None])
    return "/".join(parts)


HOST = _host()


def new_owner() -> str:
    """A unique id for one `send_due` call: `host|pid|random`."""
    return f"{HOST}|{os.getpid()}|{secrets.token_hex(6)}"


def owner_gone(owner: str) -> bool:
    """True only when `owner` is a process of this host (and boot) that no longer runs: its
    leases can be reconciled without waiting for them to run out. Unknown: False."""
    host, _, rest = owner.partition("|")
    pid_text = rest.partition("|")[0]
    if host != HOST or "/" not in host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child its parent has not reaped yet
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@dataclass
class _Lease:
    """The claims of one `send_due` call."""

    engine: Engine
    owner: str
    length: timedelta

    def expiry(self) -> datetime:
        return _wall() + self.length

    def renew(self, ids: Sequence[int]) -> list[int]:
        """Extend the lease on `ids`; returns those this run still holds (`sending`, ours)."""
        o = OUTBOX.c
        kept: list[int] = []
        with self.engine.begin() as conn:
            for part in range(0, len(ids), 1000):
                kept += conn.execute(
                    update(OUTBOX)
                    .where(o.message_id.in_(ids[part:part + 1000]), o.status == "sending",
                           o.lease_owner == self.owner)
                    .values(lease_expires_at=self.expiry())
                    .returning(o.message_id)).scalars().all()
        return sorted(kept)

    @contextmanager
    def heartbeat(self, ids: Sequence[int]) -> Iterator[None]:
        """Keep renewing the lease on `ids` while the body runs (a slow provider, retries)."""
        stop = threading.Event()
        every = max(self.length.total_seconds() / 3, 0.05)

        def beat() -> None:
            while not stop.wait(every):
                try:
                    held = self.renew(ids)
                except Exception as exc:  # the next beat or the final record will tell
                    log.warning("cannot renew the outbox lease: %s", redact(str(exc)))
                    continue
                if len(held) < len(ids):
                    log.warning("%d messages being sent lost their lease", len(ids) - len(held))

        thread = threading.Thread(target=beat, name="outbox-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self) -> None:
        """The run ends: its leases on rows still `sending` (in doubt) run out now, so the
        next run reconciles them at once."""
        o = OUTBOX.c
        with self.engine.begin() as conn:
            conn.execute(update(OUTBOX)
                         .where(o.lease_owner == self.owner, o.status == "sending")
                         .values(lease_expires_at=_wall()))



# --------------------------------------------------------------------------- send


def rendering_rows() -> Any:
    """SELECT of outbox rows as the renderer reads them: every column, plus `locale`, the
    contact's (numbers, money and dates are written the recipient's way)."""
    contacts = Contact.__table__
    return (select(OUTBOX, contacts.c.locale)
            .select_from(OUTBOX.outerjoin(contacts,
                                          contacts.c.contact_id == OUTBOX.c.contact_id)))


def _full_rows(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    rows = conn.execute(rendering_rows().where(OUTBOX.c.message_id.in_(ids))
                        .order_by(OUTBOX.c.message_id)).mappings().all()
    return [dict(r) for r in rows]


def _set_many(conn: Connection, rows: list[dict[str, Any]], now: datetime, *,
              only_status: str, owner: str | None = None, **columns: bool) -> None:
    """UPDATE outbox rows by id in one executemany; `columns` name the keys each row carries;
    with `owner`, only rows whose lease that run holds."""
    if not rows:
        return
    types = {c.name: c.type for c in OUTBOX.columns}
    values: dict[str, Any] = {name: bindparam(f"b_{name}", type_=types[name])
                              for name in columns}
    values["updated_at"] = now
    where = [OUTBOX.c.message_id == bindparam("b_id"), OUTBOX.c.status == only_status]
    if owner is not None:
        where.append(OUTBOX.c.lease_owner == owner)
    stmt = update(OUTBOX).where(*where).values(**values)
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


def _error_text(text: str) -> str:
    """What is stored in `last_error`: secrets redacted, at most 2,000 characters."""
    return redact(text)[:2000]


def _record(engine: Engine, results: Sequence[SendResult], now: datetime,
            report: SendReport, owner: str) -> None:
    sent, retry, failed = [], [], []
    for r in results:
        if r.ok:
            sent.append({"message_id": r.message_id, "provider_message_id": r.provider_message_id,
                         "sent_at": now, "status": "sent", "last_error": None})
        elif r.retryable:
            retry.append({"message_id": r.message_id, "status": "queued",
                          "last_error": _error_text(r.error or "retryable failure")})
        else:
            failed.append({"message_id": r.message_id, "status": "failed",
                           "last_error": _error_text(r.error or "failed")})
    with engine.begin() as conn:
        _set_many(conn, sent, now, only_status="sending", owner=owner, status=True,
                  provider_message_id=True, sent_at=True, last_error=True)
        _set_many(conn, retry, now, only_status="sending", owner=owner, status=True,
                  last_error=True)
        _set_many(conn, failed, now, only_status="sending", owner=owner, status=True,
                  last_error=True)
    report.outcomes.update({"sent": len(sent), "retry": len(retry), "failed": len(failed)})
    report.sent_ids.extend(cast(int, r["message_id"]) for r in sent)


def _reconcile(engine: Engine, transport: Transport, renderer: Renderer, now: datetime,
               stale_after: timedelta, report: SendReport, dry_run: bool,
               lease: _Lease | None) -> None:
    """Take over the `sending` rows of this transport whose lease ran out (or whose owner is
    gone) and ask the transport which of them it accepted. Rows without a lease (claimed
    before leases existed) count as run out once claimed `stale_after` ago."""
    o = OUTBOX.c
    wall = _wall()
    mine = and_(o.status == "sending", o.transport == transport.name)
    with engine.connect() as conn:
        report.in_doubt_elsewhere = conn.execute(
            select(func.count()).where(o.status == "sending", o.transport != transport.name)
        ).scalar_one()
        live = conn.execute(select(o.lease_owner, func.count()).where(
            mine, o.lease_expires_at > wall).group_by(o.lease_owner)).all()
    gone = [owner for owner, _ in live if owner and owner_gone(owner)]
    report.held_elsewhere = sum(n for owner, n in live if owner not in gone)
    expired = and_(mine, or_(
        and_(o.lease_expires_at.is_(None),
             or_(o.claimed_at.is_(None), o.claimed_at <= now - stale_after)),
        o.lease_expires_at <= wall,
        o.lease_owner.in_(gone)))
    if dry_run or lease is None:
        with engine.connect() as conn:
            report.reconciled["would_reconcile"] = conn.execute(
                select(func.count()).where(expired)).scalar_one()
        return
    with serialised(engine, CLAIM_LOCK) as conn:  # one run takes each expired claim
        ids = sorted(conn.execute(
            update(OUTBOX).where(expired)
            .values(lease_owner=lease.owner, lease_expires_at=lease.expiry())
            .returning(o.message_id)).scalars().all())
    if not ids:
        return
    if gone:
        log.warning("reconciling the claims of %d sender(s) that are no longer running",
                    len(gone))
    with engine.connect() as conn:
        rows = _full_rows(conn, ids)
    messages: list[Outgoing] = []
    for row in rows:
        try:
            messages.append(renderer.outgoing(row))
        except PulseError:
            messages.append(Outgoing(row["message_id"], row["kind"], row["template"],
                                     row["to_email"], row["to_name"], row["from_email"],
                                     row["from_name"], row["reply_to"], row["subject"], "",
                                     "", "", custom_args={"outbox_id": str(row["message_id"])}))
    with lease.heartbeat(ids):
        answer = transport.reconcile(messages)
    claimed = {r["message_id"]: r["claimed_at"] for r in rows}
    accepted = [{"message_id": i, "status": "sent", "provider_message_id": pid,
                 "sent_at": claimed[i] or now}
                for i, pid in answer.items() if i in claimed and pid is not None]
    unseen = [{"message_id": i, "status": "queued",
               "last_error": "reconciled: the provider never received it"}
              for i, pid in answer.items() if i in claimed and pid is None]
    with engine.begin() as conn:
        _set_many(conn, accepted, now, only_status="sending", owner=lease.owner, status=True,
                  provider_message_id=True, sent_at=True)
        _set_many(conn, unseen, now, only_status="sending", owner=lease.owner, status=True,
                  last_error=True)
    report.reconciled.update({"sent": len(accepted), "requeued": len(unseen),
                              "unknown": len(rows) - len(accepted) - len(unseen)})
    log.info("reconciled %d in-doubt messages: %d sent, %d back to queued",
             len(rows), len(accepted), len(unseen))


def _claim(conn: Connection, ids: list[int], now: datetime, transport: str,
           lease: _Lease) -> list[int]:
    """Claim the rows of `ids` still `queued`, inside the serialised transaction; on
    PostgreSQL rows another transaction holds are skipped, not waited for."""
    o = OUTBOX.c
    claimed: list[int] = []
    for part in range(0, len(ids), 1000):
        chunk = ids[part:part + 1000]
        which = o.message_id.in_(chunk)
        if conn.dialect.name == "postgresql":
            which = o.message_id.in_(
                select(o.message_id).where(o.message_id.in_(chunk), o.status == "queued")
                .with_for_update(skip_locked=True).scalar_subquery())
        claimed += conn.execute(
            update(OUTBOX)
            .where(which, o.status == "queued")
            .values(status="sending", claimed_at=now, attempts=o.attempts + 1,
                    transport=transport, updated_at=now, lease_owner=lease.owner,
                    lease_expires_at=lease.expiry())
            .returning(o.message_id)).scalars().all()
    return claimed


def send_due(engine: Engine, transport: Transport, *, now: datetime | None = None,
             limit: int | None = None, dry_run: bool = False, batch_size: int = 1000,
             progress: Callable[[int, int], None] | None = None, send_chunk: int = 1000,
             stale_after: timedelta = timedelta(0),
             lease: timedelta | None = None) -> SendReport:
    """Reconcile, apply the rules, claim and send the due messages (see the module doc).

    `progress(done, total)` is called after every batch and chunk. `dry_run` evaluates the
    rules and reports what would happen; it changes nothing. `lease` (default the setting
    `outbox_lease_seconds`) is how long this run's claims last without renewal; `stale_after`
    applies only to claims without a lease (made before leases existed).
    """
    now = utc_or_now(now)
    settings = get_settings()
    renderer = Renderer(settings=settings, now=now)
    report = SendReport(dry_run=dry_run)
    run = None if dry_run else _Lease(
        engine, new_owner(), lease or timedelta(seconds=settings.outbox_lease_seconds))
    try:
        _reconcile(engine, transport, renderer, now, stale_after, report, dry_run, run)
        _send(engine, transport, renderer, now, settings, report, run, limit=limit,
              batch_size=batch_size, progress=progress, send_chunk=send_chunk)
    finally:
        if run is not None:
            try:
                run.release()
            except Exception as exc:  # the leases then run out on their own
                log.warning("cannot release the outbox leases: %s", redact(str(exc)))
    log.info("send_due%s: %s", " (dry run)" if dry_run else "", report.to_dict()["outcomes"])
    return report


def _send(engine: Engine, transport: Transport, renderer: Renderer, now: datetime,
          settings: Any, report: SendReport, run: _Lease | None, *, limit: int | None,
          batch_size: int, progress: Callable[[int, int], None] | None,
          send_chunk: int) -> None:
    window_start = now - timedelta(days=settings.cap_window_days)
    with engine.connect() as conn:
        ids = _due_ids(conn, now, limit)
    total, done = len(ids), 0
    run_counts: Counter[str] = Counter()  # dry runs only: what earlier batches would send
    notified: tuple[set[str], set[str]] = (set(), set())  # and the accounts, people notified
    for start in range(0, total, batch_size):
        batch = ids[start:start + batch_size]
        # the rules and the claim in one transaction that one sender at a time is inside:
        # the cap counts what another run claimed a moment ago
        with (engine.begin() if run is None else serialised(engine, CLAIM_LOCK)) as conn:
            facts = _facts(conn, batch, now, window_start)
            if facts.empty:
                done += len(batch)
                continue
            decided = _decide(facts, now, settings, run_counts, notified)
            report.considered += len(decided)
            held = decided[decided["decision"] != "send"]
            report.by_rule.update(held["rule"].value_counts().to_dict())
            report.outcomes["suppressed"] += int((held["decision"] == "suppress").sum())
            report.outcomes["deferred"] += int((held["decision"] == "defer").sum())
            go = decided[decided["decision"] == "send"]
            if run is None:
                report.outcomes["would_send"] += len(go)
                run_counts.update(go.loc[go["automated"].astype(bool), "key"].tolist())
                told = go[go["urgent"].astype(bool) | go["kind"].isin(CRITICAL_KINDS)]
                notified[0].update(told["account_id"].dropna().astype(str))
                notified[1].update(told["key"].astype(str))
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
            claimed = _claim(conn, go["message_id"].astype(int).tolist(), now,
                             transport.name, run)
        # claimed and committed: from here a crash leaves rows `sending`, reconciled later
        done += len(batch) - len(claimed)
        if progress:
            progress(done, total)
        claimed.sort()
        for part in range(0, len(claimed), send_chunk):
            planned = claimed[part:part + send_chunk]
            chunk_ids = run.renew(planned)  # send only what this run still holds
            if len(chunk_ids) < len(planned):
                report.outcomes["lease_lost"] += len(planned) - len(chunk_ids)
                log.warning("%d claimed messages were taken over by another run; not sent "
                            "here", len(planned) - len(chunk_ids))
            with engine.connect() as conn:
                rows = _full_rows(conn, chunk_ids) if chunk_ids else []
            messages, broken = _render(renderer, rows)
            if broken:
                _record(engine, broken, now, report, run.owner)
            try:
                with run.heartbeat(chunk_ids):
                    results = transport.send(messages) if messages else []
            except TransportAuthError as exc:
                _record(engine, exc.results, now, report, run.owner)
                answered = {r.message_id for r in exc.results}
                back = [m.message_id for m in messages if m.message_id not in answered]
                back += claimed[part + send_chunk:]
                _release(engine, back, run.owner, now, error=str(exc))
                raise TransportAuthError(
                    f"{exc} ({len(back)} messages back in the queue)", transport=exc.transport,
                    status=exc.status, results=exc.results, report=report) from None
            except Exception as exc:
                _abandon(engine, claimed[part + send_chunk:], messages, exc, now, run.owner)
                raise OutboxError(redact(
                    f"transport {transport.name!r} failed: {exc}; {len(messages)} messages "
                    "are in doubt and will be reconciled on the next run"), report) from exc
            expected = {m.message_id for m in messages}
            _record(engine, [r for r in results if r.message_id in expected], now, report,
                    run.owner)
            missing = expected - {r.message_id for r in results}
            if missing:
                report.outcomes["in_doubt"] += len(missing)
            done += len(planned)
            if progress:
                progress(done, total)


def _release(engine: Engine, ids: list[int], owner: str, now: datetime, *,
             error: str | None = None) -> None:
    """Give claims that never reached the provider back to the queue (the attempt not
    counted), with `error` as `last_error` when given."""
    o = OUTBOX.c
    values: dict[str, Any] = {"status": "queued", "claimed_at": None,
                              "attempts": o.attempts - 1, "lease_expires_at": None,
                              "updated_at": now}
    if error is not None:
        values["last_error"] = _error_text(error)
    with engine.begin() as conn:
        for part in range(0, len(ids), 1000):
            conn.execute(update(OUTBOX)
                         .where(o.message_id.in_(ids[part:part + 1000]),
                                o.status == "sending", o.lease_owner == owner)
                         .values(**values))


def _abandon(engine: Engine, unsent: list[int], in_doubt: list[Outgoing], exc: Exception,
             now: datetime, owner: str) -> None:
    """After a transport error: release claims never handed over, note the error on the rest."""
    o = OUTBOX.c
    _release(engine, unsent, owner, now)
    error = _error_text(f"transport error: {exc}")
    doubt = [m.message_id for m in in_doubt]
    with engine.begin() as conn:
        for part in range(0, len(doubt), 1000):
            conn.execute(update(OUTBOX)
                         .where(o.message_id.in_(doubt[part:part + 1000]),
                                o.status == "sending", o.lease_owner == owner)
                         .values(last_error=error, updated_at=now))


__all__ = ["SendReport", "new_owner", "owner_gone", "send_due"]
