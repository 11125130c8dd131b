"""CSAT figures on known responses (exact CSAT and response rate), the weekly chart, survey
comments for feedback routing, low ratings on the CSM digest, the CLI, and the scorecard's
CSAT measure. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from pulse.cli import surveys as cli_surveys
from pulse.listeners.surveys import record_comment, record_rating
from pulse.models.csat import csat_report, csat_totals, survey_comments, weekly_trend_chart
from pulse.outreach.checkins import queue_daily
from pulse.outreach.outbox_send import send_due
from pulse.outreach.surveys import queue_due_surveys
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import OutboxMessage
from tests.test_surveys import N, land_world, surveys

OUTBOX = OutboxMessage.__table__
WEEK2 = datetime(2026, 7, 13, 12, 0, tzinfo=UTC)  # a Monday
EVIL = "<script>alert(1)</script> slow & \"broken\""


def _answered(engine: Engine, folder: Path) -> dict[str, int]:
    """Four surveys sent in two weeks, three answered (5, 2 with a comment, 4)."""
    land_world(engine, folder)
    queue_due_surveys(engine, now=N)  # t1 (Ana, acc-1), t-reopen (Hal, acc-1), f1 (Fay, acc-2)
    assert send_due(engine, FileTransport(), now=N).sent == 3
    queue_due_surveys(engine, now=WEEK2)  # t-late (Gus, acc-1)
    assert send_due(engine, FileTransport(), now=WEEK2).sent == 1
    ids = {k: r["survey_id"] for k, r in surveys(engine).items() if r["status"] == "queued"}
    assert set(ids) == {"ticket:t1", "ticket:t-reopen", "ticket:f1", "ticket:t-late"}
    at = N + timedelta(hours=1)
    record_rating(engine, ids["ticket:t1"], "c1", 5, now=at)
    record_comment(engine, ids["ticket:t1"], "c1", "Quick & kind", now=at)
    record_rating(engine, ids["ticket:f1"], "c6", 2, now=at)
    record_comment(engine, ids["ticket:f1"], "c6", EVIL, now=at + timedelta(minutes=1))
    record_rating(engine, ids["ticket:t-late"], "c7", 4, now=WEEK2 + timedelta(hours=2))
    return ids


def test_csat_and_response_rate_are_exact(engine: Engine, tmp_path: Path) -> None:
    _answered(engine, tmp_path)
    totals = csat_totals(engine)
    assert (totals["surveys_sent"], totals["responses"]) == (4, 3)
    assert totals["response_rate"] == pytest.approx(3 / 4)
    assert totals["csat"] == pytest.approx(2 / 3)  # 5 and 4 of 5, 2, 4
    assert totals["mean_rating"] == pytest.approx(11 / 3)

    week = csat_report(engine, by="week").set_index("week")
    assert list(week.index) == [date(2026, 7, 6), date(2026, 7, 13)]
    first = week.loc[date(2026, 7, 6)]
    assert (first["surveys_sent"], first["responses"]) == (3, 2)
    assert first["response_rate"] == pytest.approx(2 / 3)
    assert first["csat"] == pytest.approx(1 / 2)
    assert week.loc[date(2026, 7, 13), "csat"] == 1.0

    acc = csat_report(engine, by="account").set_index("account")
    assert acc.loc["acc-1", "account_name"] == "Northwind <Traders>"
    assert (acc.loc["acc-1", "surveys_sent"], acc.loc["acc-1", "responses"]) == (3, 2)
    assert acc.loc["acc-1", "csat"] == 1.0 and acc.loc["acc-2", "csat"] == 0.0
    csm = csat_report(engine, by="csm").set_index("csm")
    assert csm.loc["ana.csm@pulse.example", "mean_rating"] == pytest.approx(4.5)
    assert csm.loc["bo.csm@pulse.example", "unhappy"] == 1
    trig = csat_report(engine, by="trigger")
    assert trig["trigger"].tolist() == ["ticket"] and trig["surveys_sent"].tolist() == [4]
    # A period: the second week only.
    assert csat_totals(engine, since=date(2026, 7, 13))["surveys_sent"] == 1
    assert csat_totals(engine, until=date(2026, 7, 12))["responses"] == 2
    with pytest.raises(ValueError):
        csat_report(engine, by="colour")

    png = weekly_trend_chart(week.reset_index(), tmp_path / "charts" / "weekly.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_comments_for_feedback_routing(engine: Engine, tmp_path: Path) -> None:
    ids = _answered(engine, tmp_path)
    comments = survey_comments(engine)
    assert comments["survey_id"].tolist() == [ids["ticket:t1"], ids["ticket:f1"]]
    row = comments.set_index("survey_id").loc[ids["ticket:f1"]]
    assert (row["comment"], row["rating"], row["trigger"], row["ticket_id"],
            row["account_id"], row["contact_id"]) == (EVIL, 2, "ticket", "f1", "acc-2", "c6")
    assert survey_comments(engine, since=N + timedelta(minutes=61))["survey_id"].tolist() == [
        ids["ticket:f1"]]


def test_low_ratings_reach_the_csm_digest_with_the_comment_escaped(
        engine: Engine, tmp_path: Path) -> None:
    ids = _answered(engine, tmp_path)
    report = queue_daily(engine, N.date())  # no health scores that day: alerts only
    assert report.digests_planned == 1
    with engine.connect() as conn:
        digests = [dict(r) for r in conn.execute(select(OUTBOX).where(
            OUTBOX.c.kind == "csm_digest")).mappings()]
    assert [d["to_email"] for d in digests] == ["bo.csm@pulse.example"]  # Ana's 5 is fine
    (alert,) = digests[0]["context"]["low_ratings"]
    assert (alert["survey_id"], alert["rating"], alert["comment"], alert["contact_id"],
            alert["account_name"]) == (ids["ticket:f1"], 2, EVIL, "c6", "Initech")
    assert digests[0]["subject"] == "CSAT alert for Jul 10, 2026: 1 low rating on your accounts"
    send_due(engine, FileTransport(), now=N + timedelta(hours=3))
    msg = BytesParser(policy=policy.default).parse(
        FileTransport().path(digests[0]["message_id"]).open("rb"))
    html = msg.get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; slow &amp; &#34;broken&#34;" in html
    assert "<script" not in html
    assert "Fay" in html and "2 of 5" in html
    assert EVIL in msg.get_body(("plain",)).get_content()
    # The next day's digest does not repeat it; the rating of Gus (4) never is one.
    assert queue_daily(engine, N.date() + timedelta(days=1)).digests_planned == 0


def test_the_cli_runs_lists_and_reports(engine: Engine, tmp_path: Path,
                                        pulse_home: Path) -> None:
    land_world(engine, tmp_path)
    app = typer.Typer()
    cli_surveys.register(app)
    runner = CliRunner()
    dry = runner.invoke(app, ["surveys", "run", "--now", N.isoformat(), "--dry-run",
                              "--format", "json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["queued"] == 3 and not surveys(engine)
    run = runner.invoke(app, ["surveys", "run", "--now", N.isoformat()])
    assert run.exit_code == 0, run.output
    assert "queued 3" in run.output and "recontact 2" in run.output
    listed = runner.invoke(app, ["surveys", "list", "--status", "skipped", "--format", "json"])
    reasons = sorted(r["skip_reason"] for r in json.loads(listed.output))
    assert reasons == ["churned", "no_contact", "open_ticket", "opted_out", "recontact",
                       "recontact", "suppressed"]
    bad = runner.invoke(app, ["surveys", "list", "--reason", "bored"])
    assert bad.exit_code != 0
    send_due(engine, FileTransport(), now=N)
    ids = {k: r["survey_id"] for k, r in surveys(engine).items()}
    record_rating(engine, ids["ticket:t1"], "c1", 4, now=N + timedelta(hours=1))
    rep = runner.invoke(app, ["csat", "report", "--by", "week", "--format", "json"])
    assert rep.exit_code == 0, rep.output
    body = json.loads(rep.output)
    assert body["totals"]["surveys_sent"] == 3 and body["totals"]["csat"] == 1.0
    assert body["groups"][0]["week"] == "2026-07-06"
    chart = pulse_home / "reports" / "csat-weekly.png"
    assert body["chart"] == str(chart) and chart.read_bytes()[:4] == b"\x89PNG"
    table = runner.invoke(app, ["csat", "report", "--by", "account", "--no-chart"])
    assert "CSAT 100.0%" in table.output and "response" in table.output


def test_the_scorecard_measures_csat_only_where_there_are_responses() -> None:
    import numpy as np

    from pulse.models.scorecard import load_scorecard

    card = load_scorecard()
    (measure,) = [m for m in card.standard.measures if m.name == "csat"]
    assert measure.feature == "csat_90d" and measure.source == "surveys"
    points = measure.points(np.array([np.nan, 0.4, 0.7, 0.95]))
    assert np.isnan(points[0])  # no responses: no data, left out
    assert points[1] == 0 and 0 < points[2] < 100 and points[3] == 100
