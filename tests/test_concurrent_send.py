"""Exactly once when senders overlap: three `pulse outreach send` processes on one outbox.

The first sender starts alone; as soon as it has rows in flight (`sending`), two more start
together, as a second DAG run and a hand-typed `pulse outreach send` would. Each run must
leave the others' live claims alone (its reconcile takes over only claims whose lease has run
out) and claim only rows nobody else holds. Counted on the provider's side (the file
transport's manifest of writes, the SendGrid double's accepted list, the double answering
after 1 s like a slow provider): every queued message accepted exactly once, every row
`sent`. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from pulse.core.errors import TransportAuthError
from pulse.core.settings import PROJECT_ROOT, get_settings
from pulse.devkit.sendgrid_double import SendGridDouble, fake_api_key
from pulse.outreach.message import Outgoing, SendResult
from pulse.outreach.outbox import Draft, queue
from pulse.outreach.outbox_send import SendReport, send_due
from pulse.outreach.transports.file import FileTransport
from pulse.outreach.transports.sendgrid import SendGridTransport
from pulse.sql.schema import OutboxMessage
from tests.pulse_cli import PreloadedProcess, run_pulse, spawn_pulse

OUTBOX = OutboxMessage.__table__
N = {"file": 3000, "sendgrid": 3000}


def drafts(n: int, prefix: str = "overlap", bodies: int = 1) -> list[Draft]:
    """`n` check-ins in `bodies` groups of a shared body (one SendGrid request per group and
    chunk of up to 1,000)."""
    return [Draft(
        kind="checkin", idempotency_key=f"{prefix}:{i}", template="checkin",
        to_email=f"contact{i}@example.com", to_name=f"Contact {i}", account_id=f"A{i % 40}",
        automated=False,  # not subject to quiet hours or the cap: this test is about claims
        context={"account_name": f"Account {i % 40}",
                 "csm_name": f"Dana Scully {i % bodies}", "csm_email": "dana@pulse-demo.example"},
        from_email="care@pulse-demo.example",
    ) for i in range(n)]


def sender(transport: str, db_url: str, home: Path, log: Path,
           api: SendGridDouble | None = None) -> PreloadedProcess:
    """A `pulse outreach send` process of its own, running while the test goes on."""
    env = {**os.environ, "PULSE_DATABASE_URL": db_url, "PULSE_HOME": str(home)}
    env.pop("SENDGRID_API_KEY", None)
    if api is not None:
        env.update(PULSE_SENDGRID_HOST=api.url, PULSE_SENDGRID_API_KEY=api.api_key)
    return spawn_pulse("outreach", "send", "--transport", transport, "--format", "json",
                       log=log, env=env, cwd=PROJECT_ROOT)


def in_flight(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(OUTBOX.c.status == "sending")
                            ).scalar_one()


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(OUTBOX.c.status)).scalars())


def written(folder: Path) -> Counter[str]:
    """How many times the file transport wrote each outbox id (its append-only manifest)."""
    counts: Counter[str] = Counter()
    for line in (folder / "index.jsonl").read_text(encoding="utf-8").splitlines():
        counts[str(json.loads(line)["id"])] += 1
    return counts


def overlap(transport: str, engine: Engine, db_url: str, home: Path, tmp_path: Path,
            api: SendGridDouble | None = None) -> list[dict[str, object]]:
    """Run three senders, the second and third starting while the first has rows in flight;
    returns their reports."""
    logs = [tmp_path / f"sender{i}.log" for i in range(3)]
    procs = [sender(transport, db_url, home, logs[0], api)]
    deadline = time.monotonic() + 60
    while in_flight(engine) == 0:
        assert procs[0].poll() is None, f"the first sender ended early:\n{logs[0].read_text()}"
        assert time.monotonic() < deadline, logs[0].read_text()
        time.sleep(0.02)
    procs += [sender(transport, db_url, home, log, api) for log in logs[1:]]
    reports = []
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=180) == 0, log.read_text()
        out = log.read_text()
        reports.append(json.loads(out[out.index("{"):]))
    return reports


def test_overlapping_file_senders_write_each_message_once(
        engine: Engine, db_url: str, pulse_home: Path, tmp_path: Path) -> None:
    n = N["file"]
    assert queue(engine, drafts(n)).queued == n
    reports = overlap("file", engine, db_url, pulse_home, tmp_path)
    counts = written(pulse_home / "outbox")
    twice = sorted((k for k, v in counts.items() if v > 1), key=int)
    assert (len(counts), len(twice)) == (n, 0), f"written twice: {len(twice)}, e.g. {twice[:5]}"
    assert statuses(engine) == Counter({"sent": n})
    assert sum(int(r["outcomes"].get("sent", 0)) for r in reports) == n  # type: ignore[union-attr]
    assert len(list((pulse_home / "outbox").glob("*.eml"))) == n


def test_overlapping_sendgrid_senders_send_each_message_once(
        engine: Engine, db_url: str, pulse_home: Path, tmp_path: Path) -> None:
    n = N["sendgrid"]
    assert queue(engine, drafts(n, bodies=4)).queued == n
    with SendGridDouble(latency=1.0) as api:
        reports = overlap("sendgrid", engine, db_url, pulse_home, tmp_path, api)
        counts = api.accepted_counts()
    twice = sorted((k for k, v in counts.items() if v > 1), key=int)
    assert (len(counts), len(twice)) == (n, 0), f"accepted twice: {len(twice)}, e.g. {twice[:5]}"
    assert statuses(engine) == Counter({"sent": n})
    assert sum(int(r["outcomes"].get("sent", 0)) for r in reports) == n  # type: ignore[union-attr]


# ---------------------------------------------------------------------- leases, in process


def one_row(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(select(OUTBOX)).mappings().one())


def test_a_live_lease_of_another_run_is_left_alone_until_it_runs_out(
        engine: Engine, pulse_home: Path) -> None:
    queue(engine, drafts(1))
    box = FileTransport(pulse_home / "outbox")
    other = "another-host/boot/ns|4242|abc"  # not this host: only its expiry counts
    with engine.begin() as conn:
        conn.execute(update(OUTBOX).values(
            status="sending", transport="file", attempts=1, claimed_at=datetime.now(UTC),
            lease_owner=other, lease_expires_at=datetime.now(UTC) + timedelta(minutes=5)))
    live = send_due(engine, box)  # stale_after=0: before leases, this took the row over
    assert (sum(live.reconciled.values()), live.held_elsewhere, live.sent) == (0, 1, 0)
    assert (one_row(engine)["status"], one_row(engine)["lease_owner"]) == ("sending", other)
    assert not box.folder.exists() or not list(box.folder.glob("*.eml"))

    with engine.begin() as conn:
        conn.execute(update(OUTBOX).values(lease_expires_at=datetime.now(UTC)
                                           - timedelta(seconds=1)))
    expired = send_due(engine, box)
    assert (expired.reconciled["requeued"], expired.sent, expired.held_elsewhere) == (1, 1, 0)
    row = one_row(engine)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert row["lease_owner"] != other
    assert written(box.folder) == Counter({str(row["message_id"]): 1})


class Thief:
    """Writes each chunk through the file transport; while writing the first, another run
    takes over the next claimed row (as if this run's lease had run out meanwhile)."""

    name = "file"

    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.inner = FileTransport(folder)
        self.calls = 0

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        self.calls += 1
        if self.calls == 1:
            with self.engine.begin() as conn:
                conn.execute(update(OUTBOX).where(OUTBOX.c.message_id > messages[-1].message_id)
                             .values(lease_owner="another-host|1|stolen"))
        return self.inner.send(messages)

    def reconcile(self, messages: Sequence[Outgoing]) -> dict[int, str | None]:
        return self.inner.reconcile(messages)


def test_a_chunk_is_sent_only_while_its_lease_is_held(engine: Engine, pulse_home: Path) -> None:
    queue(engine, drafts(2))
    thief = Thief(engine, pulse_home / "outbox")
    report = send_due(engine, thief, send_chunk=1)
    assert (report.sent, report.outcomes["lease_lost"], thief.calls) == (1, 1, 1)
    assert len(written(pulse_home / "outbox")) == 1


def test_two_senders_at_once_keep_the_frequency_cap(engine: Engine, pulse_home: Path) -> None:
    """Six automated check-ins to one contact, two runs at the same moment: the cap (2)."""
    many = [Draft(kind="checkin", idempotency_key=f"cap:{i}", template="checkin",
                  to_email="same@example.com", contact_id="c-1", account_id="A1",
                  context={"account_name": "A", "csm_name": "Kim Lee",
                           "csm_email": "kim.lee@pulse.example"})
            for i in range(6)]
    queue(engine, many)
    noon = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # no quiet hours in UTC at noon
    reports: list[SendReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(send_due(engine, FileTransport(pulse_home / "outbox"), now=noon,
                                    batch_size=1))
        except BaseException as exc:  # shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert statuses(engine) == Counter({"sent": 2, "suppressed": 4})
    assert sum(r.sent for r in reports) == 2 and sum(r.by_rule["cap"] for r in reports) == 4


# ---------------------------------------------------------------------- a refused key


def test_a_refused_key_stops_the_run_leaves_rows_queued_and_a_fixed_key_sends_once(
        engine: Engine, db_url: str, pulse_home: Path, tmp_path: Path) -> None:
    queue(engine, drafts(1500, bodies=2))
    log = tmp_path / "refused.log"
    with SendGridDouble() as api:
        right, wrong = api.api_key, fake_api_key("revoked")
        proc = run_pulse(
            "outreach", "send", "--transport", "sendgrid", cwd=PROJECT_ROOT, timeout=120,
            env={**os.environ, "PULSE_DATABASE_URL": db_url, "PULSE_HOME": str(pulse_home),
                 "PULSE_SENDGRID_HOST": api.url, "PULSE_SENDGRID_API_KEY": wrong})
        log.write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 1, log.read_text()
        assert "transport 'sendgrid': SendGrid refused the API key (HTTP 401" in proc.stderr
        assert "stay queued" in proc.stderr
        assert wrong not in proc.stdout + proc.stderr and "SG.revoked" not in proc.stderr
        assert api.accepted == []
        assert statuses(engine) == Counter({"queued": 1500})
        with engine.connect() as conn:
            stored = set(conn.execute(select(OUTBOX.c.last_error)).scalars())
            attempts = set(conn.execute(select(OUTBOX.c.attempts)).scalars())
        assert attempts == {0} and all(wrong not in (e or "") for e in stored)

        api.fail_next(403, 1)  # a key without the mail.send scope: the same, in process
        with pytest.raises(TransportAuthError, match=r"HTTP 403") as refused:
            send_due(engine, SendGridTransport(api_key=right, host=api.url))
        assert refused.value.report is not None and refused.value.report.sent == 0
        assert statuses(engine) == Counter({"queued": 1500}) and api.accepted == []

        fixed = send_due(engine, SendGridTransport(api_key=right, host=api.url))
        assert fixed.sent == 1500
        assert api.accepted_counts() == Counter({str(i): 1 for i in range(1, 1501)})
        assert statuses(engine) == Counter({"sent": 1500})


# ---------------------------------------------------------------------- orphan .tmp files


def test_orphan_tmp_files_a_kill_left_are_removed_on_the_next_run(
        engine: Engine, pulse_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pulse_home / "outbox"
    folder.mkdir()
    old = folder / ".17.eml.4242.tmp"
    fresh = folder / ".18.eml.4243.tmp"  # a live writer's, a moment old
    for tmp in (old, fresh):
        tmp.write_bytes(b"half a message")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    monkeypatch.setenv("PULSE_OUTBOX_LEASE_SECONDS", "600")
    get_settings(fresh=True)
    queue(engine, drafts(2))
    assert send_due(engine, FileTransport(folder)).sent == 2
    assert sorted(p.name for p in folder.iterdir()) == [
        ".18.eml.4243.tmp", "1.eml", "2.eml", "index.html", "index.jsonl"]
