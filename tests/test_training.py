"""Churn training from history, the model registry, churn scoring, the model CLI and the
model benchmark, on small demo worlds landed on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select, update

from pulse.core.errors import TrainingDataError
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.models.calibration import fit_calibration
from pulse.models.churn_artifact import read_artifact_header
from pulse.models.registry import (
    CHALLENGER,
    CHAMPION,
    RETIRED,
    SCORECARD_MARGIN_SE,
    _better,
    champion,
    clears_bar,
    list_models,
    score_churn,
    scorecard_auc,
    train_and_register,
    valid_health,
    window_auc_se,
)
from pulse.models.scorecard import load_scorecard
from pulse.models.scoring import refresh_inputs
from pulse.models.selection import AUC_TIE, BASELINES, CANDIDATES, POOLED, Config, auc_se
from pulse.models.training import (
    NOT_POINT_IN_TIME,
    NUMERIC,
    build_training_data,
    cancellations,
    data_span,
    label_snapshots,
    plan_windows,
)
from pulse.sql.features import load_features
from pulse.sql.rollups import rebuild as rebuild_rollups
from pulse.sql.schema import (
    Account,
    ChurnScore,
    Contact,
    Incident,
    Mention,
    PurchaseEvent,
    Ticket,
    UsageEvent,
)
from tests.conftest import prebuilt
from tests.pulse_cli import run_pulse

END = date(2026, 6, 30)
HORIZON = 14
ROOT = Path(__file__).resolve().parent.parent
SCORES = ChurnScore.__table__

#: One worker runs this module's tests of each database: the world's snapshots (`_SNAPSHOTS`)
#: are then computed once per database, not once per database on each worker that happens to
#: get a training test; the SQLite and the PostgreSQL halves run side by side.
pytestmark = pytest.mark.xdist_group("training", per_database=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 accounts over 200 days ending on END (about 18 of them cancel in the last 60)."""
    folder = tmp_path_factory.mktemp("world")
    generate(folder, accounts=300, days=200, seed=3, end=END)
    return folder


#: Feature snapshots of the module's world on basis "occurred", per database: every test
#: lands the same files, so each worker computes a date's snapshot once per database and the
#: trainings after the first fit on the same rows (the snapshot code itself is tested on its
#: own, and on basis "known" nothing is shared: it depends on when rows landed).
_SNAPSHOTS: dict[str, dict] = {}


def _shared(engine: Engine) -> dict:
    return _SNAPSHOTS.setdefault(engine.dialect.name, {})


def _land(engine: Engine, folder: Path) -> None:
    files = [p for p in folder.iterdir() if p.name != "truth.json"]
    land_files(engine, files)


def _landed(engine: Engine, folder: Path) -> None:
    """The module's world landed, with what training refreshes before its snapshots done too
    (incident impacts, the sentiment model's reading of the texts): built once per worker
    and database, then copied (`prebuilt`). The refresh itself is tested on a world landed
    afresh (`test_training_data_from_history`)."""
    def build() -> None:
        _land(engine, folder)
        refresh_inputs(engine, data_span(engine, END, basis="occurred")[0])

    prebuilt(engine, "training-world", build)


def _truth(folder: Path) -> dict:
    return json.loads((folder / "truth.json").read_text())


def _cancel_days(folder: Path) -> dict[str, date]:
    return {a: datetime.fromisoformat(ts).astimezone(UTC).date()
            for a, ts in _truth(folder)["churn"].items()}


def _train(engine: Engine, **kw: object):  # type: ignore[no-untyped-def]
    """Train on the small world; unless a test says otherwise, the bar is only ROC AUC 0.6
    (on 300 accounts the scorecard and the model are within noise of each other)."""
    kw.setdefault("must_beat_scorecard", False)
    if kw.get("basis", "occurred") == "occurred":
        kw.setdefault("snapshots", _shared(engine))
    return train_and_register(engine, as_of=END, horizon_days=HORIZON, valid_days=14, **kw)


# --------------------------------------------------------------------------- windows, labels


