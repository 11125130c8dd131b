"""A CSAT rating of 1 or 2 alerts the account's CSM at once (issue 13), on SQLite and
PostgreSQL: through the survey page served for real, exactly once per answer (a double
click, a changed low rating and the hourly sweep add nothing), with the comment escaped; a
crash between the rating and its alert is caught by the sweep; without a CSM, the CSM queue
hears; without that either, the alert is recorded suppressed."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import policy
from email.parser import BytesParser

import httpx
import pytest
from sqlalchemy import Engine, select, update

from pulse.core.settings import get_settings
from pulse.listeners.surveys import record_rating
from pulse.outreach.csat_alerts import queue_low_rating_alerts
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import Account, OutboxMessage
from tests.test_web_surveys import NOW, _csrf, _world, link, serve  # noqa: F401 (fixture)

OUTBOX = OutboxMessage.__table__
ATTACK = '<script>alert("x")</script> the export <b>still</b> fails'


def _alerts(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(OUTBOX).where(
            OUTBOX.c.kind == "csat_alert").order_by(OUTBOX.c.message_id)).mappings()]


def _csm(engine: Engine, email: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(update(Account.__table__).values(csm_email=email))


def test_a_low_rating_alerts_its_csm_once_with_the_comment(
        engine: Engine, serve: Callable[..., str]) -> None:  # noqa: F811
    _world(engine)
    _csm(engine, "Maya.Chen@pulse.example")
    base = serve()
    with httpx.Client(base_url=base, timeout=10) as http:
        first = http.post(link(1, "con-a", 1))
        assert first.status_code == 200, first.text
        [alert] = _alerts(engine)  # queued at once, not with the next digest
        assert alert["status"] == "queued" and alert["to_email"] == "maya.chen@pulse.example"
        assert alert["idempotency_key"] == f"csat_alert:{alert['context']['survey_id']}"
        assert not alert["automated"] and alert["contact_id"] is None  # to the CSM
        assert alert["subject"] == "Low CSAT rating: 1 of 5 from con-a at Northwind"
        assert http.post(link(1, "con-a", 1)).status_code == 200  # a double click
        # one link for the page and its comment form: the form's CSRF field signs the link,
        # and a link signed a second later (its expiry) is another link
        two = link(1, "con-a", 2)
        changed = http.post(two)  # still low, changed
        assert changed.status_code == 200
        [alert] = _alerts(engine)
        assert alert["context"]["rating"] == 2 and alert["subject"].startswith(
            "Low CSAT rating: 2 of 5")
        saved = http.post(two + "/comment",
                          data={"comment": ATTACK, "csrf": _csrf(changed.text)})
        assert saved.status_code == 200, saved.text
        [alert] = _alerts(engine)
        assert alert["context"]["comment"] == ATTACK  # still queued: the comment goes along
        assert http.post(link(2, "con-b", 4)).status_code == 200  # not low: no alert
    assert queue_low_rating_alerts(engine).queued == 0  # the sweep adds nothing

    send_due(engine, FileTransport(), now=NOW)
    [alert] = _alerts(engine)
    assert alert["status"] == "sent"
    eml = next(FileTransport().folder.glob(f"{alert['message_id']}.eml"))
    msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
    assert "maya.chen@pulse.example" in msg["To"]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<script>alert" not in html and "<b>still</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "2 of 5" in text and ATTACK in text and "Northwind" in text
    assert "This message was sent to you by Pulse Demo Inc.\n" in html  # one full stop


def test_the_sweep_catches_an_alert_a_crash_lost_and_adds_it_once(engine: Engine) -> None:
    _world(engine)
    _csm(engine, "maya.chen@pulse.example")
    # The rating landed and the process died before the page queued the alert.
    record_rating(engine, 2, "con-b", 1, now=NOW)
    assert _alerts(engine) == []
    # the sweep looks back 48 hours only: an old answer is the digest's business
    assert queue_low_rating_alerts(engine, now=NOW + timedelta(hours=49)).found == 0
    report = queue_low_rating_alerts(engine, now=NOW + timedelta(hours=1))
    assert (report.found, report.queued) == (1, 1)
    again = queue_low_rating_alerts(engine, now=NOW + timedelta(hours=2))
    assert (again.queued, again.already) == (0, 1)
    assert len(_alerts(engine)) == 1


def test_without_a_csm_the_queue_hears_and_without_a_queue_it_is_recorded(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _world(engine)
    _csm(engine, "")  # no CSM
    monkeypatch.setenv("PULSE_CSM_QUEUE_EMAIL", "cs-queue@pulse.example")
    get_settings(fresh=True)
    record_rating(engine, 1, "con-a", 1, now=NOW)
    assert queue_low_rating_alerts(engine, survey_ids=[1], now=NOW).queued == 1
    [alert] = _alerts(engine)
    assert (alert["to_email"], alert["status"]) == ("cs-queue@pulse.example", "queued")
    assert alert["context"]["via_queue"] is True

    monkeypatch.setenv("PULSE_CSM_QUEUE_EMAIL", "")
    get_settings(fresh=True)
    record_rating(engine, 2, "con-b", 2, now=NOW)
    assert queue_low_rating_alerts(engine, survey_ids=[2], now=NOW).queued == 1
    nobody = _alerts(engine)[-1]
    assert (nobody["status"], nobody["rule"]) == ("suppressed", "no_csm")
    assert "PULSE_CSM_QUEUE_EMAIL" in nobody["rule_detail"]
