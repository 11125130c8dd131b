"""CSAT surveys on a hand-made world, on SQLite and PostgreSQL: when a survey is due, the
fatigue rules and their recorded reasons, the email and its signed rating links, re-runs
(the function and the pulse_surveys DAG) that send nothing twice, the incident trigger."""
from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from pulse.core.errors import TokenError
from pulse.core.settings import get_settings
from pulse.devkit.airflow_runner import run_dag_test
from pulse.listeners.landing import land_file
from pulse.outreach.outbox import Draft, add_suppression, queue
from pulse.outreach.outbox_send import send_due
from pulse.outreach.surveys import plan_surveys, queue_due_surveys
from pulse.outreach.tokens import verify
from pulse.outreach.transports.file import FileTransport
from pulse.sql.db import make_engine, upgrade
from pulse.sql.schema import IncidentImpact, OutboxMessage, Survey
from tests.test_dags import af_env, airflow_db  # noqa: F401  (fixtures)

SURVEYS = Survey.__table__
OUTBOX = OutboxMessage.__table__
LANDED = datetime(2026, 7, 10, 10, 0, tzinfo=UTC)
N = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)  # "now" of the main run

ACCOUNTS = """account_id,name,mrr,csm_email
acc-1,Northwind <Traders>,1000,Ana.CSM@pulse.example
acc-2,Initech,500,bo.csm@pulse.example
acc-gone,Gone Ltd,100,ana.csm@pulse.example
"""
CONTACTS = """contact_id,account_id,email,name,role,timezone,opted_out
c1,acc-1,ana@northwind.example,Ana,admin,UTC,false
c2,acc-1,bo@northwind.example,Bo,,UTC,true
c3,acc-1,cy@northwind.example,Cy,,UTC,false
c4,acc-2,di@initech.example,Di,,UTC,false
c5,acc-gone,eve@gone.example,Eve,,UTC,false
c6,acc-2,fay@initech.example,Fay,,Europe/Paris,false
c7,acc-1,gus@northwind.example,Gus,,UTC,false
c8,acc-1,hal@northwind.example,Hal,,UTC,false
c9,acc-2,ivy@initech.example,Ivy,admin,UTC,false
c10,acc-1,jo@northwind.example,Jo,,UTC,false
"""
PURCHASES = """event_id,account_id,occurred_at,kind,amount,mrr_after
p1,acc-gone,2026-01-01T00:00:00Z,subscription_started,100,100
p2,acc-gone,2026-07-01T00:00:00Z,cancelled,0,0
"""
TICKETS = """ticket_id,account_id,opened_at,resolved_at,status,contact_id,subject
t1,acc-1,2026-07-08T08:00:00Z,2026-07-09T10:00:00Z,solved,c1,Export <fails> & “crashes”
t-late,acc-1,2026-07-09T08:00:00Z,2026-07-10T00:00:00Z,solved,c7,Late one
t-reopen,acc-1,2026-07-08T08:00:00Z,2026-07-09T09:00:00Z,solved,c8,Comes back
t-opted,acc-1,2026-07-08T08:00:00Z,2026-07-09T09:00:00Z,solved,c2,Opted out
t-sup,acc-1,2026-07-08T08:00:00Z,2026-07-09T09:00:00Z,solved,c3,Suppressed
t-gone,acc-gone,2026-07-08T08:00:00Z,2026-07-09T09:00:00Z,closed,c5,Churned
t-open-a,acc-2,2026-07-08T08:00:00Z,2026-07-09T09:00:00Z,solved,c4,First of two
t-open-b,acc-2,2026-07-09T08:00:00Z,,open,c4,Still open
t-nocontact,acc-2,2026-07-08T08:00:00Z,2026-07-09T09:00:00Z,solved,,Nobody
t-old,acc-1,2026-05-01T08:00:00Z,2026-05-02T09:00:00Z,solved,c10,Long ago
f1,acc-2,2026-07-03T08:00:00Z,2026-07-03T10:00:00Z,solved,c6,One
f2,acc-2,2026-07-05T08:00:00Z,2026-07-05T10:00:00Z,solved,c6,Two
f3,acc-2,2026-07-07T08:00:00Z,2026-07-07T10:00:00Z,solved,c6,Three
"""
INCIDENTS = """\
{"incident_id": "i1", "title": "Exports <failing>", "started_at": "2026-07-08T06:00:00Z", \
"status": "resolved", "resolved_at": "2026-07-08T09:00:00Z", "impact": "major", \
"components": ["exports"]}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def land(engine: Engine, folder: Path, name: str, text: str, *, now: datetime = LANDED) -> None:
    result = land_file(engine, _write(folder, name, text), now=now)
    assert result.quarantined == 0, (name, result.reasons)


def land_world(engine: Engine, folder: Path) -> None:
    """The hand-made world above, every row known by LANDED; c3 on the suppression list."""
    for name, text in (("accounts.csv", ACCOUNTS), ("contacts.csv", CONTACTS),
                       ("purchases.csv", PURCHASES), ("tickets.csv", TICKETS),
                       ("incidents.jsonl", INCIDENTS)):
        land(engine, folder, name, text)
    add_suppression(engine, "cy@northwind.example", reason="bounce", source="webhook",
                    now=LANDED)


def surveys(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["survey_key"]: dict(r) for r in conn.execute(select(SURVEYS)).mappings()}


def outbox(engine: Engine, kind: str = "csat_survey") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(OUTBOX).where(OUTBOX.c.kind == kind)
                                              .order_by(OUTBOX.c.message_id)).mappings()]


def test_due_surveys_and_every_skip_with_its_reason(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    # Re-opened before the delay ran out: the warehouse now says open.
    land(engine, tmp_path / "later", "tickets.csv",
         "ticket_id,account_id,opened_at,status,contact_id\n"
         "t-reopen,acc-1,2026-07-08T08:00:00Z,open,c8\n",
         now=LANDED + timedelta(minutes=30))

    report = queue_due_surveys(engine, now=N)
    rows = surveys(engine)
    queued = {k for k, r in rows.items() if r["status"] == "queued"}
    skipped = {k: r["skip_reason"] for k, r in rows.items() if r["status"] == "skipped"}
    # t1 is due (solved 26 h ago); of Fay's three solved tickets the first goes.
    assert queued == {"ticket:t1", "ticket:f1"}
    assert skipped == {
        "ticket:t-opted": "opted_out", "ticket:t-sup": "suppressed",
        "ticket:t-gone": "churned", "ticket:t-open-a": "open_ticket",
        "ticket:t-nocontact": "no_contact", "ticket:f2": "recontact",
        "ticket:f3": "recontact",
    }
    # Not due: solved 12 h ago; re-opened; resolved too long ago to ask about.
    assert not {"ticket:t-late", "ticket:t-reopen", "ticket:t-old"} & set(rows)
    assert report.queued == 2 and report.planned == 9
    assert report.skipped == Counter({"recontact": 2, "opted_out": 1, "suppressed": 1,
                                      "churned": 1, "open_ticket": 1, "no_contact": 1})
    assert "t-open-b" in rows["ticket:t-open-a"]["skip_detail"]
    t1 = rows["ticket:t1"]
    assert t1["question"] == ("How satisfied were you with the resolution of your ticket "
                              "\u201cExport <fails> & \u201ccrashes\u201d\u201d?")
    assert (t1["account_id"], t1["contact_id"], t1["trigger"], t1["channel"]) == (
        "acc-1", "c1", "ticket", "email")
    assert t1["due_at"] == datetime(2026, 7, 10, 10, 0, tzinfo=UTC)
    assert t1["expires_at"] == N + timedelta(days=14)
    # Each queued survey has exactly its outbox message, automated and not urgent.
    messages = {m["message_id"]: m for m in outbox(engine)}
    assert {rows[k]["message_id"] for k in queued} == set(messages)
    for key in queued:
        m = messages[rows[key]["message_id"]]
        assert m["idempotency_key"] == f"survey:{key}"
        assert m["contact_id"] == rows[key]["contact_id"]
        assert m["automated"] and not m["urgent"] and m["template"] == "csat_survey"
        assert m["context"]["survey_id"] == rows[key]["survey_id"]

    # The same hour again: nothing new planned, recorded or queued.
    again = queue_due_surveys(engine, now=N)
    assert (again.planned, again.queued) == (0, 0)
    assert surveys(engine) == rows and len(outbox(engine)) == 2


def test_the_delay_and_the_still_solved_check(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    # One minute before t1's 24 hours are up it is not due; at the minute it is.
    early = plan_surveys(engine, now=datetime(2026, 7, 10, 9, 59, tzinfo=UTC))
    assert "ticket:t1" not in set(early.surveys["survey_key"])
    on_time = plan_surveys(engine, now=datetime(2026, 7, 10, 10, 0, tzinfo=UTC))
    assert "ticket:t1" in set(on_time.queued["survey_key"])
    # t-late becomes due at 07-11 00:00; re-opened before then, it never does.
    land(engine, tmp_path / "reopen", "tickets.csv",
         "ticket_id,account_id,opened_at,status,contact_id\n"
         "t-late,acc-1,2026-07-09T08:00:00Z,open,c7\n", now=LANDED + timedelta(hours=1))
    queue_due_surveys(engine, now=datetime(2026, 7, 11, 1, 0, tzinfo=UTC))
    assert not [k for k in surveys(engine) if k.startswith("ticket:t-late")]
    # Solved again later: the delay starts from the new resolution.
    land(engine, tmp_path / "resolve", "tickets.csv",
         "ticket_id,account_id,opened_at,resolved_at,status,contact_id\n"
         "t-late,acc-1,2026-07-09T08:00:00Z,2026-07-11T06:00:00Z,solved,c7\n",
         now=datetime(2026, 7, 11, 6, 5, tzinfo=UTC))
    queue_due_surveys(engine, now=datetime(2026, 7, 12, 5, 0, tzinfo=UTC))
    assert "ticket:t-late" not in surveys(engine)
    queue_due_surveys(engine, now=datetime(2026, 7, 12, 6, 0, tzinfo=UTC))
    assert surveys(engine)["ticket:t-late"]["status"] == "queued"


def test_three_solved_tickets_in_a_week_hourly_runs_give_one_survey(
        engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    start = datetime(2026, 7, 3, 0, 0, tzinfo=UTC)
    for hour in range(0, 7 * 24, 1):  # the DAG runs every hour for a week
        queue_due_surveys(engine, now=start + timedelta(hours=hour))
    fay = {k: r for k, r in surveys(engine).items() if r["contact_id"] == "c6"}
    assert {k: (r["status"], r["skip_reason"]) for k, r in fay.items()} == {
        "ticket:f1": ("queued", None), "ticket:f2": ("skipped", "recontact"),
        "ticket:f3": ("skipped", "recontact")}
    assert fay["ticket:f1"]["created_at"] == datetime(2026, 7, 4, 10, 0, tzinfo=UTC)


def test_never_two_surveys_for_one_ticket(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    queue_due_surveys(engine, now=N)
    # t1 is re-opened and solved again three days later: still one survey for it.
    land(engine, tmp_path / "again", "tickets.csv",
         "ticket_id,account_id,opened_at,resolved_at,status,contact_id\n"
         "t1,acc-1,2026-07-08T08:00:00Z,2026-07-12T10:00:00Z,solved,c1\n",
         now=datetime(2026, 7, 12, 10, 5, tzinfo=UTC))
    later = datetime(2026, 7, 13, 11, 0, tzinfo=UTC)
    report = queue_due_surveys(engine, now=later)
    assert report.skipped == Counter({"duplicate_ticket": 1})
    assert report.queued == 1  # t-late, Gus's, came due meanwhile
    rows = [r for r in surveys(engine).values() if r["ticket_id"] == "t1"]
    assert sorted((r["status"], r["skip_reason"]) for r in rows) == [
        ("queued", None), ("skipped", "duplicate_ticket")]
    assert queue_due_surveys(engine, now=later).planned == 0
    assert len([m for m in outbox(engine) if m["contact_id"] == "c1"]) == 1


LINK = re.compile(r"(https?://[^\s\"'<>]+/s/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+))")


def test_the_email_has_five_signed_links_and_nothing_else_in_clear(
        engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    queue_due_surveys(engine, now=N)
    sent = send_due(engine, FileTransport(), now=N)
    assert sent.sent == 3  # t1 (Ana), t-reopen (Hal, solved here), f1 (Fay)
    t1 = surveys(engine)["ticket:t1"]
    eml = FileTransport().path(t1["message_id"])
    msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
    assert msg["To"] == "Ana <ana@northwind.example>"
    assert "Export" in msg["Subject"]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    base = get_settings().public_base_url.rstrip("/")
    for body in (html, text):
        links = LINK.findall(body)
        assert len(links) == 5
        ratings = []
        for url, token in links:
            assert url == f"{base}/s/{token}"  # no query string, nothing but the token
            data = verify("survey", token, now=N)
            assert set(data) == {"s", "c", "r"}
            assert (data["s"], data["c"]) == (t1["survey_id"], "c1")
            ratings.append(data["r"])
            # The payload names ids only: no address, no name, no account.
            assert "northwind" not in token and "@" not in token
            verify("survey", token, now=N + timedelta(days=13, hours=23))
            with pytest.raises(TokenError) as exc:
                verify("survey", token, now=N + timedelta(days=14, minutes=1))
            assert exc.value.reason == "expired"
            with pytest.raises(TokenError):
                verify("unsubscribe", token, now=N)
        assert ratings == [1, 2, 3, 4, 5]
    # One question, five labelled buttons; the ticket's subject escaped.
    assert html.count("How satisfied were you") == 1
    assert "Export &lt;fails&gt; &amp; \u201ccrashes\u201d" in html and "<fails>" not in html
    for label in ("Very dissatisfied", "Dissatisfied", "Satisfied", "Very satisfied"):
        assert f"{label}</span>" in html
    assert 'aria-label="Rate 1 of 5: Very dissatisfied"' in html
    # Nothing about another customer: Fay's survey is a different message.
    assert "fay@" not in html and "Initech" not in html

    # Re-running the hour sends nothing twice.
    assert queue_due_surveys(engine, now=N).queued == 0
    assert send_due(engine, FileTransport(), now=N).sent == 0
    assert len(list(FileTransport().folder.glob("*.eml"))) == 3


def test_quiet_hours_and_the_cap_of_the_outbox_apply(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    # Ana already had two automated messages this week: the cap stops her survey.
    queue(engine, [Draft(kind="checkin", idempotency_key=f"checkin:acc-1:{i}",
                         template="checkin", to_email="ana@northwind.example",
                         contact_id="c1", account_id="acc-1",
                         context={"account_name": "Northwind",
                                  "csm_name": "Ana", "csm_email": "ana.csm@pulse.example"})
                   for i in (1, 2)], now=N - timedelta(days=2))
    assert send_due(engine, FileTransport(), now=N - timedelta(days=2)).sent == 2
    evening = datetime(2026, 7, 10, 19, 30, tzinfo=UTC)  # 21:30 in Paris
    queue_due_surveys(engine, now=evening)
    report = send_due(engine, FileTransport(), now=evening)
    assert report.by_rule["cap"] == 1  # Ana
    assert report.by_rule["quiet_hours"] == 1  # Fay, in Paris: waits until 08:00 there
    fay = next(m for m in outbox(engine) if m["contact_id"] == "c6")
    assert fay["status"] == "queued" and fay["not_before"] == datetime(
        2026, 7, 11, 6, 0, tzinfo=UTC)


def _incident_world(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    im = IncidentImpact.__table__
    common = {"incident_id": "i1", "failed_events": 0, "total_events": 1,
              "failed_requests": 0.0, "total_requests": 1.0, "affected_users": 0,
              "components": ["exports"], "regions": [],
              "window_start": datetime(2026, 7, 8, 6, 0, tzinfo=UTC),
              "window_end": datetime(2026, 7, 8, 9, 0, tzinfo=UTC), "computed_at": LANDED}
    with engine.begin() as conn:
        conn.execute(insert(im), [{**common, "account_id": "acc-1", "status": "hit"},
                                  {**common, "account_id": "acc-2", "status": "exposed"}])
    notices = [Draft(kind="outage_notice", idempotency_key=f"notice:i1:resolved:{c}",
                     template="outage_notice", to_email=email, contact_id=c, account_id=acc,
                     incident_id="i1", context={"title": "Exports", "stage": "resolved"})
               for c, acc, email in (("c7", "acc-1", "gus@northwind.example"),
                                     ("c10", "acc-1", "jo@northwind.example"),
                                     ("c9", "acc-2", "ivy@initech.example"))]
    queue(engine, notices, now=datetime(2026, 7, 8, 9, 30, tzinfo=UTC))
    with engine.begin() as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.kind == "outage_notice")
                     .values(status="sent", sent_at=datetime(2026, 7, 8, 9, 31, tzinfo=UTC)))
        conn.execute(update(OUTBOX).where(OUTBOX.c.contact_id == "c10")
                     .values(status="suppressed", rule="cap"))  # Jo never received it


def test_a_resolved_incident_surveys_the_hit_contacts_who_received_its_notices(
        engine: Engine, tmp_path: Path) -> None:
    _incident_world(engine, tmp_path)
    early = queue_due_surveys(engine, now=datetime(2026, 7, 9, 8, 59, tzinfo=UTC))
    assert not [k for k in surveys(engine) if k.startswith("incident:")]
    assert early.by_trigger["incident"] == 0
    queue_due_surveys(engine, now=datetime(2026, 7, 9, 9, 0, tzinfo=UTC))
    incident = {k: r for k, r in surveys(engine).items() if r["trigger"] == "incident"}
    # Gus (hit account, notice sent); not Jo (notice never sent), not Ivy (exposed only).
    assert set(incident) == {"incident:i1:c7"}
    row = incident["incident:i1:c7"]
    assert row["status"] == "queued" and row["incident_id"] == "i1"
    assert row["question"] == ("How satisfied were you with our handling of incident "
                               "\u201cExports <failing>\u201d?")
    send_due(engine, FileTransport(), now=datetime(2026, 7, 9, 9, 0, tzinfo=UTC))
    msg = BytesParser(policy=policy.default).parse(
        FileTransport().path(row["message_id"]).open("rb"))
    assert "Exports <failing>" in msg["Subject"]
    assert "Exports &lt;failing&gt;" in msg.get_body(("html",)).get_content()
    # Gus's own ticket, solved next day, is one survey too many within 30 days.
    later = queue_due_surveys(engine, now=datetime(2026, 7, 11, 1, 0, tzinfo=UTC))
    assert surveys(engine)["ticket:t-late"]["skip_reason"] == "recontact"
    assert later.skipped["recontact"] == 1


def test_the_relationship_survey_is_periodic(engine: Engine, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    land_world(engine, tmp_path)
    monkeypatch.setenv("PULSE_RELATIONSHIP_SURVEY_DAYS", "90")
    get_settings(fresh=True)
    queue_due_surveys(engine, now=N)
    rel = {k: r for k, r in surveys(engine).items() if r["trigger"] == "relationship"}
    # The admins: Ana already gets the survey of her ticket t1 in this run; Ivy gets this one.
    assert {k: r["skip_reason"] for k, r in rel.items()} == {
        "relationship:c1:2026-07": "recontact", "relationship:c9:2026-07": None}
    assert rel["relationship:c9:2026-07"]["question"] == (
        "How satisfied are you with Pulse Demo Inc. overall?")
    # Next month Ivy is not asked again (within 90 days); Ana may be (30 days since t1).
    queue_due_surveys(engine, now=N + timedelta(days=31))
    keys = set(surveys(engine))
    assert "relationship:c9:2026-08" not in keys and "relationship:c1:2026-08" in keys


@pytest.mark.airflow
def test_the_pulse_surveys_dag_sends_nothing_twice(
        af_env: dict[str, str], pulse_home: Path, tmp_path: Path) -> None:  # noqa: F811
    engine = make_engine()
    upgrade(engine)
    land_world(engine, tmp_path / "world")
    when = N.isoformat()
    first = run_dag_test("pulse_surveys", logical_date=when, env=af_env)
    assert "queued 3" in first.stdout
    sent = [m for m in outbox(engine) if m["status"] == "sent"]
    assert len(sent) == 3
    # An answer rated 1 whose page died before queueing the CSM alert: the hour's sweep
    # alerts (issue 13), once.
    from pulse.listeners.surveys import record_rating

    sid, contact = next((r["survey_id"], r["contact_id"]) for r in surveys(engine).values()
                        if r["status"] == "queued")
    record_rating(engine, sid, contact, 1, now=N + timedelta(minutes=5))
    run_dag_test("pulse_surveys", logical_date=when, env=af_env)  # a re-run of the hour
    assert [m["message_id"] for m in outbox(engine) if m["status"] == "sent"] == [
        m["message_id"] for m in sent]
    [alert] = outbox(engine, "csat_alert")
    assert alert["idempotency_key"] == f"csat_alert:{sid}" and alert["status"] == "sent"
    assert len(list((pulse_home / "outbox").glob("*.eml"))) == 3 + 1
    assert len([r for r in surveys(engine).values() if r["status"] == "queued"]) == 3
    engine.dispose()


def test_the_survey_email_says_what_answering_takes() -> None:
    """A rating link opens a page that asks to confirm (link scanners follow links): the
    email and its subject must not promise that one click records the answer."""
    from pulse.outreach.render import Renderer

    now = datetime(2026, 7, 10, 10, tzinfo=UTC)
    renderer = Renderer(now=now)
    ctx = {"survey_id": 7, "contact_id": "c1", "question": "How did we do?",
           "trigger": "ticket", "ticket_id": "t1", "ticket_subject": "Exports",
           "account_name": "Northwind", "contact_name": "Ana", "timezone": "UTC",
           "issued_at": now.isoformat(), "expires_at": (now + timedelta(days=14)).isoformat()}
    subject = renderer.subject("csat_survey", ctx)
    msg = renderer.outgoing({"message_id": 1, "kind": "csat_survey", "template": "csat_survey",
                             "to_email": "a@x.example", "to_name": "Ana", "subject": subject,
                             "context": ctx})
    text = " ".join(msg.full_text().split())
    html = " ".join(msg.full_html().split())
    for body in (subject, text, html):
        assert "one click records" not in body.lower() and "one click to" not in body.lower()
    assert "asks you to confirm it with one more click" in text
    assert "asks you to confirm it with one more click" in html
    assert subject == 'How did we do on "Exports"? Rate it in two clicks'
