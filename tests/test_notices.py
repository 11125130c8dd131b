"""Outage notices on a demo world with a live incident, on SQLite and PostgreSQL: exactly the
accounts the incident hit hear about it, with their own numbers, once per stage; and a real
run of the pulse_outage DAG."""
from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, update

from pulse.devkit.airflow_runner import run_dag_test
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.listeners.statuspage import import_statuspage
from pulse.models.outage import refresh_impacts
from pulse.outreach.notices import (
    component_name,
    component_names,
    queue_outage_notices,
    region_names,
    stage_kind,
    stage_of,
)
from pulse.outreach.outbox_send import send_due
from pulse.outreach.render import Renderer
from pulse.outreach.transports.file import FileTransport
from pulse.sql.db import make_engine, upgrade
from pulse.sql.schema import Contact, Incident, IncidentImpact, OutboxMessage
from tests.test_dags import af_env, airflow_db  # noqa: F401  (fixtures)

OUTBOX = OutboxMessage.__table__


def _world(engine: Engine, folder: Path, seed: int = 5, *, accounts: int = 150,
           days: int = 30) -> dict:
    summary = generate(folder, accounts=accounts, days=days, seed=seed, live_incident=True)
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


# --------------------------------------------------------------------------- what a notice says

NOON = datetime(2026, 7, 1, 12, tzinfo=UTC)
HIT = {"title": "Scheduled reports failing", "status": "investigating", "impact": "major",
       "affected_components": ["Scheduled reports"], "next_update_hours": 2,
       "contact_name": "Ana", "timezone": "Europe/Paris", "components": ["Scheduled reports"],
       "failed_requests": 4.0, "total_requests": 4.0, "failed_events": 4, "affected_users": 2,
       "first_affected_at": "2026-07-01T09:00:00+00:00",
       "last_affected_at": "2026-07-01T09:40:00+00:00"}


def _notice(**ctx: object) -> tuple[str, str]:
    renderer = Renderer(now=NOON)
    context = {**HIT, **ctx}
    subject = renderer.subject("outage_notice", context)
    msg = renderer.outgoing({"message_id": 1, "kind": "outage_notice",
                             "template": "outage_notice", "to_email": "a@x.example",
                             "to_name": "Ana", "subject": subject, "context": context})
    return subject, " ".join(msg.full_text().split())


def test_a_contact_the_errors_missed_is_not_told_the_workspace_had_none() -> None:
    _, text = _notice(stage="started", you_were_affected=False)
    assert "Failed requests: 4 of 4 (100.0%)" in text
    assert "no failed requests" not in text
    assert "You did not run into these errors yourself; others in your workspace did" in text
    _, mine = _notice(stage="started", you_were_affected=True)
    assert "You did not run into" not in mine and "no failed requests" not in mine
    # an account that only used the components, without errors, is told just that
    _, exposed = _notice(stage="started", you_were_affected=False, failed_requests=0.0,
                         failed_events=0, affected_users=0)
    assert "we saw no failed requests from it so far" in exposed


def test_each_stage_says_its_own_thing_and_its_subject_carries_the_status() -> None:
    subject, started = _notice(stage="started", you_were_affected=True)
    assert subject == "[Investigating] Scheduled reports failing"
    assert "We are sorry" in started and "What is affected: Scheduled reports" in started
    assert "What we are doing Our engineers are working on it now." in started
    assert "Next update: within 2 hours" in started

    subject, update = _notice(stage="update", status="identified", you_were_affected=True,
                              latest_update="A bad deploy; rolling it back.")
    assert subject == "[Update] Scheduled reports failing"
    assert "What changed A bad deploy; rolling it back." in update
    assert "Next update: within 2 hours" in update

    subject, resolved = _notice(stage="resolved", status="resolved", you_were_affected=True,
                                latest_update="A disk filled up; we added capacity.")
    assert subject == "[Resolved] Scheduled reports failing"
    assert "What caused it and what we did A disk filled up; we added capacity." in resolved
    assert "Next update" not in resolved and "What is affected" not in resolved
    # the customer's own totals, in their own time zone (Paris: UTC+2 in July)
    assert "Failed requests: 4 of 4" in resolved and "Users affected: 2" in resolved
    assert "11:00" in resolved and "11:40" in resolved
    assert "sorry for the disruption" in resolved
    assert "Service credit" not in resolved  # no SLA credit owed: none mentioned
    _, owed = _notice(stage="resolved", status="resolved", you_were_affected=True,
                      service_credit={"month": "July 2026", "uptime": "99.798%",
                                      "promised": "99.9%", "percent": "10%",
                                      "amount": "EUR 120.00"})
    assert ("your service agreement promises 99.9% monthly uptime. With this incident, "
            "July 2026 stands at 99.798%, so you are owed a service credit of 10% of your "
            "monthly fee: EUR 120.00") in owed


def test_components_are_named_as_customers_know_them() -> None:
    assert component_name("reports") == "Scheduled reports"
    assert component_name("REPORTS") == "Scheduled reports"
    assert component_name("billing-portal") == "Billing portal"
    assert component_name("bulk_export") == "Bulk export"  # not in the catalogue
    assert component_names(["reports", "api", "reports", " "]) == ["Scheduled reports", "API"]
    assert region_names(["us-east", "ap-southeast", "us-east", "sa-north_2", " "]) == [
        "US East", "Asia Pacific (Southeast)", "SA North 2"]  # the last one humanised
    assert region_names(None) == [] and region_names(float("nan")) == []
    assert stage_kind("update-monitoring") == "update" and stage_kind("resolved") == "resolved"


