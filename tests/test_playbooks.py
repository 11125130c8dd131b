"""Playbooks: the YAML check, the shipped rules on a constructed world, once per episode,
closing tasks (CLI and model), and the later health and churn of each task."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from pulse.core.errors import PlaybookError, TaskError
from pulse.models.playbooks import (
    DONE,
    SKIPPED,
    UNASSIGNED,
    close_task,
    due_dates,
    evaluate,
    later_outcomes,
    list_tasks,
    load_playbooks,
    parse_playbooks,
    run_playbooks,
)
from pulse.sql.audit import entries
from pulse.sql.schema import (
    Account,
    AccountFlag,
    AccountHealth,
    ChurnScore,
    PlaybookTask,
    SurveyResponse,
)
from tests.pulse_cli import run_pulse

NOW = datetime(2026, 6, 1, tzinfo=UTC)
D0 = date(2026, 6, 1)  # a Monday


def add_account(engine: Engine, account_id: str, *, name: str | None = None,
                csm: str | None = "ana@example.com", renewal: date | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__).values(
            account_id=account_id, name=name or f"Account {account_id}", mrr=100,
            currency="USD", csm_email=csm, renewal_date=renewal, landed_at=NOW,
            updated_at=NOW))


def score(engine: Engine, account_id: str, day: date, value: float, band: str, *,
          churn: float | None = None, flags: tuple[str, ...] = ()) -> None:
    with engine.begin() as conn:
        conn.execute(insert(AccountHealth.__table__).values(
            as_of=day, account_id=account_id, scorecard="standard", scorecard_version="t",
            score=value, band=band, change_7d=None, change_30d=None, skipped=[],
            computed_at=NOW))
        if churn is not None:
            conn.execute(insert(ChurnScore.__table__).values(
                as_of=day, account_id=account_id, model_version=1, probability=churn,
                drivers=[], computed_at=NOW))
        for flag in flags:
            conn.execute(insert(AccountFlag.__table__).values(
                as_of=day, account_id=account_id, flag=flag, evidence="e", details={},
                computed_at=NOW))


def rate(engine: Engine, survey_id: int, account_id: str, rating: int, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(insert(SurveyResponse.__table__).values(
            survey_id=survey_id, account_id=account_id, contact_id="c1", rating=rating,
            first_rated_at=at, rated_at=at, rating_changes=0, landed_at=at, updated_at=at))


def tasks_of(engine: Engine) -> list[dict[str, Any]]:
    t = PlaybookTask.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.task_id)).mappings()]


# --------------------------------------------------------------------------- the YAML check

def test_the_shipped_playbooks_check_and_hold_the_issues_examples() -> None:
    books = load_playbooks()
    rules = {r.name: r for r in books.rules}
    assert rules["red_renewal_sponsor"].when.bands == ("red",)
    assert rules["red_renewal_sponsor"].when.renewal_within_days == 60
    assert rules["champion_gone_find_new"].when.flags_any == ("champion_gone",)
    low = rules["low_rating_call"]
    assert (low.due_days, low.business_days) == (1, True)


BAD = """\
version: 1
rules:
  - name: ok_rule
    title: Fine
    when: {band: red}
    owner: csm
    due: {days: 1}
  - name: bad_band
    title: Bad band
    when:
      band: purple
    owner: csm
    due: {days: 1}
  - name: bad_flag
    title: Bad flag
    when:
      flags_any: [champion_went]
    owner: queue:renewals
    due: {days: 2, business: true}
  - name: bad_owner
    title: Bad owner
    when: {renewal_within_days: 30}
    owner: somebody
    due: {days: 1}
  - name: bad_condition
    title: Typo
    when:
      renewal_within_dayz: 30
    owner: csm
    due: {days: 1.5}
  - name: ok_rule
    title: Twice
    when: {band: red}
    owner: csm
    due: {days: 1}
