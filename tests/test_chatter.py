"""Outage chatter on a hand-made mention stream: a burst of negative posts about one component
raises a suspected incident (or attaches to the open one); praise and one angry post do not;
re-runs change nothing. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import typer
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from pulse.core.errors import InvalidArgumentError
from pulse.devkit.bench.chatter import evaluate, run_world
from pulse.listeners.landing import land_file
from pulse.models.chatter import detect_chatter, suspected_incidents
from pulse.sql.schema import SuspectedIncident

START = datetime(2026, 6, 1, tzinfo=UTC)
BURST = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)
NOW = BURST + timedelta(minutes=20)
QUIET = ("Getting tired of the CSV export failing again", "Love the new dashboards",
         "How do I schedule a report?", "Anyone using the Slack integration?")


def _mention(mid: str, ts: datetime, text: str, author: str) -> str:
    return json.dumps({"mention_id": mid, "created_at": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "author_handle": author, "text": text})


def _baseline() -> list[str]:
    """Nine quiet days: a handful of posts a day, one of them a complaint about exports."""
    rows = []
    for d in range(9):
        for k, text in enumerate(QUIET):
            ts = START + timedelta(days=d, hours=9 + 3 * k, minutes=7 * d)
            rows.append(_mention(f"q{d}-{k}", ts, text, f"user{d}{k}"))
    return rows


def _burst(texts: list[str]) -> list[str]:
    return [_mention(f"b{i}", BURST + timedelta(minutes=2 * i), t, f"angry{i}")
            for i, t in enumerate(texts)]


NEGATIVE_API = ["Is the API down? Getting errors everywhere", "API failing for our whole team",
                "API outage again?? webhooks not working", "API broken right now, awful outage",
                "API errors since 10 min, terrible"]


def _land(engine: Engine, tmp_path: Path, rows: list[str], incidents: str = "") -> None:
    path = tmp_path / "mentions.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    res = land_file(engine, path)
    assert res.quarantined == 0, res.reasons
    if incidents:
        ipath = tmp_path / "incidents.jsonl"
        ipath.write_text(incidents, encoding="utf-8")
        land_file(engine, ipath)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(SuspectedIncident)).scalar())


def test_a_burst_of_negative_posts_raises_a_suspected_incident_once(
        engine: Engine, tmp_path: Path) -> None:
    _land(engine, tmp_path, _baseline() + _burst(NEGATIVE_API))
    report = detect_chatter(engine, now=NOW)
    raised = report.raised
    assert set(raised["component"]) == {"api"}
    assert set(raised["status"]) == {"suspected"}
    first = raised.sort_values("bucket_start").iloc[0]
    assert pd.Timestamp(first["bucket_start"]) == pd.Timestamp(BURST)
    assert first["negative_mentions"] == 5 and first["score"] >= 4.0
    assert list(first["sample_mention_ids"]) == ["b4", "b3", "b2"]  # most recent first
    n = _count(engine)
    assert n == len(raised)

    stored = suspected_incidents(engine, status="suspected")
    assert len(stored) == n and stored.iloc[-1]["sample_texts"][0] == NEGATIVE_API[4]
    detected_at = set(stored["detected_at"])
    again = detect_chatter(engine, now=NOW + timedelta(minutes=1))
    assert len(again.raised) == n and _count(engine) == n
    assert set(suspected_incidents(engine)["detected_at"]) == detected_at


def test_the_same_burst_attaches_to_the_open_incident(engine: Engine, tmp_path: Path) -> None:
    incident = json.dumps({"incident_id": "inc-api", "title": "API errors",
                           "started_at": "2026-06-10T13:50:00Z", "status": "investigating",
                           "components": ["api"]}) + "\n" + json.dumps(
        {"incident_id": "inc-old", "title": "API errors", "started_at": "2026-06-05T10:00:00Z",
         "resolved_at": "2026-06-05T11:00:00Z", "status": "resolved", "components": ["api"]})
    _land(engine, tmp_path, _baseline() + _burst(NEGATIVE_API), incident + "\n")
    raised = detect_chatter(engine, now=NOW).raised
    assert len(raised) and set(raised["status"]) == {"attached"}
    assert set(raised["incident_id"]) == {"inc-api"}
    assert set(suspected_incidents(engine, status="attached")["incident_id"]) == {"inc-api"}
    assert suspected_incidents(engine, status="suspected").empty


def test_praise_and_a_single_angry_post_raise_nothing(engine: Engine, tmp_path: Path) -> None:
    praise = ["Love the new API", "The API is so fast now", "api docs are great",
              "Shoutout for the webhooks release", "API just works"]
    rows = _baseline() + _burst(praise)
    rows.append(_mention("lone", BURST + timedelta(minutes=3),
                         "The dashboard is broken and I hate it, terrible, awful", "grump"))
    _land(engine, tmp_path, rows)
    report = detect_chatter(engine, now=NOW)
    assert report.raised.empty and report.buckets_scored > 0
    assert _count(engine) == 0


def test_one_author_repeating_is_one_voice(engine: Engine, tmp_path: Path) -> None:
    rows = _baseline() + [_mention(f"r{i}", BURST + timedelta(minutes=i), t, "same_person")
                          for i, t in enumerate(NEGATIVE_API)]
    _land(engine, tmp_path, rows)
    assert detect_chatter(engine, now=NOW).raised.empty


def test_evaluate_counts_detections_delays_and_false_alarms() -> None:
    t0 = pd.Timestamp("2026-06-10T14:05:00Z")
    incidents = pd.DataFrame([
        {"incident_id": "i1", "started_at": t0, "resolved_at": t0 + pd.Timedelta("1h"),
         "components": ["api"], "impact": "major"},
        {"incident_id": "i2", "started_at": t0 + pd.Timedelta("2D"), "resolved_at": None,
         "components": ["auth"], "impact": "minor"}])
    spikes = pd.DataFrame({
        "component": ["api", "api", "reports", "reports", "api"],
        "bucket_start": [t0 + pd.Timedelta("25min"), t0 + pd.Timedelta("40min"),
                         t0, t0 + pd.Timedelta("15min"), t0 + pd.Timedelta("1D")]})
    f = evaluate(spikes, incidents, scored_from=datetime(2026, 6, 1, tzinfo=UTC),
                 end=datetime(2026, 6, 15, tzinfo=UTC))
    assert (f["incidents"], f["detected"]) == (2, 1)
    assert f["median_delay_minutes"] == 40.0  # 14:30 bucket ends 14:45, 40 min after 14:05
    assert (f["false_alarms"], f["false_alarm_episodes"]) == (3, 2)
    assert f["by_impact"] == {"major": [1, 1], "minor": [1, 0]}


def test_the_bench_runs_on_a_small_world() -> None:
    fig = run_world(seed=5, accounts=80, days=15)
    assert fig.mentions > 0 and 0 <= fig.detected <= fig.incidents
    assert fig.spikes >= fig.false_alarms >= fig.false_alarm_episodes
    print(fig)


def _app() -> typer.Typer:
    """The `pulse` command line, as users run it."""
    from pulse.cli import app

    return app


def test_the_commands_detect_and_list(engine: Engine, tmp_path: Path) -> None:
    _land(engine, tmp_path, _baseline() + _burst(NEGATIVE_API))
    runner = CliRunner()
    res = runner.invoke(_app(), ["chatter", "detect", "--now", NOW.isoformat(),
                                 "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["suspected"] >= 1 and doc["attached"] == 0
    assert {r["component"] for r in doc["raised"]} == {"api"}
    res = runner.invoke(_app(), ["chatter", "list", "--status", "suspected", "--format",
                                 "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == doc["suspected"] and rows[-1]["sample_mention_ids"][0] == "b4"
    res = runner.invoke(_app(), ["chatter", "list", "--status", "open"])
    assert res.exit_code != 0 and "suspected" in res.output


def test_the_bench_command_prints_json() -> None:
    res = CliRunner().invoke(_app(), ["bench", "chatter", "--seed", "4", "--accounts", "60",
                                      "--days", "12", "--format", "json"])
    assert res.exit_code == 0, res.output
    (fig,) = json.loads(res.output)
    assert fig["seed"] == 4 and fig["accounts"] == 60 and fig["incidents"] >= fig["detected"]


def test_a_problem_report_counts_whatever_its_tone() -> None:
    from pulse.models.chatter import negative_mask

    mask, method = negative_mask(["Anyone else seeing API failures? Started ~10 min ago",
                                  "Is the dashboard down for anyone?",
                                  "The new dashboards look lovely", "How do I export a CSV?"])
    assert mask.tolist() == [True, True, False, False]
    assert method.endswith("problem-terms")


# --------------------------------------------------------------------------- the authors rule
# Three or more distinct people complaining about one component within 15 minutes (a sliding
# window over the posts' own times) on a component whose baseline is under 0.1 voices per
# 15 minutes raise a spike beside the score. `z=99` switches the score off, so each of these
# tests sees the rule alone; the defaults come from the settings.

REPORTS = ["Reports just stopped working for us", "Getting a wall of errors from reports",
           "Scheduled reports failing, status page says nothing"]
NO_SCORE = 99.0


def _reports_at(offsets: list[int], authors: list[str]) -> list[str]:
    """Complaints about reports at BURST + offsets (minutes) by the given authors."""
    return [_mention(f"rp{i}", BURST + timedelta(minutes=m), REPORTS[i % 3], who)
            for i, (m, who) in enumerate(zip(offsets, authors, strict=True))]


def _rules(raised: pd.DataFrame) -> set[str]:
    return set(raised["rule"]) if len(raised) else set()


def test_three_authors_within_15_minutes_across_two_buckets_raise_a_suspected_incident(
        engine: Engine, tmp_path: Path) -> None:
    # 14:04, 14:11 and 14:17: the fixed buckets hold 2 and 1 voices; the sliding window 3.
    _land(engine, tmp_path, _baseline() + _reports_at([4, 11, 17], ["ana", "ben", "cleo"]))
    now = BURST + timedelta(minutes=25)
    raised = detect_chatter(engine, now=now, z=NO_SCORE).raised
    assert len(raised) == 1
    (spike,) = raised.to_dict("records")
    assert spike["component"] == "reports" and spike["rule"] == "authors"
    assert spike["status"] == "suspected" and spike["incident_id"] is None
    assert pd.Timestamp(spike["bucket_start"]) == pd.Timestamp(BURST + timedelta(minutes=15))
    assert spike["negative_mentions"] == 3 and spike["baseline"] < 0.1
    assert spike["sample_mention_ids"] == ["rp2", "rp1", "rp0"]
    stored = suspected_incidents(engine, status="suspected")
    assert len(stored) == 1 and stored.iloc[0]["negative_mentions"] == 3
    # With the default score as well, the same bucket is raised, by the rule.
    assert "authors" in "".join(_rules(detect_chatter(engine, now=now).raised))
    # The settings are the rule's: four people needed, three are not enough.
    assert detect_chatter(engine, now=now, z=NO_SCORE, min_authors=4).raised.empty


def test_one_author_three_times_does_not_trip_the_rule(engine: Engine,
                                                       tmp_path: Path) -> None:
    _land(engine, tmp_path, _baseline() + _reports_at([4, 6, 9], ["ana", "ana", "ana"]))
    now = BURST + timedelta(minutes=25)
    assert detect_chatter(engine, now=now, z=NO_SCORE).raised.empty
    assert "authors" not in "".join(_rules(detect_chatter(engine, now=now).raised))
    # Two more people within the window make it three voices.
    _land(engine, tmp_path, _reports_at([10, 12], ["ben", "cleo"]))
    assert set(detect_chatter(engine, now=now, z=NO_SCORE).raised["rule"]) == {"authors"}


def test_three_authors_over_40_minutes_do_not_trip_the_rule(engine: Engine,
                                                            tmp_path: Path) -> None:
    _land(engine, tmp_path, _baseline() + _reports_at([0, 20, 40], ["ana", "ben", "cleo"]))
    now = BURST + timedelta(minutes=50)
    assert detect_chatter(engine, now=now, z=NO_SCORE).raised.empty
    assert "authors" not in "".join(_rules(detect_chatter(engine, now=now).raised))
    # A 45-minute window (a setting) would hold all three.
    wide = detect_chatter(engine, now=now, z=NO_SCORE, author_window_minutes=45).raised
    assert set(wide["rule"]) == {"authors"}


def test_a_busy_component_does_not_trip_the_rule(engine: Engine, tmp_path: Path) -> None:
    # Reports draws 24 different complainers a day for nine days: a baseline of about 0.25
    # voices per 15 minutes, where three people in a quarter-hour are not news.
    busy = [_mention(f"busy{d}-{k}", START + timedelta(days=d, minutes=60 * k + 3 * d),
                     REPORTS[k % 3], f"regular{d}{k}")
            for d in range(9) for k in range(24)]
    _land(engine, tmp_path, _baseline() + busy + _reports_at([4, 6, 9], ["ana", "ben", "cleo"]))
    now = BURST + timedelta(minutes=25)
    assert detect_chatter(engine, now=now, z=NO_SCORE).raised.empty
    # Against a quiet-baseline setting above it, the same three voices are enough.
    loud = detect_chatter(engine, now=now, z=NO_SCORE, quiet_baseline=1.0).raised
    assert set(loud["component"]) == {"reports"} and float(loud["baseline"].max()) >= 0.1


def bursty_reports() -> list[str]:
    """Reports complaints in bursts: six people on every other baseline day, none on the
    others (a baseline of about 0.07 voices per 15 minutes, and bursty), then three people
    within five minutes on a quiet afternoon."""
    return [_mention(f"bz{d}-{k}", START + timedelta(days=d, hours=9, minutes=15 * k),
                     REPORTS[k % 3], f"reg{d}{k}") for d in range(0, 9, 2) for k in range(6)
            ] + _reports_at([3, 5, 8], ["ana", "ben", "cleo"])


def test_the_rule_catches_what_the_burstiness_allowance_hides(engine: Engine,
                                                               tmp_path: Path) -> None:
    _land(engine, tmp_path, _baseline() + bursty_reports())
    now = BURST + timedelta(minutes=25)
    assert detect_chatter(engine, now=now, min_authors=10_000).raised.empty  # score alone
    (spike,) = detect_chatter(engine, now=now).raised.to_dict("records")
    assert (spike["component"], spike["rule"], spike["status"]) == (
        "reports", "authors", "suspected")
    assert spike["score"] < 4.0 and spike["baseline"] < 0.1 and spike["negative_mentions"] == 3


def test_author_bursts_count_distinct_authors_in_a_sliding_window() -> None:
    from pulse.models.chatter import author_bursts

    t = pd.Timestamp("2026-06-10T14:00:00Z")
    pairs = pd.DataFrame({
        "component": ["api"] * 5 + ["auth"] * 2,
        "mention_id": [f"m{i}" for i in range(7)],
        "created_at": [t + pd.Timedelta(minutes=m) for m in (1, 9, 10, 16, 31, 2, 3)],
        "author_handle": ["a", "b", "a", "c", "d", "a", "b"]})
    b = author_bursts(pairs, window=timedelta(minutes=15)).set_index(
        ["component", "bucket_start"])
    # 14:16 sees a (14:01, 14:10), b (14:09) and c; 14:31 sees c (14:16, 15 minutes back)
    # and d.
    assert b.loc[("api", t + pd.Timedelta("15min")), "authors"] == 3
    assert b.loc[("api", t + pd.Timedelta("15min")), "sample_mention_ids"] == ["m3", "m2",
                                                                               "m1"]
    assert b.loc[("api", t + pd.Timedelta("30min")), "authors"] == 2  # c at 14:16, d
    assert b.loc[("api", t), "authors"] == 2  # a twice is one voice
    assert b.loc[("auth", t), "authors"] == 2  # components apart


def test_the_settings_hold_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse.core.settings import get_settings
    from pulse.models.chatter import AuthorRule

    rule = AuthorRule.from_settings()
    assert (rule.min_authors, rule.window, rule.quiet_baseline) == (
        3, timedelta(minutes=15), 0.1)
    monkeypatch.setenv("PULSE_CHATTER_MIN_AUTHORS", "4")
    monkeypatch.setenv("PULSE_CHATTER_AUTHOR_WINDOW_MINUTES", "20")
    get_settings(fresh=True)
    assert AuthorRule.from_settings() == AuthorRule(4, timedelta(minutes=20), 0.1)
    with pytest.raises(InvalidArgumentError, match="min_authors must be at least 2, not 1"):
        AuthorRule.from_settings(min_authors=1)


# --------------------------------------------------------------------------- the demo's incident
# tests/fixtures/chatter-demo/ is the demo world `pulse demo run` made then (2000 accounts, 180 days,
# seed 7, live incident) generated at 2026-12-03 08:49:30 UTC, cut to its last nine days of
# mentions, its incidents of those days, and the accounts and contacts of the mentions'
# authors. Its live incident INC-20261203-05 (reports, from 07:59) drew four complaints
# between 08:29 and 08:46; the score alone found nothing.

DEMO = Path(__file__).parent / "fixtures" / "chatter-demo"
DEMO_NOW = datetime(2026, 12, 3, 8, 49, 30, tzinfo=UTC)
DEMO_INCIDENT = "INC-20261203-05"


def land_demo(engine: Engine) -> None:
    for name in ("accounts.csv", "contacts.csv", "mentions.jsonl", "incidents.jsonl"):
        land_file(engine, DEMO / name)


def test_the_demo_live_incident_is_now_detected(engine: Engine) -> None:
    from pulse.models.chatter import incident_chatter

    land_demo(engine)
    # The score alone (the rule needing more people than there are) raised nothing.
    assert detect_chatter(engine, now=DEMO_NOW, min_authors=10_000).raised.empty
    raised = detect_chatter(engine, now=DEMO_NOW).raised
    assert len(raised) >= 1 and set(raised["component"]) == {"reports"}
    assert set(raised["incident_id"]) == {DEMO_INCIDENT}
    assert set(raised["status"]) == {"attached"} and "authors" in set(raised["rule"])
    first = raised.sort_values("bucket_start").iloc[0]
    assert pd.Timestamp(first["bucket_start"]) <= pd.Timestamp(DEMO_NOW) - pd.Timedelta("4min")
    assert first["negative_mentions"] >= 3 and first["baseline"] < 0.1
    stored = suspected_incidents(engine, status="attached")
    assert len(stored) == len(raised) and "authors" in set(stored["rule"])
    # Every complaint made while it was open is on the incident, with its account if known.
    found = incident_chatter(engine, DEMO_INCIDENT, now=DEMO_NOW)
    assert len(found) == 4 and found["author_handle"].nunique() == 4
    assert found["created_at"].min() >= pd.Timestamp("2026-12-03T07:59:30Z")
    assert any("wall of errors" in t for t in found["text"])
    assert found["account_id"].notna().sum() >= 2
