"""Bands fitted to the customer's own outcomes (models/calibration.py, `pulse scorecard
calibrate`): the cut points follow the data, green means a low observed churn rate, fitted
weights find the measure that carries the signal, a proposal is a valid scorecard, and a
too-short history keeps the defaults and says so. The end-to-end run lands a demo variant
world and calibrates it from the command line, as a user would."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from pulse.models.calibration import (
    _auc,
    choose_cuts,
    fit_ranges,
    fit_weights,
    no_better_than_chance,
)
from pulse.models.scorecard import load_scorecard, parse_scorecard
from pulse.sql.db import make_engine
from tests.pulse_cli import piped_env, run_pulse


def _history(n: int, seed: int, *, lo: float = 0.0, hi: float = 100.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Health spread over [lo, hi]; churn far likelier at low health (logistic)."""
    rng = np.random.default_rng(seed)
    health = np.round(rng.uniform(lo, hi, n), 1)
    z = (health - lo) / (hi - lo)
    p = 1.0 / (1.0 + np.exp(-(-1.0 - 6.0 * z)))
    return health, rng.random(n) < p


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 100.0), (55.0, 100.0)])
def test_cut_points_follow_the_data_and_green_means_low_churn(lo: float, hi: float) -> None:
    health, y = _history(20_000, 1, lo=lo, hi=hi)
    green, watch, amber, iso, notes = choose_cuts(health, y)
    base = y.mean()
    at_risk = health < (green if watch is None else watch)
    red = health < amber
    assert lo < amber < (watch or green) <= green < hi  # inside the data's own range
    assert at_risk.mean() <= 0.30 + 1e-9 and red.mean() <= 0.10 + 1e-9
    assert y[health >= green].mean() < base / 2  # green: well below the base rate
    assert y[health >= green].sum() <= 0.15 * y.sum()  # and few of the churners
    assert y[red].mean() >= 2 * base  # red: at least twice it
    assert y[at_risk].sum() > 0.5 * y.sum()  # most churners are at risk
    # the isotonic curve never gives a higher churn rate to a higher health
    grid = np.linspace(0, 100, 201)
    assert np.all(np.diff(iso.predict(grid)) <= 1e-12)
    assert any("base rate" in n for n in notes)


def test_the_shares_are_held_among_todays_accounts() -> None:
    """History's churners reach far up (a 30% capacity binds); today's accounts are healthier
    or sicker than history's: the capacity is counted among them, not among the snapshots."""
    rng = np.random.default_rng(4)
    health = np.round(rng.uniform(0.0, 100.0, 20_000), 1)
    y = rng.random(20_000) < 1.0 / (1.0 + np.exp(1.0 + 2.0 * health / 100.0))  # a weak slope
    cuts = choose_cuts(health, y)  # no today: history's shares
    assert (health < cuts.at_risk).mean() == pytest.approx(0.30, abs=0.002)
    for shift in (15.0, -15.0):  # a healthier base today, then a sicker one
        today = np.round(rng.uniform(15.0, 85.0, 3_000) + shift, 1)
        c = choose_cuts(health, y, today=today)
        assert (today < c.at_risk).mean() == pytest.approx(0.30, abs=0.002)
        assert (today < c.amber).mean() <= 0.10 + 1e-9
        assert (c.at_risk > cuts.at_risk) == (shift > 0) and c.at_risk != cuts.at_risk
        assert any("today's 3,000 active accounts" in n for n in c.notes)
        assert c.green == cuts.green  # green is about history's outcomes, not today's shares
    # too few accounts today to count on: history's shares
    few = choose_cuts(health, y, today=np.array([99.0] * 10))
    assert few[:3] == cuts[:3]