"""


def test_the_check_refuses_bad_rules_naming_rule_and_line() -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_playbooks(BAD, source="bad.yaml")
    lines = caught.value.lines()
    text = "\n".join(lines)
    assert "bad.yaml, line 11: rule 'bad_band': when.band: unknown 'purple'" in text
    assert "line 17: rule 'bad_flag': when.flags_any: unknown 'champion_went'" in text
    assert "line 23: rule 'bad_owner': owner: expected 'csm' or 'queue:NAME'" in text
    assert "line 28: rule 'bad_condition': when: unknown key 'renewal_within_dayz' " \
           "(expected 'renewal_within_days'?)" in text
    assert "line 30: rule 'bad_condition': due.days: expected a whole number" in text
    assert "line 31: rule 'ok_rule' is given twice (first on line 3)" in text
    assert len(lines) == 6


def test_pulse_playbooks_check_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "playbooks.yaml"
    bad.write_text(BAD, encoding="utf-8")
    refused = run_pulse("playbooks", "check", str(bad))
    assert refused.returncode == 1
    assert "line 11: rule 'bad_band': when.band: unknown 'purple'" in refused.stderr
    ok = run_pulse("playbooks", "check")
    assert ok.returncode == 0, ok.stderr
    assert "red_renewal_sponsor" in ok.stdout and "3 rules" in ok.stdout


# --------------------------------------------------------------------------- the rules fire

def test_business_days_skip_the_weekend() -> None:
    friday, saturday = date(2026, 6, 5), date(2026, 6, 6)
    assert str(due_dates(friday, 1, True, 1)[0]) == "2026-06-08"  # Monday
    assert str(due_dates(saturday, 1, True, 1)[0]) == "2026-06-08"
    assert str(due_dates(friday, 1, False, 1)[0]) == "2026-06-06"


def test_each_example_rule_fires_on_a_constructed_world(engine: Engine) -> None:
    add_account(engine, "red-soon", renewal=D0 + timedelta(days=45))
    add_account(engine, "red-late", renewal=D0 + timedelta(days=90))
    add_account(engine, "amber-soon", renewal=D0 + timedelta(days=10))
    add_account(engine, "champ", csm=None)
    add_account(engine, "unhappy", csm="Bo@Example.com")
    add_account(engine, "old-unhappy")
    score(engine, "red-soon", D0, 30, "red", churn=0.4)
    score(engine, "red-late", D0, 30, "red")
    score(engine, "amber-soon", D0, 50, "amber")
    score(engine, "champ", D0, 60, "amber", flags=("champion_gone",))
    score(engine, "unhappy", D0, 80, "green")
    score(engine, "old-unhappy", D0, 80, "green")
    rate(engine, 1, "unhappy", 4, NOW - timedelta(days=3))
    rate(engine, 2, "unhappy", 1, NOW - timedelta(hours=5))
    rate(engine, 3, "old-unhappy", 1, NOW - timedelta(days=20))

    found = evaluate(engine, D0)
    got = sorted(zip(found["rule"], found["account_id"], found["owner"],
                     found["due_date"].astype(str)))
    assert got == [
        ("champion_gone_find_new", "champ", UNASSIGNED, "2026-06-08"),
        ("low_rating_call", "unhappy", "bo@example.com", "2026-06-02"),
        ("red_renewal_sponsor", "red-soon", "ana@example.com", "2026-06-04"),
    ]
    run = run_playbooks(engine, D0, now=NOW)
    assert (run.created, run.continued) == (3, 0)
    sponsor = next(t for t in tasks_of(engine) if t["rule"] == "red_renewal_sponsor")
    assert sponsor["state"] == "open" and sponsor["health_at_open"] == 30
    assert sponsor["churn_at_open"] == pytest.approx(0.4)
    assert sponsor["title"] == "Call the executive sponsor before the renewal"
    assert len(sponsor["steps"]) == 3
    champ = next(t for t in tasks_of(engine) if t["account_id"] == "champ")
    assert champ["churn_at_open"] is None and champ["health_at_open"] == 60  # no model: NULL


def test_once_per_episode(engine: Engine) -> None:
    add_account(engine, "acme")
    add_account(engine, "other")
    days = [D0 + timedelta(days=i) for i in range(7)]
    flagged = {0, 1, 3, 5}  # two consecutive days, a day without, then again, twice
    for i, day in enumerate(days):
        score(engine, "acme", day, 60, "amber",
              flags=("champion_gone",) if i in flagged else ())
        score(engine, "other", day, 60, "amber")
    runs = [run_playbooks(engine, day, now=NOW) for day in days[:2]]
    assert [(r.created, r.continued) for r in runs] == [(1, 0), (0, 1)]
    assert len(tasks_of(engine)) == 1  # two consecutive days: one task
    assert run_playbooks(engine, days[1], now=NOW).created == 0  # a re-run: nothing new
    for day in days[2:4]:
        run_playbooks(engine, day, now=NOW)
    tasks = tasks_of(engine)
    # after the gap the task is still open: it goes on, no second one with the same title
    assert [(t["episode_start"], t["last_seen"], t["state"]) for t in tasks] == [
        (days[0], days[3], "open")]
    assert run_playbooks(engine, days[3], now=NOW).created == 0  # a re-run: nothing new
    # once it is done, the next hit after a day without is a new episode and a new task
    close_task(engine, tasks[0]["task_id"], state="done", text="called the sponsor",
               actor="ana@example.com", now=NOW)
    for day in days[4:]:
        run_playbooks(engine, day, now=NOW)
    assert [(t["episode_start"], t["last_seen"], t["state"]) for t in tasks_of(engine)] == [
        (days[0], days[3], "done"), (days[5], days[5], "open")]

    # a gap in the scoring is not a gap in the episode: only scored dates count
    add_account(engine, "sparse")
    score(engine, "sparse", days[0], 60, "amber", flags=("champion_gone",))
    score(engine, "sparse", days[3], 60, "amber", flags=("champion_gone",))
    run_playbooks(engine, days[0], now=NOW)
    run_playbooks(engine, days[3], now=NOW)
    assert len([t for t in tasks_of(engine) if t["account_id"] == "sparse"]) == 1


# --------------------------------------------------------------------------- tasks

def test_close_tasks_with_health_then_and_later(engine: Engine) -> None:
    add_account(engine, "acme")
    add_account(engine, "beta")
    score(engine, "acme", D0, 60, "amber", churn=0.3, flags=("champion_gone",))
    score(engine, "beta", D0, 50, "amber", churn=0.5, flags=("champion_gone",))
    run_playbooks(engine, D0, now=NOW)
    score(engine, "acme", D0 + timedelta(days=5), 72, "green", churn=0.2)
    score(engine, "acme", D0 + timedelta(days=30), 80, "green", churn=0.1)
    acme, beta = (next(t for t in tasks_of(engine) if t["account_id"] == a)["task_id"]
                  for a in ("acme", "beta"))

    later = NOW + timedelta(days=6)
    close_task(engine, acme, state=DONE, text="new champion: Dee", actor="ana@example.com",
               now=later)
    close_task(engine, beta, state=SKIPPED, text="account is being merged",
               actor="cli:tester", now=later)
    with pytest.raises(TaskError, match="done already"):
        close_task(engine, acme, state=SKIPPED, text="x", actor="x", now=later)
    with pytest.raises(TaskError, match="empty"):
        close_task(engine, beta, state=DONE, text="  ", actor="x", now=later)
    rows = {t["account_id"]: t for t in tasks_of(engine)}
    assert rows["acme"]["state"] == "done" and rows["acme"]["outcome"] == "new champion: Dee"
    assert rows["acme"]["health_at_close"] == 72
    assert rows["acme"]["churn_at_close"] == pytest.approx(0.2)
    assert rows["beta"]["skip_reason"] == "account is being merged"
    logged = {e["action"]: e for e in entries(engine)}
    assert logged["task_done"]["reason"] == "new champion: Dee"
    assert logged["task_done"]["target"] == "acme"
    assert logged["task_skipped"]["actor"] == "cli:tester"

    out = later_outcomes(engine, days=30).set_index("account_id")
    assert out.loc["acme", "health_after"] == 80
    assert out.loc["acme", "health_change"] == pytest.approx(20)
    assert out.loc["acme", "churn_after"] == pytest.approx(0.1)
    assert out["health_after"].isna()["beta"]  # not scored 30 days on: no answer yet
    # which plays work, from the CLI: by rule and state
    shown = run_pulse("playbooks", "outcomes", "--days", "30", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [
        {"rule": "champion_gone_find_new", "state": "done", "tasks": 1, "measured": 1,
         "health_change": pytest.approx(20), "health_after": 80,
         "churn_after": pytest.approx(0.1)},
        {"rule": "champion_gone_find_new", "state": "skipped", "tasks": 1, "measured": 0,
         "health_change": None, "health_after": None, "churn_after": None}]


def test_list_puts_overdue_first(engine: Engine) -> None:
    for a in ("a1", "a2"):
        add_account(engine, a)
    score(engine, "a1", D0, 60, "amber", flags=("champion_gone",))
    run_playbooks(engine, D0, now=NOW)
    score(engine, "a2", D0 + timedelta(days=9), 60, "amber", flags=("champion_gone",))
    run_playbooks(engine, D0 + timedelta(days=9), now=NOW)
    listed = list_tasks(engine, owner="ana@example.com", today=D0 + timedelta(days=9))
    assert [(t["account_id"], t["overdue"]) for t in listed] == [("a1", True), ("a2", False)]


def test_pulse_playbooks_run_and_tasks_cli_list_complete_and_skip(engine: Engine) -> None:
    for a in ("a1", "a2"):
        add_account(engine, a)
        score(engine, a, D0, 60, "amber", flags=("champion_gone",))
    for made in ("2 new tasks, 0 continuing", "0 new tasks, 2 continuing"):  # once per episode
        ran = run_pulse("playbooks", "run", "--as-of", D0.isoformat())
        assert ran.returncode == 0, ran.stderr
        assert f"{D0}: 2 rule hits, {made} episodes" in ran.stdout
    first, second = (t["task_id"] for t in tasks_of(engine))
    listed = run_pulse("tasks", "list", "--owner", "ana@example.com",
                             "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(t["account_id"], t["title"], t["state"]) for t in json.loads(listed.stdout)] == [
        ("a1", "Find the new champion", "open"), ("a2", "Find the new champion", "open")]
    done = run_pulse("tasks", "done", str(first), "--outcome",
                           "found Dee")
    assert done.returncode == 0, done.stderr
    skip = run_pulse("tasks", "skip", str(second), "--reason",
                           "duplicate account")
    assert skip.returncode == 0, skip.stderr
    again = run_pulse("tasks", "skip", str(second), "--reason", "x")
    assert again.returncode == 1 and "skipped already" in again.stderr
    states = [(t["state"], t["outcome"], t["skip_reason"]) for t in tasks_of(engine)]
    assert states == [("done", "found Dee", None), ("skipped", None, "duplicate account")]
    assert [e["action"] for e in entries(engine)] == ["task_skipped", "task_done"]
    assert entries(engine)[0]["actor"].startswith("cli:")


OTHER = """\
rules:
  - name: outage_hit
    title: Check in after the outage
    when: {incident_hit_within_days: 3}
    owner: queue:support
    due: {days: 0}
  - name: falling_unhappy
    title: Falling and unhappy
    when: {change_7d_at_most: -10, csat_latest_at_most: 3}
    owner: csm
    due: {days: 2}