def test_windows_keep_every_training_label_before_validation() -> None:
    w = plan_windows(date(2026, 1, 1), date(2026, 12, 31), horizon_days=30, step_days=7,
                     valid_days=21, warmup_days=56)
    assert w.valid_end == date(2026, 12, 1)  # the last date whose 30 days are observed
    assert w.valid == (date(2026, 11, 17), date(2026, 11, 24), date(2026, 12, 1))
    assert w.train_start >= date(2026, 2, 26)  # 56 days of warm-up
    assert all(d + timedelta(days=30) < w.valid_start for d in w.train)
    assert w.train_end + timedelta(days=37) >= w.valid_start  # and nothing more is thrown away
    assert len({(d - w.valid_end).days % 7 for d in w.dates}) == 1  # one weekly grid
    # Snapshots span the whole history whose horizon is complete, the gap included.
    assert w.dates[0] < date(2026, 2, 26) + timedelta(days=7)
    assert w.dates[-1] == w.valid_end
    assert len(w.dates) == (w.valid_end - w.dates[0]).days // 7 + 1 == 40
    assert len(w.dates) > len(w.train) + len(w.valid)
    with pytest.raises(TrainingDataError, match=r"180 days.*90-day horizon.*needs about \d+"):
        plan_windows(date(2026, 1, 1), date(2026, 6, 29), horizon_days=90)


def test_labels_count_cancellations_within_the_horizon_after_the_snapshot() -> None:
    snaps = pd.DataFrame({"account_id": ["a", "a", "a", "b", "c"],
                          "as_of": [date(2026, 3, 1), date(2026, 3, 10), date(2026, 3, 20),
                                    date(2026, 3, 1), date(2026, 3, 1)]})
    cancels = pd.DataFrame({"account_id": ["a", "b"],
                            "day": [date(2026, 3, 20), date(2026, 3, 2)]})
    # a: 19 days after 03-01 (outside 14), 10 after 03-10, same day as 03-20 (not after it)
    assert label_snapshots(snaps, cancels, 14).tolist() == [False, True, False, True, False]
    assert label_snapshots(snaps, cancels, 19).tolist() == [True, True, False, True, False]


def test_training_data_from_history(engine: Engine, world: Path) -> None:
    _land(engine, world)
    data = build_training_data(engine, as_of=END, horizon_days=HORIZON, valid_days=14,
                               snapshots=_shared(engine))
    w = data.windows
    train, valid = data.split()
    assert w.last_data == END
    assert w.valid_end == END - timedelta(days=HORIZON)
    assert set(valid["as_of"].dt.date) == set(w.valid) and len(w.valid) == 2
    # No training label window reaches into the validation window.
    assert (train["as_of"].dt.date + timedelta(days=HORIZON) < w.valid_start).all()
    assert set(train["as_of"].dt.date) == set(w.train)
    assert train["as_of"].min() >= pd.Timestamp(w.first_data + timedelta(days=56))
    # the incidents' impacts were measured first, as scoring a date does: the snapshots'
    # incident minutes read them (none had been measured on the landed files)
    from pulse.models.outage import stale_incidents

    assert stale_incidents(engine) == []
    assert (data.frame["incident_minutes_28d"] > 0).any()

    cancel = _cancel_days(world)
    frame = data.frame.assign(day=data.frame["as_of"].dt.date)
    when = frame["account_id"].map(cancel)
    # Accounts that had cancelled by the snapshot are left out ...
    assert not any(c is not None and not pd.isna(c) and c <= d
                   for c, d in zip(when, frame["day"]))
    # ... and the label is a cancellation on the 14 days after it, exactly as the truth says.
    expected = [c is not None and not pd.isna(c) and d < c <= d + timedelta(days=HORIZON)
                for c, d in zip(when, frame["day"])]
    assert frame["churned"].tolist() == expected
    assert frame["churned"].sum() >= 10 and valid["churned"].sum() >= 3
    # Features: the catalogue's point-in-time ones, the derived ones, the categoricals.
    assert data.numeric == list(NUMERIC) and not set(NOT_POINT_IN_TIME) & set(data.numeric)
    assert {"plan", "segment", "region"} <= set(frame.columns)
    # Training reads history; it never rewrites the materialised features of those dates.
    assert load_features(engine, w.valid_end).empty
    # Support tone comes from the sentiment model on every snapshot, as when a date is
    # scored: training had it read the whole history's texts first (the few it leaves are
    # in a language it does not cover; before, every text was counted by the word list).
    toned = frame["tone_scored_share_90d"].dropna()
    assert len(toned) > len(frame) / 2 and toned.mean() > 0.95

    with pytest.raises(TrainingDataError, match="needs about"):
        build_training_data(engine, as_of=END, horizon_days=90)

    # Rolling-origin folds: the latest is the split itself, and every fold's training labels
    # end before its validation block starts.
    folds = data.folds(3)
    assert len(folds) >= 2
    when = data.frame["as_of"]
    np.testing.assert_array_equal(folds[0][1], np.flatnonzero(when.dt.date.isin(w.valid)))
    for train_idx, valid_idx in folds:
        assert when.iloc[train_idx].max() + pd.Timedelta(days=HORIZON) < when.iloc[
            valid_idx].min()
    assert when.iloc[folds[1][1]].max() < when.iloc[folds[0][1]].min()


