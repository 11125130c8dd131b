"""The silent flag on synthetic populations of different shapes: it judges each account
against its own weekly history and its peers, so scaling every volume, heavy-tailed sizes or
a strong weekly cycle change nothing; a recent ticket, or noise without a trend, is not
silence. Pure (`evaluate_flags` on frames) and through the warehouse (SQLite, PostgreSQL)."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from pulse.listeners.landing import land_file
from pulse.models.flag_rules import SilentRule
from pulse.models.flags import compute_flags, evaluate_flags
from pulse.models.health import score_date
from pulse.sql.flags import load_flags

D = date(2026, 6, 30)
WEEKS = 16
N = 120
FADERS = [f"acc-{k:03d}" for k in range(8)]  # usage fades and errors climb, no ticket
TICKETED = "acc-008"  # the same fade, with a ticket last week
NOISY = "acc-009"  # wild week-to-week swings around a steady level


def population(*, scale: float = 1.0, sizes: np.ndarray | None = None,
               seed: int = 3, n: int = N) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Weekly usage, features and peers of `n` accounts; `scale` multiplies every volume,
    `sizes` each account's volume (rows stay as they are: the same observations, bigger)."""
    N = n  # noqa: N806 - the population's size, as the module's default
    rng = np.random.default_rng(seed)
    ids = np.array([f"acc-{k:03d}" for k in range(N)])
    size = np.exp(rng.normal(4.0, 0.8, N)) * (1.0 if sizes is None else sizes) * scale
    noise = rng.uniform(0.1, 0.35, N)
    noise[ids == NOISY] = 1.0
    level = np.exp(rng.normal(0.0, 1.0, (N, WEEKS)) * noise[:, None])
    rate = np.exp(rng.normal(np.log(0.02), 0.5, N))[:, None] * np.exp(
        rng.normal(0.0, 0.3, (N, WEEKS)))
    fading = np.isin(ids, [*FADERS, TICKETED])
    level[fading, :3] *= np.array([0.15, 0.25, 0.5])  # week 0 is the latest
    rate[fading, :3] *= np.array([5.0, 4.0, 2.0])
    events = size[:, None] * level
    rows = np.maximum(1, np.round(300 * level))  # ~300 observations a week
    weekly = pd.DataFrame({
        "account_id": np.repeat(ids, WEEKS),
        "week": np.tile(np.arange(WEEKS), N),
        "events": events.ravel(),
        "errors": (events * rate).ravel(),
        "rows": rows.ravel(),
        "error_rows": np.round(rows * rate).ravel(),
        "users": np.full(N * WEEKS, 3.0),
        "active_days": np.full(N * WEEKS, 5.0),
    })
    features = pd.DataFrame({
        "account_id": ids, "cancelled": False,
        # the ticket before the quiet spell is old enough not to raise the bar (90 days)
        "days_since_last_ticket": np.where(ids == TICKETED, 5.0, 120.0),
        "downgrades_90d": 0.0, "mrr_change_90d_pct": 0.0, "negative_mentions_28d": 0.0,
        "mentions_28d": 0.0, "support_last_at": None,
    })
    peers = pd.DataFrame({"account_id": ids, "segment": np.where(np.arange(N) % 2, "smb", "mid"),
                          "plan": "growth"})
    return weekly, features, peers


def silent(weekly: pd.DataFrame, features: pd.DataFrame, peers: pd.DataFrame,
           rule: SilentRule | None = None) -> pd.DataFrame:
    from pulse.models.flag_rules import FlagSettings

    flags = evaluate_flags(features, D, weekly=weekly, peers=peers,
                           settings=FlagSettings(silent=rule or SilentRule()))
    return flags[flags["flag"] == "silent_dissatisfied"].set_index("account_id")


