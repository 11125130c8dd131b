"""Feedback themes and team digests on a known set of items, on SQLite and PostgreSQL:
near-duplicates merged, theme counts, distinct accounts and MRR (each account once), quotes
scrubbed of personal data, hostile text escaped, one digest per team per period."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from pulse.models.feedback import refresh_insights, themes
from pulse.outreach.feedback_digest import build_digests, queue_digests, scrub
from pulse.outreach.outbox_send import send_due
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import Account, Contact, Mention, OutboxMessage, TextInsight, Ticket

MONDAY = date(2026, 11, 23)  # the digest covers the week 16-22 November
WEEK = datetime(2026, 11, 16, tzinfo=UTC)
LAST_WEEK = WEEK - timedelta(days=7)
HOSTILE = 'Dark mode for the dashboard charts would be great"><img src=x onerror=alert(1)>'
SCRIPT = "Please add a dark mode to the dashboard charts <script>alert(1)</script>"


def _at(day: int, hour: int = 10) -> datetime:
    return WEEK + timedelta(days=day, hours=hour)


def _land(engine: Engine) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    lineage = {"landed_at": now, "updated_at": now}
    accounts = [("acc-a", "Acme", "1000"), ("acc-b", "Globex", "2500"),
                ("acc-c", "Initech", "400"), ("acc-d", "Umbrella", "50")]
    contacts = [("con-1", "acc-a", "maria.lopez@acme.example", "Maria Lopez", "marialopez"),
                ("con-2", "acc-b", "tom@globex.example", "Tom Baker", "tbaker")]
    mentions = [
        ("m0", LAST_WEEK + timedelta(days=2), "acc-a",
         "CSV export of the monthly report fails with a timeout"),
        ("m1", _at(0), "acc-b", "@pulsehq CSV export of the monthly report fails with a "
         "timeout again"),
        ("m2", _at(1), "acc-b", "CSV export of the monthly report fails with timeout again"),
        ("m3", _at(2), "acc-a", "csv export of the monthly report FAILS with a timeout "
         "again!!"),
        ("m4", _at(2), "acc-d", SCRIPT),
        ("m5", _at(3), "acc-c", HOSTILE),
        ("m6", _at(4), "acc-a", "Would love a dark mode option for the dashboard charts, "
         "ping @tbaker"),
        ("m7", _at(9), "acc-a", "After the period: CSV export fails"),
    ]
    tickets = [
        ("t1", _at(1, 12), "acc-a", "CSV export fails",
         "The CSV export of the monthly report fails with a timeout. Call me at "
         "+1 415 555 0100 or maria.lopez@acme.example. Maria Lopez"),
        ("t2", _at(3, 12), "acc-c", "Export to CSV times out",
         "Exporting the monthly report to CSV times out; Tom said it worked last week"),
        ("t3", _at(4, 12), "acc-b", "Invoice shows the wrong VAT",
         "Our invoice for March shows the wrong VAT amount"),
    ]
    with engine.begin() as conn:
        conn.execute(insert(Account), [
            {"account_id": a, "name": n, "mrr": Decimal(m), "currency": "USD", **lineage}
            for a, n, m in accounts])
        conn.execute(insert(Contact), [
            {"contact_id": c, "account_id": a, "email": e, "name": n, "x_handle": h,
             "timezone": "UTC", "opted_out": False, **lineage}
            for c, a, e, n, h in contacts])
        conn.execute(insert(Mention), [
            {"mention_id": i, "created_at": t, "account_id": a, "text": x,
             "author_handle": f"user_{i}", "platform": "x", **lineage}
            for i, t, a, x in mentions])
        conn.execute(insert(Ticket), [
            {"ticket_id": i, "opened_at": t, "account_id": a, "subject": s, "body": b,
             **lineage} for i, t, a, s, b in tickets])


@pytest.fixture
def world(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    _land(engine)
    n = refresh_insights(engine, now=datetime(2026, 11, 23, 6, tzinfo=UTC))
    assert n == 11  # 8 mentions and 3 tickets
    return engine


def test_refresh_is_idempotent_and_follows_changed_text(world: Engine) -> None:
    engine = world
    assert refresh_insights(engine) == 0  # nothing new, nothing changed
    with engine.begin() as conn:
        conn.execute(Ticket.__table__.update().where(Ticket.ticket_id == "t3")
                     .values(body="Our invoice for April is wrong too"))
    assert refresh_insights(engine) == 1
    with engine.connect() as conn:
        rows = conn.execute(select(TextInsight.item_type, TextInsight.item_id,
                                   TextInsight.text, TextInsight.team)).all()
    assert len(rows) == 11
    t3 = next(r for r in rows if r.item_id == "t3")
    assert t3.item_type == "ticket" and "April" in t3.text and t3.text.startswith("Invoice")
    by_id = {r.item_id: r.team for r in rows}
    assert by_id["t3"] == "billing"
    assert {by_id[i] for i in ("m1", "m2", "m3", "t1", "t2", "m4", "m5", "m6")} == {"analytics"}


def test_themes_merge_duplicates_and_weigh_accounts_once(world: Engine) -> None:
    found = themes(world, team="analytics", since=WEEK, until=WEEK + timedelta(days=7))
    assert len(found) == 2
    export, dark = found.iloc[0], found.iloc[1]  # biggest MRR first
    assert {"csv", "export"} <= set(export["top_terms"])
    assert "dark" in dark["top_terms"]
    assert export["items"] == 5 and sorted(export["item_refs"]) == [
        "mention:m1", "mention:m2", "mention:m3", "ticket:t1", "ticket:t2"]
    # m1, m2 and m3 say the same thing (m3 in other case, m2 without one stop word); t1 too,
    # once its phone number, address and signature are normalised away.
    assert export["distinct_texts"] == 2 and export["duplicates_merged"] == 3
    assert export["label"] == "CSV export of the monthly report fails with timeout again"
    assert export["accounts"] == 3 and export["account_ids"] == ["acc-b", "acc-a", "acc-c"]
    assert export["mrr"] == 2500 + 1000 + 400  # acc-a and acc-b twice each, counted once
    assert dark["items"] == 3 and dark["accounts"] == 3 and dark["mrr"] == 1000 + 400 + 50
    assert dark["duplicates_merged"] == 0
    # Keys are stable: the same items give the same keys.
    again = themes(world, team="analytics", since=WEEK, until=WEEK + timedelta(days=7))
    assert list(again["theme_key"]) == list(found["theme_key"])


def test_scrub_removes_personal_data() -> None:
    text = ("Mail maria.lopez@acme.example or call +1 (415) 555-0100, cc @tbaker and "
            "marialopez; Maria said MARIA LOPEZ approved. Order 12345 on 2026-11-20. "
            "See https://app.example.com/r?token=abc123 and https://docs.example.com/export.")
    out = scrub(text, contact_names=["Maria Lopez"], handles=["marialopez"])
    assert out == ("Mail [email] or call [phone], cc [handle] and [handle]; [name] said "
                   "[name] approved. Order 12345 on 2026-11-20. See [link] and "
                   "https://docs.example.com/export.")


def _digest_rows(engine: Engine) -> list[dict[str, Any]]:
    t = OutboxMessage.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(t).where(t.c.kind == "team_digest").order_by(t.c.idempotency_key)
        ).mappings()]


def test_weekly_digest_per_team(world: Engine, pulse_home: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    engine = world
    monkeypatch.setenv("PULSE_TEAM_EMAILS", json.dumps({"analytics": "Analytics@Pulse.example"}))
    from pulse.core.settings import get_settings

    get_settings(fresh=True)
    run = queue_digests(engine, period="week", period_end=MONDAY)
    assert [d.team for d in run.digests] == ["analytics", "billing"]
    assert run.queued == 2 and run.duplicates == 0
    analytics = run.digests[0]
    ctx = analytics.context
    assert ctx["period_start"] == "2026-11-16" and ctx["period_end"] == "2026-11-23"
    assert ctx["total_items"] == 8 and ctx["total_accounts"] == 4
    assert ctx["total_mrr"] == 1000 + 2500 + 400 + 50
    export, dark = ctx["themes"]
    assert (export["items"], export["accounts"], export["mrr"]) == (5, 3, 3900)
    assert (export["previous_items"], export["trend"], export["new"]) == (1, 4, False)
    assert (dark["items"], dark["accounts"], dark["mrr"], dark["new"]) == (3, 3, 1450, True)
    assert ctx["new_themes"] == [dark["label"]]
    assert [a["account_id"] for a in export["links"]] == ["acc-b", "acc-a", "acc-c"]
    assert all("/accounts/" in a["url"] and "?t=" in a["url"] for a in export["links"])
    # Two or three quotes, none with a contact's address, phone, handle or name.
    quotes = [q["text"] for q in ctx["quotes"]]
    assert 2 <= len(quotes) <= 3
    blob = "\n".join(quotes)
    for personal in ("maria.lopez@acme.example", "555", "@tbaker", "@pulsehq", "Maria",
                     "Lopez", "Tom"):
        assert personal not in blob
    assert "[name]" in blob  # (t1, with the address and phone, is one text with m1-m3)

    # Files under $PULSE_HOME/digests/{period_start}/: hostile text escaped, quotes scrubbed.
    folder = pulse_home / "digests" / "2026-11-16"
    assert sorted(p.name for p in folder.iterdir()) == [
        "analytics.html", "analytics.md", "billing.html", "billing.md"]
    page = (folder / "analytics.html").read_text(encoding="utf-8")
    md = (folder / "analytics.md").read_text(encoding="utf-8")
    assert "<td>5</td><td>3</td><td>$3,900.00</td>" in page
    assert "<td>3</td><td>3</td><td>$1,450.00</td>" in page and ">Acme</a>" in page
    assert "| 5 | 3 | $3,900.00 | +4 (1 before) |" in md and "| 3 | 3 | $1,450.00 | new |" in md
    for body in (page, md):
        assert "<script>" not in body and "<img" not in body
        assert "maria.lopez@acme.example" not in body and "Maria Lopez" not in body
    if any("script" in q for q in quotes):
        assert "&lt;script&gt;" in page and "&lt;script&gt;" in md
    if any("onerror" in q for q in quotes):
        assert "&#34;&gt;&lt;img" in page or "&quot;&gt;&lt;img" in page

    # One email per team per period: a re-run queues nothing new.
    again = queue_digests(engine, period="week", period_end=MONDAY + timedelta(days=2))
    assert again.queued == 0 and again.duplicates == 2
    rows = _digest_rows(engine)
    assert [(r["idempotency_key"], r["to_email"], r["automated"]) for r in rows] == [
        ("team_digest:analytics:2026-11-16", "analytics@pulse.example", False),
        ("team_digest:billing:2026-11-16", "product@pulse-demo.example", False)]

    # The email as sent: hostile text escaped there too.
    report = send_due(engine, FileTransport(pulse_home / "outbox"),
                      now=datetime(2026, 11, 23, 9, tzinfo=UTC))
    assert report.outcomes["sent"] == 2
    eml = pulse_home / "outbox" / f"{rows[0]['message_id']}.eml"
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "<img" not in html
    assert "maria.lopez@acme.example" not in html
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "5 items, 3 accounts, MRR $3,900.00, +4 vs last period (1)" in text


def test_hostile_tweet_is_escaped_in_html_and_email(world: Engine, pulse_home: Path) -> None:
    """Only the hostile tweets as feedback: they must be quoted, and quoted inert."""
    engine = world
    with engine.begin() as conn:
        conn.execute(TextInsight.__table__.delete().where(
            TextInsight.item_id.not_in(["m4", "m5"])))
    (digest,) = build_digests(engine, period="week", period_end=MONDAY)
    quotes = [q["text"] for q in digest.context["quotes"]]
    assert sorted(quotes) == sorted([HOSTILE, SCRIPT])
    page = digest.html_path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    md = digest.md_path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md
    run = queue_digests(engine, period="week", period_end=MONDAY)
    assert run.queued == 1
    send_due(engine, FileTransport(pulse_home / "outbox"),
             now=datetime(2026, 11, 23, 9, tzinfo=UTC))
    (row,) = _digest_rows(engine)
    msg = BytesParser(policy=policy.default).parsebytes(
        (pulse_home / "outbox" / f"{row['message_id']}.eml").read_bytes())
    html = msg.get_body(preferencelist=("html",)).get_content()
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT in text  # the plain text part is plain text


def test_cli_digest(world: Engine, pulse_home: Path) -> None:
    from pulse.cli import app
    from pulse.cli.feedback import register

    if not any(g.name == "feedback" for g in app.registered_groups):
        register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["feedback", "themes", "--team", "analytics", "--since",
                              "2026-11-16", "--until", "2026-11-23", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["items"], r["accounts"], r["mrr"]) for r in rows] == [(5, 3, 3900), (3, 3, 1450)]
    res = runner.invoke(app, ["feedback", "digest", "--period", "week", "--end", "2026-11-23",
                              "--team", "billing", "--send", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["queued"] == 1 and out["digests"][0]["team"] == "billing"
    assert out["sent"] == 1
    assert (pulse_home / "digests" / "2026-11-16" / "billing.md").is_file()


@pytest.fixture
def af_env(pulse_home: Path, tmp_path_factory: pytest.TempPathFactory,
           airflow_template: Path) -> dict[str, str]:
    from pulse.core.settings import get_settings
    from pulse.devkit.airflow_runner import airflow_environ
    from tests.conftest import airflow_home

    keys = airflow_home(airflow_template, tmp_path_factory.mktemp("airflow-home"))
    return {**airflow_environ(get_settings(fresh=True)), **keys}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dag_classifies_and_sends_the_weekly_digests(engine: Engine, af_env: dict[str, str],
                                                     pulse_home: Path) -> None:
    from pulse.devkit.airflow_runner import run_dag_test

    _land(engine)
    run_dag_test("pulse_feedback", logical_date="2026-11-23", env=af_env,
                 conf={"lookback_days": 0, "force_digest": True})
    with engine.connect() as conn:
        assert len(conn.execute(select(TextInsight.item_id)).all()) == 11
    rows = _digest_rows(engine)
    assert [r["idempotency_key"] for r in rows] == [
        "team_digest:analytics:2026-11-16", "team_digest:billing:2026-11-16"]
    assert {r["status"] for r in rows} == {"sent"}
    assert (pulse_home / "digests" / "2026-11-16" / "analytics.html").is_file()


def test_a_sentiment_model_that_cannot_run_leaves_the_tone_to_the_word_list(
        engine: Engine, pulse_home: Path) -> None:
    """A broken model file (here the user's own, unreadable): the refresh before features
    says why, writes nothing (the support-tone features count by the word list), and reads
    every text once the model can run again."""
    from pulse.models.feedback import refresh_tone
    from pulse.models.text_store import clear_cache, user_sentiment_path

    _land(engine)
    clear_cache()
    broken = user_sentiment_path()
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not a model")
    try:
        done = refresh_tone(engine)
        assert done.classified is None and done.error is not None
        assert "cannot read the text model" in done.error and str(broken) in done.error
        assert done.words.startswith("failed (") and "the word list counts instead" in done.words
        with engine.connect() as conn:
            assert conn.execute(select(TextInsight.item_id)).all() == []
    finally:
        broken.unlink()
        clear_cache()
    again = refresh_tone(engine)
    assert (again.classified, again.error) == (11, None)
    assert again.words == "refreshed (11 texts classified)"
