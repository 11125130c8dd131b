"""Suspected incidents reach on-call and the CSMs of the accounts in the chatter, once, with
sample posts escaped; on SQLite and PostgreSQL."""
from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import Engine, select

from pulse.listeners.landing import land_file
from pulse.models.chatter import detect_chatter
from pulse.outreach.chatter_alerts import queue_chatter_alerts
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import OutboxMessage
from tests.test_chatter import BURST, NOW, _baseline, _land, _mention

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