def test_a_weak_score_gets_a_watch_band_so_green_keeps_its_meaning() -> None:
    """A score that ranks churners only loosely: the 30% capacity holds far fewer than all
    but 10% of the churners. Three bands would leave most churners green; the watch band
    takes the health they shared, green keeps a low churn rate, and both land in the
    scorecard a user reads and in how it bands accounts."""
    rng = np.random.default_rng(4)
    health = np.round(rng.uniform(0.0, 100.0, 20_000), 1)
    y = rng.random(20_000) < 1.0 / (1.0 + np.exp(1.0 + 2.0 * health / 100.0))
    cuts = choose_cuts(health, y)
    assert cuts.watch is not None and cuts.amber < cuts.watch < cuts.green
    assert (health < cuts.watch).mean() <= 0.30 + 1e-9  # the work list fits the capacity
    green = health >= cuts.green
    assert y[green].sum() <= 0.15 * y.sum()  # green holds few of the churners
    assert y[green].mean() < y.mean()
    assert any("watch from" in n for n in cuts.notes)
    # the three cut points round-trip through a scorecard and band accounts as fitted
    text = Path(load_scorecard().source).read_text(encoding="utf-8").replace(
        "  amber: 40 ", f"  watch: {cuts.watch}\n  amber: {cuts.amber} ").replace(
        "  green: 70 ", f"  green: {cuts.green} ")
    card = parse_scorecard(text, source="fitted")
    assert (card.green, card.watch, card.amber) == (cuts.green, cuts.watch, cuts.amber)
    probe = np.array([cuts.green, cuts.green - 0.1, cuts.watch, cuts.watch - 0.1, cuts.amber,
                      cuts.amber - 0.1, np.nan])
    assert list(card.band(probe)) == ["green", "watch", "watch", "amber", "amber", "red",
                                      None]
    assert card.describe_bands() == (f"green >= {cuts.green:g}, watch >= {cuts.watch:g}, "
                                     f"amber >= {cuts.amber:g}, red below")


def test_no_signal_puts_few_accounts_at_risk() -> None:
    rng = np.random.default_rng(2)
    health = np.round(rng.uniform(0, 100, 20_000), 1)
    y = rng.random(20_000) < 0.1  # churn has nothing to do with health
    cuts = choose_cuts(health, y)
    # at-risk is where the observed rate is above the base rate: noise, not 30% of accounts
    assert (health < cuts.at_risk).mean() <= 0.30 + 1e-9
    assert abs(y[health < cuts.at_risk].mean() - y.mean()) < 0.05
    # nothing tells the healthy apart: green is a thin top slice, not a promise
    assert (health >= cuts.green).mean() <= 0.2


def test_a_score_that_ranks_nobody_fits_no_cut_points() -> None:
    """Health at chance, or a weak slope seen on the snapshots of few accounts, is no evidence
    to fit cut points on; the same slope over as many accounts as snapshots is."""
    rng = np.random.default_rng(5)
    n = 20_000
    health = np.round(rng.uniform(0, 100, n), 1)
    each_its_own = np.arange(n)
    noise = rng.random(n) < 0.1  # churn has nothing to do with health
    reason = no_better_than_chance(noise, health, each_its_own)
    assert reason is not None and "better than chance (ROC AUC 0." in reason
    weak = rng.random(n) < 1.0 / (1.0 + np.exp(1.95 + 0.5 * health / 100.0))
    assert 0.52 < _auc(weak, health) < 0.56
    assert no_better_than_chance(weak, health, each_its_own) is None
    few = np.arange(n) % 300  # the same rows: 300 accounts' weekly snapshots
    reason = no_better_than_chance(weak, health, few)
    assert reason is not None and re.search(r"± 0\.02\d, (29\d|300) accounts churned", reason)
    strong = _history(n, 6)
    assert no_better_than_chance(strong[1], strong[0], few) is None


def test_fitted_weights_find_the_measure_that_carries_the_signal() -> None:
    rng = np.random.default_rng(3)
    n = 8_000
    signal = rng.uniform(0, 100, n)
    noise = rng.uniform(0, 100, n)
    points = np.column_stack([noise, signal])
    points[rng.random(n) < 0.2, 0] = np.nan  # a measure without data for some accounts
    y = rng.random(n) < 1 / (1 + np.exp(-(-0.5 - 0.05 * signal)))
    w = fit_weights(points, y, np.array([50.0, 50.0]))
    assert w[1] > 3 * w[0]
    assert w.sum() == pytest.approx(100.0, abs=1.0) and (w > 0).all()
    # a measure held fixed keeps its weight
    fixed = fit_weights(points, y, np.array([30.0, 70.0]), fixed=np.array([True, False]))
    assert fixed[0] == pytest.approx(30.0)


