"""Daily check-ins and CSM digests on the hand-made world of test_flags, on SQLite and
PostgreSQL: who gets one, from whom, once per period, and what a re-run does."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from pulse.core.settings import get_settings
from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.outreach.checkins import csm_name, lapsed_features, queue_daily
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.outreach.vocabulary import feature_help, person_name
from pulse.sql.rollups import rebuild as rebuild_rollups
from pulse.sql.schema import Account, AccountFlag, AccountHealth, OutboxMessage, UsageEvent
from tests.pulse_cli import run_pulse
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
    # who may sign a check-in: a person, never a shared inbox
    assert person_name("maya.chen@pulse.example") == "Maya Chen"
    for alias in ("cs-team@pulse.example", "support@x.example", "success.team@x.example",
                  "csm1@x.example", "", None):
        assert person_name(alias) is None, alias


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
    # The customer reads plain help signed by a person; the evidence went to the CSM.
    ctx = silent_row["context"]
    assert set(ctx) == {"account_name", "csm_name", "csm_email", "features", "renewal_date",
                        "note"}
    assert (ctx["csm_name"], silent_row["from_name"]) == ("Ana Csm", "Ana Csm at Pulse Demo Inc.")
    assert ctx["renewal_date"] == "2026-07-20"  # 20 days away: near enough to help them
    evidence = {e.account_id: e for e in report.evidence}
    assert set(evidence) == expected
    assert dict(evidence["acc-silent"].flags)["silent_dissatisfied"].startswith("events down")
    digest = next(r for r in _rows(engine, "csm_digest")
                  if r["to_email"] == "ana.csm@pulse.example")
    listed = {c["account_id"]: c for c in digest["context"]["checkins"]}
    assert listed["acc-silent"]["outcome"] == "draft"  # PULSE_CHECKINS=approve by default
    assert silent_row["status"] == "draft"
    assert any(f["flag"] == "silent_dissatisfied" for f in listed["acc-silent"]["flags"])

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


def test_no_named_csm_means_no_automated_check_in_but_a_task_in_a_csm_queue(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unusable address, a shared inbox and no CSM at all: each check-in is recorded as
    suppressed (rule no_csm, with why) and its evidence reaches a person instead: the shared
    inbox's digest, or the CSM queue (`PULSE_CSM_QUEUE_EMAIL`)."""
    monkeypatch.setenv("PULSE_CSM_QUEUE_EMAIL", "cs-lead@pulse.example")
    get_settings(fresh=True)
    _world(engine, tmp_path)
    with engine.begin() as conn:
        for acc, csm in (("acc-silent", "ana csm at pulse"), ("acc-loud", "cs-team@pulse.example"),
                         ("acc-champ", None)):
            conn.execute(update(Account).where(Account.account_id == acc).values(csm_email=csm))
        # two more accounts in need (say the scorecard put them in red), and one that keeps
        # its named CSM
        conn.execute(update(AccountHealth).where(
            AccountHealth.as_of == D,
            AccountHealth.account_id.in_(["acc-loud", "acc-champ", "acc-steady"])).values(
                band="red"))
    report = queue_daily(engine, D)
    assert report.skipped["no_csm"] == 3
    rows = {r["account_id"]: r for r in _rows(engine, "checkin")}
    details = {}
    for acc in ("acc-silent", "acc-loud", "acc-champ"):
        assert (rows[acc]["status"], rows[acc]["rule"]) == ("suppressed", "no_csm")
        details[acc] = rows[acc]["rule_detail"]
    assert "not a usable address" in details["acc-silent"]
    assert "shared inbox" in details["acc-loud"]
    assert details["acc-champ"] == "the account has no CSM"
    assert rows["acc-champ"]["context"]["renewal_date"] is None  # January: too far to matter
    assert rows["acc-silent"]["context"]["renewal_date"] == "2026-07-20"
    assert rows["acc-steady"]["status"] == "draft"
    # Nothing suppressed is ever sent; the other check-ins go out from their named CSM.
    send_due(engine, FileTransport(), now=datetime.now(UTC))
    after = {r["account_id"]: r for r in _rows(engine, "checkin")}
    assert all(after[a]["status"] == "suppressed" for a in details)
    assert all(r["from_name"].startswith("Bo Csm") for a, r in after.items() if a not in details)
    digests = {r["to_email"]: r for r in _rows(engine, "csm_digest")}
    assert all(to != "ana csm at pulse" for to in digests)
    queued = {c["account_id"]: c for c in digests["cs-lead@pulse.example"]["context"]["checkins"]}
    assert set(queued) == {"acc-silent", "acc-champ"}
    assert queued["acc-silent"]["outcome"].startswith("suppressed: no_csm")
    team = digests["cs-team@pulse.example"]["context"]["checkins"]
    assert [c["account_id"] for c in team] == ["acc-loud"]
    # The queue's digest tells a person what to do, with the evidence.
    sent = {r["to_email"]: r for r in _rows(engine, "csm_digest")}["cs-lead@pulse.example"]
    eml = FileTransport().folder / f"{sent['message_id']}.eml"
    text = BytesParser(policy=policy.default).parse(eml.open("rb")).get_body(
        ("plain",)).get_content()
    assert "no check-in sent" in text and "yourself" in text and "silent_dissatisfied" in text
    # A re-run of the day, or the next day, records nothing new for them.
    queue_daily(engine, D)
    assert len(_rows(engine, "checkin")) == len(after)


