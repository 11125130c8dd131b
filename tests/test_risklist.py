"""The risk list and the account page: ranked by revenue at risk, the churn model where it
scored and the scorecard where not (and saying which), filters, the JSON form checked
against its published schema, and `pulse score` -> `pulse flags` -> `pulse risk-list` ->
`pulse account` run as a user runs them. SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Engine, insert

from pulse.core.errors import NotScoredError, RiskListError
from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.models.risklist import (
    account_view,
    build_risk_list,
    next_action,
    risk_list_document,
)
from pulse.sql.schema import ChurnScore
from tests.conftest import prebuilt
from tests.pulse_cli import piped_env, run_pulse
from tests.test_flags import D, land_world

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "risk-list.schema.json")
                    .read_text(encoding="utf-8"))
WEEK_AGO = D - timedelta(days=7)
LIVE = {"acc-silent", "acc-loud", "acc-steady", "acc-dip", "acc-dipdown", "acc-errors",
        "acc-champ", "acc-pay", "acc-paid"}  # acc-gone is cancelled


def pulse(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `pulse` as a scheduler would (pipes, this test's environment)."""
    env = piped_env()
    return run_pulse(*args, env=env, timeout=120)


def ok(*args: str) -> str:
    proc = pulse(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def validate(document: Any) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA,
                                                format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Engine:
    """The hand-made world of test_flags, scored a week before D and on D, with flags (built
    once per worker and database, then copied: `prebuilt`)."""
    def build() -> None:
        land_world(engine, tmp_path)
        score_date(engine, WEEK_AGO, basis="occurred")  # all landed on D: read by event time
        score_date(engine, D)
        compute_flags(engine, D)

    prebuilt(engine, "risklist-world", build)
    return engine


def calibrated_card(folder: Path) -> Any:
    """The default scorecard with a calibration: base rate 10%, the churn rate falling from
    60% at health 0 to 1% at 100."""
    from pulse.models.scorecard import DEFAULT_SCORECARD, load_scorecard

    path = folder / "calibrated.yaml"
    path.write_text(DEFAULT_SCORECARD.read_text(encoding="utf-8") + (
        "\ncalibration:\n  fitted_on: '2026-06-01'\n  horizon_days: 90\n  base_rate: 0.1\n"
        "  rows: 5000\n  curve: [[0, 0.6], [50, 0.3], [80, 0.05], [100, 0.01]]\n"),
        encoding="utf-8")
    return load_scorecard(path)


def test_a_calibrated_scorecard_gives_the_observed_churn_rate_as_probability(
    world: Engine, tmp_path: Path
) -> None:
    card = calibrated_card(tmp_path)
    rows = build_risk_list(world, D, scorecard=card)
    assert rows and all(r["risk_basis"] == "scorecard" for r in rows)
    for r in rows:
        h = r["health"]
        # the curve, read at the account's health (linear between its points)
        expected = card.calibration.probability([h])[0]  # type: ignore[union-attr]
        assert r["churn_probability"] == pytest.approx(expected, abs=1e-4)
        assert r["revenue_at_risk"] == pytest.approx(r["churn_probability"] * r["mrr"],
                                                     rel=1e-3)
    assert any(abs(r["churn_probability"] - (100 - r["health"]) / 100) > 0.05 for r in rows)
    ordered = sorted(rows, key=lambda r: r["health"])
    probs = [r["churn_probability"] for r in ordered]
    assert probs == sorted(probs, reverse=True)  # never a higher probability for more health
    validate(risk_list_document(world, D, scorecard=card))


def test_a_watch_band_ranks_between_amber_and_green(world: Engine, tmp_path: Path) -> None:
    """A scorecard with a watch band (as calibration writes one): the accounts between its
    cut and green are banded `watch`, listed after amber and before green by the risk list
    and by the console's SQL alike, filtered by name, and valid in the published schema."""
    from pulse.models.scorecard import DEFAULT_SCORECARD, load_scorecard
    from pulse.sql import console as sqlc

    health = sorted(r["health"] for r in build_risk_list(world, D))
    assert len(health) >= 5 and health[1] < health[-2]
    green, amber = health[-1], health[1]  # one green and one red account at least
    watch = round((health[-2] + health[-3]) / 2, 1) if health[-3] < health[-2] else health[-2]
    path = tmp_path / "watch.yaml"
    path.write_text(DEFAULT_SCORECARD.read_text(encoding="utf-8").replace(
        "  green: 70 ", f"  green: {green} ").replace(
        "  amber: 40 ", f"  watch: {watch}\n  amber: {amber} "), encoding="utf-8")
    card = load_scorecard(path)
    assert card.watch == watch
    score_date(world, D, scorecard=card)
    rows = build_risk_list(world, D, scorecard=card)
    bands = [r["band"] for r in rows]
    assert "watch" in bands and "green" in bands and "amber" in bands
    tier = {"red": 0, "amber": 1, "watch": 2, "green": 3}
    assert [tier[b] for b in bands] == sorted(tier[b] for b in bands)
    _total, page = sqlc.risk_page(world, D, sqlc.Filters(), size=None, scorecard=card)
    assert [r["account_id"] for r in page] == [r["account_id"] for r in rows]
    watched = build_risk_list(world, D, band="watch", scorecard=card)
    assert [r["account_id"] for r in watched] == [r["account_id"] for r in rows
                                                  if r["band"] == "watch"]
    document = risk_list_document(world, D, scorecard=card)
    validate(document)
    assert document["bands"] == {"green": green, "watch": watch, "amber": amber,
                                 "calibrated_on": None, "scored_with_it": True}
    # the default card is in use again: the date's stored bands are the watch card's, said so
    assert risk_list_document(world, D)["bands"]["scored_with_it"] is False


def test_the_published_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_ranked_by_revenue_at_risk_on_the_scorecard_when_no_model_scored(
    world: Engine
) -> None:
    rows = build_risk_list(world, D)
    by_id = {r["account_id"]: r for r in rows}
    assert set(by_id) == LIVE
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # Band first; an uncalibrated scorecard gives no probability (never (100 - health) / 100
    # dressed up as one), so within a band the larger MRR comes first.
    tiers = [{"red": 0, "amber": 1, "green": 2}[r["band"]] for r in rows]
    assert tiers == sorted(tiers)
    for tier in set(tiers):
        mrr = [r["mrr"] for r, t in zip(rows, tiers) if t == tier]
        assert mrr == sorted(mrr, reverse=True)
    for r in rows:
        assert r["risk_basis"] == "scorecard (uncalibrated)"
        assert r["churn_probability"] is None and r["revenue_at_risk"] is None
        assert 1 <= len(r["drivers"]) <= 3 and r["drivers"] == r["health_drivers"]
        for d in r["drivers"]:
            assert re.fullmatch(r".+: .+ \(scores \d+/100, weight \d+\)", d), d
        assert r["freshness"]["usage"]["stale"] is False
        assert r["freshness"]["social"]["stale"] is True  # no mention at all
    assert by_id["acc-dipdown"]["mrr"] == 640  # the downgrade's mrr_after, not the 800 stored
    silent = by_id["acc-silent"]
    assert silent["flags"] == ["silent_dissatisfied", "renewal_soon_at_risk"]
    assert silent["evidence"][0].startswith("events down 75% against its own 11-week median")
    assert silent["evidence"][1].startswith("renews in 20 days (2026-07-20)")
    assert silent["next_action"] == (
        "prepare the renewal of 2026-07-20: review the value with the sponsor; then check in "
        "before they leave: ask why usage dropped")
    assert silent["renewal_date"] == "2026-07-20" and silent["days_to_renewal"] == 20
    assert silent["change_7d"] is not None  # scored a week before
    assert by_id["acc-champ"]["next_action"] == "find and call Ana Ruiz's replacement"
    assert by_id["acc-pay"]["next_action"] == "check the 2 failed payments"
    assert by_id["acc-steady"]["flags"] == [] and by_id["acc-steady"]["band"] == "green"
    assert by_id["acc-steady"]["next_action"] == "no action needed"
    gone = account_view(world, "acc-gone")  # cancelled: on its page, not on the list
    assert gone["cancelled"] is True and gone["risk"] is None and gone["health"] is not None


def test_the_churn_model_takes_over_where_it_scored_and_says_so(world: Engine) -> None:
    drivers = [{"feature": "events_28d", "value": 1, "direction": "up", "points": 12.0,
                "text": "usage events 28d fell to 1 (+12 points)"},
               {"feature": "tickets_30d", "value": 0, "direction": "up", "points": 3.5}]
    now = datetime.now(UTC)
    with world.begin() as conn:
        conn.execute(insert(ChurnScore), [
            {"as_of": D, "account_id": "acc-steady", "model_version": 3, "probability": 0.9,
             "drivers": drivers, "computed_at": now},
            {"as_of": D, "account_id": "acc-pay", "model_version": 3, "probability": 0.05,
             "drivers": [], "computed_at": now},
            {"as_of": WEEK_AGO, "account_id": "acc-loud", "model_version": 2,
             "probability": 0.99, "drivers": [], "computed_at": now},  # another date
        ])
    rows = build_risk_list(world, D)
    first = rows[0]
    assert first["account_id"] == "acc-steady"
    assert (first["risk_basis"], first["churn_probability"], first["revenue_at_risk"]) == (
        "churn_model v3", 0.9, 4500.0)
    assert first["drivers"] == ["usage events 28d fell to 1 (+12 points)",
                                "tickets_30d 0 up risk by 3.5 points"]
    assert first["health_drivers"] and first["health_drivers"] != first["drivers"]
    by_id = {r["account_id"]: r for r in rows}
    assert (by_id["acc-pay"]["risk_basis"], by_id["acc-pay"]["revenue_at_risk"]) == (
        "churn_model v3", 25.0)
    # the model left it unexplained: its reasons are the scorecard's
    assert by_id["acc-pay"]["drivers"] == by_id["acc-pay"]["health_drivers"] != []
    assert by_id["acc-loud"]["risk_basis"] == "scorecard (uncalibrated)"  # its score is of another date
    # Model-scored rows rank with the red ones by revenue at risk; the scorecard's stand-ins
    # for amber and green accounts follow, band by band.
    # (uncalibrated scorecard rows carry no probability: they follow by MRR within the band)
    keys = [(0 if not r["risk_basis"].startswith("scorecard") else
             {"red": 0, "amber": 1, "green": 2}[r["band"]], r["revenue_at_risk"] is None,
             -(r["revenue_at_risk"] if r["revenue_at_risk"] is not None else r["mrr"]))
            for r in rows]
    assert keys == sorted(keys)
    assert risk_list_document(world, D)["ranked_by"] == "band_then_revenue_at_risk"
    view = account_view(world, "acc-steady")
    assert view["churn"] == {"probability": 0.9, "model_version": 3,
                             "drivers": first["drivers"]}


def test_a_high_churn_risk_without_a_flag_asks_for_a_review(world: Engine,
                                                            tmp_path: Path) -> None:
    """No flag, green health, but the model gives twice history's churn rate or more: the
    next action is to review the churn risk, never "no action needed"."""
    card = calibrated_card(tmp_path)
    now = datetime.now(UTC)
    with world.begin() as conn:
        conn.execute(insert(ChurnScore), [
            {"as_of": D, "account_id": acc, "model_version": 1, "probability": p,
             "drivers": [], "computed_at": now}
            for acc, p in (("acc-steady", 0.57), ("acc-dip", 0.19), ("acc-pay", 0.9))])
    by_id = {r["account_id"]: r for r in build_risk_list(world, D, scorecard=card)}
    assert by_id["acc-steady"]["flags"] == []
    assert by_id["acc-steady"]["next_action"] == (
        "review the churn risk: the model gives 57% against history's 10%")
    assert by_id["acc-dip"]["flags"] == [] and by_id["acc-dip"]["band"] != "red"
    assert by_id["acc-dip"]["next_action"] != by_id["acc-steady"]["next_action"]
    assert not by_id["acc-dip"]["next_action"].startswith("review the churn risk")
    # a flag says what to do; the review is for what no flag explains
    assert by_id["acc-pay"]["next_action"] == "check the 2 failed payments"
    # without a calibrated scorecard there is no base rate to weigh the model against
    plain = {r["account_id"]: r for r in build_risk_list(world, D)}
    assert plain["acc-steady"]["next_action"] == "no action needed"


def test_next_action_without_flags() -> None:
    assert next_action([], {}, "green", None) == "no action needed"
    assert next_action([], {}, "green", -12.0) == "watch: health is falling"
    assert next_action([], {}, "red", None) == "review the health drivers"
    assert next_action([], {}, "watch", None).startswith("look again at the next review")
    assert next_action([], {}, "watch", -12.0) == "watch: health is falling"
    assert next_action([], {}, "green", None, model_probability=0.3, base_rate=0.1) == (
        "review the churn risk: the model gives 30% against history's 10%")
    assert next_action([], {}, "green", -12.0, model_probability=0.19, base_rate=0.1) == (
        "watch: health is falling")
    assert next_action([], {}, "red", None, model_probability=0.3, base_rate=0.1) == (
        "review the health drivers; then review the churn risk: the model gives 30% against "
        "history's 10%")


def test_the_renewal_as_it_stood_on_the_date(world: Engine) -> None:
    """The renewal date of a row is the one the date knew: the stored renewal date where the
    accounts' stored attributes describe the date, else an annual contract's estimate (as
    the renewal flag reads it), never a stored date that describes a later day."""
    today = {r["account_id"]: r for r in build_risk_list(world, D)}
    assert today["acc-silent"]["renewal_date"] == "2026-07-20"
    assert today["acc-silent"]["days_to_renewal"] == 20
    assert today["acc-silent"]["renewal_estimated"] is None
    week_ago = {r["account_id"]: r for r in build_risk_list(world, WEEK_AGO)}
    for r in week_ago.values():
        days = r["days_to_renewal"]
        assert r["renewal_date"] == (None if days is None else
                                     (WEEK_AGO + timedelta(days=days)).isoformat())
    # a week ago the stored date (loaded on D) was not known: no billing term, so a year
    # from its start (2025-01-01), said to be an estimate
    silent = week_ago["acc-silent"]
    assert silent["renewal_estimated"] == "anniversary"
    assert silent["renewal_date"] == "2027-01-01"


def test_filters(world: Engine) -> None:
    everyone = build_risk_list(world, D)
    ana = build_risk_list(world, D, csm="  ANA.csm@pulse.example ")
    assert {r["account_id"] for r in ana} == {"acc-silent", "acc-loud", "acc-champ"}
    amber = build_risk_list(world, D, band="amber")
    assert amber and all(r["band"] == "amber" for r in amber)
    assert len(amber) == sum(r["band"] == "amber" for r in everyone)
    silent = build_risk_list(world, D, flag="silent_dissatisfied")
    assert {r["account_id"] for r in silent} == {"acc-silent", "acc-errors"}
    assert [r["account_id"] for r in build_risk_list(world, D, limit=2)] == [
        r["account_id"] for r in everyone[:2]]
    both = build_risk_list(world, D, csm="ana.csm@pulse.example", flag="silent_dissatisfied")
    assert [(r["account_id"], r["rank"]) for r in both] == [("acc-silent", 1)]
    assert build_risk_list(world, D, flag="outage_affected") == []
    with pytest.raises(RiskListError, match="unknown flag 'silent': expected one of "
                       "silent_dissatisfied, payment_risk"):
        build_risk_list(world, D, flag="silent")
    with pytest.raises(RiskListError, match="unknown band 'orange'"):
        build_risk_list(world, D, band="orange")
    with pytest.raises(NotScoredError, match="nothing scored as of 2026-06-01"):
        build_risk_list(world, D.replace(day=1))


def test_score_flags_risk_list_and_account_from_the_command_line(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path)
    score_date(engine, WEEK_AGO, basis="occurred")
    text = " ".join(ok("score", "--as-of", D.isoformat()).split())
    # in words, as a CSM reads them (the JSON and CSV keep the names `--flag` takes)
    assert "Flags: champion gone 1, payment failed 1, renewal at risk 1, " \
        "silently unhappy 2" in text
    report = json.loads(ok("flags", "--as-of", D.isoformat(), "--format", "json"))
    assert report == {"as_of": "2026-06-30", "rows": 5, "flags": {
        "silent_dissatisfied": 2, "payment_risk": 1, "renewal_soon_at_risk": 1,
        "champion_gone": 1, "outage_affected": 0}}

    document = json.loads(ok("risk-list", "--format", "json"))  # the latest scored date: D
    validate(document)
    assert document["as_of"] == "2026-06-30" and document["count"] == len(LIVE)
    assert [s["source"] for s in document["stale_sources"]] == ["social"]
    band = next(r["band"] for r in document["accounts"] if r["account_id"] == "acc-pay")
    assert band in ("red", "amber", "green")
    filtered = json.loads(ok("risk-list", "--as-of", D.isoformat(), "--flag", "payment_risk",
                             "--band", band, "--limit", "5", "--format", "json"))
    validate(filtered)
    assert [r["account_id"] for r in filtered["accounts"]] == ["acc-pay"]
    assert filtered["filters"] == {"csm": None, "band": band, "flag": "payment_risk",
                                   "limit": 5}
    other = next(b for b in ("red", "amber", "green") if b != band)
    assert json.loads(ok("risk-list", "--as-of", D.isoformat(), "--flag", "payment_risk",
                         "--band", other, "--format", "json"))["accounts"] == []

    rows = list(csv.DictReader(io.StringIO(ok("risk-list", "--format", "csv"))))
    assert [r["account_id"] for r in rows] == [r["account_id"] for r in document["accounts"]]
    silent = next(r for r in rows if r["account_id"] == "acc-silent")
    assert silent["flags"] == "silent_dissatisfied;renewal_soon_at_risk"
    # a stored renewal date, and the estimate of an account without one, said so
    assert silent["renewal_date"] == "2026-07-20" and silent["renewal_estimated"] == ""
    dip = next(r for r in rows if r["account_id"] == "acc-dip")
    assert (dip["renewal_date"], dip["renewal_estimated"]) == ("2027-01-01", "anniversary")
    assert silent["evidence"].startswith("events down 75% against its own 11-week median")

    table = " ".join(ok("risk-list", "--flag", "champion_gone").split())
    assert "Risk list as of 2026-06-30: 1 account, ranked by revenue at risk" in table
    assert "Champ Co" in table and "Ana Ruiz" in table and "warning: stale source social" in table
    # what the bands mean: the default card's own cut points, said to be unfitted
    assert document["bands"] == {"green": 70.0, "watch": None, "amber": 40.0,
                                 "calibrated_on": None, "scored_with_it": True}
    assert ("Bands: green >= 70, amber >= 40, red below (the scorecard's own cut points, not "
            "fitted to this warehouse's churners).") in table
    assert "champion gone: " in table and "champion_gone:" not in table
    bad = pulse("risk-list", "--flag", "silent")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: unknown flag 'silent': expected one of")

    view = json.loads(ok("account", "acc-silent", "--format", "json"))
    assert [h["as_of"] for h in view["history"]] == ["2026-06-23", "2026-06-30"]
    assert view["history"][1]["change"] == pytest.approx(
        view["history"][1]["score"] - view["history"][0]["score"], abs=0.11)
    assert [f["flag"] for f in view["flags"]] == ["renewal_soon_at_risk", "silent_dissatisfied"]
    assert view["churn"] is None and view["risk"]["risk_basis"] == "scorecard (uncalibrated)"
    lost = {m["measure"]: m["lost"] for m in view["measures"]}
    assert lost["usage_trend"] > 0 and abs(sum(v or 0 for v in lost.values())
                                           - (100 - view["health"])) < 0.5
    page = " ".join(ok("account", "acc-silent").split())
    for part in ("Silent Co (acc-silent)", "Health history", "2026-06-23",
                 "silently unhappy: events down 75% against its own 11-week median",
                 "Churn model: no score"):
        assert part in page, part
    assert "silent_dissatisfied:" not in page
    earlier = account_view(engine, "acc-silent", WEEK_AGO)
    assert earlier["as_of"] == "2026-06-23" and len(earlier["history"]) == 1
    with pytest.raises(RiskListError, match="unknown account 'acc-nobody'"):
        account_view(engine, "acc-nobody")