def pulse(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = piped_env("PULSE_SCORECARD")
    env.update(PULSE_HOME=str(home), PULSE_DATABASE_URL=f"sqlite:///{home / 'pulse.db'}")
    return run_pulse(*args, env=env, timeout=600)


def ok(home: Path, *args: str) -> str:
    proc = pulse(home, *args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _land(home: Path, world: Path) -> None:
    ok(home, "db", "upgrade")
    files = sorted(str(p) for p in world.iterdir() if p.suffix in (".csv", ".jsonl"))
    ok(home, "ingest", "auto", *files)


def test_fitted_ranges_spread_the_accounts_or_keep_the_default() -> None:
    """A linear measure's fitted range is the 10th to 90th percentiles of its feature, unless
    those hold fewer than 5 distinct values (then wider percentiles, else the default)."""
    card = load_scorecard()
    rng = np.random.default_rng(3)
    n = 2000
    frame = pd.DataFrame({
        # a continuous feature: the 10th and 90th percentiles
        "active_days_28d": rng.uniform(0, 28, n).round(),
        # a daily-use base: 90% last used today or yesterday, a few later
        "days_since_last_use": np.r_[np.zeros(1200), np.ones(600),
                                     rng.integers(2, 30, 200)].astype(float),
        # two values only: nothing to spread, the default range stays
        "distinct_features_28d": np.r_[np.full(1000, 4.0), np.full(1000, 5.0)],
    })
    default = {m.name: m for m in card.standard.measures}
    others = {m.feature for m in card.standard.measures} - set(frame.columns)
    fitted = {m.name: m for m in fit_ranges(card, frame, skip=others).standard.measures}
    lo, hi = np.percentile(frame["active_days_28d"], [10, 90])
    assert (fitted["active_days"].low, fitted["active_days"].high) == pytest.approx((lo, hi),
                                                                                   rel=1e-2)
    recency = fitted["recency"]
    inside = frame["days_since_last_use"].between(recency.low, recency.high)
    assert recency.low == 0 and frame["days_since_last_use"][inside].nunique() >= 5
    # the 10th to 90th percentiles hold 0 and 1 only: the 5th to 95th
    assert recency.high == pytest.approx(np.percentile(frame["days_since_last_use"], 95),
                                         rel=1e-2)
    # the 1 day most of the base shows is not the worst
    assert recency.points(np.array([1.0]))[0] > 80
    breadth = fitted["feature_breadth"]
    assert (breadth.low, breadth.high) == (default["feature_breadth"].low,
                                           default["feature_breadth"].high)


@pytest.mark.slow
def test_calibrate_a_variant_world_from_the_command_line(tmp_path: Path) -> None:
    world, home = tmp_path / "world", tmp_path / "home"
    home.mkdir()
    ok(home, "demo", "generate", "--variant", "steady", "--accounts", "150", "--seed", "4",
       "--months", "8", "--out", str(world))  # 8 of its 12 months: the same path, a third less
    _land(home, world)
    truth = json.loads((world / "truth.json").read_text())
    end = truth["generated_with"]["end"]
    doc = json.loads(ok(home, "scorecard", "calibrate", "--as-of", end, "--horizon", "60",
                        "--apply", "--format", "json"))  # weights fitted by default
    assert doc["fitted"] is True and doc["applied"] == str(home / "scorecard.yaml")
    assert doc["weights_note"].startswith("fitted weights"), doc["weights_note"]  # kept or not
    after = {b["band"]: b for b in doc["after"]}
    rate = doc["churners"] / doc["rows"]
    assert after["green"]["churn_rate"] < rate  # green means a low observed churn rate
    assert after["green"]["churners"] <= 0.15 * doc["churners"]  # and few of the churners
    if "watch" in doc["bands"]:  # the 30% capacity held fewer than 85% of the churners
        assert doc["bands"]["amber"] < doc["bands"]["watch"] < doc["bands"]["green"]
        assert after["watch"]["accounts"] > 0 and "watch" in doc["today"]
    else:  # it held all but 15% of them: green starts where the at-risk bands end
        assert any("no watch band" in n for n in doc["notes"]), doc["notes"]
        assert doc["bands"]["amber"] < doc["bands"]["green"] and "watch" not in doc["today"]
    # the shares are held among today's active accounts (in history they may differ)
    assert doc["today_at_risk_share"] <= 0.30 + 1e-9 and sum(doc["today"].values()) > 50
    assert doc["today"]["red"] <= 0.10 * sum(doc["today"].values())
    assert Path(doc["chart"]).stat().st_size > 10_000  # a real PNG, not an empty file
    # the proposal is a valid scorecard with the fitted cut points and its curve
    card = load_scorecard(home / "scorecard.yaml")
    assert (card.green, card.watch, card.amber) == (
        doc["bands"]["green"], doc["bands"].get("watch"), doc["bands"]["amber"])
    assert card.calibration is not None and card.calibration.rows == doc["rows"]
    assert "ok" in ok(home, "scorecard", "check", str(home / "scorecard.yaml"))
    # scoring now uses the applied card, and the risk list reads its curve
    scored_text = ok(home, "score", "--as-of", end, "--basis", "occurred")
    legend = " ".join(ok(home, "risk-list", "--limit", "1").split())
    assert (f"Bands: {card.describe_bands()} (fitted to this warehouse's churners on "
            f"{card.calibration.fitted_on}).") in legend
    assert "uncalibrated" not in scored_text and "Scored " in scored_text
    rows = json.loads(ok(home, "risk-list", "--format", "json"))["accounts"]
    scored = [r for r in rows if r["risk_basis"] == "scorecard"]
    assert scored, rows[:2]
    watched = json.loads(ok(home, "risk-list", "--band", "watch", "--format", "json"))
    assert watched["bands"] == {"green": card.green, "watch": card.watch, "amber": card.amber,
                                "calibrated_on": card.calibration.fitted_on,
                                "scored_with_it": True}
    assert [r["account_id"] for r in watched["accounts"]] == [
        r["account_id"] for r in rows if r["band"] == "watch"]
    assert bool(watched["accounts"]) == (card.watch is not None)
    for r in scored:
        assert r["band"] == card.band([r["health"]])[0]  # banded by the applied cut points
        assert r["churn_probability"] == pytest.approx(
            float(card.calibration.probability(np.array([r["health"]]))[0]), abs=1e-4)
    # the calibrated card scores on the scale it was fitted on: without seat use, which the
    # warehouse knows only on its latest days (calibration scored history without it)
    engine = make_engine(f"sqlite:///{home / 'pulse.db'}")
    with engine.connect() as conn:
        seat = conn.execute(text(
            "SELECT DISTINCT skipped FROM health_measures WHERE measure = 'seat_utilisation' "
            "AND as_of = :d"), {"d": end[:10]}).scalars().all()
    engine.dispose()
    assert seat == ["latest_only"], seat
    view = json.loads(ok(home, "account", rows[0]["account_id"], "--format", "json"))
    seat_use = next(m for m in view["measures"] if m["measure"] == "seat_utilisation")
    assert seat_use["points"] is None and seat_use["skipped_text"] == (
        "known only in its latest state: the fitted bands leave it out")
    # ...and the table says so too, once, under the measures
    page = " ".join(ok(home, "account", rows[0]["account_id"]).split())
    assert ("Left out (known only in its latest state: the fitted bands leave it out): "
            in page) and "Active users per seat, last 28 days" in page.split("Left out (")[1]


@pytest.mark.slow
def test_short_history_keeps_the_defaults_and_says_so(tmp_path: Path) -> None:
    world, home = tmp_path / "world", tmp_path / "home"
    home.mkdir()
    ok(home, "demo", "generate", "--accounts", "40", "--days", "40", "--seed", "2",
       "--out", str(world))
    _land(home, world)
    end = json.loads((world / "truth.json").read_text())["generated_with"]["end"]
    doc = json.loads(ok(home, "scorecard", "calibrate", "--as-of", end, "--apply",
                        "--format", "json"))
    assert doc["fitted"] is False and "too short" in doc["fallback"]
    assert doc["applied"] is None and not (home / "scorecard.yaml").exists()
    default = load_scorecard()
    assert doc["bands"] == {"green": default.green, "amber": default.amber}
    text = ok(home, "scorecard", "calibrate", "--as-of", end)
    assert "Not calibrated" in text and "default cut points stay" in " ".join(text.split())