def test_the_faders_are_flagged_not_the_ticketed_nor_the_noisy() -> None:
    flags = silent(*population())
    assert set(FADERS) <= set(flags.index)
    assert TICKETED not in flags.index  # it spoke to us: not silent
    assert NOISY not in flags.index  # swings, but no more than it always has
    assert len(flags) <= len(FADERS) + 2  # a handful of chance alarms at most among 110
    text = flags.loc[FADERS[0], "evidence"]
    assert text.startswith("events down ")
    assert "against its own 11-week median" in text
    assert re.search(r"the lowest \d+% of (mid|smb) accounts on the growth plan", text), text
    assert "error rate " in text and text.endswith("; no ticket in 120 days")
    details = flags.loc[FADERS[0], "details"]
    assert details["evidence_z"] >= details["evidence_bar"] == 3.0
    assert details["signals"]["usage_drop"] > 0
    assert details["peer_group"] in ("mid / growth", "smb / growth")


@pytest.mark.parametrize("shape", ["x20", "heavy_tailed", "tiny"])
def test_the_same_accounts_whatever_the_volumes(shape: str) -> None:
    base = set(silent(*population()).index)
    rng = np.random.default_rng(99)
    if shape == "x20":
        other = population(scale=20.0)
    elif shape == "heavy_tailed":
        other = population(sizes=np.exp(rng.standard_t(2, N) * 1.5))
    else:
        other = population(scale=0.01)
    assert set(silent(*other).index) == base


def test_a_flat_history_does_not_make_every_wobble_extreme() -> None:
    weekly, features, peers = population()
    steady = weekly["account_id"] == "acc-050"
    weekly.loc[steady, ["events", "rows"]] = [100.0, 30.0]  # the same every week ...
    weekly.loc[steady & (weekly["week"] < 2), "events"] = 90.0  # ... then 10% less
    assert "acc-050" not in silent(weekly, features, peers).index


def test_the_rule_is_a_setting() -> None:
    weekly, features, peers = population()
    strict = silent(weekly, features, peers, SilentRule(min_evidence=50.0))
    assert strict.empty
    longer = silent(weekly, features, peers, SilentRule(no_contact_days=150))
    assert longer.empty  # nobody has been quiet for 150 days
    # a ticket 60 days ago, a third of the way back from 90: the bar is 4, and the words say so
    features["days_since_last_ticket"] = np.where(features["account_id"] == TICKETED, 5.0, 60.0)
    later = silent(weekly, features, peers)
    assert set(later.index) <= set(silent(*population()).index)
    assert later.loc[FADERS[0], "details"]["evidence_bar"] == 4.0
    assert later.loc[FADERS[0], "evidence"].endswith(
        "; no ticket in 60 days (a ticket that recent raises the evidence needed from 3 to 4)")


def test_the_evidence_needed_rises_after_a_recent_ticket_and_fades() -> None:
    rule = SilentRule()
    since = np.array([np.nan, 30.0, 45.0, 60.0, 90.0, 400.0])
    assert rule.evidence_bar(since).tolist() == [3.0, 5.0, 4.5, 4.0, 3.0, 3.0]
    # the fade starts where "no contact" does, and a rule may turn it off
    assert SilentRule(no_contact_days=60).evidence_bar(since).tolist() == \
        [3.0, 5.0, 5.0, 5.0, 3.0, 3.0]
    for off in (SilentRule(recent_contact_z=0.0), SilentRule(recent_contact_days=30),
                SilentRule(no_contact_days=90)):
        assert off.evidence_bar(since).tolist() == [3.0] * 6
    from pulse.core.errors import InvalidArgumentError
    for bad in ({"recent_contact_z": -1.0}, {"recent_contact_days": 0}):
        with pytest.raises(InvalidArgumentError, match="recent_contact"):
            SilentRule(**bad)


