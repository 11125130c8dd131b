"""Suspected incidents reach on-call and the CSMs of the accounts in the chatter, once, with
sample posts escaped; on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import Engine, select

from pulse.listeners.landing import land_file
from pulse.models.chatter import detect_chatter, suspected_incidents
from pulse.outreach.chatter_alerts import plan_chatter_alerts, queue_chatter_alerts
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import OutboxMessage
from tests.test_chatter import BURST, NOW, _baseline, _land, _mention, bursty_reports

HOSTILE = 'API down?! <script>alert("x")</script> "><img src=x onerror=alert(1)>'


def test_a_suspected_incident_alerts_oncall_and_the_csm_once(engine: Engine,
                                                              tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("account_id,name,mrr,x_handle,csm_email\n"
                        "acc-1,Northwind,500,northwind,Ana.CSM@pulse.example\n",
                        encoding="utf-8")
    land_file(engine, accounts)
    burst = [_mention(f"b{i}", BURST + i * (NOW - BURST) / 10, text, f"angry{i}")
             for i, text in enumerate(["API failing for our whole team", "API outage again??",
                                       "API broken right now, awful", "API errors, terrible"])
             ] + [_mention("b9", BURST + (NOW - BURST) / 2, HOSTILE, "northwind")]
    _land(engine, tmp_path, _baseline() + burst)
    assert not detect_chatter(engine, now=NOW).raised.empty
    # each alert shows its spike's sample posts as stored: the most recent first
    author = {m["mention_id"]: m["author_handle"] for m in map(json.loads, burst)}
    spikes = suspected_incidents(engine, status="suspected", since=BURST)
    expected = [[author[i] for i in ids] for ids in spikes["sample_mention_ids"]]
    shown = [[s["author_handle"] for s in d.context["samples"]]
             for d in plan_chatter_alerts(engine, since=BURST)
             if d.to_email.startswith("oncall")]
    assert shown == expected and ["northwind", "angry3", "angry2"] in shown

    assert queue_chatter_alerts(engine, since=BURST) >= 2
    with engine.connect() as conn:
        rows = conn.execute(select(OutboxMessage.__table__).where(
            OutboxMessage.kind == "chatter_alert")).mappings().all()
    assert {r["to_email"] for r in rows} == {"oncall@pulse-demo.example",
                                             "ana.csm@pulse.example"}
    assert all(not r["automated"] for r in rows)  # internal mail
    assert queue_chatter_alerts(engine, since=BURST) == 0  # every 15 minutes: still once

    send_due(engine, FileTransport(), now=NOW)
    oncall = next(r for r in rows if r["to_email"].startswith("oncall"))
    msg = BytesParser(policy=policy.default).parse(
        (FileTransport().folder / f"{oncall['message_id']}.eml").open("rb"))
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "Northwind" in html and "/accounts/acc-1?t=" in html
    assert "api" in msg["Subject"]


def test_a_suspected_incident_of_the_authors_rule_says_so(engine: Engine,
                                                          tmp_path: Path) -> None:
    _land(engine, tmp_path, _baseline() + bursty_reports())
    assert set(detect_chatter(engine, now=NOW).raised["rule"]) == {"authors"}
    assert queue_chatter_alerts(engine, since=BURST, now=NOW) == 1  # on-call; no accounts
    send_due(engine, FileTransport(), now=NOW)
    with engine.connect() as conn:
        (row,) = conn.execute(select(OutboxMessage.__table__).where(
            OutboxMessage.kind == "chatter_alert")).mappings().all()
    msg = BytesParser(policy=policy.default).parse(
        (FileTransport().folder / f"{row['message_id']}.eml").open("rb"))
    text = " ".join(msg.get_body(("plain",)).get_content().split())
    assert "3 different people posted negatively about reports within 15 minutes" in text
    assert "3 different people are enough" in text


def test_complaints_during_an_open_incident_reach_the_accounts_csms_and_the_incident(
        engine: Engine, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from pulse.cli import app
    from pulse.models.chatter import incident_chatter

    accounts = tmp_path / "accounts.csv"
    accounts.write_text("account_id,name,mrr,x_handle,csm_email\n"
                        "acc-1,Northwind,500,northwind,Ana.CSM@pulse.example\n"
                        "acc-2,Contoso,900,,bob.csm@pulse.example\n"
                        "acc-3,Fabrikam,300,fabrikam,\n", encoding="utf-8")
    land_file(engine, accounts)
    incident = json.dumps({"incident_id": "inc-api", "title": "API errors",
                           "started_at": (BURST - timedelta(minutes=10)).isoformat(),
                           "status": "investigating", "components": ["api"]}) + "\n"
    contoso = json.loads(_mention("c2", BURST + timedelta(minutes=6),
                                  "API failing for our whole team", "contoso_dev"))
    contoso["account_id"] = "acc-2"
    rows = [
        _mention("early", BURST - timedelta(minutes=40), "API broken again, awful", "northwind"),
        _mention("n1", BURST + timedelta(minutes=2), HOSTILE, "northwind"),
        _mention("n2", BURST + timedelta(minutes=9), "API errors again, terrible", "northwind"),
        json.dumps(contoso),
        _mention("f1", BURST + timedelta(minutes=7), "API outage?? webhooks failing",
                 "fabrikam"),  # an account with no CSM address
        _mention("s1", BURST + timedelta(minutes=8), "Is the API down? errors", "stranger"),
        _mention("p1", BURST + timedelta(minutes=5), "Love the new API docs", "northwind"),
    ]
    _land(engine, tmp_path, _baseline() + rows, incident)

    found = incident_chatter(engine, "inc-api", now=NOW)
    assert list(found["mention_id"]) == ["n1", "c2", "f1", "s1", "n2"]  # earliest first
    assert dict(zip(found["mention_id"], found["account_id"], strict=True)) == {
        "n1": "acc-1", "c2": "acc-2", "f1": "acc-3", "s1": None, "n2": "acc-1"}
    # Only what was posted by then: a re-run "as of" an earlier time gives that time's answer.
    assert list(incident_chatter(engine, "inc-api", now=BURST + timedelta(minutes=5))[
        "mention_id"]) == ["n1"]

    since = BURST - timedelta(hours=1)
    assert queue_chatter_alerts(engine, since=since, now=NOW) >= 2
    with engine.connect() as conn:
        sent = conn.execute(select(OutboxMessage.__table__).where(
            OutboxMessage.kind == "incident_complaint")).mappings().all()
    assert {(r["to_email"], r["account_id"], r["incident_id"]) for r in sent} == {
        ("ana.csm@pulse.example", "acc-1", "inc-api"),
        ("bob.csm@pulse.example", "acc-2", "inc-api")}
    assert all(not r["automated"] for r in sent)
    assert queue_chatter_alerts(engine, since=since, now=NOW) == 0  # once per account

    send_due(engine, FileTransport(), now=NOW)
    ana = next(r for r in sent if r["account_id"] == "acc-1")
    msg = BytesParser(policy=policy.default).parse(
        (FileTransport().folder / f"{ana['message_id']}.eml").open("rb"))
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img src=x" not in html and "&lt;script&gt;" in html
    assert "API errors again" in html and "broken again" not in html  # before it opened
    assert "Love the new API" not in html and "/accounts/acc-1?t=" in html
    assert "Northwind" in msg["Subject"] and "inc-api" in msg["Subject"]

    res = CliRunner().invoke(app, ["outage", "impact", "inc-api", "--format", "json",
                                   "--now", NOW.isoformat()])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [c["mention_id"] for c in doc["complaints"]] == ["n1", "c2", "f1", "s1", "n2"]
    assert doc["complaints"][1]["account_name"] == "Contoso"
    res = CliRunner().invoke(app, ["outage", "impact", "inc-api", "--now", NOW.isoformat()])
    assert res.exit_code == 0 and "5 public complaints" in res.stdout and "@stranger" in res.stdout
