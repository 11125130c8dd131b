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
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, func, select

from pulse.core.settings import PROJECT_ROOT
from pulse.devkit.sendgrid_double import SendGridDouble
from pulse.outreach.outbox import Draft, queue
from pulse.sql.schema import OutboxMessage

OUTBOX = OutboxMessage.__table__
N = {"file": 4000, "sendgrid": 6000}


def drafts(n: int, prefix: str = "overlap", bodies: int = 1) -> list[Draft]:
    """`n` check-ins in `bodies` groups of a shared body (one SendGrid request per group and
    chunk of up to 1,000)."""
    return [Draft(
        kind="checkin", idempotency_key=f"{prefix}:{i}", template="checkin",
        to_email=f"contact{i}@example.com", to_name=f"Contact {i}", account_id=f"A{i % 40}",
        automated=False,  # not subject to quiet hours or the cap: this test is about claims
        context={"account_name": f"Account {i % 40}",
                 "note_lines": ["Your team has been quieter than usual this month."],
                 "csm_name": f"Dana Scully {i % bodies}", "csm_email": "dana@pulse-demo.example"},
        from_email="care@pulse-demo.example",
    ) for i in range(n)]


def sender(transport: str, db_url: str, home: Path, log: Path,
           api: SendGridDouble | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PULSE_DATABASE_URL": db_url, "PULSE_HOME": str(home)}
    env.pop("SENDGRID_API_KEY", None)
    if api is not None:
        env.update(PULSE_SENDGRID_HOST=api.url, PULSE_SENDGRID_API_KEY=api.api_key)
    return subprocess.Popen(
        [sys.executable, "-m", "pulse.cli", "outreach", "send", "--transport", transport,
         "--format", "json"],
        cwd=PROJECT_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


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
    print(reports)
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
