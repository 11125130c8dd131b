"""The health scorecard: exact scores, what is left out and why, bad files refused with the
line of each problem, onboarding, the change against 7 and 30 days earlier, and `pulse score`
run as a user runs it. Warehouse tests run on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import math
import subprocess
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from pulse.core.errors import ScorecardError
from pulse.core.settings import get_settings
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.models.health import health_change, score_date, score_features
from pulse.models.scorecard import DEFAULT_SCORECARD, load_scorecard, parse_scorecard
from pulse.sql.features import FEATURES
from pulse.sql.health import load_health, load_measures
from pulse.sql.schema import AccountFeatures, AccountHealth, HealthMeasure
from tests.pulse_cli import piped_env, run_pulse
from tests.test_features import D, land_world


def pulse(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `pulse` as a scheduler would (pipes, this test's environment)."""
    env = piped_env()
    return run_pulse(*args, env=env, timeout=120)


def ok(*args: str) -> str:
    proc = pulse(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout

CARD = """\
version: "t1"
bands:
  green: 70
  amber: 40
standard:
  measures:
    - name: trend
      feature: usage_trend_28d_pct
      weight: 3
      linear: {low: -50, high: 0}
    - name: failed
      feature: open_failed_payments
      weight: 1
      bands:
        - {below: 1, points: 100}
        - {from: 1, below: 3, points: 50}
        - {from: 3, points: 0}
onboarding:
  days: 30
  measures:
    - name: active
      feature: active_days_7d
      weight: 1
      linear: {low: 0, high: 5}
"""


def frame(**columns: list[float]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"account_id": [f"a{i + 1}" for i in range(n)], "account_age_days": [400.0] * n}
    return pd.DataFrame({**base, **columns})


# --------------------------------------------------------------------------- scoring


def test_health_is_the_weighted_mean_of_the_measures_used() -> None:
    card = parse_scorecard(CARD)
    features = frame(usage_trend_28d_pct=[-25.0, math.nan, 10.0, 0.0, math.nan],
                     open_failed_payments=[0.0, 5.0, 1.0, 0.0, math.nan],
                     active_days_7d=[0.0, 0.0, 0.0, 4.0, 0.0])
    features.loc[3, "account_age_days"] = 5.0  # new: the onboarding card
    features.loc[4, "account_age_days"] = math.nan  # unknown age: the standard card
    health, measures = score_features(features, card)
    h = health.set_index("account_id")
    assert h["score"].tolist()[:4] == [62.5, 0.0, 87.5, 80.0]  # (3x50 + 100) / 4; ...
    assert math.isnan(h.loc["a5", "score"]) and pd.isna(h.loc["a5", "band"])
    assert h["band"].tolist()[:4] == ["amber", "red", "green", "green"]
    assert h["scorecard"].tolist() == ["standard", "standard", "standard", "onboarding",
                                       "standard"]
    assert h["skipped"].tolist() == [[], ["trend"], [], [], ["trend", "failed"]]
    m = measures.set_index(["account_id", "measure"])
    assert m.loc[("a1", "trend"), ["value", "points", "contribution"]].tolist() == [
        -25.0, 50.0, 37.5]
    assert m.loc[("a1", "failed"), "contribution"] == 25.0
    assert m.loc[("a2", "trend"), "skipped"] == "no_data"
    assert m.loc[("a2", "failed"), "contribution"] == 0.0  # all the weight, no points
    assert m.loc[("a4", "active"), "points"] == 80.0
    # contributions add up to the score
    sums = measures.groupby("account_id")["contribution"].sum(min_count=1)
    assert np.allclose(sums.loc[["a1", "a2", "a3", "a4"]], [62.5, 0.0, 87.5, 80.0])


def test_a_calibrated_card_leaves_out_what_only_the_latest_state_holds() -> None:
    """Seat use (the stored seats) is known on the latest dates only; calibration fits the
    bands on history without it, so a calibrated card scores without it on every date. The
    default card, which claims no rates, still reads it."""
    from dataclasses import replace

    from pulse.models.scorecard import Calibration

    plain = load_scorecard(DEFAULT_SCORECARD)
    calibrated = replace(plain, calibration=Calibration(
        fitted_on="2026-06-30", horizon_days=90, base_rate=0.1, rows=1000,
        health=(0.0, 100.0), rate=(0.5, 0.0)))
    features = pd.DataFrame({f: [np.nan, np.nan] for f in FEATURES})
    features["account_id"] = ["a1", "a2"]
    features["account_age_days"] = [400.0, 400.0]
    features["seat_utilisation_28d"] = [0.05, 0.95]  # few seats in use, almost all
    features["active_days_28d"] = [20.0, 20.0]
    read = {}
    for name, card in (("plain", plain), ("calibrated", calibrated)):
        health, measures = score_features(features, card)
        seat = measures[measures["measure"] == "seat_utilisation"].set_index("account_id")
        read[name] = (health["score"].tolist(), seat["skipped"].tolist())
    scores, skipped = read["plain"]
    assert pd.isna(skipped).all() and scores[0] < scores[1]  # seat use tells them apart
    scores, skipped = read["calibrated"]
    assert skipped == ["latest_only", "latest_only"] and scores[0] == scores[1]


def test_measures_of_a_stale_source_are_left_out_and_say_why() -> None:
    card = parse_scorecard(CARD)
    features = frame(usage_trend_28d_pct=[-25.0], open_failed_payments=[5.0],
                     active_days_7d=[0.0])
    health, measures = score_features(features, card, stale_sources={"billing"})
    assert health["score"].tolist() == [50.0]
    assert health["skipped"].tolist() == [["failed"]]
    assert measures.set_index("measure").loc["failed", "skipped"] == "stale_source"


def test_pulse_scorecard_names_another_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(CARD.replace('"t1"', '"ours"'), encoding="utf-8")
    monkeypatch.setenv("PULSE_SCORECARD", str(mine))
    get_settings(fresh=True)
    assert load_scorecard().version == "ours"
    assert load_scorecard(DEFAULT_SCORECARD).version == "2026.1"  # an explicit path wins


def test_the_default_scorecard_loads_and_uses_known_features() -> None:
    card = load_scorecard()
    assert card.source == str(DEFAULT_SCORECARD)
    assert (card.green, card.amber, card.onboarding_days) == (70.0, 40.0, 30)
    assert card.watch is None  # no watch band unless fitted or given
    assert list(card.band([70.0, 69.9, 40.0, 39.9])) == ["green", "amber", "amber", "red"]
    assert card.onboarding is not None
    for c in card.cards():
        assert {m.feature for m in c.measures} <= set(FEATURES)


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(("old", "new", "line", "problem"), [
    ("feature: usage_trend_28d_pct", "feature: usage_trnd_28d_pct", 8,
     "unknown feature 'usage_trnd_28d_pct' (did you mean 'usage_trend_28d_pct'?"),
    ("weight: 3", "weight: 0", 9, "weight must be above 0 (not 0)"),
    ("weight: 3", "weight: -2", 9, "weight must be above 0 (not -2)"),
    ("weight: 3", "weight: heavy", 9, "weight: expected a number (not 'heavy')"),
    ("{low: -50, high: 0}", "{low: 0, high: 0}", 10,
     "linear.low (0) must be below linear.high (0)"),
    ("{low: -50, high: 0}", "{low: -50, high: 0, better: smaller}", 10,
     "linear.better: expected 'higher' or 'lower' (not 'smaller')"),
    ("{from: 1, below: 3, points: 50}", "{from: 1, below: 4, points: 50}", 17,
     "overlapping bands: [3, inf) overlaps [1, 4)"),
    ("{from: 3, points: 0}", "{from: 5, points: 0}", 17, "the bands leave a gap between 3 and 5"),
    ("{below: 1, points: 100}", "{below: 1, points: 120}", 15, "band points must be within 0..100"),
    ("green: 70", "green: 30", 3, "thresholds out of order: green (30) must be above amber (40)"),
    ("amber: 40", "amber: 140", 4, "bands.amber: expected a score above 0 and at most 100"),
    ("amber: 40", "watch: 35\n  amber: 40", 4,
     "watch (35) must be above amber (40) and at most green (70)"),
    ("amber: 40", "watch: 75\n  amber: 40", 4,
     "watch (75) must be above amber (40) and at most green (70)"),
    ("      linear: {low: 0, high: 5}", "      linear: {low: 0, high: 5}\n      weight: 2", 25,
     "'weight' is given twice"),
    ("      linear: {low: -50, high: 0}", "      linear: {low: -50, high: 0}\n"
     "      bands: [{points: 1}]", 7, "give exactly one of 'linear' or 'bands' (not both)"),
    ("  days: 30", "  days: 2.5", 19, "onboarding.days: expected a whole number of days"),
    ("version:", "verison:", 1, "unknown key 'verison' (expected 'version'?)"),
    ("bands:\n  green: 70\n  amber: 40", "bands:\n  green: 70\n amber: 40", 4,
     "not valid YAML"),
    ("{low: -50, high: 0}", "{low: -50, high: 0", 11, "not valid YAML"),
])
def test_a_bad_scorecard_is_refused_naming_the_line(
    old: str, new: str, line: int, problem: str
) -> None:
    assert old in CARD
    with pytest.raises(ScorecardError) as caught:
        parse_scorecard(CARD.replace(old, new, 1), source="card.yaml")
    assert any(n == line and problem in msg for n, msg in caught.value.problems), \
        caught.value.problems
    assert f"line {line}" in str(caught.value)


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = CARD.replace("weight: 3", "weight: 0").replace(
        "feature: active_days_7d", "feature: active_dayz").replace("green: 70", "green: 30")
    with pytest.raises(ScorecardError) as caught:
        parse_scorecard(text, source="card.yaml")
    assert [n for n, _msg in caught.value.problems] == [3, 9, 22]
    assert str(caught.value).startswith("card.yaml: 3 problems: line 3: bands: thresholds")
    for empty in ("", "just words", "standard:\n  measures: []\n"):
        with pytest.raises(ScorecardError):
            parse_scorecard(empty)


# --------------------------------------------------------------------------- in the warehouse


def _scores(engine: Engine, as_of: date) -> dict[str, tuple[float | None, ...]]:
    h = load_health(engine, as_of)
    return {r.account_id: tuple(None if pd.isna(v) else v for v in (
        r.score, r.change_7d, r.change_30d)) for r in h.itertuples()}


def expected_change(engine: Engine, account_id: str, now: date, then: date) -> float:
    """The account's health change from `then` to `now`, worked out from the stored rows:
    the difference of the scores where both dates scored the same measures, else the
    difference over the measures both scored, each date with its own weights."""
    points = {d: load_measures(engine, d, [account_id]).dropna(subset=["points"])
              for d in (now, then)}
    health = {d: load_health(engine, d, [account_id]).iloc[0] for d in (now, then)}
    if (set(points[now]["measure"]) == set(points[then]["measure"])
            or health[now]["scorecard"] != health[then]["scorecard"]):
        return round(float(health[now]["score"]) - float(health[then]["score"]), 1)
    shared = points[now].merge(points[then], on="measure", suffixes=("", "_then"))
    return round(float(np.average(shared["points"], weights=shared["weight"])
                       - np.average(shared["points_then"], weights=shared["weight_then"])), 1)


def test_a_change_compares_the_measures_both_dates_scored_on_one_card() -> None:
    """`health_change` on frames: the same measures, the difference of the scores; a measure
    on one date only, the difference over the shared ones; another card then, the scores."""
    def now(account: str, card: str, points: dict[str, float]) -> pd.DataFrame:
        return pd.DataFrame({"account_id": account, "measure": list(points),
                             "points": list(points.values()), "weight": 1.0, "card": card})

    measures = pd.concat([now("same", "standard", {"a": 80.0, "b": 40.0}),
                          now("new", "standard", {"a": 80.0, "b": 40.0, "seat": 100.0}),
                          now("grown", "standard", {"a": 80.0, "b": 40.0})])
    health = pd.DataFrame({"account_id": ["same", "new", "grown", "fresh"],
                           "scorecard": ["standard"] * 3 + ["onboarding"],
                           "score": [60.0, 73.3, 60.0, 50.0],
                           "skipped": [["seat"], [], ["seat"], []]})
    before = pd.DataFrame({"account_id": ["same", "new", "grown"],
                           "scorecard": ["standard", "standard", "onboarding"],
                           "score": [70.0, 70.0, 65.0], "skipped": [["seat"], ["seat"], []]})
    then = pd.concat([now("same", "standard", {"a": 90.0, "b": 50.0}),
                      now("new", "standard", {"a": 90.0, "b": 50.0}),
                      now("grown", "onboarding", {"a": 40.0, "b": 40.0, "seat": 100.0})])
    change = health_change(health, measures, before, lambda: then)
    assert change[0] == -10.0  # the same measures: 60 - 70
    assert change[1] == -10.0  # seat use new on this date: (80+40)/2 - (90+50)/2, not +3.3
    assert change[2] == -5.0  # onboarding then, standard now: the scores, 60 - 65
    assert np.isnan(change[3])  # not scored then


def _seat_use_scored(engine: Engine, account_id: str, day: date) -> bool:
    m = load_measures(engine, day, [account_id]).dropna(subset=["points"])
    return bool(m["feature"].eq("seat_utilisation_28d").any())


def test_new_accounts_get_the_onboarding_card_and_changes_compare_with_earlier_scores(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path)
    card = load_scorecard()
    week_ago, month_ago = D - timedelta(days=7), D - timedelta(days=30)
    score_date(engine, week_ago, scorecard=card, basis="occurred")
    score_date(engine, D, scorecard=card, basis="occurred")
    now, before = _scores(engine, D), _scores(engine, week_ago)
    assert set(now) == {"acc-1", "acc-2"} and set(before) == {"acc-1", "acc-2"}
    # a week before D, seats were unknown (D is the day before the world's latest activity;
    # sql/features.py): seat use counted on D only, so each change compares the measures
    # both dates scored, each date with its own weights, not the two scores
    for acc in ("acc-1", "acc-2"):
        assert _seat_use_scored(engine, acc, D) and not _seat_use_scored(engine, acc, week_ago)
        assert now[acc][1] == pytest.approx(expected_change(engine, acc, D, week_ago),
                                            abs=0.051), acc
    assert now["acc-1"][1] != pytest.approx(now["acc-1"][0] - before["acc-1"][0], abs=0.5)
    for acc in ("acc-1", "acc-2"):
        assert now[acc][2] is None  # nothing scored 30 days earlier
    health = load_health(engine, D).set_index("account_id")
    assert health.loc["acc-1", "scorecard"] == "standard"
    assert health.loc["acc-2", "scorecard"] == "onboarding"  # created 10 days before D
    assert health.loc["acc-1", "scorecard_version"] == card.label
    measures = load_measures(engine, D)
    assert set(measures[measures.account_id == "acc-2"].measure) == {
        m.name for m in card.onboarding.measures}  # type: ignore[union-attr]
    # acc-1's contributions add up to its score, measure by measure
    m1 = measures[measures.account_id == "acc-1"]
    assert m1["contribution"].sum() == pytest.approx(health.loc["acc-1", "score"], abs=0.051)
    assert m1.set_index("measure").loc["failed_payments", ["value", "points"]].tolist() == [
        2.0, 0.0]

    score_date(engine, month_ago, scorecard=card, basis="occurred")  # acc-2 did not exist
    assert set(_scores(engine, month_ago)) == {"acc-1"}
    score_date(engine, D, scorecard=card, basis="occurred")  # again: the same rows, + 30d
    again = _scores(engine, D)
    assert again["acc-1"][2] == pytest.approx(
        expected_change(engine, "acc-1", D, month_ago), abs=0.051)
    assert again["acc-2"][2] is None
    assert [v[:2] for v in again.values()] == [v[:2] for v in now.values()]
    with engine.connect() as conn:
        per_date = dict(conn.execute(
            select(AccountHealth.as_of, func.count()).group_by(AccountHealth.as_of)).all())
        measure_rows = conn.execute(select(func.count()).select_from(HealthMeasure).where(
            HealthMeasure.as_of == D)).scalar_one()
    assert per_date == {month_ago: 1, week_ago: 2, D: 2}
    assert measure_rows == len(card.standard.measures) + len(card.onboarding.measures)  # type: ignore[union-attr]


def test_pulse_score_on_a_demo_world(engine: Engine, tmp_path: Path) -> None:
    summary = generate(tmp_path / "demo", accounts=40, days=60, seed=5)
    land_files(engine, summary.files.values())
    report = json.loads(ok("score", "--format", "json"))
    truth = json.loads(summary.truth_path.read_text())
    assert 0 < report["accounts"] <= len(truth["groups"])
    assert sum(report["bands"].values()) == report["accounts"]
    assert "usage" not in {s["source"] for s in report["stale_sources"]}
    today = report["as_of"]
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(AccountHealth).where(
            AccountHealth.as_of == date.fromisoformat(today))).scalar_one()
    assert stored == report["accounts"]

    # the cancelled accounts are scored (their history stays whole) but counted apart: the
    # bands a CS team works are the other accounts', as the risk list has them
    with engine.connect() as conn:
        gone = set(conn.execute(select(AccountFeatures.account_id).where(
            AccountFeatures.as_of == date.fromisoformat(today),
            AccountFeatures.cancelled.is_(True))).scalars())
        active_bands = dict(conn.execute(
            select(AccountHealth.band, func.count()).where(
                AccountHealth.as_of == date.fromisoformat(today),
                AccountHealth.account_id.not_in(gone)).group_by(AccountHealth.band)).all())
    assert gone and report["cancelled"] == len(gone)
    assert sum(report["active_bands"].values()) == report["accounts"] - len(gone)
    assert {k: v for k, v in report["active_bands"].items() if v} == active_bands

    text = ok("score", "--as-of", today)  # again, as a table: the same accounts
    flat = " ".join(text.split())
    assert f"Scored {report['accounts']} accounts as of {today}" in flat
    assert "green" in text and "Took features" in text
    b = report["active_bands"]
    share = (b["red"] + b["amber"]) / (report["accounts"] - len(gone))
    assert (f"green {b['green']} amber {b['amber']} red {b['red']} among "
            f"{report['accounts'] - len(gone)} active accounts ({share:.0%} red or amber); "
            f"{len(gone)} cancelled") in flat
    # the default card's cut points are guesses: said, with how to fit them
    assert ("uncalibrated Bands: green >= 70, amber >= 40, red below (the scorecard's own cut "
            "points, not fitted to this warehouse's churners). `pulse model train` or "
            "`pulse scorecard calibrate --apply` fits them to its churners.") in flat


def test_pulse_refuses_a_bad_scorecard_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CARD.replace("weight: 3", "weight: 0"), encoding="utf-8")
    proc = pulse("score", "--scorecard", str(bad))  # refused before any work
    assert proc.returncode == 1
    assert proc.stderr == f"error: {bad}, line 9: measure 'trend': weight must be above 0 " \
        "(not 0)\n"
    proc = pulse("scorecard", "check", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: {bad}, line 9: measure 'trend': weight must be above 0 (not 0)"]
    assert "ok (version 2026.1; green >= 70, amber >= 40" in " ".join(
        ok("scorecard", "check").split())
