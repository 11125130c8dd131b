"""Outage chatter on a hand-made mention stream: a burst of negative posts about one component
raises a suspected incident (or attaches to the open one); praise and one angry post do not;
re-runs change nothing. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import typer
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

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
    assert res.quarantined == 0
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