def test_lapsed_features_are_the_accounts_own_habits_it_dropped(engine: Engine) -> None:
    """Used in at least half of the 8 weeks before the last 14 days and not since: named,
    most used first; a feature still used, or used only now and then, is not."""
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__), [
            {"account_id": a, "name": a, "mrr": 100, "currency": "USD", "landed_at": now,
             "updated_at": now} for a in ("acc-1", "acc-2")])
        rows, n = [], 0
        for acc, feature, days_ago, qty in (
                [("acc-1", "reports", d, 5) for d in range(20, 70, 7)]        # dropped
                + [("acc-1", "alerts", d, 1) for d in range(16, 50, 7)]       # dropped, less
                + [("acc-1", "dashboards", d, 3) for d in range(1, 70, 7)]    # still used
                + [("acc-1", "exports", d, 9) for d in (30, 60)]              # now and then
                + [("acc-1", "invoices", d, 9) for d in range(20, 70, 7)]     # a chore: skipped
                + [("acc-2", "reports", d, 5) for d in range(1, 70, 7)]):
            n += 1
            at = now - timedelta(days=days_ago)
            rows.append({"event_id": f"e{n}", "account_id": acc, "occurred_at": at,
                         "feature": feature, "quantity": qty, "outcome": "ok",
                         "landed_at": at, "updated_at": at})
        conn.execute(insert(UsageEvent.__table__), rows)
    rebuild_rollups(engine)  # events written past the landing: their rollups, rebuilt
    lapsed = lapsed_features(engine, ["acc-1", "acc-2"], now.date())
    assert lapsed == {"acc-1": ["invoices", "reports", "alerts"]}
    helps = [feature_help(f, "https://help.example") for f in lapsed["acc-1"]]
    assert helps[0] is None  # invoices: never suggested
    assert helps[1].label == "Reports" and helps[1].guide_url == (
        "https://help.example/guides/reports")
    assert feature_help("salesforce_sync_v2", "").label == "Salesforce sync v2"


