"""Outage notices on a demo world with a live incident, on SQLite and PostgreSQL: exactly the
accounts the incident hit hear about it, with their own numbers, once per stage; and a real
run of the pulse_outage DAG."""
from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from pulse.devkit.airflow_runner import run_dag_test
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.models.outage import refresh_impacts
from pulse.outreach.notices import queue_outage_notices, stage_of
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.db import make_engine, upgrade
from pulse.sql.schema import Contact, Incident, IncidentImpact, OutboxMessage
from tests.test_dags import af_env, airflow_db  # noqa: F401  (fixtures)

OUTBOX = OutboxMessage.__table__


def _world(engine: Engine, folder: Path, seed: int = 5) -> dict:
    summary = generate(folder, accounts=150, days=30, seed=seed, live_incident=True)
    land_files(engine, list(summary.files.values()))
    return json.loads(summary.truth_path.read_text())


def _notices(engine: Engine, incident: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(OUTBOX).where(
            OUTBOX.c.incident_id == incident)).mappings()]


def test_stage_of() -> None:
    assert stage_of("investigating", "minor", None) == "started"
    assert stage_of("identified", "minor", "identified") == "started"  # minor: no updates
    assert stage_of("monitoring", "major", "monitoring") == "update-monitoring"
    assert stage_of("resolved", "critical", "monitoring") == "resolved"


def test_notices_reach_exactly_the_hit_accounts_with_their_numbers(
        engine: Engine, tmp_path: Path) -> None:
    truth = _world(engine, tmp_path / "world")
    live = truth["live_incident"]
    now = datetime.now(UTC)
    refresh_impacts(engine, now=now)
    report = queue_outage_notices(engine, now=now)
    assert report.queued == report.planned > 0 and live in report.latency_seconds

    rows = _notices(engine, live)
    hit = set(truth["incident_hits"][live])
    assert {r["account_id"] for r in rows} == hit  # precision and recall 1.0
    with engine.connect() as conn:
        contacts = {c.contact_id: c for c in conn.execute(select(Contact.__table__))}
        impacts = {r.account_id: r for r in conn.execute(
            select(IncidentImpact.__table__).where(IncidentImpact.incident_id == live))}
        impact_level = conn.execute(select(Incident.impact).where(
            Incident.incident_id == live)).scalar_one()
    keys = [r["idempotency_key"] for r in rows]
    assert len(keys) == len(set(keys))
    for r in rows:
        c = contacts[r["contact_id"]]
        assert c.account_id == r["account_id"] and r["to_email"] == c.email.lower()
        assert r["idempotency_key"] == f"notice:{live}:started:{r['contact_id']}"
        assert r["urgent"] is (impact_level in ("major", "critical"))
        own = impacts[r["account_id"]]
        ctx = r["context"]
        assert (ctx["failed_requests"], ctx["total_requests"], ctx["affected_users"]) == (
            own.failed_requests, own.total_requests, own.affected_users)

    sent = send_due(engine, FileTransport(), now=now)
    rows = _notices(engine, live)
    status = Counter(r["status"] for r in rows)
    assert set(status) <= {"sent", "suppressed"} and status["sent"] > 0
    for r in rows:
        if r["status"] == "suppressed":  # only the contacts who opted out
            assert r["rule"] == "opted_out" and contacts[r["contact_id"]].opted_out
        else:
            assert not contacts[r["contact_id"]].opted_out
    assert sent.sent >= status["sent"]

    # The e-mail itself: their own numbers, and a one-click unsubscribe.
    one = next(r for r in rows if r["status"] == "sent")
    eml = FileTransport().folder / f"{one['message_id']}.eml"
    msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/u/" in msg["List-Unsubscribe"]
    text = msg.get_body(("plain",)).get_content()
    assert f"{int(one['context']['failed_requests']):,}" in text

    # Re-running changes nothing; resolving the incident sends one more stage.
    again = queue_outage_notices(engine, now=now)
    assert again.queued == 0 and again.duplicates == again.planned
    assert send_due(engine, FileTransport(), now=now).sent == 0
    with engine.begin() as conn:
        conn.execute(update(Incident).where(Incident.incident_id == live).values(
            status="resolved", resolved_at=now, updated_at=now + timedelta(seconds=1)))
    refresh_impacts(engine, now=now + timedelta(minutes=5))
    resolved = queue_outage_notices(engine, now=now + timedelta(minutes=5))
    assert resolved.by_stage == Counter({"resolved": resolved.planned})
    stages = Counter(r["idempotency_key"].split(":")[2] for r in _notices(engine, live))
    assert stages["resolved"] == stages["started"]


def test_an_old_resolved_incident_is_not_news(engine: Engine, tmp_path: Path) -> None:
    truth = _world(engine, tmp_path / "world", seed=6)
    refresh_impacts(engine)
    queue_outage_notices(engine)
    with engine.connect() as conn:
        told = set(conn.execute(select(OUTBOX.c.incident_id).distinct()).scalars())
        old = set(conn.execute(select(Incident.incident_id).where(
            Incident.resolved_at < datetime.now(UTC) - timedelta(hours=48))).scalars())
    assert old and not (told & old)
    assert truth["live_incident"] in told


@pytest.mark.airflow
def test_pulse_outage_dag_tells_the_hit_accounts_once(
        af_env: dict[str, str], pulse_home: Path  # noqa: F811
) -> None:
    engine = make_engine()
    upgrade(engine)
    truth = _world(engine, pulse_home / "world")
    live = truth["live_incident"]
    run_dag_test("pulse_outage", env=af_env)
    rows = _notices(engine, live)
    assert {r["account_id"] for r in rows} == set(truth["incident_hits"][live])
    assert {r["status"] for r in rows} <= {"sent", "suppressed"}
    sent = {r["message_id"] for r in rows if r["status"] == "sent"}
    assert {int(p.stem) for p in (pulse_home / "outbox").glob("*.eml")} >= sent
    run_dag_test("pulse_outage", env=af_env)  # a second run: nothing new, nothing twice
    assert _notices(engine, live) == rows
    engine.dispose()