"""


def test_incidents_changes_and_latest_rating_conditions(engine: Engine) -> None:
    from sqlalchemy import update

    from pulse.sql.schema import IncidentImpact

    books = parse_playbooks(OTHER)
    for a in ("hit", "hit-long-ago", "falling", "falling-happy"):
        add_account(engine, a)
        score(engine, a, D0, 60, "amber")
    with engine.begin() as conn:
        t = AccountHealth.__table__
        conn.execute(update(t).where(t.c.account_id.in_(["falling", "falling-happy"]))
                     .values(change_7d=-12.0))
        for account, ago in (("hit", 1), ("hit-long-ago", 9)):
            at = NOW - timedelta(days=ago)
            conn.execute(insert(IncidentImpact.__table__).values(
                incident_id="INC-1", account_id=account, status="hit", failed_events=5,
                total_events=9, failed_requests=5, total_requests=9, affected_users=2,
                components=[], regions=[], first_affected_at=at, last_affected_at=at,
                window_start=at, window_end=at, computed_at=NOW))
    rate(engine, 1, "falling", 5, NOW - timedelta(days=9))
    rate(engine, 2, "falling", 2, NOW - timedelta(days=2))  # the latest: 2
    rate(engine, 3, "falling-happy", 1, NOW - timedelta(days=9))
    rate(engine, 4, "falling-happy", 5, NOW - timedelta(days=2))  # the latest: 5
    found = evaluate(engine, D0, books)
    assert sorted(zip(found["rule"], found["account_id"], found["owner"],
                      found["due_date"].astype(str))) == [
        ("falling_unhappy", "falling", "ana@example.com", "2026-06-03"),
        ("outage_hit", "hit", "queue:support", "2026-06-01")]


def test_renewal_within_days_reads_the_renewal_as_the_flag_does(engine: Engine,
                                                                  tmp_path: Path) -> None:
    """Days to renewal come from the date's features, as `renewal_soon_at_risk` reads them:
    the stored renewal date as it was on the date (a later change to the account does not
    move a past date), else an annual contract's estimate."""
    from pulse.models.flags import renewal_days
    from pulse.models.health import score_date
    from pulse.sql.features import load_features
    from pulse.sql.schema import Account
    from tests.test_flags import D, land_world

    land_world(engine, tmp_path)
    score_date(engine, D)
    books = parse_playbooks("version: 1\nrules:\n  - name: soon\n    title: Renewal soon\n"
                            "    when: {renewal_within_days: 30}\n    owner: csm\n"
                            "    due: {days: 1}\n    steps: [Prepare it.]\n")
    features = load_features(engine, D)
    days, _how = renewal_days(features)
    expected = set(features["account_id"][(days >= 0) & (days <= 30)])
    assert "acc-silent" in expected and "acc-champ" not in expected
    assert set(evaluate(engine, D, books)["account_id"]) == expected
    with engine.begin() as conn:  # the account's renewal date is cleared later on
        conn.execute(Account.__table__.update().where(Account.account_id == "acc-silent")
                     .values(renewal_date=None))
    assert set(evaluate(engine, D, books)["account_id"]) == expected