def test_too_short_history_takes_the_longest_horizon_that_fits(engine: Engine,
                                                               world: Path) -> None:
    _landed(engine, world)
    cache: dict = {}
    data = build_training_data(engine, as_of=END, horizon_days=90, shorten_horizon=True,
                               snapshots=cache)
    w = data.windows
    assert w.requested_horizon_days == 90 and 7 <= w.horizon_days < 90
    assert re.search(r"horizon shortened from 90 to \d+ days: the history .* is too short "
                     r"for a 90-day horizon", w.note), w.note
    assert w.to_dict()["requested_horizon_days"] == 90
    train, valid = data.split()
    for part, least in ((train, 3), (valid, 1)):
        assert part["churned"].sum() >= least and (~part["churned"]).sum() >= least
    assert (train["as_of"] + pd.Timedelta(days=w.horizon_days) < valid["as_of"].min()).all()
    # The chosen configuration is refitted on the requested horizon: every snapshot whose
    # 90-day label window is complete, each labelled over 90 days, not the shortened horizon.
    refit = data.refit
    assert refit is not None and data.refit_frame is refit and data.refit_horizon_days == 90
    assert (refit["as_of"] + pd.Timedelta(days=90) <= pd.Timestamp(w.last_data)).all()
    assert refit["churned"].sum() >= 3 and (~refit["churned"]).sum() >= 3
    relabelled = label_snapshots(refit, cancellations(engine, END), 90)
    assert (relabelled == refit["churned"].to_numpy()).all()
    assert (label_snapshots(refit, cancellations(engine, END), w.horizon_days)
            != refit["churned"].to_numpy()).any()
    assert "refitted on the" in w.note and "90-day horizon" in w.note
    # the scorecard's calibration fits its bands' churn rates to the same 90-day labels
    cal = fit_calibration(engine, as_of=END, horizon_days=90, snapshots=cache)
    assert cal.horizon_days == 90
    assert f"the {len(refit):,} snapshots labelled with the 90-day horizon" in " ".join(
        cal.notes)
    assert cal.rows <= len(refit) and cal.churners <= int(refit["churned"].sum())
    # This world's cancellations come in its last 60 days and their warning signs after the
    # labelled snapshots: health then ranks nobody, and no cut point is fitted to it.
    assert cal.fallback is not None and cal.fallback.startswith(
        "health does not rank history's churners better than chance"), cal.fallback
    assert cal.auc_before is not None and abs(cal.auc_before - 0.5) < 0.1
    assert (cal.green, cal.amber, cal.after) == (cal.default_green, cal.default_amber,
                                                 cal.before)
    # Every snapshot came from the cache the second time (no SELECT to repeat).
    n = len(cache)
    again = build_training_data(engine, as_of=END, horizon_days=90, shorten_horizon=True,
                                snapshots=cache)
    assert len(cache) == n and again.windows == w
    pd.testing.assert_frame_equal(again.frame, data.frame)


