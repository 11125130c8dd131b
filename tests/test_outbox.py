"""The outbox: idempotent queueing, every rule with its recorded reason, quiet hours in the
contact's own time zone, urgent notices, the cap across kinds, dry runs, crash recovery
through the file transport, header injection and HTML escaping. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from pulse.core.errors import HeaderInjectionError, TemplateError
from pulse.core.settings import get_settings
from pulse.outreach.message import Outgoing, SendResult
from pulse.outreach.outbox import Draft, add_suppression, outbox_row, queue
from pulse.outreach.outbox_send import send_due
from pulse.outreach.render import Renderer
from pulse.outreach.transports.file import FileTransport
from pulse.outreach.vocabulary import CustomerCheckin, FeatureHelp
from pulse.sql.schema import Account, Contact, OutboxMessage, PurchaseEvent
from tests.pulse_cli import piped_env, run_pulse

NOON = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # 12:00 UTC: 14:00 Paris, 21:00 Tokyo
T = OutboxMessage.__table__

NOTICE = {"incident_title": "API errors", "stage": "started", "incident_status": "investigating",
          "incident_impact": "major", "what_happened": "Requests to the API failed.",
          "update_body": "We rolled back the deploy."}


def world(engine: Engine, contacts: Sequence[tuple[str, str, str, str, bool]],
          accounts: Sequence[str] = ("acc-1",)) -> None:
    """Accounts and contacts (contact_id, account_id, email, timezone, opted_out)."""
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__), [
            {"account_id": a, "name": f"Account {a}", "mrr": 100, "currency": "USD",
             "landed_at": NOON, "updated_at": NOON} for a in accounts])
        conn.execute(insert(Contact.__table__), [
            {"contact_id": c, "account_id": a, "email": e, "name": c.upper(), "timezone": tz,
             "opted_out": out, "landed_at": NOON, "updated_at": NOON}
            for c, a, e, tz, out in contacts])


def purchase(engine: Engine, event_id: str, account_id: str, kind: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(insert(PurchaseEvent.__table__).values(
            event_id=event_id, account_id=account_id, occurred_at=at, kind=kind, amount=0,
            landed_at=at, updated_at=at))


def draft(contact: str, email: str, *, kind: str = "checkin", key: str | None = None,
          account: str = "acc-1", urgent: bool = False, template: str | None = None,
          **extra: Any) -> Draft:
    template = template or ("outage_notice" if kind == "outage_notice" else "checkin")
    context = dict(NOTICE) if template == "outage_notice" else {
        "account_name": "Northwind", "csm_name": "Kim Lee", "csm_email": "kim.lee@pulse.example"}
    context.update(extra.pop("context", {}))
    return Draft(kind=kind, idempotency_key=key or f"{kind}:{contact}", template=template,
                 to_email=email, context=context, to_name=extra.pop("to_name", contact.upper()),
                 account_id=account, contact_id=contact, urgent=urgent, **extra)


def rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["idempotency_key"]: dict(r) for r in conn.execute(select(T)).mappings()}


def eml(folder: Path, message_id: int):  # type: ignore[no-untyped-def]
    with (folder / f"{message_id}.eml").open("rb") as fh:
        return BytesParser(policy=policy.default).parse(fh)


@pytest.fixture
def outbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


def test_queue_is_idempotent(engine: Engine) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False)])
    d = draft("c1", "Ana@NW.example", kind="outage_notice", key="notice:inc-1:started:c1")
    first = queue(engine, [d, d], now=NOON)
    second = queue(engine, [d], now=NOON + timedelta(hours=1))
    assert (first.queued, first.duplicates) == (1, 1)
    assert (second.queued, second.duplicates) == (0, 1)
    row = rows(engine)["notice:inc-1:started:c1"]
    assert row["status"] == "queued" and row["to_email"] == "ana@nw.example"
    # rendered at queue time (no account_name given), with the status first
    assert row["subject"] == "[Investigating] API errors"
    assert row["queued_at"] == NOON and row["attempts"] == 0
    assert row["from_email"] == "care@pulse-demo.example"


def test_every_rule_is_recorded_with_its_reason(engine: Engine, outbox_dir: Path) -> None:
    world(engine, [("ok", "acc-1", "ok@nw.example", "UTC", False),
                   ("opt", "acc-1", "opt@nw.example", "UTC", True),
                   ("sup", "acc-1", "sup@nw.example", "UTC", False),
                   ("gone", "acc-2", "gone@x.example", "UTC", False),
                   ("back", "acc-3", "back@y.example", "UTC", False)],
          accounts=("acc-1", "acc-2", "acc-3"))
    add_suppression(engine, "SUP@nw.example", reason="bounce", source="webhook")
    purchase(engine, "p1", "acc-2", "subscription_started", NOON - timedelta(days=300))
    purchase(engine, "p2", "acc-2", "cancelled", NOON - timedelta(days=3))
    purchase(engine, "p3", "acc-3", "cancelled", NOON - timedelta(days=30))
    purchase(engine, "p4", "acc-3", "subscription_started", NOON - timedelta(days=10))
    queue(engine, [draft("ok", "ok@nw.example"), draft("opt", "opt@nw.example"),
                   draft("sup", "sup@nw.example"), draft("gone", "gone@x.example", account="acc-2"),
                   draft("back", "back@y.example", account="acc-3")], now=NOON)
    report = send_due(engine, FileTransport(outbox_dir), now=NOON)
    got = {k: (r["status"], r["rule"]) for k, r in rows(engine).items()}
    assert got == {"checkin:ok": ("sent", None), "checkin:opt": ("suppressed", "opted_out"),
                   "checkin:sup": ("suppressed", "suppressed"),
                   "checkin:gone": ("suppressed", "churned"), "checkin:back": ("sent", None)}
    r = rows(engine)
    assert r["checkin:sup"]["rule_detail"].startswith("sup@nw.example is on the suppression "
                                                      "list (bounce via webhook")
    assert "opted out" in r["checkin:opt"]["rule_detail"]
    assert r["checkin:gone"]["rule_detail"] == "account acc-2 cancelled on 2026-06-28"
    assert report.sent == 2 and report.suppressed == 3
    assert dict(report.by_rule) == {"opted_out": 1, "suppressed": 1, "churned": 1}
    assert sorted(p.name for p in outbox_dir.glob("*.eml")) == sorted(
        f"{r[k]['message_id']}.eml" for k in ("checkin:ok", "checkin:back"))
    assert r["checkin:ok"]["provider_message_id"] == f"file-{r['checkin:ok']['message_id']}"


def test_quiet_hours_wait_in_the_contacts_own_time_zone(engine: Engine,
                                                        outbox_dir: Path) -> None:
    # 12:00 UTC is 21:00 in Tokyo (quiet), 08:00 in New York (just awake), 05:00 in LA (quiet)
    world(engine, [("tok", "acc-1", "t@nw.example", "Asia/Tokyo", False),
                   ("nyc", "acc-1", "n@nw.example", "America/New_York", False),
                   ("lax", "acc-1", "l@nw.example", "America/Los_Angeles", False)])
    queue(engine, [draft("tok", "t@nw.example"), draft("nyc", "n@nw.example"),
                   draft("lax", "l@nw.example")], now=NOON)
    report = send_due(engine, FileTransport(outbox_dir), now=NOON)
    r = rows(engine)
    assert r["checkin:nyc"]["status"] == "sent"
    tok, lax = r["checkin:tok"], r["checkin:lax"]
    assert (tok["status"], tok["rule"]) == ("queued", "quiet_hours")
    assert tok["not_before"] == datetime(2026, 7, 1, 23, 0, tzinfo=UTC)  # 08:00 next day
    assert tok["rule_detail"] == ("quiet hours 21:00-08:00 in Asia/Tokyo: waits until "
                                  "2026-07-02 08:00")
    assert lax["not_before"] == datetime(2026, 7, 1, 15, 0, tzinfo=UTC)  # 08:00 PDT today
    assert report.deferred == 2 and report.by_rule["quiet_hours"] == 2

    # before the end of its quiet hours a waiting message is not even looked at
    early = send_due(engine, FileTransport(outbox_dir), now=datetime(2026, 7, 1, 14, 59,
                                                                      tzinfo=UTC))
    assert early.considered == 0
    later = send_due(engine, FileTransport(outbox_dir), now=datetime(2026, 7, 1, 15, 0,
                                                                      tzinfo=UTC))
    assert later.sent_ids == [lax["message_id"]]
    last = send_due(engine, FileTransport(outbox_dir), now=datetime(2026, 7, 1, 23, 0,
                                                                     tzinfo=UTC))
    assert last.sent_ids == [tok["message_id"]]
    assert {r["status"] for r in rows(engine).values()} == {"sent"}


def test_urgent_passes_cap_and_quiet_hours_but_not_opt_out_or_bounce(
        engine: Engine, outbox_dir: Path) -> None:
    world(engine, [("tok", "acc-1", "t@nw.example", "Asia/Tokyo", False),
                   ("opt", "acc-1", "o@nw.example", "Asia/Tokyo", True),
                   ("hb", "acc-1", "hb@nw.example", "Asia/Tokyo", False),
                   ("busy", "acc-1", "b@nw.example", "UTC", False)])
    add_suppression(engine, "hb@nw.example", reason="bounce", source="webhook")
    # "busy" had two automated messages this week: the cap is full
    queue(engine, [draft("busy", "b@nw.example", key="old-1"),
                   draft("busy", "b@nw.example", key="old-2", kind="survey")],
          now=NOON - timedelta(days=3))
    send_due(engine, FileTransport(outbox_dir), now=NOON - timedelta(days=3))
    notices = [draft(c, e, kind="outage_notice", key=f"notice:i1:started:{c}", urgent=True)
               for c, e in (("tok", "t@nw.example"), ("opt", "o@nw.example"),
                            ("hb", "hb@nw.example"), ("busy", "b@nw.example"))]
    queue(engine, notices, now=NOON)
    report = send_due(engine, FileTransport(outbox_dir), now=NOON)
    got = {k: (r["status"], r["rule"]) for k, r in rows(engine).items()
           if r["queued_at"] == NOON}
    assert got == {
        "notice:i1:started:tok": ("sent", None),  # 21:00 in Tokyo: quiet, but urgent
        "notice:i1:started:opt": ("suppressed", "opted_out"),
        "notice:i1:started:hb": ("suppressed", "suppressed"),
        "notice:i1:started:busy": ("sent", None),  # cap full, but urgent
    }
    assert report.sent == 2
    # the urgent notice counts towards the cap of what comes after it (the next day: the
    # day of the notice nothing else would reach "busy" anyway, tests/test_collisions.py)
    queue(engine, [draft("busy", "b@nw.example", key="survey:busy", kind="survey")],
          now=NOON + timedelta(days=1))
    send_due(engine, FileTransport(outbox_dir), now=NOON + timedelta(days=1))
    busy = rows(engine)["survey:busy"]
    assert (busy["status"], busy["rule"], busy["rule_detail"]) == (
        "suppressed", "cap", "3 automated messages to this contact in the last 7 days (cap 2)")


def test_the_cap_counts_every_kind_and_the_same_address(engine: Engine,
                                                         outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False)])
    # 8 days ago: outside the window; 6 days ago: inside
    queue(engine, [draft("c1", "ana@nw.example", key="old", kind="survey")],
          now=NOON - timedelta(days=8))
    send_due(engine, FileTransport(outbox_dir), now=NOON - timedelta(days=8))
    queue(engine, [draft("c1", "ana@nw.example", key="recent", kind="checkin")],
          now=NOON - timedelta(days=6))
    send_due(engine, FileTransport(outbox_dir), now=NOON - timedelta(days=6))
    queue(engine, [
        draft("c1", "ana@nw.example", key="a", kind="survey"),
        draft("c1", "ana@nw.example", key="b", kind="survey"),
        # the same address without a contact id is the same person for the cap
        Draft(kind="checkin", idempotency_key="c", template="checkin", to_email="ANA@nw.example",
              context={"account_name": "Northwind", "csm_name": "Kim Lee",
                       "csm_email": "kim.lee@pulse.example"}),
        # a CSM digest is not automated: no cap
        Draft(kind="csm_digest", idempotency_key="d", template="csm_digest",
              to_email="ana@nw.example", context={"accounts": []}, automated=False),
    ], now=NOON)
    report = send_due(engine, FileTransport(outbox_dir), now=NOON)
    got = {k: (r["status"], r["rule"]) for k, r in rows(engine).items()}
    assert got == {"old": ("sent", None), "recent": ("sent", None), "a": ("sent", None),
                   "b": ("suppressed", "cap"), "c": ("suppressed", "cap"), "d": ("sent", None)}
    assert report.by_rule["cap"] == 2


def test_a_cancelled_account_gets_no_automated_mail(engine: Engine, outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False)])
    purchase(engine, "p1", "acc-1", "subscription_started", NOON - timedelta(days=100))
    queue(engine, [draft("c1", "ana@nw.example", key="before")], now=NOON)
    send_due(engine, FileTransport(outbox_dir), now=NOON)
    purchase(engine, "p2", "acc-1", "cancelled", NOON + timedelta(hours=1))
    # queued before the cancellation, sent after: the rules look at the state at send time
    queue(engine, [draft("c1", "ana@nw.example", key="after", kind="outage_notice",
                         urgent=True)], now=NOON)
    send_due(engine, FileTransport(outbox_dir), now=NOON + timedelta(hours=2))
    r = rows(engine)
    assert (r["before"]["status"], r["after"]["status"], r["after"]["rule"]) == (
        "sent", "suppressed", "churned")


def test_a_dry_run_changes_nothing(engine: Engine, outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False),
                   ("c2", "acc-1", "bo@nw.example", "Asia/Tokyo", False),
                   ("c3", "acc-1", "cy@nw.example", "UTC", True)])
    queue(engine, [draft("c1", "ana@nw.example"), draft("c1", "ana@nw.example", key="k2",
                                                        kind="survey"),
                   draft("c1", "ana@nw.example", key="k3", kind="survey2"),
                   draft("c2", "bo@nw.example"), draft("c3", "cy@nw.example")], now=NOON)
    before = rows(engine)
    report = send_due(engine, FileTransport(outbox_dir), now=NOON, dry_run=True, batch_size=2)
    assert rows(engine) == before
    assert not outbox_dir.exists()
    assert report.outcomes["would_send"] == 2
    assert dict(report.by_rule) == {"cap": 1, "quiet_hours": 1, "opted_out": 1}
    assert report.sent == 0 and report.sent_ids == []


class CrashingTransport:
    """Hands the first message to the file transport, then the process dies."""

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.inner = FileTransport(folder)

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        self.inner.send(messages[:1])
        raise KeyboardInterrupt("killed mid-send")

    def reconcile(self, messages: Sequence[Outgoing]) -> dict[int, str | None]:
        raise AssertionError("not used")


def test_a_crash_mid_send_is_reconciled_through_the_file_transport(
        engine: Engine, outbox_dir: Path) -> None:
    world(engine, [(f"c{i}", "acc-1", f"p{i}@nw.example", "UTC", False) for i in range(3)])
    queue(engine, [draft(f"c{i}", f"p{i}@nw.example") for i in range(3)], now=NOON)
    with pytest.raises(KeyboardInterrupt):
        send_due(engine, CrashingTransport(outbox_dir), now=NOON)
    left = rows(engine)
    assert {r["status"] for r in left.values()} == {"sending"}
    first = min(r["message_id"] for r in left.values())
    assert [p.name for p in outbox_dir.glob("*.eml")] == [f"{first}.eml"]
    written = (outbox_dir / f"{first}.eml").read_bytes()

    later = NOON + timedelta(minutes=5)
    report = send_due(engine, FileTransport(outbox_dir), now=later)
    assert dict(report.reconciled) == {"sent": 1, "requeued": 2, "unknown": 0}
    after = {r["message_id"]: r for r in rows(engine).values()}
    assert {i: (r["status"], r["attempts"]) for i, r in after.items()} == {
        first: ("sent", 1), first + 1: ("sent", 2), first + 2: ("sent", 2)}
    assert after[first]["provider_message_id"] == f"file-{first}"
    assert after[first]["sent_at"] == NOON  # handed over when it was claimed
    assert sorted(report.sent_ids) == [first + 1, first + 2]  # the first is never sent again
    assert (outbox_dir / f"{first}.eml").read_bytes() == written
    index = (outbox_dir / "index.html").read_text()
    assert all(f'href="{i}.eml"' in index for i in after)


class Flaky:
    name = "flaky"

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        return [SendResult(m.message_id, ok=False, error=f"429 for {m.to_email}",
                           retryable=m.to_email.startswith("a")) for m in messages]

    def reconcile(self, messages: Sequence[Outgoing]) -> dict[int, str | None]:
        return {}


def test_failures_are_retried_or_recorded(engine: Engine) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False),
                   ("c2", "acc-1", "bo@nw.example", "UTC", False)])
    queue(engine, [draft("c1", "ana@nw.example"), draft("c2", "bo@nw.example")], now=NOON)
    report = send_due(engine, Flaky(), now=NOON)
    r = rows(engine)
    assert (r["checkin:c1"]["status"], r["checkin:c1"]["last_error"]) == (
        "queued", "429 for ana@nw.example")
    assert (r["checkin:c2"]["status"], r["checkin:c2"]["attempts"]) == ("failed", 1)
    assert (report.outcomes["retry"], report.failed) == (1, 1)


def test_header_injection_is_refused_or_neutralised(engine: Engine, outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False)])
    good = draft("c1", "ana@nw.example")
    evil = draft("c1", "ana@nw.example\r\nBcc: all@victims.example", key="evil")
    with pytest.raises(HeaderInjectionError, match="line break"):
        queue(engine, [good, evil], now=NOON)
    assert rows(engine) == {}  # nothing half-written
    with pytest.raises(HeaderInjectionError):
        queue(engine, [draft("c1", "ana@nw.example", reply_to="x@y.example\nBcc: z@z.example")])

    sneaky = draft("c1", "ana@nw.example", kind="outage_notice",
                   to_name="Ana\r\nBcc: all@victims.example",
                   from_name="Care\nX-Evil: 1",
                   context={"incident_title": "Down\r\nBcc: all@victims.example"})
    queue(engine, [sneaky], now=NOON)
    row = rows(engine)["outage_notice:c1"]
    assert row["to_name"] == "Ana Bcc: all@victims.example"
    assert row["subject"] == "[Investigating] Down Bcc: all@victims.example"
    send_due(engine, FileTransport(outbox_dir), now=NOON)
    msg = eml(outbox_dir, row["message_id"])
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg.get_all("To") == ['"Ana Bcc: all@victims.example" <ana@nw.example>']
    head = (outbox_dir / f"{row['message_id']}.eml").read_bytes().replace(b"\r\n", b"\n")
    head = head.split(b"\n\n")[0]
    assert b"\nBcc:" not in head and b"\nX-Evil:" not in head


def test_html_in_names_is_escaped_in_the_eml_and_the_index(engine: Engine,
                                                            outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "Europe/Paris", False)])
    script = "<script>alert(1)</script>"
    queue(engine, [draft("c1", "ana@nw.example", kind="outage_notice", to_name=script,
                         context={"account_name": "<b>Acme</b>", "components": ["<img>"],
                                  "incident_title": f"Outage {script}"})], now=NOON)
    send_due(engine, FileTransport(outbox_dir), now=NOON)
    msg = eml(outbox_dir, 1)
    html = msg.get_body(preferencelist=("html",)).get_content()
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "<script>" not in html and "<b>Acme" not in html and "<img>" not in html
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;," in html
    assert "How it affected &lt;b&gt;Acme&lt;/b&gt;" in html
    assert f"Hello {script}," in text  # plain text stays plain
    index = (outbox_dir / "index.html").read_text()
    assert "<script>" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index


def test_recipients_of_one_notice_share_one_body(engine: Engine, outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "Europe/Paris", False),
                   ("c2", "acc-2", "bo@sw.example", "Asia/Tokyo", False)],
          accounts=("acc-1", "acc-2"))
    impact = {"failed_requests": 120, "total_requests": 1000,
              "first_affected_at": "2026-07-01T10:00:00Z", "components": ["api"]}
    queue(engine, [
        draft("c1", "ana@nw.example", kind="outage_notice", urgent=True,
              context={**impact, "account_name": "North -p1h-", "timezone": "Europe/Paris"}),
        draft("c2", "bo@sw.example", kind="outage_notice", account="acc-2", urgent=True,
              context={**impact, "account_name": "South", "timezone": "Asia/Tokyo"}),
    ], now=NOON)
    with engine.connect() as conn:
        both = [dict(r) for r in conn.execute(select(T).order_by(T.c.message_id)).mappings()]
    renderer = Renderer(now=NOON)
    a, b = (renderer.outgoing(r) for r in both)
    assert a.body_key == b.body_key and a.html == b.html and a.text == b.text
    assert "-p1h-" in a.html and "Northwind" not in a.html
    assert "First affected: Wed, Jul 1, 2026, 12:00\u202fPM CEST" in a.full_text()
    assert "First affected: Wed, Jul 1, 2026, 7:00\u202fPM JST" in b.full_text()
    assert "Failed requests: 120 of 1,000 (12.0%)" in b.full_html()
    # a value that looks like a token cannot pull another slot into the text
    assert "North &#45;p1h-" in a.full_html() and "Hello C1," in a.full_html()
    assert a.custom_args == {"outbox_id": str(a.message_id), "kind": "outage_notice"}
    assert a.categories == ("outage_notice",)
    unsubscribe = a.headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<http://127.0.0.1:8700/u/") and "mailto:" in unsubscribe
    assert a.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.split(">")[0][1:] in a.full_html()  # the footer link is the same link
    send_due(engine, FileTransport(outbox_dir), now=NOON)
    msg = eml(outbox_dir, a.message_id)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"] == unsubscribe
    assert msg.get_body(preferencelist=("html",)).get_content().strip() == a.full_html().strip()


def test_a_csm_digest_has_no_unsubscribe_link(engine: Engine, outbox_dir: Path) -> None:
    digest = Draft(kind="csm_digest", idempotency_key="digest:kim:2026-07-01",
                   template="csm_digest", to_email="kim@pulse.example", to_name="Kim",
                   automated=False,
                   context={"day": "2026-07-01", "accounts": [
                       {"account_id": "acc-1", "name": "Northwind", "band": "red",
                        "entered_red": True, "new_flags": ["usage_drop"],
                        "evidence": ["Usage fell 60% in 28 days"]}]})
    queue(engine, [digest], now=NOON)
    assert rows(engine)["digest:kim:2026-07-01"]["subject"] == (
        "Risk digest for Jul 1, 2026: 1 account needs attention")
    send_due(engine, FileTransport(outbox_dir), now=NOON)
    msg = eml(outbox_dir, 1)
    assert msg["List-Unsubscribe"] is None
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert 'href="http://127.0.0.1:8700/accounts/acc-1"' in html and "Usage fell 60%" in html


def test_the_cli_sends_and_lists(engine: Engine) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False),
                   ("c2", "acc-1", "bo@nw.example", "UTC", True)])
    queue(engine, [draft("c1", "ana@nw.example", kind="outage_notice", urgent=True),
                   draft("c2", "bo@nw.example", kind="outage_notice", urgent=True)])
    env = piped_env()

    def run(*args: str) -> str:
        proc = run_pulse(*args, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    dry = json.loads(run("outreach", "send", "--dry-run", "--format", "json"))
    assert (dry["outcomes"]["would_send"], dry["by_rule"]) == (1, {"opted_out": 1})
    assert {r["status"] for r in rows(engine).values()} == {"queued"}
    sent = json.loads(run("outreach", "send", "--format", "json"))
    assert sent["outcomes"]["sent"] == 1
    listed = json.loads(run("outbox", "list", "--status", "suppressed", "--format", "json"))
    assert [(r["to_email"], r["rule"]) for r in listed] == [("bo@nw.example", "opted_out")]
    assert "ana@nw.example" in run("outbox", "list", "--kind", "outage_notice",
                                   "--format", "csv")
    run("suppress", "add", "Zed@Example.com", "--reason", "manual")
    assert "zed@example.com,manual,cli" in run("suppress", "list", "--format", "csv")
    home = Path(os.environ["PULSE_HOME"])
    assert len(list((home / "outbox").glob("*.eml"))) == 1


def test_reconcile_leaves_fresh_claims_alone_when_asked(engine: Engine,
                                                        outbox_dir: Path) -> None:
    world(engine, [("c1", "acc-1", "ana@nw.example", "UTC", False)])
    queue(engine, [draft("c1", "ana@nw.example")], now=NOON)
    with engine.begin() as conn:
        conn.execute(update(T).values(status="sending", claimed_at=NOON, transport="file",
                                      attempts=1))
    fresh = send_due(engine, FileTransport(outbox_dir), now=NOON + timedelta(minutes=1),
                     stale_after=timedelta(minutes=10))
    assert sum(fresh.reconciled.values()) == 0
    assert rows(engine)["checkin:c1"]["status"] == "sending"
    stale = send_due(engine, FileTransport(outbox_dir), now=NOON + timedelta(minutes=11),
                     stale_after=timedelta(minutes=10))
    assert stale.reconciled["requeued"] == 1 and stale.sent == 1


def test_the_file_transport_refuses_line_breaks_and_rewrites_in_place(tmp_path: Path) -> None:
    def outgoing(message_id: int, to_name: str) -> Outgoing:
        return Outgoing(message_id, "checkin", "checkin", "ana@nw.example", to_name,
                        "care@pulse-demo.example", "Care", None, "Hello", "<p>-p1h-</p>",
                        "-p1t-", "k", {"-p1h-": "&lt;hi&gt;", "-p1t-": "<hi>"})

    box = tmp_path / "box"
    transport = FileTransport(box)
    bad = transport.send([outgoing(7, "Ana\nBcc: x@y.example")])
    assert (bad[0].ok, bad[0].error) == (False, "cannot build the message: header To contains "
                                                "a line break")
    assert not (box / "7.eml").exists()
    first = transport.send([outgoing(8, "Ana")])
    again = transport.send([outgoing(8, "Ana B")])  # the same message id: the same file
    assert first[0].provider_message_id == again[0].provider_message_id == "file-8"
    assert sorted(p.name for p in box.iterdir()) == ["8.eml", "index.html", "index.jsonl"]
    assert eml(box, 8)["To"] == "Ana B <ana@nw.example>"
    assert eml(box, 8).get_body(preferencelist=("html",)).get_content() == "<p>&lt;hi&gt;</p>"
    assert (box / "index.html").read_text().count('href="8.eml"') == 1
    assert transport.reconcile([outgoing(8, "Ana"), outgoing(9, "Ana")]) == {8: "file-8",
                                                                            9: None}


def test_templates_accept_the_planners_context_names() -> None:
    """outreach/notices.py and checkins.py say title/status/latest_update and evidence."""
    renderer = Renderer(now=NOON)
    ctx = {"title": "Login <slow>", "stage": "resolved", "status": "resolved",
           "impact": "critical", "latest_update": "All clear.", "contact_name": "Ana",
           "you_were_affected": False, "components": ["auth"], "timezone": "UTC"}
    subject = renderer.subject("outage_notice", ctx)
    msg = renderer.outgoing({"message_id": 1, "kind": "outage_notice",
                             "template": "outage_notice", "to_email": "a@x.example",
                             "to_name": "Ana", "subject": subject, "context": ctx})
    assert subject == "[Resolved] Login <slow>"
    html = msg.full_html()
    assert "Login &lt;slow&gt;" in html and "Impact:</strong> critical" in html
    assert "All clear." in html and "we saw no failed requests" in html
    checkin = CustomerCheckin(
        account_name="North", csm_name="Kim Lee", csm_email="kim.lee@pulse.example",
        features=(FeatureHelp("reports", "Reports", "https://help.example/guides/reports"),),
        renewal_date="2026-07-20").to_context()
    text = renderer.outgoing({"message_id": 2, "kind": "checkin", "template": "checkin",
                              "to_email": "a@x.example", "subject": "s",
                              "context": checkin}).full_text()
    assert text.startswith("Hello,") and "- Reports: https://help.example/guides/reports" in text
    assert "renews on July 20, 2026" in text and "Kim Lee\nkim.lee@pulse.example" in text


def test_a_check_in_reaches_only_the_customer_vocabulary() -> None:
    """The CSM's evidence cannot travel in a check-in: the renderer refuses the key at queue
    time (subject) and at send time (bodies), and refuses a check-in without a named CSM."""
    renderer = Renderer(now=NOON)
    ok = {"account_name": "North", "csm_name": "Kim Lee", "csm_email": "kim.lee@pulse.example"}
    assert renderer.subject("checkin", ok) == "Checking in on North"
    for leak in ({"evidence": ["health 52.1 (amber)"]}, {"health": 52.1},
                 {"note_lines": ["no ticket in 40 days"]}):
        with pytest.raises(TemplateError, match="refused the key"):
            renderer.subject("checkin", {**ok, **leak})
        with pytest.raises(TemplateError, match="refused the key"):
            renderer.outgoing({"message_id": 3, "kind": "checkin", "template": "checkin",
                               "to_email": "a@x.example", "subject": "s",
                               "context": {**ok, **leak}})
        with pytest.raises(TemplateError, match="refused the key"):  # nothing is queued
            outbox_row(Draft(kind="checkin", idempotency_key="k", template="checkin",
                             to_email="a@x.example", context={**ok, **leak}),
                       renderer, get_settings(), NOON)
    for sender in ({"csm_name": None, "csm_email": None},
                   {"csm_name": "Cs Team", "csm_email": "cs-team@pulse.example"}):
        with pytest.raises(TemplateError, match="named CSM"):
            renderer.outgoing({"message_id": 4, "kind": "checkin", "template": "checkin",
                               "to_email": "a@x.example", "subject": "s",
                               "context": {**ok, **sender}})