def test_a_ticket_shortly_before_the_quiet_spell_asks_for_more_evidence() -> None:
    """A mild decline backed by failures clears the plain bar (3) when the account has no
    ticket on record, not when its latest ticket is 35 days old (the bar is then near 5),
    and again when that ticket is 89 days old (the bar is back near 3)."""
    weekly, features, peers = population()
    recent = weekly["week"] < SilentRule().recent_weeks
    mild = (weekly["account_id"] == "acc-050") & recent
    weekly.loc[mild, "events"] *= 0.6
    weekly.loc[mild, "errors"] = weekly.loc[mild, "events"] * 0.5
    weekly.loc[mild, "error_rows"] = np.round(weekly.loc[mild, "rows"] * 0.5)
    who = features["account_id"] == "acc-050"
    evidence = {}
    for days in (np.nan, 35.0, 89.0):
        features.loc[who, "days_since_last_ticket"] = days
        flags = silent(weekly, features, peers)
        evidence[days] = flags.loc["acc-050", "details"] if "acc-050" in flags.index else None
    plain = evidence[next(k for k in evidence if np.isnan(k))]
    assert plain is not None and plain["evidence_bar"] == 3.0
    assert 3.0 <= plain["evidence_z"] < SilentRule().evidence_bar(np.array([35.0]))[0]
    assert evidence[35.0] is None
    assert evidence[89.0] is not None and evidence[89.0]["evidence_bar"] == pytest.approx(3.03)


def test_the_modelled_risk_adds_to_the_decline_and_never_flags_alone() -> None:
    """The champion's churn risk of the date is one more signal, weighed by its rank among
    the scored accounts: it tips a mild decline over the bar, but a high risk without a
    decline, or with a recent ticket, is not silence."""
    from pulse.models.flag_rules import FlagSettings

    weekly, features, peers = population()
    mild = (weekly["account_id"] == "acc-050") & (weekly["week"] < SilentRule().recent_weeks)
    weekly.loc[mild, "events"] *= 0.6  # a mild drop: not enough on its own
    assert "acc-050" not in silent(weekly, features, peers).index
    risk = np.linspace(0.01, 0.05, N)
    ids = features["account_id"].to_numpy()
    for account, p in (("acc-050", 0.9), ("acc-070", 0.8), (TICKETED, 0.7)):
        risk[ids == account] = p
    churn = pd.DataFrame({"account_id": ids, "probability": risk})
    flags = evaluate_flags(features, D, weekly=weekly, peers=peers, churn=churn,
                           settings=FlagSettings())
    flagged = flags[flags["flag"] == "silent_dissatisfied"].set_index("account_id")
    assert "acc-050" in flagged.index
    assert "acc-070" not in flagged.index  # the riskiest but one, with no decline
    assert TICKETED not in flagged.index
    assert set(FADERS) <= set(flagged.index)
    details = flagged.loc["acc-050", "details"]
    assert details["signals"]["modelled_risk"] > 1.5
    assert details["modelled_risk_share"] < 0.02
    assert "modelled churn risk 90%, the highest 2% of accounts" in \
        flagged.loc["acc-050", "evidence"]
    # without scores (no champion) the flag is what it was
    none = evaluate_flags(features, D, weekly=weekly, peers=peers, settings=FlagSettings(),
                          churn=churn.iloc[:0])
    assert "acc-050" not in set(none.loc[none["flag"] == "silent_dissatisfied", "account_id"])


def test_failures_alone_are_not_silence_but_back_a_decline_up() -> None:
    """Half the requests failing at the usual volume is a technical problem (the outage flag,
    a ticket), not dissatisfaction: the error rise weighs at most `CORROBORATING_Z`, so alone
    it never fires; beside a mild decline that is not enough on its own, it tips it over."""
    from pulse.models.flags import CORROBORATING_Z

    weekly, features, peers = population()
    recent = weekly["week"] < SilentRule().recent_weeks
    mild = (weekly["account_id"] == "acc-050") & recent
    weekly.loc[mild, "events"] *= 0.6
    assert "acc-050" not in silent(weekly, features, peers).index  # the decline alone
    for account in ("acc-050", "acc-060"):  # the error share jumps to a half
        hit = (weekly["account_id"] == account) & recent
        weekly.loc[hit, "errors"] = weekly.loc[hit, "events"] * 0.5
        weekly.loc[hit, "error_rows"] = np.round(weekly.loc[hit, "rows"] * 0.5)
    flags = silent(weekly, features, peers)
    assert "acc-060" not in flags.index  # the failures alone, at the usual volume
    assert "acc-050" in flags.index  # the failures beside the mild decline
    details = flags.loc["acc-050", "details"]
    assert details["signals"]["error_rise"] == pytest.approx(CORROBORATING_Z, abs=0.01)
    assert 0 < details["signals"]["usage_drop"] < 3
    text = flags.loc["acc-050", "evidence"]
    assert text.startswith("error rate ") and "; events down " in text, text
    # a looser rule (min_evidence under CORROBORATING_Z) still never flags the failures alone:
    # they weigh just under the bar, whatever it is set to
    loose = silent(weekly, features, peers, SilentRule(min_evidence=2.0))
    assert "acc-060" not in loose.index and "acc-050" in loose.index
    assert loose.loc["acc-050", "details"]["signals"]["error_rise"] == pytest.approx(2.0)