def test_known_basis_sees_only_what_had_landed(engine: Engine, world: Path) -> None:
    """On basis 'known' a cancellation that landed after the training date is no label, and
    history landed in bulk today is unknown on every past date."""
    _landed(engine, world)
    with pytest.raises(TrainingDataError, match="no usage rows known by 2026-06-30.*'occurred'"):
        build_training_data(engine, as_of=END, horizon_days=HORIZON, basis="known")
    with pytest.raises(TrainingDataError, match="first usage rows landed on .*basis 'occurred'"):
        build_training_data(engine, as_of=datetime.now(UTC).date(), horizon_days=HORIZON,
                            basis="known", valid_days=14)
    # As if everything had landed as it happened (a day late at most), except one
    # cancellation in the validation window, which arrives only today.
    with engine.begin() as conn:
        for table in (Account, Contact, UsageEvent, PurchaseEvent, Ticket, Mention, Incident):
            t = table.__table__
            conn.execute(update(t).values(landed_at=datetime(2025, 12, 1, tzinfo=UTC)))
    rebuild_rollups(engine)  # the events changed by hand: the daily rollups follow
    data = build_training_data(engine, as_of=END, horizon_days=HORIZON, basis="occurred",
                               valid_days=14, snapshots=_shared(engine))
    _, valid = data.split()
    late = sorted(valid.loc[valid["churned"], "account_id"])[0]
    p = PurchaseEvent.__table__
    with engine.begin() as conn:
        conn.execute(update(p).where(p.c.account_id == late, p.c.kind == "cancelled")
                     .values(landed_at=datetime.now(UTC)))
    known = build_training_data(engine, as_of=END, horizon_days=HORIZON, basis="known",
                                valid_days=14)
    assert known.windows == data.windows
    merged = known.frame.merge(data.frame, on=["as_of", "account_id"], suffixes=("", "_occ"))
    assert len(merged) == len(data.frame) == len(known.frame)
    differs = merged[merged["churned"] != merged["churned_occ"]]
    assert set(differs["account_id"]) == {late} and not differs["churned"].any()


# --------------------------------------------------------------------------- the registry


def test_better_model_rule() -> None:
    old = {"roc_auc": 0.80, "brier": 0.050}
    assert _better({"roc_auc": 0.81, "brier": 0.090}, old)[0]
    assert not _better({"roc_auc": 0.79, "brier": 0.010}, old)[0]
    tie = _better({"roc_auc": 0.80004, "brier": 0.049}, old)
    assert tie[0] and "ties" in tie[1] and "Brier" in tie[1]
    assert not _better({"roc_auc": 0.80, "brier": 0.050}, old)[0]
    assert not _better({"roc_auc": None, "brier": 0.01}, old)[0]


def test_minimum_bar_rule() -> None:
    assert not clears_bar({"roc_auc": None})[0]
    low = clears_bar({"roc_auc": 0.55})
    assert not low[0] and "minimum bar of 0.60" in low[1]
    card = clears_bar({"roc_auc": 0.75}, scorecard_roc_auc=0.78)
    assert not card[0] and "scorecard's own ranking (0.7800)" in card[1]
    assert clears_bar({"roc_auc": 0.75}, scorecard_roc_auc=0.70)[0]
    assert clears_bar({"roc_auc": 0.55}, min_roc_auc=0.5)[0]
    # within the scorecard's standard error the two tie, and the tie goes to the model;
    # beyond it the scorecard keeps the risk list
    tie = clears_bar({"roc_auc": 0.75}, scorecard_roc_auc=0.78, scorecard_margin=0.04)
    assert tie[0] and "scorecard 0.7800 ± 0.0400" in tie[1]
    worse = clears_bar({"roc_auc": 0.73}, scorecard_roc_auc=0.78, scorecard_margin=0.04)
    assert not worse[0] and "(0.7800 ± 0.0400)" in worse[1]


def test_the_bar_scores_past_snapshots_without_the_latest_state() -> None:
    # The warehouse keeps MRR in its latest state: 0 once an account cancelled, so on past
    # snapshots the MRR change "sees" who will churn. The scorecard the bar compares a model
    # with must not read it, as the calibration does not.
    rng = np.random.default_rng(0)
    n = 300
    churned = np.arange(n) < 40
    from pulse.models.training import FEATURES

    valid = pd.DataFrame({**{f: np.full(n, np.nan) for f in FEATURES},
                          "account_id": [f"a{i}" for i in range(n)], "churned": churned,
                          "active_days_28d": rng.integers(0, 28, n).astype(float),
                          "error_rate_28d": rng.uniform(0, 0.1, n), "account_age_days": 400.0,
                          "mrr_change_90d_pct": np.where(churned, -100.0, 0.0)})
    assert "mrr_change_90d_pct" in NOT_POINT_IN_TIME
    flipped = valid.assign(mrr_change_90d_pct=np.where(churned, 0.0, -100.0))
    pd.testing.assert_frame_equal(valid_health(valid), valid_health(flipped))
    auc = scorecard_auc(valid)
    assert auc is not None and abs(auc - 0.5) < 0.12  # chance: the other measures are noise
    # read as it is, the same column would rank the window far better than chance
    from sklearn.metrics import roc_auc_score

    from pulse.models.health import score_features

    leaky, _ = score_features(valid, load_scorecard())
    score = leaky.set_index("account_id").loc[valid["account_id"], "score"].to_numpy()
    assert roc_auc_score(churned, -score) > 0.9


