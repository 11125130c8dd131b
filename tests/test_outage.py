"""Outage impact on a hand-made world with numbers worked out by hand (hit and exposed, the
region filter, blank components and regions, the window of an open incident, recomputation
when an incident changes); Statuspage imports from a file and over HTTP; the CLI; the
incident minutes feature and the outage flag; and the impact of every incident of a demo
world against its hidden truth. SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from pulse.core.errors import NothingToScoreError, StatuspageError, UnknownIncidentError
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_file, land_files
from pulse.listeners.statuspage import import_statuspage, map_incident
from pulse.models.flag_rules import OUTAGE
from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.models.outage import (
    affected_contacts,
    compute_impact,
    feature_components,
    load_impact,
    refresh_impacts,
    stale_incidents,
)
from pulse.models.risklist import build_risk_list
from pulse.sql.features import compute_features, load_features
from pulse.sql.schema import AccountFlag, Incident, IncidentImpact, IncidentUpdate
from tests.pulse_cli import run_pulse

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "statuspage"
ACCOUNTS_LANDED = datetime(2026, 5, 1, tzinfo=UTC)
LANDED = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


ACCOUNTS = """account_id,name,mrr,region
acc-a,Alpha GmbH,1200,eu-west
acc-b,Beta SARL,800,eu-west
acc-c,Gamma Inc,500,us-east
acc-d,Delta BV,300,eu-west
acc-e,Epsilon Oy,300,eu-west
"""
# m*: history that teaches which component each feature belongs to (exports: reports twice
# in m1, m2 against api once in m5, plus the rows below); u*: around inc-1 (reports in
# eu-west, 2026-06-15 10:00-12:00); v*: around inc-2 (dashboard, all regions, open).
USAGE = """event_id,account_id,occurred_at,feature,contact_id,component,region,quantity,outcome
m1,acc-a,2026-06-01T09:00:00Z,exports,c-a1,reports,eu-west,1,ok
m2,acc-a,2026-06-01T09:05:00Z,exports,c-a1,reports,eu-west,1,ok
m3,acc-b,2026-06-02T09:00:00Z,api_calls,,api,eu-west,5,ok
m4,acc-b,2026-06-02T09:10:00Z,dashboards,c-b1,dashboard,eu-west,1,ok
m5,acc-c,2026-06-03T09:00:00Z,exports,c-c1,api,us-east,1,ok
u1,acc-a,2026-06-15T10:05:00Z,exports,c-a1,reports,eu-west,10,error
u2,acc-a,2026-06-15T10:30:00Z,exports,c-a2,,eu-west,4,error
u3,acc-a,2026-06-15T11:00:00Z,exports,c-a3,reports,eu-west,6,ok
u4,acc-a,2026-06-15T11:30:00Z,api_calls,,,eu-west,100,error
u5,acc-b,2026-06-15T11:59:59Z,exports,,REPORTS,,7,error
u6,acc-b,2026-06-15T12:00:00Z,exports,c-b1,reports,eu-west,3,ok
u7,acc-b,2026-06-15T12:00:01Z,exports,c-b1,reports,eu-west,50,error
u8,acc-c,2026-06-15T10:10:00Z,exports,c-c1,reports,us-east,5,error
u9,acc-c,2026-06-15T10:20:00Z,exports,c-c1,reports,,2,error
u10,acc-c,2026-06-15T10:40:00Z,exports,c-c2,Reports,EU-West,1,ok
u11,acc-d,2026-06-15T09:59:59Z,exports,c-d1,reports,eu-west,3,error
u12,acc-d,2026-06-15T10:00:00Z,exports,c-d1,reports,eu-west,2,ok
u13,acc-d,2026-06-15T10:45:00Z,exports,c-d2,,eu-west,3,
v1,acc-c,2026-06-20T09:00:00Z,dashboards,c-c1,dashboard,us-east,2,error
v2,acc-a,2026-06-21T09:00:00Z,dashboards,c-a1,,eu-west,1,error
v3,acc-b,2026-06-20T10:00:00Z,dashboards,c-b1,dashboard,eu-west,4,ok
"""
INCIDENTS = """\
{"incident_id": "inc-1", "title": "Exports failing", "started_at": "2026-06-15T10:00:00Z", \
"status": "resolved", "impact": "major", "resolved_at": "2026-06-15T12:00:00Z", \
"components": ["Reports"], "regions": ["EU-West"]}
{"incident_id": "inc-2", "title": "Dashboards slow", "started_at": "2026-06-20T08:00:00Z", \
"status": "identified", "impact": "minor", "components": ["dashboard"]}
"""
INC2_RESOLVED = """\
{"incident_id": "inc-2", "title": "Dashboards slow", "started_at": "2026-06-20T08:00:00Z", \
"status": "resolved", "impact": "minor", "resolved_at": "2026-06-20T09:30:00Z", \
"components": ["dashboard"]}
"""

#: inc-1, worked out by hand: (status, failed events, events, failed requests, requests,
#: users, first, last)
INC1 = {
    # u1 + u2 (blank component: exports is reports) fail, u3 ok; u4 is the API, not affected
    "acc-a": ("hit", 2, 3, 14.0, 20.0, 2, "2026-06-15T10:05:00Z", "2026-06-15T10:30:00Z"),
    # u5 (blank region: the account's, upper-case component) and u6 at the very end; u7 after
    "acc-b": ("hit", 1, 2, 7.0, 10.0, 0, "2026-06-15T11:59:59Z", "2026-06-15T11:59:59Z"),
    # u8, u9 are in us-east (u9 by its account); u10 names eu-west itself and worked
    "acc-c": ("exposed", 0, 1, 0.0, 1.0, 1, "2026-06-15T10:40:00Z", "2026-06-15T10:40:00Z"),
    # u11 a second before the start; u12 at the start; u13 with a blank outcome (ok)
    "acc-d": ("exposed", 0, 2, 0.0, 5.0, 2, "2026-06-15T10:00:00Z", "2026-06-15T10:45:00Z"),
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Engine:
    """The world above: accounts known since May, usage and incidents landed on 06-30."""
    for name, text, now in (("accounts.csv", ACCOUNTS, ACCOUNTS_LANDED),
                            ("usage.csv", USAGE, LANDED),
                            ("incidents.jsonl", INCIDENTS, LANDED)):
        result = land_file(engine, _write(tmp_path, name, text), now=now)
        assert result.quarantined == 0, (name, result.reasons)
    return engine


def impact_of(engine: Engine, incident_id: str) -> dict[str, tuple[Any, ...]]:
    frame = load_impact(engine, incident_id)
    return {
        r["account_id"]: (r["status"], r["failed_events"], r["total_events"],
                          r["failed_requests"], r["total_requests"], r["affected_users"],
                          r["first_affected_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                          r["last_affected_at"].strftime("%Y-%m-%dT%H:%M:%SZ"))
        for r in frame.to_dict("records")
    }


# --------------------------------------------------------------------------- impact


def test_impact_of_a_resolved_incident_is_exact(world: Engine) -> None:
    with world.connect() as conn:
        assert feature_components(conn) == {
            "exports": "reports", "api_calls": "api", "dashboards": "dashboard"}
    summary = compute_impact(world, "inc-1", now=ts("2026-07-01T00:00:00Z"))
    assert (summary.hit, summary.hit_accounts, summary.exposed_accounts) == (
        ["acc-a", "acc-b"], 2, 2)
    assert (summary.failed_requests, summary.total_requests, summary.affected_users) == (
        21.0, 30.0, 2)
    assert summary.window_start == ts("2026-06-15T10:00:00Z")
    assert summary.window_end == ts("2026-06-15T12:00:00Z") and not summary.open
    assert summary.components == ["reports"] and summary.regions == ["eu-west"]
    assert impact_of(world, "inc-1") == INC1
    frame = load_impact(world, "inc-1").set_index("account_id")
    # hit first, then by failed and total requests
    assert list(frame.index) == ["acc-a", "acc-b", "acc-d", "acc-c"]
    assert frame.loc["acc-a", "components"] == ["reports"]
    assert frame.loc["acc-b", "regions"] == ["eu-west"]  # from the account
    assert frame.loc["acc-a", "account_name"] == "Alpha GmbH"
    assert (frame["window_end"] == pd.Timestamp("2026-06-15T12:00:00Z")).all()
    contacts = affected_contacts(world, "inc-1")
    assert contacts[["account_id", "contact_id"]].values.tolist() == [
        ["acc-a", "c-a1"], ["acc-a", "c-a2"]]
    # a second run replaces the rows with the same numbers
    compute_impact(world, "inc-1", now=ts("2026-07-01T00:00:00Z"))
    assert impact_of(world, "inc-1") == INC1
    with world.connect() as conn:
        n = conn.execute(select(func.count()).select_from(IncidentImpact.__table__)).scalar()
    assert n == 4


def test_open_incident_runs_until_now_and_is_recomputed_when_it_changes(
        world: Engine, tmp_path: Path) -> None:
    first = refresh_impacts(world, now=ts("2026-06-20T12:00:00Z"))
    assert [s.incident_id for s in first] == ["inc-1", "inc-2"]
    inc2 = {s.incident_id: s for s in first}["inc-2"]
    assert inc2.open and inc2.window_end == ts("2026-06-20T12:00:00Z")
    assert inc2.regions == []  # no regions named: every region
    assert impact_of(world, "inc-2") == {
        "acc-c": ("hit", 1, 1, 2.0, 2.0, 1, "2026-06-20T09:00:00Z", "2026-06-20T09:00:00Z"),
        "acc-b": ("exposed", 0, 1, 0.0, 4.0, 1, "2026-06-20T10:00:00Z",
                  "2026-06-20T10:00:00Z"),
    }
    # only the open incident is stale; a day later it reaches acc-a's blank-component error
    assert stale_incidents(world) == ["inc-2"]
    again = refresh_impacts(world, now=ts("2026-06-22T00:00:00Z"))
    assert [s.incident_id for s in again] == ["inc-2"]
    assert impact_of(world, "inc-2")["acc-a"] == (
        "hit", 1, 1, 1.0, 1.0, 1, "2026-06-21T09:00:00Z", "2026-06-21T09:00:00Z")

    # the incident is resolved at 09:30: its rows are replaced, acc-b's use at 10:00 and
    # acc-a's error the next day fall outside
    land_file(world, _write(tmp_path, "incidents_update.jsonl", INC2_RESOLVED))
    assert stale_incidents(world) == ["inc-2"]
    done = refresh_impacts(world, now=ts("2026-06-22T00:00:00Z"))
    assert [(s.incident_id, s.open, s.window_end) for s in done] == [
        ("inc-2", False, ts("2026-06-20T09:30:00Z"))]
    assert impact_of(world, "inc-2") == {
        "acc-c": ("hit", 1, 1, 2.0, 2.0, 1, "2026-06-20T09:00:00Z", "2026-06-20T09:00:00Z")}
    assert refresh_impacts(world) == []  # nothing changed since
    assert impact_of(world, "inc-1") == INC1


def test_an_unknown_incident_is_a_clear_error(world: Engine) -> None:
    with pytest.raises(UnknownIncidentError, match="unknown incident 'inc-9'"):
        compute_impact(world, "inc-9")
    with pytest.raises(UnknownIncidentError, match="unknown incident 'inc-9'"):
        load_impact(world, "inc-9")


# --------------------------------------------------------------------------- health feed


def test_incident_minutes_feed_the_features(world: Engine) -> None:
    refresh_impacts(world, now=ts("2026-06-20T12:00:00Z"))
    compute_features(world, date(2026, 6, 30), negative_terms=NEGATIVE_TERMS)
    minutes = load_features(world, date(2026, 6, 30)).set_index("account_id")[
        "incident_minutes_28d"]
    # acc-a, acc-b: inc-1 (120 minutes); acc-c: inc-2, open until 12:00 (240); exposed: 0
    assert minutes.to_dict() == {"acc-a": 120.0, "acc-b": 120.0, "acc-c": 240.0,
                                 "acc-d": 0.0, "acc-e": 0.0}
    # 28 days ending 07-14 start on 06-17: inc-1 has left the window
    compute_features(world, date(2026, 7, 14), negative_terms=NEGATIVE_TERMS)
    later = load_features(world, date(2026, 7, 14)).set_index("account_id")
    assert later["incident_minutes_28d"].to_dict()["acc-a"] == 0.0
    assert later["incident_minutes_28d"].to_dict()["acc-c"] == 240.0
    # point in time ("known"): on 06-29 Pulse did not know of the incidents yet (they landed
    # 06-30, as every row but the accounts: nothing to score them on); "occurred" counts them
    # from when they happened
    with pytest.raises(NothingToScoreError, match="no usage, billing, support, social or "
                       "incident row had landed by then"):
        compute_features(world, date(2026, 6, 29), basis="known", negative_terms=NEGATIVE_TERMS)
    compute_features(world, date(2026, 6, 29), basis="occurred", negative_terms=NEGATIVE_TERMS)
    occurred = load_features(world, date(2026, 6, 29)).set_index("account_id")
    assert occurred.loc["acc-a", "incident_minutes_28d"] == 120.0


def _flags(engine: Engine, as_of: date) -> dict[str, dict[str, Any]]:
    t = AccountFlag.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.as_of == as_of, t.c.flag == OUTAGE)).mappings()
        return {r["account_id"]: dict(r) for r in rows}


def test_outage_flag_names_the_incident_with_the_accounts_numbers(world: Engine) -> None:
    refresh_impacts(world, now=ts("2026-06-22T00:00:00Z"))
    day = date(2026, 6, 21)  # the 7 days from 06-15
    score_date(world, day, basis="occurred")
    compute_flags(world, day)
    flags = _flags(world, day)
    assert sorted(flags) == ["acc-a", "acc-b", "acc-c"]  # acc-d was only exposed
    assert flags["acc-a"]["evidence"] == (
        "hit by incident inc-2 (Dashboards slow) on 2026-06-21: 1 of 1 request failed for "
        "1 user; also hit by 1 other incident in 7 days (inc-1)")
    assert flags["acc-b"]["evidence"] == (
        "hit by incident inc-1 (Exports failing) on 2026-06-15: 7 of 10 requests failed")
    assert flags["acc-c"]["evidence"] == (
        "hit by incident inc-2 (Dashboards slow) on 2026-06-20: 2 of 2 requests failed for "
        "1 user")
    details = flags["acc-a"]["details"]
    assert details["incidents"] == ["inc-2", "inc-1"] and details["components"] == [
        "dashboard"]
    assert (details["failed_requests"], details["total_requests"]) == (1, 1)
    rows = build_risk_list(world, day, flag=OUTAGE)
    assert {r["account_id"] for r in rows} == {"acc-a", "acc-b", "acc-c"}
    by_id = {r["account_id"]: r for r in rows}
    assert by_id["acc-b"]["next_action"].startswith("acknowledge the outage (inc-1)")

    # a week later the outage is old news; with the "known" basis Pulse learned of the
    # incidents (and of every row but the accounts) only on 06-30, so on 06-21 it had nothing
    # to score the accounts on, and flags nobody
    later = date(2026, 6, 29)
    score_date(world, later, basis="occurred")
    compute_flags(world, later)
    assert _flags(world, later) == {}
    with pytest.raises(NothingToScoreError, match="5 accounts existed, but no usage, billing, "
                       "support, social or incident row had landed by then"):
        score_date(world, day, basis="known")


# --------------------------------------------------------------------------- statuspage


def test_statuspage_mapping_rules() -> None:
    known = dict(components=["api", "reports", "dashboard"], regions=["eu-west", "us-east"])
    row = map_incident({
        "id": "abc123", "name": "Errors", "status": "postmortem", "impact": "critical",
        "created_at": "2026-06-01T10:00:00Z", "resolved_at": "2026-06-01T11:00:00Z",
        "components": [{"name": "API (EU-West)"}, {"name": "reports (us-east)"}],
    }, **known)
    assert row == {"incident_id": "abc123", "title": "Errors",
                   "started_at": "2026-06-01T10:00:00Z", "status": "resolved",
                   "impact": "critical", "resolved_at": "2026-06-01T11:00:00Z",
                   "components": ["api", "reports"], "regions": ["eu-west", "us-east"]}
    mixed = map_incident({"id": "x", "name": "n", "started_at": "2026-06-01T10:00:00Z",
                          "components": [{"name": "API (eu-west)"}, {"name": "Billing"}]},
                         **known)
    assert mixed["components"] == ["api", "Billing"] and mixed["regions"] == []
    odd = map_incident({"id": "y", "name": "n", "started_at": "2026-06-01T10:00:00Z",
                        "status": "down", "impact": "maintenance",
                        "components": [{"name": "Search (beta)"}]}, **known)
    assert (odd["status"], odd["impact"], odd["components"], odd["regions"]) == (
        "down", "none", ["Search (beta)"], [])


def _stored_incidents(engine: Engine) -> dict[str, dict[str, Any]]:
    t = Incident.__table__
    with engine.connect() as conn:
        return {r["incident_id"]: dict(r) for r in conn.execute(select(t)).mappings()}


def _updates(engine: Engine) -> dict[str, tuple[str, str]]:
    t = IncidentUpdate.__table__
    with engine.connect() as conn:
        return {r.update_id: (r.incident_id, r.status) for r in conn.execute(select(t))}


def _check_fixture_import(engine: Engine, source: str) -> None:
    result = import_statuspage(engine, source)
    assert result.landing is not None
    assert (result.incidents, result.landing.inserted, result.landing.quarantined) == (3, 3, 0)
    assert result.updates_inserted == 8 and result.page == "Northwind Cloud"
    assert result.landing.file.endswith("incidents-statuspage-kctbh9vrtdwd.jsonl")
    stored = _stored_incidents(engine)
    exports = stored["p31zjtct2jer"]
    assert (exports["title"], exports["status"], exports["impact"]) == (
        "Elevated errors on exports", "resolved", "major")
    assert exports["components"] == ["reports"] and exports["regions"] == ["eu-west"]
    assert exports["resolved_at"] == ts("2026-06-15T12:00:00Z")
    dash = stored["8hj4k2l9mz1x"]
    assert (dash["status"], dash["resolved_at"]) == ("identified", None)
    assert dash["components"] == ["dashboard", "Notifications (beta)"] and dash["regions"] == []
    hooks = stored["q7w2e9r4t6y1"]
    assert hooks["components"] == ["Webhooks", "api"] and hooks["regions"] == ["us-east"]
    assert hooks["resolved_at"] == ts("2026-06-17T15:40:00Z")  # its resolved update
    updates = _updates(engine)
    assert len(updates) == 8 and updates["k8l6j4h2g0f8"] == ("p31zjtct2jer", "postmortem")

    # the imported incident has the same impact as the contract's inc-1
    compute_impact(engine, "p31zjtct2jer")
    assert impact_of(engine, "p31zjtct2jer") == INC1

    again = import_statuspage(engine, source)
    assert again.landing is not None
    assert (again.landing.inserted, again.landing.updated, again.landing.unchanged) == (0, 0, 3)
    assert (again.updates_inserted, again.updates_updated, again.updates_unchanged) == (0, 0, 8)
    assert _updates(engine) == updates


def test_statuspage_import_from_a_file_is_idempotent(world: Engine) -> None:
    _check_fixture_import(world, str(FIXTURES / "incidents.json"))


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(FIXTURES))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_statuspage_import_over_http(world: Engine, http_root: str) -> None:
    _check_fixture_import(world, f"{http_root}/incidents.json")
    with pytest.raises(StatuspageError, match=r"cannot fetch .*/missing\.json: HTTP 404"):
        import_statuspage(world, f"{http_root}/missing.json")
    with pytest.raises(StatuspageError, match="cannot fetch http://127.0.0.1:9/"):
        import_statuspage(world, "http://127.0.0.1:9/incidents.json", timeout=2)


def test_a_malformed_document_is_refused_and_bad_incidents_are_quarantined(
        world: Engine, tmp_path: Path) -> None:
    before = _stored_incidents(world)
    garbage = _write(tmp_path, "status.json", "<html>Service Unavailable</html>")
    with pytest.raises(StatuspageError, match=r"status\.json: not valid JSON .*expected a "
                       "Statuspage incidents.json document"):
        import_statuspage(world, str(garbage))
    wrong = _write(tmp_path, "wrong.json", json.dumps({"page": {}, "components": []}))
    with pytest.raises(StatuspageError, match='expected an object with an "incidents" list '
                       r"\(found an object with keys components, page\)"):
        import_statuspage(world, str(wrong))
    with pytest.raises(StatuspageError, match="no such file"):
        import_statuspage(world, str(tmp_path / "nope.json"))
    assert _stored_incidents(world) == before

    doc = json.loads((FIXTURES / "incidents.json").read_text())
    doc["incidents"][0]["status"] = "down"
    del doc["incidents"][1]["name"]
    result = import_statuspage(world, str(_write(tmp_path, "bad.json", json.dumps(doc))))
    assert result.landing is not None
    assert (result.landing.inserted, result.landing.quarantined) == (1, 2)
    assert set(result.landing.reasons) == {"status: not one of the allowed values",
                                           "title: required value is missing"}
    assert result.incident_ids == ["p31zjtct2jer"]
    assert result.updates_inserted == 3 and result.updates_skipped == 5


# --------------------------------------------------------------------------- CLI


def _pulse(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return run_pulse(*args, env=env, cwd=ROOT, timeout=300)


def test_cli_import_refresh_and_impact_formats(world: Engine) -> None:
    imported = _pulse("outage", "import", str(FIXTURES / "incidents.json"))
    assert imported.returncode == 0, imported.stderr
    assert "3 incidents (3 new" in imported.stdout and "8 new" in imported.stdout
    refreshed = _pulse("outage", "refresh", "--all", "--now", "2026-07-01T00:00:00Z",
                       "--format", "json")
    assert refreshed.returncode == 0, refreshed.stderr
    assert {s["incident_id"]: s["hit"] for s in json.loads(refreshed.stdout)}["inc-1"] == [
        "acc-a", "acc-b"]

    as_json = _pulse("outage", "impact", "inc-1", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["incident"]["title"] == "Exports failing"
    assert doc["summary"] == {
        "hit_accounts": 2, "exposed_accounts": 2, "failed_requests": 21, "total_requests": 30,
        "affected_users": 2, "window_start": "2026-06-15T10:00:00+00:00",
        "window_end": "2026-06-15T12:00:00+00:00", "computed_at": doc["summary"]["computed_at"]}
    first = doc["accounts"][0]
    assert (first["account_id"], first["status"], first["failed_requests"],
            first["total_requests"], first["affected_users"], first["components"]) == (
        "acc-a", "hit", 14, 20, 2, ["reports"])

    as_csv = _pulse("outage", "impact", "inc-1", "--format", "csv", "--status", "hit")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["account_id"], r["failed_requests"], r["total_requests"], r["regions"])
            for r in rows] == [("acc-a", "14", "20", "eu-west"), ("acc-b", "7", "10", "eu-west")]

    table = _pulse("outage", "impact", "inc-1")
    assert table.returncode == 0, table.stderr
    assert "inc-1 Exports failing" in table.stdout
    assert "21 of 30 requests failed for 2 users" in table.stdout
    assert "Alpha GmbH" in table.stdout and "14 / 20" in table.stdout

    missing = _pulse("outage", "impact", "inc-9")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: unknown incident 'inc-9'")
    assert "Traceback" not in missing.stderr
    bad = _pulse("outage", "import", str(FIXTURES / "nope.json"))
    assert bad.returncode == 1 and "error: " in bad.stderr and "no such file" in bad.stderr


# --------------------------------------------------------------------------- demo truth


@pytest.mark.parametrize("seed", [3, 8])
def test_impact_matches_a_demo_worlds_truth(engine: Engine, tmp_path: Path, seed: int) -> None:
    summary = generate(tmp_path / "demo", accounts=150, days=60, seed=seed,
                       end=date(2026, 6, 30), live_incident=seed == 8)
    land_files(engine, summary.files.values())
    truth = json.loads(summary.truth_path.read_text())["incident_hits"]
    assert truth and any(truth.values())
    refreshed = {s.incident_id: s for s in refresh_impacts(engine)}
    assert set(truth) <= set(refreshed)
    for incident_id, hits in truth.items():
        assert refreshed[incident_id].hit == sorted(hits), incident_id
        stored = load_impact(engine, incident_id, status="hit")
        assert sorted(stored["account_id"]) == sorted(hits), incident_id
        assert (stored["failed_events"] > 0).all()
    if seed == 8:  # the live incident is open: its window runs to now
        assert any(s.open for s in refreshed.values())