# --------------------------------------------------------------------------- one reader, every stage


def _page(incident: dict, status: str, updates: list[tuple[str, str, datetime]], *,
          resolved_at: datetime | None = None) -> dict:
    """The status page's incidents document for the demo's live incident."""
    return {"page": {"id": "demo", "name": "Pulse Demo"}, "incidents": [{
        "id": incident["incident_id"], "name": incident["title"], "status": status,
        "impact": incident["impact"], "started_at": incident["started_at"].isoformat(),
        "resolved_at": resolved_at.isoformat() if resolved_at else None,
        "components": [{"name": c} for c in incident["components"]],
        "incident_updates": [{"id": f"up-{i}", "status": st, "body": body,
                              "created_at": when.isoformat()}
                             for i, (st, body, when) in enumerate(updates)]}]}


def _digits(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def test_a_contact_reads_every_stage_of_a_demo_incident_in_order(
        engine: Engine, tmp_path: Path) -> None:
    truth = _world(engine, tmp_path / "world", seed=5, accounts=30, days=10)
    live = truth["live_incident"]
    with engine.connect() as conn:
        incident = dict(conn.execute(select(Incident.__table__).where(
            Incident.incident_id == live)).mappings().one())
    transport = FileTransport(tmp_path / "outbox")
    page = tmp_path / "incidents.json"
    t0 = datetime.now(UTC)
    said = [("investigating", "We are looking into errors in the affected components.",
             t0 - timedelta(minutes=40))]
    stages = [("started", "investigating", t0, None),
              ("update-identified", "identified", t0 + timedelta(minutes=20), None),
              ("resolved", "resolved", t0 + timedelta(minutes=60), t0 + timedelta(minutes=50))]
    news = {"update-identified": ("identified", "A faulty deploy; we are rolling it back."),
            "resolved": ("resolved", "A faulty deploy filled a queue; we rolled it back and "
                                     "drained the queue.")}
    for stage, status, now, resolved_at in stages:
        if stage in news:
            said.append((*news[stage], now - timedelta(minutes=5)))
        page.write_text(json.dumps(_page(incident, status, said, resolved_at=resolved_at)))
        import_statuspage(engine, page, now=now)
        refresh_impacts(engine, now=now)
        report = queue_outage_notices(engine, incident_id=live, now=now)
        assert set(report.by_stage) == {stage} and report.queued == report.planned > 0
        send_due(engine, transport, now=now)

    # One contact who ran into the errors, and every notice they received, in order.
    rows = sorted((r for r in _notices(engine, live) if r["context"]["you_were_affected"]),
                  key=lambda r: r["message_id"])
    reader = rows[0]["contact_id"]
    mine = [r for r in rows if r["contact_id"] == reader]
    assert [r["idempotency_key"].split(":")[2] for r in mine] == [s[0] for s in stages]
    assert {r["status"] for r in mine} == {"sent"}
    mails = [BytesParser(policy=policy.default).parse(transport.path(r["message_id"]).open("rb"))
             for r in mine]
    texts = [" ".join(m.get_body(("plain",)).get_content().split()) for m in mails]
    title = incident["title"]
    assert [m["Subject"] for m in mails] == [
        f"[Investigating] {title}", f"[Update] {title}", f"[Resolved] {title}"]

    started, update, resolved = texts
    shown = component_names(incident["components"])
    assert shown and f"What is affected: {', '.join(shown)}" in started
    for raw, name in zip(incident["components"], shown, strict=True):
        if raw.lower() != name.lower():  # a display name, never the id ("reports")
            assert f"What is affected: {raw}" not in started
    assert "Next update: within 2 hours" in started and "We are sorry" in started
    assert f"What we are doing {said[0][1]}" in started
    assert f"What changed {news['update-identified'][1]}" in update
    assert f"What caused it and what we did {news['resolved'][1]}" in resolved
    assert "Next update" not in resolved and "What is affected" not in resolved

    # The resolved notice carries the contact's own totals, in their own time zone.
    with engine.connect() as conn:
        own = conn.execute(select(IncidentImpact.__table__).where(
            IncidentImpact.incident_id == live,
            IncidentImpact.account_id == mine[-1]["account_id"])).mappings().one()
        tz = conn.execute(select(Contact.timezone).where(
            Contact.contact_id == reader)).scalar_one()
    failed, total = re.search(r"Failed requests: ([\d,.\s]+) of ([\d,.\s]+) \(",
                              resolved).groups()
    assert (_digits(failed), _digits(total)) == (own["failed_requests"], own["total_requests"])
    assert own["failed_requests"] > 0
    users = re.search(r"Users affected: ([\d,.\s]+)", resolved)
    assert users and _digits(users.group(1)) == own["affected_users"] > 0
    for label, instant in (("First", own["first_affected_at"]), ("Last", own["last_affected_at"])):
        local = instant.astimezone(ZoneInfo(tz))
        line = re.search(rf"{label} affected: (.+?) - ", resolved + " - ").group(1)
        assert local.strftime("%H:%M") in line or local.strftime("%-I:%M") in line, (line, tz)
    # Nothing contradicts: failed requests are never next to "no failed requests".
    for text in texts:
        assert "no failed requests" not in text
        assert "You did not run into" not in text  # they did