def test_window_auc_se_is_the_standard_error_in_accounts() -> None:
    # 10 churned and 30 retained snapshots of 5 churned and 15 retained accounts
    valid = pd.DataFrame({"account_id": [f"a{i % 20}" for i in range(40)],
                          "churned": [i % 20 < 5 for i in range(40)]})
    se = window_auc_se(valid, 0.8)
    assert se == pytest.approx(auc_se(0.8, 5, 15)) and 0.05 < se < 0.2
    assert se > auc_se(0.8, 10, 30)  # counted in snapshots it would be narrower
    assert window_auc_se(valid, None) == 0.0
    # the scorecard keeps a model out only when it ranks better by two of those errors
    margin = SCORECARD_MARGIN_SE * se
    assert clears_bar({"roc_auc": 0.8 - 1.5 * se}, scorecard_roc_auc=0.8,
                      scorecard_margin=margin)[0]
    assert not clears_bar({"roc_auc": 0.8 - 2.5 * se}, scorecard_roc_auc=0.8,
                          scorecard_margin=margin)[0]


def test_promotion_only_when_better_on_the_same_window(engine: Engine, world: Path,
                                                        pulse_home: Path) -> None:
    _landed(engine, world)
    assert champion(engine) is None
    # little to go on: the minutes incidents hit an account (a tenth of the snapshots) and
    # plan/segment/region
    weak = ["incident_minutes_28d"]
    # one classifier family keeps it quick: promotion, not selection, is under test here
    fast = {"classifier": "logistic"}
    v1 = _train(engine, numeric=weak, min_roc_auc=0.99, must_beat_scorecard=True, **fast)
    # Even the first model must clear the bar: no champion, the risk list ranks on health.
    assert not v1.promoted and v1.record.status == CHALLENGER
    assert "below the minimum bar of 0.99" in (v1.record.note or "")
    assert "no champion" in (v1.record.note or "") and champion(engine) is None
    assert isinstance(v1.record.metrics["scorecard_roc_auc"], float)
    # the bar's margin, as recorded for the run: two of the scorecard's standard errors there
    m1 = v1.record.metrics
    assert 0 < m1["scorecard_roc_auc_se"] < 0.2
    assert m1["scorecard_margin"] == pytest.approx(2 * m1["scorecard_roc_auc_se"])

    v2 = _train(engine, numeric=weak, min_roc_auc=0.5, **fast)
    assert v2.promoted and v2.record.status == CHAMPION and "first" in (v2.record.note or "")
    assert Path(v2.record.artifact_path) == pulse_home / "models" / "churn-v2.joblib"
    assert Path(v2.record.artifact_path).is_file()

    v3 = _train(engine, **fast)
    assert v3.record.metrics["roc_auc"] > v2.record.metrics["roc_auc"]
    assert v3.promoted and v3.record.status == CHAMPION and v3.previous_champion == 2
    assert v3.record.metrics["champion_on_window"]["version"] == 2
    assert re.search(r"beats the champion's .*promoted, v2 retired", v3.record.note or "")

    v4 = _train(engine, numeric=weak, min_roc_auc=0.5, **fast)
    assert not v4.promoted and v4.record.status == CHALLENGER
    assert re.search(r"below the champion's .*stays challenger; v3 remains champion",
                     v4.record.note or ""), v4.record.note
    # The champion's figures on the new window are those of v3 on the same rows.
    assert v4.record.metrics["champion_on_window"]["roc_auc"] == pytest.approx(
        v3.record.metrics["roc_auc"])

    status = {m.version: m.status for m in list_models(engine)}
    assert status == {1: CHALLENGER, 2: RETIRED, 3: CHAMPION, 4: CHALLENGER}
    assert "retired" in (next(m for m in list_models(engine) if m.version == 2).note or "")
    assert champion(engine).version == 3  # type: ignore[union-attr]
    record = list_models(engine)[-1]
    assert record.train_end + timedelta(days=HORIZON) < record.valid_start
    assert {"roc_auc", "pr_auc", "brier", "lift_top_decile", "calibration",
            "gains"} <= set(record.metrics)