def test_the_modelled_risk_never_flags_alone_however_many_accounts_are_scored() -> None:
    """Ranked among 3,000 accounts the riskiest holds the top 0.03%, a z of 3.4 on its own:
    the rank's share stops at `MODEL_SHARE_FLOOR`, so without a decline it stays unflagged."""
    from pulse.models.flag_rules import FlagSettings
    weekly, features, peers = population(n=3000)
    ids = features["account_id"].to_numpy()
    risk = np.linspace(0.01, 0.05, len(ids))
    risk[ids == "acc-070"] = 0.95  # the riskiest of all, with steady usage
    churn = pd.DataFrame({"account_id": ids, "probability": risk})
    flags = evaluate_flags(features, D, weekly=weekly, peers=peers, churn=churn,
                           settings=FlagSettings())
    flagged = flags[flags["flag"] == "silent_dissatisfied"].set_index("account_id")
    assert "acc-070" not in flagged.index
    assert set(FADERS) <= set(flagged.index)  # the declines still fire


# --------------------------------------------------------------------------- warehouse

START = D - timedelta(days=7 * WEEKS - 1)
LANDED = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)


def usage_csv(*, cycle: bool, scale: float) -> str:
    """Daily usage of 40 accounts: weekdays busy; with `cycle`, weekends empty and Mondays
    three times a Thursday. acc-w00 and acc-w01 fade in the last 2 weeks, acc-w01 with a
    ticket."""
    rng = np.random.default_rng(5)
    lines = ["event_id,account_id,occurred_at,feature,contact_id,quantity,outcome"]
    days = [START + timedelta(days=k) for k in range(7 * WEEKS)]
    weekday = np.array([3.0, 1.5, 1.2, 1.0, 0.8, 0.05, 0.05]) if cycle else np.ones(7)
    for a in range(40):
        size = float(np.exp(rng.normal(3.0, 1.0))) * scale
        for d in days:
            age = (D - d).days
            fade = 0.15 if a < 2 and age < 14 else 1.0
            qty = size * weekday[d.weekday()] * fade * float(np.exp(rng.normal(0, 0.3)))
            err = 0.3 if a < 2 and age < 14 else 0.01
            for k in range(3):
                q = max(1, round(qty / 3))
                outcome = "error" if rng.random() < err else "ok"
                lines.append(f"w{a}-{d:%Y%m%d}-{k},acc-w{a:02d},{d:%Y-%m-%d}T1{k}:00:00Z,"
                             f"reports,,{q},{outcome}")
    return "\n".join(lines) + "\n"


def land(engine: Engine, folder: Path, *, cycle: bool, scale: float) -> None:
    folder.mkdir()
    accounts = "account_id,name,mrr,currency,seats,segment,plan,created_at\n" + "".join(
        f"acc-w{a:02d},W {a},100,USD,5,smb,growth,2025-01-01T00:00:00Z\n" for a in range(40))
    tickets = ("ticket_id,account_id,opened_at,resolved_at,status,priority\n"
               "t1,acc-w01,2026-06-25T09:00:00Z,,open,normal\n")
    for name, text in (("accounts.csv", accounts), ("usage.csv", usage_csv(cycle=cycle,
                                                                            scale=scale)),
                       ("tickets.csv", tickets)):
        (folder / name).write_text(text, encoding="utf-8")
        result = land_file(engine, folder / name, now=LANDED)
        assert result.quarantined == 0, (name, result.reasons)