def _pulse(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return run_pulse(*args, env=env, timeout=300)


def test_check_in_drafts_wait_for_their_csm_who_edits_and_approves_them(
        engine: Engine, tmp_path: Path) -> None:
    """`checkins: approve` (the default): nothing goes out until the CSM approves, through
    `pulse outreach drafts list|show|edit|approve`; edits stay in the customer vocabulary."""
    _world(engine, tmp_path)
    queue_daily(engine, D)
    (row,) = [r for r in _rows(engine, "checkin") if r["account_id"] == "acc-silent"]
    assert row["status"] == "draft"
    send_due(engine, FileTransport(), now=datetime.now(UTC).replace(hour=12))  # the digest
    assert {r["status"] for r in _rows(engine, "checkin")} == {"draft"}  # not taken
    mid = str(row["message_id"])
    listed = _pulse("outreach", "drafts", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [d["message_id"] for d in json.loads(listed.stdout)] == [row["message_id"]]
    shown = _pulse("outreach", "drafts", "show", mid)
    assert shown.returncode == 0 and "Best regards," in shown.stdout and "Ana Csm" in shown.stdout
    assert "renews on July 20, 2026" in shown.stdout  # no locale of their own: en_US
    edited = _pulse("outreach", "drafts", "edit", mid, "--note",
                    "Great to see the team at the workshop last week!", "--drop-renewal")
    assert edited.returncode == 0, edited.stderr
    assert "workshop" in edited.stdout and "renews" not in edited.stdout
    bad = _pulse("outreach", "drafts", "edit", mid, "--drop-feature", "no_such_feature")
    assert bad.returncode != 0 and "no_such_feature" in (bad.stdout + bad.stderr)
    ok = _pulse("outreach", "drafts", "approve", mid)
    assert ok.returncode == 0 and "approved 1" in ok.stdout, ok.stderr
    again = _pulse("outreach", "drafts", "approve", mid)
    assert "approved 0" in again.stdout and "not drafts: " + mid in again.stdout
    noon = datetime.now(UTC).replace(hour=12)  # UTC contacts: outside quiet hours
    assert send_due(engine, FileTransport(), now=noon).sent == 1
    (sent,) = [r for r in _rows(engine, "checkin") if r["account_id"] == "acc-silent"]
    assert sent["status"] == "sent" and sent["context"]["note"].startswith("Great to see")
    assert sent["context"]["renewal_date"] is None


def test_auto_check_ins_are_queued_at_once(engine: Engine, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_CHECKINS", "auto")
    get_settings(fresh=True)
    _world(engine, tmp_path)
    queue_daily(engine, D)
    assert {r["status"] for r in _rows(engine, "checkin")} == {"queued"}


def test_the_first_digest_is_a_short_summary_not_a_flood(engine: Engine,
                                                          tmp_path: Path) -> None:
    """On the first scored date every flag is "new": the digest summarises instead (counts
    and the ten accounts with the most revenue at risk, as the risk list ranks them)."""
    from pulse.models.risklist import build_risk_list
    from pulse.outreach.render import Renderer

    land_world(engine, tmp_path, peers=True)  # 40 accounts
    with engine.begin() as conn:  # Ana looks after the 30 fillers too
        conn.execute(update(Account).where(Account.account_id.like("acc-f%"))
                     .values(csm_email="ana.csm@pulse.example"))
    score_date(engine, D)  # the one scored date: nothing earlier to compare with
    compute_flags(engine, D)
    queue_daily(engine, D)
    digests = {r["to_email"]: r for r in _rows(engine, "csm_digest")}
    assert set(digests) == {"ana.csm@pulse.example", "bo.csm@pulse.example"}
    ana = digests["ana.csm@pulse.example"]
    first = ana["context"]["first"]
    assert ana["context"]["accounts"] == []  # no "N of your accounts entered red..."
    ranked = build_risk_list(engine, D, csm="ana.csm@pulse.example")
    assert len(ranked) > 10 and first["accounts"] == len(ranked)
    assert [a["account_id"] for a in first["top"]] == [r["account_id"] for r in ranked[:10]]
    assert first["flagged"] == sum(1 for r in ranked if r["flags"])
    assert sum(first["bands"].values()) == len(ranked)
    assert first["bands"].get("red", 0) == sum(1 for r in ranked if r["band"] == "red")
    assert ana["subject"].startswith("Your first risk digest for Jun 30, 2026: "
                                     f"{len(ranked)} accounts")
    text = Renderer().outgoing(ana).full_text()
    assert "This is your first risk digest" in text and "entered red" not in text
    assert "The 10 with the most revenue at risk:" in text
    assert "10. " in text and "11. " not in text

    # The next scored date compares with this one: only what changed is listed.
    score_date(engine, D + timedelta(days=1))
    compute_flags(engine, D + timedelta(days=1))
    queue_daily(engine, D + timedelta(days=1))
    later = [r for r in _rows(engine, "csm_digest")
             if r["idempotency_key"].endswith((D + timedelta(days=1)).isoformat())]
    assert all("first" not in r["context"] for r in later)
    assert all(a["entered_red"] or a["new_flags"] for r in later
               for a in r["context"]["accounts"])