def test_refit_on_every_labelled_snapshot_with_baselines_beside(engine: Engine, world: Path,
                                                                 pulse_home: Path) -> None:
    _landed(engine, world)
    result = _train(engine)
    m, data = result.metrics, result.data
    assert data is not None
    # The artifact was refitted on every labelled snapshot up to the training date ...
    header = read_artifact_header(result.record.artifact_path)
    meta = header["metadata"]
    assert meta["fit_rows"] == len(data.frame) == m["refit"]["rows"]
    assert meta["fit_rows"] > m["train_rows"] + m["n"]  # more than training + validation
    assert meta["fit_snapshots"] == len(data.windows.dates)
    assert meta["fit_span"] == [data.windows.dates[0].isoformat(),
                                data.windows.valid_end.isoformat()]
    assert meta["fit_positives"] == int(data.frame["churned"].sum())
    # ... while the figures are those of the same configuration on the validation window.
    assert m["model"] == meta["model"] and m["selection"]["chosen"] == m["model"]
    # every candidate, and the chosen one pooled with the scorecard, on the same folds
    ranked = {c.name for c in CANDIDATES}
    plain = m["model"].removesuffix(POOLED)
    assert set(m["selection"]["mean_roc_auc"]) == ranked | {f"{plain}{POOLED}"}
    means = m["selection"]["mean_roc_auc"]
    assert (m["model"] == f"{plain}{POOLED}") == (means[f"{plain}{POOLED}"] - means[plain]
                                                  >= AUC_TIE)
    for key in ("logistic", "hgb"):
        b = m["baselines"][key]
        assert 0.0 <= b["roc_auc"] <= 1.0 and b["lift_top_decile"] is not None
        assert b["pr_auc"] is not None
    # Never worse than the better baseline on the validation window.
    best = max(b["roc_auc"] for b in m["baselines"].values())
    assert m["roc_auc"] >= best - 1e-4
    # Churners by band: every validation snapshot is counted once.
    bands = {b["band"]: b for b in m["by_band"]}
    assert {"green", "amber", "red"} <= set(bands)
    assert sum(b["snapshots"] for b in bands.values()) == m["n"]
    assert sum(b["churners"] for b in bands.values()) == m["positives"]


