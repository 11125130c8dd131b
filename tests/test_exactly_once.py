"""Exactly once: the sender is killed mid-batch and run again; every queued message reaches
SendGrid (the local double) exactly once, nothing lost, nothing twice.

`pulse outreach send --transport sendgrid` runs as a user runs it, in a subprocess pointed at
the double. The double answers the first requests, then holds the next one: either without
accepting it (`hang`: SendGrid never saw it) or after accepting it (`accept_then_hang`: the
answer is lost, the in-doubt case). The process is killed with SIGKILL while it waits. The
re-run reconciles what the crash left `sending` through the Email Activity API, then sends
the rest; a third run sends nothing. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pulse.core.settings import PROJECT_ROOT
from pulse.devkit.sendgrid_double import SendGridDouble
from pulse.outreach.outbox import Draft, queue
from pulse.sql.schema import OutboxMessage
from tests.pulse_cli import PreloadedProcess, spawn_pulse

N = 2500
OUTBOX = OutboxMessage.__table__


def drafts(n: int) -> list[Draft]:
    return [Draft(
        kind="checkin", idempotency_key=f"exactly-once:{i}", template="checkin",
        to_email=f"contact{i}@example.com", to_name=f"Contact {i}", account_id=f"A{i % 40}",
        automated=False,  # not subject to quiet hours: the test must not depend on the clock
        context={"account_name": f"Account {i % 40}",
                 "csm_name": "Dana Scully", "csm_email": "dana@pulse-demo.example"},
        from_email="care@pulse-demo.example",
    ) for i in range(n)]


def sender(api: SendGridDouble, db_url: str, home: Path, log: Path) -> PreloadedProcess:
    """A `pulse outreach send` process of its own (the test may kill it), its output
    appended to `log`."""
    env = {**os.environ, "PULSE_DATABASE_URL": db_url, "PULSE_HOME": str(home),
           "PULSE_SENDGRID_HOST": api.url, "PULSE_SENDGRID_API_KEY": api.api_key,
           "PULSE_TRANSPORT": "file"}  # the flag below must choose sendgrid
    env.pop("SENDGRID_API_KEY", None)
    return spawn_pulse("outreach", "send", "--transport", "sendgrid", "--format", "json",
                       log=log, append=True, env=env, cwd=PROJECT_ROOT)


def run_to_end(api: SendGridDouble, db_url: str, home: Path, log: Path) -> None:
    proc = sender(api, db_url, home, log)
    assert proc.wait(timeout=300) == 0, log.read_text()


def rows(engine: Engine) -> dict[int, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.message_id: (r.status, r.provider_message_id) for r in conn.execute(
            select(OUTBOX.c.message_id, OUTBOX.c.status, OUTBOX.c.provider_message_id))}


@pytest.mark.parametrize("failure", ["hang", "accept_then_hang"])
def test_killed_mid_batch_then_rerun_sends_each_message_once(
        engine: Engine, db_url: str, pulse_home: Path, tmp_path: Path, failure: str) -> None:
    assert queue(engine, drafts(N)).queued == N
    log = tmp_path / "sender.log"
    with SendGridDouble() as api:
        # two requests answered (the CLI sends up to 1,000 messages per request), then a hold
        getattr(api, failure)(after=2)
        proc = sender(api, db_url, pulse_home, log)
        deadline = time.monotonic() + 120
        while api.held < 1:
            assert proc.poll() is None, f"the sender ended early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no request was held:\n{log.read_text()}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        before = Counter(status for status, _ in rows(engine).values())
        accepted_before = len(api.accepted)
        assert before["sent"] == 2000 and before["sending"] == 500, before
        assert accepted_before == (2000 if failure == "hang" else 2500)

        api.normal()
        run_to_end(api, db_url, pulse_home, log)
        after = rows(engine)
        counts = api.accepted_counts()
        assert counts == Counter({str(i): 1 for i in after}), (
            f"twice: {[k for k, v in counts.items() if v > 1][:5]}, "
            f"never: {sorted(set(map(str, after)) - set(counts))[:5]}")
        xid = {int(a.outbox_id or 0): a.x_message_id for a in api.accepted}
        assert {i: s for i, (s, _) in after.items()} == dict.fromkeys(after, "sent")
        assert {i: p for i, (_, p) in after.items()} == xid
        assert api.activity_requests >= 1  # the crash was reconciled with the provider

        requests = api.mail_requests
        run_to_end(api, db_url, pulse_home, log)
        assert api.mail_requests == requests and len(api.accepted) == N
        assert rows(engine) == after
