"""Collisions between programmes (issue 13), on SQLite and PostgreSQL: after an outage notice
reaches an account no check-in reaches it for 7 days, nothing else reaches the contact on
that day (the contact's own day), and a critical notice is never stopped by either rule.
Each message held back is recorded `suppressed` with its rule, like the cap's."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from pulse.core.settings import get_settings
from pulse.listeners.landing import land_file
from pulse.models.outage import refresh_impacts
from pulse.outreach.checkins import queue_daily
from pulse.outreach.notices import queue_outage_notices
from pulse.outreach.outbox import Draft, queue
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import AccountHealth, OutboxMessage
from tests.test_outbox import draft, rows, world

T = OutboxMessage.__table__
DAY1 = date(2026, 6, 15)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


ACCOUNTS = """account_id,name,mrr,region,csm_email,renewal_date
acc-a,Alpha GmbH,1200,eu-west,maya.chen@pulse.example,2027-01-31
acc-b,Beta SARL,800,eu-west,maya.chen@pulse.example,2027-01-31
"""
CONTACTS = """contact_id,account_id,email,name,role,timezone
c-a1,acc-a,ana@alpha.example,Ana Alpha,admin,Europe/Paris
c-a2,acc-a,al@alpha.example,Al Alpha,analyst,Europe/Paris
c-b1,acc-b,bo@beta.example,Bo Beta,admin,Europe/Paris
"""
# acc-a's analyst ran into the incident's errors; acc-b used another component meanwhile
USAGE = """event_id,account_id,occurred_at,feature,contact_id,component,region,quantity,outcome
u1,acc-a,2026-06-01T09:00:00Z,exports,c-a2,reports,eu-west,3,ok
u2,acc-b,2026-06-01T09:00:00Z,dashboards,c-b1,dashboard,eu-west,2,ok
u3,acc-a,2026-06-15T09:10:00Z,exports,c-a2,reports,eu-west,4,error
u4,acc-a,2026-06-15T09:20:00Z,exports,c-a2,reports,eu-west,1,ok
u5,acc-b,2026-06-15T09:15:00Z,dashboards,c-b1,dashboard,eu-west,5,ok
"""
INCIDENT = ('{"incident_id": "inc-1", "title": "Report exports failing", '
            '"started_at": "2026-06-15T09:00:00Z", "status": "%s", "impact": "major", '
            '%s"components": ["reports"], "regions": ["eu-west"]}\n')


def _land(engine: Engine, folder: Path, name: str, text: str, now: datetime) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    result = land_file(engine, path, now=now)
    assert result.quarantined == 0, (name, result.reasons)


def _red(engine: Engine, day: date, accounts: Sequence[str]) -> None:
    """The day's health run: the accounts are red (the scorer is not what is tested here)."""
    with engine.begin() as conn:
        conn.execute(insert(AccountHealth.__table__), [
            {"as_of": day, "account_id": a, "scorecard": "standard", "scorecard_version": "t",
             "score": 31.0, "band": "red", "change_7d": None, "change_30d": None,
             "skipped": [], "computed_at": at(day, 6)} for a in accounts])