def test_a_baseline_that_ranks_better_becomes_the_model(
        engine: Engine, world: Path, pulse_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate that all but ignores churners ranks at chance: the better baseline is
    registered in its place, and it explains its scores like any model."""
    import pulse.models.registry as registry

    deaf = Config("deaf", {"classifier": "hgb", "class_weight": {0: 1.0, 1: 1e-9}})
    monkeypatch.setattr(registry, "candidates_for", lambda classifier: (deaf,))
    _landed(engine, world)
    result = _train(engine, min_roc_auc=0.5)
    m = result.metrics
    assert m["baseline_replaced"] in ("logistic", "hgb")
    key = m["baseline_replaced"]
    # replaced because it ranked better by more than the chance-level model's standard error
    assert 0 < m["baseline_margin"] < m["baselines"][key]["roc_auc"] - 0.5
    assert m["model"] == BASELINES[key].name
    assert m["roc_auc"] == pytest.approx(m["baselines"][key]["roc_auc"])
    assert "baseline" in (result.record.note or "")
    model = result.record.load()
    assert model.calibration == "none" and model.classifier == BASELINES[key].classifier
    assert read_artifact_header(result.record.artifact_path)["metadata"]["model"] == m["model"]
    assert score_churn(engine, END, basis="occurred") > 0
    scores = _scores(engine, END)
    assert scores["drivers"].map(len).sum() > 0


# --------------------------------------------------------------------------- scoring


def test_score_churn_writes_one_row_per_account_and_is_idempotent(engine: Engine,
                                                                   world: Path) -> None:
    _landed(engine, world)
    assert score_churn(engine, END, basis="occurred") == 0  # no champion: nothing written
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SCORES)).scalar_one() == 0

    v = _train(engine, classifier="logistic").version  # selection is tested above
    earlier = END - timedelta(days=7)
    assert score_churn(engine, earlier, basis="occurred") > 0
    n = score_churn(engine, END, basis="occurred")
    features = load_features(engine, END)
    customers = set(features.loc[~features["cancelled"].astype(bool), "account_id"])
    scores = _scores(engine, END)
    assert n == len(scores) == len(customers) and set(scores["account_id"]) == customers
    assert (scores["model_version"] == v).all()
    p = scores["probability"].to_numpy()
    assert ((p > 0) & (p < 1)).all()

    riskiest = scores.sort_values("probability", ascending=False)
    explained = riskiest["drivers"].map(len) > 0
    above_median = int((p > np.median(p)).sum())
    assert 0 < explained.sum() <= above_median
    assert not explained.iloc[above_median:].any()  # only the riskiest half is explained
    top = riskiest["drivers"].iloc[0]
    assert 1 <= len(top) <= 3
    assert all(re.search(r" (raises|lowers) risk by [\d.]+ points?$", d["text"]) for d in top)
    assert all(d["feature"] in NUMERIC or d["feature"] in ("plan", "segment", "region")
               for d in top)

    before = _scores(engine, earlier)
    assert score_churn(engine, END, basis="occurred") == n
    again = _scores(engine, END)
    pd.testing.assert_series_equal(again["probability"], scores["probability"])
    assert again["drivers"].tolist() == scores["drivers"].tolist()
    pd.testing.assert_frame_equal(_scores(engine, earlier), before)

    # scored in 3 shards (the health DAG), then explained over the whole book: the same rows
    # (a shard replaces only its own accounts: the others keep theirs until their shard runs)
    from pulse.models.registry import explain_churn, score_churn_summary
    from pulse.sql.shards import all_shards

    written = [score_churn_summary(engine, END, basis="occurred", shard=s).scored
               for s in all_shards(3)]
    assert sum(written) == n and min(written) > 0
    assert _scores(engine, END)["drivers"].map(len).sum() == 0  # not explained per shard
    assert explain_churn(engine, END) == above_median  # chosen (some have no driver to tell)
    sharded = _scores(engine, END)
    pd.testing.assert_series_equal(sharded["probability"], scores["probability"])
    assert sharded["drivers"].tolist() == scores["drivers"].tolist()


def _scores(engine: Engine, day: date) -> pd.DataFrame:
    query = (select(SCORES.c.account_id, SCORES.c.model_version, SCORES.c.probability,
                    SCORES.c.drivers).where(SCORES.c.as_of == day)
             .order_by(SCORES.c.account_id))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(),
                            columns=["account_id", "model_version", "probability", "drivers"])


# --------------------------------------------------------------------------- the CLI


def _pulse(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return run_pulse(*args, env=env, cwd=ROOT, timeout=600)


def test_model_cli_train_list_report_and_score(engine: Engine, world: Path,
                                               pulse_home: Path) -> None:
    _landed(engine, world)
    listed = _pulse("model", "list")
    assert listed.returncode == 0 and "no churn model" in listed.stdout
    refused = _pulse("model", "train", "--as-of", END.isoformat(), "--exact-horizon")
    assert refused.returncode == 1 and "90-day horizon" in refused.stderr
    assert "Traceback" not in refused.stderr

    # Without --exact-horizon, too short a history takes the longest horizon that fits.
    trained = _pulse("model", "train", "--as-of", END.isoformat(), "--no-beat-scorecard",
                     "--min-roc-auc", "0", "--classifier", "logistic")
    assert trained.returncode == 0, trained.stderr
    assert "churn model v1: champion" in trained.stdout and "ROC AUC" in trained.stdout
    assert re.search(r"horizon shortened from 90 to \d+ days", trained.stdout)
    # the sentiment model read the history's texts first (the refused run read them all)
    assert re.search(r"support tone, read by the sentiment model first: refreshed \(0 texts",
                     " ".join(trained.stdout.split()))
    # the configuration the folds chose, and beside it the same one pooled with the
    # scorecard, as a CSM-facing admin reads them
    text = " ".join(trained.stdout.split())
    chosen = re.search(r"model: (logistic C=[\d.]+)( \+ scorecard)?, chosen by mean ROC AUC",
                       text)
    assert chosen, text[:600]
    assert f"{chosen.group(1)}{POOLED} 0." in text
    # it calibrates the scorecard on the same snapshots, writes the proposal with its
    # evidence, and applies it only when a calibration was fitted
    assert "scorecard calibration" in trained.stdout
    proposal = pulse_home / "calibration" / "scorecard-proposed.yaml"
    assert f"proposal: {proposal}" in " ".join(trained.stdout.split())
    card = load_scorecard(proposal)
    applied = pulse_home / "scorecard.yaml"
    assert applied.is_file() == (card.calibration is not None)
    if card.calibration is not None:
        assert "Churn rate per band" in trained.stdout and "; applied:" in trained.stdout
        # each band's cut, accounts, churners and rate, before → after
        green = next(line for line in trained.stdout.splitlines() if "│ green" in line)
        assert re.search(r">= 70 → >= [\d.]+ .* [\d,]+ → [\d,]+ .* [\d.]+% → [\d.]+%", green)
        assert re.search(r"Today's [\d,]+ active accounts with the fitted cut points: green "
                         r"[\d,]+, (?:watch [\d,]+, )?amber [\d,]+, red [\d,]+ "
                         r"\(\d+% in red or amber\)", text)
        assert load_scorecard(applied).calibration == card.calibration
    else:
        assert "Not calibrated:" in trained.stdout and "; not applied" in trained.stdout

    listed = _pulse("model", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    models = json.loads(listed.stdout)
    assert [m["status"] for m in models] == ["champion"]
    assert models[0]["metrics"]["roc_auc"] is not None

    report = _pulse("model", "report", "1")
    assert report.returncode == 0, report.stderr
    paths = re.findall(r"(?:calibration|lift|bands) chart: (\S+\.png)", report.stdout)
    assert [Path(p).parent for p in paths] == [pulse_home / "reports"] * 3
    for p in paths:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(p).stat().st_size > 10_000
    assert "Brier" in report.stdout and "Calibration" in report.stdout
    assert "Churners by health band" in report.stdout and "logistic baseline" in report.stdout
    # the baselines in their own order, simplest first, on PostgreSQL too (JSONB reorders)
    assert report.stdout.index("logistic baseline") < report.stdout.index("hgb baseline")
    assert re.search(r"green\W+[\d,]+\W+[\d,]+\W+[\d,]+", report.stdout)
    # the bands are those of the scorecard the model was judged with; the calibration that
    # followed the training applied other cut points, and the report says so
    made_with = models[0]["metrics"]["by_band_scorecard"]
    flat = " ".join(report.stdout.split())
    assert f"the bands of scorecard {made_with})" in flat
    if card.calibration is not None:
        assert f"The scorecard now in use ({load_scorecard(applied).label}) is not the one above" \
            in flat

    missing = _pulse("model", "report", "7")
    assert missing.returncode == 1 and "no churn model version 7" in missing.stderr

    scored = _pulse("churn", "score", "--as-of", END.isoformat(), "--basis", "occurred")
    assert scored.returncode == 0, scored.stderr
    assert re.search(r"scored [\d,]+ accounts as of 2026-06-30 with churn model v1",
                     scored.stdout)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SCORES)).scalar_one() > 250



def test_bench_models_prints_figures() -> None:
    run = _pulse("bench", "models", "--accounts", "150", "--days", "200", "--seed", "3",
                 "--format", "json")
    assert run.returncode == 0, run.stderr
    (fig,) = json.loads(run.stdout)
    assert fig["world"] == "demo seed 3" and fig["accounts"] == 150
    assert fig["error"] is None and fig["valid_rows"] > 0 and fig["train_churned"] > 0
    assert 0.0 <= fig["roc_auc"] <= 1.0 and fig["lift_top_decile"] is not None
    assert 0.0 <= fig["scorecard_roc_auc"] <= 1.0 and fig["status"] in ("champion", "challenger")
    # the same figures as the table prints them (one run: the table is drawn from them)
    from rich.console import Console

    from pulse.devkit.bench.models import ModelFigure, print_model_table

    console = Console(record=True, width=160)
    print_model_table([ModelFigure(**fig)], console, horizon=14, step=7)
    table = console.export_text()
    assert re.search(r"ROC AUC\s+\S*\s*\d\.\d{3}", table)
    assert "held-out" in table and "seed 3" in table
