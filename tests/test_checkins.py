"""Daily check-ins and CSM digests on the hand-made world of test_flags, on SQLite and
PostgreSQL: who gets one, from whom, once per period, and what a re-run does."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import Engine, select, update

from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.outreach.checkins import csm_name, queue_daily
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import Account, AccountFlag, AccountHealth, OutboxMessage
from tests.test_flags import D, land_world

OUTBOX = OutboxMessage.__table__


def _world(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    score_date(engine, D - timedelta(days=7), basis="occurred")
    compute_flags(engine, D - timedelta(days=7))
    score_date(engine, D)
    compute_flags(engine, D)


def _rows(engine: Engine, kind: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(OUTBOX).where(OUTBOX.c.kind == kind).order_by(OUTBOX.c.idempotency_key)).mappings()]


def test_csm_name() -> None:
    assert csm_name("ana.ruiz@pulse.example") == "Ana Ruiz"
    assert csm_name("bo_csm@pulse.example") == "Bo Csm"


def test_checkins_reach_red_and_silent_accounts_once_per_period(engine: Engine,
                                                                 tmp_path: Path) -> None:
    _world(engine, tmp_path)
    with engine.connect() as conn:
        red = set(conn.execute(select(AccountHealth.account_id).where(
            AccountHealth.as_of == D, AccountHealth.band == "red")).scalars())
        silent = set(conn.execute(select(AccountFlag.account_id).where(
            AccountFlag.as_of == D, AccountFlag.flag == "silent_dissatisfied")).scalars())
    assert "acc-silent" in silent
    without_contacts = {"acc-errors"}  # the world gives it none
    assert without_contacts <= silent
    # Cancelled accounts get no check-in; accounts nobody can be written to are counted.
    expected = (red | silent) - {"acc-gone"} - without_contacts

    report = queue_daily(engine, D)
    checkins = _rows(engine, "checkin")
    assert {r["account_id"] for r in checkins} == expected
    assert report.skipped["no contact"] == len(without_contacts)
    assert report.checkins_planned == len(expected)
    for r in checkins:
        assert r["automated"] and not r["urgent"]
        assert r["idempotency_key"] == f"checkin:{r['account_id']}:{D.isoformat()}"
        assert r["contact_id"] and r["to_email"].endswith(".example")
    silent_row = next(r for r in checkins if r["account_id"] == "acc-silent")
    # From the account's CSM (any case in the source), replies go to the CSM.
    assert silent_row["from_email"] == "ana.csm@pulse.example"
    assert silent_row["reply_to"] == "ana.csm@pulse.example"
    assert silent_row["context"]["evidence"]  # the flags' evidence in words

    again = queue_daily(engine, D)  # a re-run of the day: nothing new
    assert again.queued == 0 and len(_rows(engine, "checkin")) == len(checkins)
    assert again.skipped["check-in within 30 days"] == len(expected)
    # The next day the same accounts are still red or silent: none is checked in again.
    nxt = D + timedelta(days=1)
    score_date(engine, nxt, basis="occurred")
    compute_flags(engine, nxt)
    later = queue_daily(engine, nxt)
    assert later.skipped["check-in within 30 days"] >= 1
    new = {r["account_id"] for r in _rows(engine, "checkin")
           if r["idempotency_key"].endswith(nxt.isoformat())}
    assert not (new & expected)


def test_one_digest_per_csm_with_what_changed(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    queue_daily(engine, D)
    digests = _rows(engine, "csm_digest")
    assert digests, "the world has new flags on D"
    emails = [r["to_email"] for r in digests]
    assert len(emails) == len(set(emails))  # one per CSM
    assert set(emails) <= {"ana.csm@pulse.example", "bo.csm@pulse.example"}
    for r in digests:
        assert not r["automated"]  # internal mail: no cap, no unsubscribe
        ids = [a["account_id"] for a in r["context"]["accounts"]]
        assert "acc-gone" not in ids
        for a in r["context"]["accounts"]:
            assert a["entered_red"] or a["new_flags"]
    # Exactly the flags that are new since the week before, for accounts still customers.
    with engine.connect() as conn:
        flags = {d: set(conn.execute(select(AccountFlag.account_id, AccountFlag.flag).where(
            AccountFlag.as_of == d)).tuples()) for d in (D, D - timedelta(days=7))}
    new = {(a, f) for a, f in flags[D] - flags[D - timedelta(days=7)] if a != "acc-gone"}
    listed = {(a["account_id"], f["flag"]) for r in digests for a in r["context"]["accounts"]
              for f in a["new_flags"]}
    assert listed == new

    # Sent through the file transport: a real e-mail, account names and evidence escaped.
    report = send_due(engine, FileTransport(), now=datetime.now(UTC))
    assert report is not None
    sent = [r for r in _rows(engine, "csm_digest") if r["status"] == "sent"]
    assert len(sent) == len(digests)
    eml = next(FileTransport().folder.glob(f"{sent[0]['message_id']}.eml"))
    msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
    assert msg["To"] and sent[0]["to_email"] in msg["To"]
    body = msg.get_body(("html",)).get_content()
    assert "Co" in body and "<script" not in body


def test_an_unusable_csm_address_skips_that_check_in_and_nothing_else(
        engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(update(Account).where(Account.account_id == "acc-silent")
                     .values(csm_email="ana csm at pulse"))
    report = queue_daily(engine, D)
    assert report.skipped["CSM address not usable"] == 1
    checkins = {r["account_id"] for r in _rows(engine, "checkin")}
    assert "acc-silent" not in checkins
    digests = _rows(engine, "csm_digest")
    assert digests  # the other CSMs' digests still go out
    assert all(r["to_email"] != "ana csm at pulse" for r in digests)
    assert report.skipped["digest rows without a CSM"] >= 1