def _checkins(engine: Engine) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(account, planned day) -> (status, rule) of every check-in."""
    with engine.connect() as conn:
        return {(r.account_id, r.idempotency_key.rsplit(":", 1)[1]): (r.status, r.rule)
                for r in conn.execute(select(T).where(T.c.kind == "checkin"))}


def test_a_contact_hit_by_an_outage_gets_no_check_in_that_week(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_CHECKINS", "auto")
    get_settings(fresh=True)
    files, out = tmp_path / "landing", tmp_path / "outbox"
    landed = at(DAY1, 9, 30)
    _land(engine, files, "accounts.csv", ACCOUNTS, at(DAY1, 0))
    _land(engine, files, "contacts.csv", CONTACTS, at(DAY1, 0))
    _land(engine, files, "usage.csv", USAGE, landed)
    _land(engine, files, "incidents.jsonl", INCIDENT % ("identified", ""), landed)

    # The morning's health run queues check-ins for both red accounts; before they go out
    # the incident lands and its notices are queued: one send run carries all of it.
    _red(engine, DAY1, ["acc-a", "acc-b"])
    queue_daily(engine, DAY1)
    refresh_impacts(engine, now=at(DAY1, 10))
    notices = queue_outage_notices(engine, now=at(DAY1, 10))
    assert notices.queued == 2  # acc-a's admin and its affected analyst; acc-b was not hit
    first = send_due(engine, FileTransport(out), now=at(DAY1, 10))
    assert _checkins(engine) == {("acc-a", "2026-06-15"): ("suppressed", "outage_week"),
                                 ("acc-b", "2026-06-15"): ("sent", None)}
    assert first.by_rule["outage_week"] == 1
    held = rows(engine)["checkin:acc-a:2026-06-15"]
    assert held["rule_detail"] == ("an outage notice goes to account acc-a in this run: "
                                   "no check-in for 7 days")

    # It resolves before noon: the resolved notices go too (critical, the same day).
    _land(engine, files, "incidents-2.jsonl",
          INCIDENT % ("resolved", '"resolved_at": "2026-06-15T11:30:00Z", '), at(DAY1, 11, 45))
    refresh_impacts(engine, now=at(DAY1, 12))
    assert queue_outage_notices(engine, now=at(DAY1, 12)).by_stage["resolved"] == 2
    assert send_due(engine, FileTransport(out), now=at(DAY1, 12)).sent == 2
    with engine.connect() as conn:
        told = conn.execute(select(T.c.contact_id, T.c.idempotency_key, T.c.status).where(
            T.c.kind == "outage_notice").order_by(T.c.idempotency_key)).all()
    assert [(c, k.split(":")[2], s) for c, k, s in told] == [
        ("c-a1", "resolved", "sent"), ("c-a2", "resolved", "sent"),
        ("c-a1", "started", "sent"), ("c-a2", "started", "sent")]

    # Every day of the week acc-a stays red, and its check-in is recorded as held back when
    # it is planned (in approval mode too: no draft for its CSM to approve in vain).
    for k in range(1, 7):
        day = DAY1 + timedelta(days=k)
        _red(engine, day, ["acc-a"])
        monkeypatch.setenv("PULSE_CHECKINS", "approve" if k == 3 else "auto")
        get_settings(fresh=True)
        daily = queue_daily(engine, day)
        report = send_due(engine, FileTransport(out), now=at(day, 12))
        assert _checkins(engine)[("acc-a", day.isoformat())] == ("suppressed", "outage_week")
        assert daily.skipped["outage_week"] == 1 and not report.by_rule  # held when planned
    monkeypatch.setenv("PULSE_CHECKINS", "auto")
    get_settings(fresh=True)
    assert rows(engine)["checkin:acc-a:2026-06-21"]["rule_detail"] == (
        "an outage notice reached account acc-a on 2026-06-15 12:00 UTC: no check-in for 7 "
        "days, until 2026-06-22 12:00 UTC")

    # Day 8: planned in the morning, still held a minute before the week is over; then sent.
    day8 = DAY1 + timedelta(days=7)
    _red(engine, day8, ["acc-a"])
    queue_daily(engine, day8)
    early = send_due(engine, FileTransport(out), now=at(day8, 11, 59), dry_run=True)
    assert dict(early.by_rule) == {"outage_week": 1}
    report = send_due(engine, FileTransport(out), now=at(day8, 12))
    assert _checkins(engine)[("acc-a", day8.isoformat())] == ("sent", None)
    assert rows(engine)["checkin:acc-a:2026-06-22"]["message_id"] in report.sent_ids
    # the check-in that went is the only one acc-a's contacts ever received
    received = {p.stem for p in out.glob("*.eml")}
    with engine.connect() as conn:
        checkins_sent = conn.execute(select(T.c.message_id).where(
            T.c.kind == "checkin", T.c.account_id == "acc-a", T.c.status == "sent")).all()
    assert len(checkins_sent) == 1 and str(checkins_sent[0][0]) in received


def _notice(contact: str, email: str, key: str, *, account: str = "acc-1",
            urgent: bool = True, **extra: Any) -> Draft:
    return draft(contact, email, kind="outage_notice", key=key, account=account,
                 urgent=urgent, **extra)


def test_nothing_else_reaches_a_contact_on_the_day_of_their_notice(
        engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "outbox"
    world(engine, [("la", "acc-1", "la@nw.example", "America/Los_Angeles", False),
                   ("tok", "acc-1", "tok@nw.example", "Asia/Tokyo", False),
                   ("quiet", "acc-1", "q@nw.example", "Europe/Paris", False),
                   ("other", "acc-2", "o@x.example", "America/Los_Angeles", False)],
          accounts=("acc-1", "acc-2"))
    # 00:00 UTC on 1 July is 09:00 in Tokyo; 16:00 UTC is 09:00 in Los Angeles
    queue(engine, [_notice("tok", "tok@nw.example", "notice:i1:started:tok")],
          now=at(date(2026, 7, 1), 0))
    send_due(engine, FileTransport(out), now=at(date(2026, 7, 1), 0))
    queue(engine, [_notice("la", "la@nw.example", "notice:i1:started:la")],
          now=at(date(2026, 7, 1), 16))
    send_due(engine, FileTransport(out), now=at(date(2026, 7, 1), 16))

    # 03:00 UTC on 2 July is still 1 July (20:00) in Los Angeles: the same day there
    later = at(date(2026, 7, 2), 3)
    queue(engine, [draft("la", "la@nw.example", key="survey:la", kind="csat_survey"),
                   draft("other", "o@x.example", key="survey:other", kind="csat_survey",
                         account="acc-2"),
                   # internal mail about the contact is not the contact's mail
                   Draft(kind="csm_digest", idempotency_key="digest:kim",
                         template="csm_digest", to_email="kim.lee@pulse.example",
                         context={"accounts": []}, automated=False)], now=later)
    report = send_due(engine, FileTransport(out), now=later)
    r = rows(engine)
    assert (r["survey:la"]["status"], r["survey:la"]["rule"]) == ("suppressed", "outage_day")
    assert r["survey:la"]["rule_detail"] == (
        "an outage notice reached this contact today (2026-07-01 in America/Los_Angeles): "
        "nothing else the same day")
    assert r["survey:other"]["status"] == "sent" and r["digest:kim"]["status"] == "sent"
    assert report.by_rule["outage_day"] == 1

    # 23:30 UTC on 1 July is already 2 July (08:30) in Tokyo: a new day there, it goes
    tokyo = at(date(2026, 7, 1), 23, 30)
    queue(engine, [draft("tok", "tok@nw.example", key="survey:tok", kind="csat_survey")],
          now=tokyo)
    send_due(engine, FileTransport(out), now=tokyo)
    assert rows(engine)["survey:tok"]["status"] == "sent"


@pytest.mark.parametrize("batch_size", [1000, 1])
def test_a_critical_notice_is_never_held_back_and_holds_back_the_rest_of_its_run(
        engine: Engine, tmp_path: Path, batch_size: int) -> None:
    out = tmp_path / "outbox"
    world(engine, [("ana", "acc-1", "ana@nw.example", "UTC", False),
                   ("bo", "acc-1", "bo@nw.example", "UTC", False),
                   ("cy", "acc-2", "cy@x.example", "UTC", False)],
          accounts=("acc-1", "acc-2"))
    morning, afternoon = at(date(2026, 7, 1), 9), at(date(2026, 7, 1), 15)
    queue(engine, [_notice("ana", "ana@nw.example", "notice:i1:started:ana"),
                   draft("cy", "cy@x.example", key="survey:cy:1", kind="csat_survey",
                         account="acc-2")], now=morning)
    send_due(engine, FileTransport(out), now=morning)
    queue(engine, [
        # queued before the notices of the afternoon, sent in the same run
        draft("ana", "ana@nw.example", key="survey:ana", kind="csat_survey"),
        draft("bo", "bo@nw.example", key="checkin:bo"),
        draft("cy", "cy@x.example", key="survey:cy:2", kind="csat_survey", account="acc-2"),
    ], now=afternoon - timedelta(minutes=5))
    queue(engine, [
        # the same incident's update, the same day: critical
        _notice("ana", "ana@nw.example", "notice:i1:update-identified:ana"),
        # a minor incident (not urgent) to a contact who already had mail today: critical
        _notice("cy", "cy@x.example", "notice:i2:started:cy", account="acc-2", urgent=False),
    ], now=afternoon)
    # a dry run tells what the run will do, batch by batch
    dry = send_due(engine, FileTransport(out), now=afternoon, batch_size=batch_size,
                   dry_run=True)
    report = send_due(engine, FileTransport(out), now=afternoon, batch_size=batch_size)
    assert dict(dry.by_rule) == dict(report.by_rule) == {"outage_day": 2, "outage_week": 1}
    assert dry.outcomes["would_send"] == report.sent
    got = {k: (r["status"], r["rule"]) for k, r in rows(engine).items()
           if r["queued_at"] > morning}
    assert got == {
        "notice:i1:update-identified:ana": ("sent", None),
        "notice:i2:started:cy": ("sent", None),
        "survey:ana": ("suppressed", "outage_day"),
        "checkin:bo": ("suppressed", "outage_week"),  # bo had no notice; their account did
        "survey:cy:2": ("suppressed", "outage_day"),  # its notice goes in the same run
    }
    assert report.sent == 2
    assert "an outage notice" in rows(engine)["checkin:bo"]["rule_detail"]
    # whatever reached the contacts before (cy's morning survey) stops no notice either
    with engine.connect() as conn:
        notices = conn.execute(select(T.c.status, T.c.rule).where(
            T.c.kind == "outage_notice")).all()
    assert set(notices) == {("sent", None)}