@pytest.mark.parametrize(("cycle", "scale"), [(False, 1.0), (True, 20.0)])
def test_in_the_warehouse_a_weekly_cycle_and_scale_change_nothing(
        engine: Engine, tmp_path: Path, cycle: bool, scale: float) -> None:
    land(engine, tmp_path / "world", cycle=cycle, scale=scale)
    score_date(engine, D)
    compute_flags(engine, D)
    flags = load_flags(engine, D)
    silent = flags[flags["flag"] == "silent_dissatisfied"]
    assert list(silent["account_id"]) == ["acc-w00"], silent["evidence"].tolist()  # w01: a ticket
    text = silent["evidence"].iloc[0]
    # two weeks at 15% of the usual level: over the last 4 weeks, a fall of a quarter or more
    drop = re.match(r"events down (\d+)% against its own 11-week median \(([\d,]+) a week "
                    r"over the last 4 weeks against ([\d,]+)\)", text)
    assert drop and int(drop.group(1)) >= 25, text
    recent, usual = (float(drop.group(k).replace(",", "")) for k in (2, 3))
    assert abs(100 * (1 - recent / usual) - int(drop.group(1))) <= 2, text
    assert "error rate " in text and text.endswith("no ticket on record")
    assert silent["details"].iloc[0]["baseline_weeks"] == 11


def test_in_the_warehouse_the_stored_churn_scores_join_the_evidence(
        engine: Engine, tmp_path: Path) -> None:
    from sqlalchemy import insert

    from pulse.sql.schema import ChurnScore

    land(engine, tmp_path / "world", cycle=False, scale=1.0)
    score_date(engine, D)
    rows = [{"as_of": D, "account_id": f"acc-w{a:02d}", "model_version": 1,
             "probability": 0.6 if a == 0 else 0.02 + a / 1000, "drivers": [],
             "computed_at": LANDED} for a in range(40)]
    with engine.begin() as conn:
        conn.execute(insert(ChurnScore.__table__), rows)
    compute_flags(engine, D)
    flags = load_flags(engine, D)
    silent = flags[flags["flag"] == "silent_dissatisfied"].set_index("account_id")
    assert list(silent.index) == ["acc-w00"]
    details = silent.loc["acc-w00", "details"]
    assert details["signals"]["modelled_risk"] > 1.5
    assert details["churn_probability"] == pytest.approx(0.6)
    assert "modelled churn risk 60%, the highest 5% of accounts" in \
        silent.loc["acc-w00", "evidence"]


def test_in_the_warehouse_how_long_silence_lasts_is_a_setting(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """acc-w01 fades like acc-w00 but opened a ticket 5 days before: with "no contact" set to
    3 days (PULSE_SILENT_NO_CONTACT_DAYS) it counts as silent too, and says so."""
    from pulse.core.settings import get_settings

    land(engine, tmp_path / "world", cycle=False, scale=1.0)
    score_date(engine, D)
    monkeypatch.setenv("PULSE_SILENT_NO_CONTACT_DAYS", "3")
    get_settings(fresh=True)
    compute_flags(engine, D)
    flags = load_flags(engine, D)
    silent = flags[flags["flag"] == "silent_dissatisfied"].set_index("account_id")
    assert list(silent.index) == ["acc-w00", "acc-w01"]
    # a ticket 5 days ago, just past the 3 days: it asks for evidence near 5, which acc-w01's
    # fade (to 15%, with errors at 30%) clears
    assert silent.loc["acc-w01", "evidence"].endswith(
        "no ticket in 5 days (a ticket that recent raises the evidence needed from 3 to 5)")
    assert silent.loc["acc-w01", "details"]["no_contact_days"] == 3
