"""One "score a date" step (models/scoring.py) for `pulse score`, the history backfill and the
benches: features, health, the champion's churn scores, then the flags, which weigh them, as
the health DAG runs them. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, insert

from pulse.models.churn import ChurnModel
from pulse.models.churn_artifact import save_model
from pulse.models.health import score_date
from pulse.models.history import score_history
from pulse.models.registry import REGISTRY
from pulse.models.scoring import score_day
from pulse.models.training import account_attributes, model_frame
from pulse.sql.features import load_features
from pulse.sql.flags import flag_dates, load_churn_scores, load_flags
from tests.test_basis import _pulse
from tests.test_silent_flag import D, land

FADING = "acc-w00"  # its usage falls by 85% and its errors climb over the last 2 weeks


def register_champion(engine: Engine, folder: Path) -> None:
    """A champion churn model, fitted in a blink on the date's features: the accounts whose
    last week fell against their month rank riskiest (a stand-in for `pulse model train`)."""
    score_date(engine, D)
    frame = model_frame(load_features(engine, D), account_attributes(engine))
    y = (frame["events_7d_vs_28d"] < 0.6).astype(int).to_numpy()
    assert 0 < y.sum() < len(y)
    model = ChurnModel(numeric=["events_7d_vs_28d"], categorical=[], classifier="logistic",
                       calibration="none").fit(frame, y)
    path = save_model(model, folder / "churn-v1.joblib")
    now = datetime(2026, 7, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(REGISTRY).values(
            kind="churn", trained_at=now, train_start=D - timedelta(days=90),
            train_end=D - timedelta(days=30), valid_start=D - timedelta(days=29), valid_end=D,
            horizon_days=30, features=["events_7d_vs_28d"], metrics={}, artifact_path=str(path),
            status="champion", promoted_at=now, note="test"))


def silent_details(engine: Engine) -> pd.Series:
    flags = load_flags(engine, D)
    return flags[flags["flag"] == "silent_dissatisfied"].set_index("account_id")["details"]


def test_without_a_champion_the_step_says_so_and_flags_without_modelled_risk(
        engine: Engine, tmp_path: Path) -> None:
    land(engine, tmp_path / "world", cycle=False, scale=1.0)
    done = score_day(engine, D)
    assert done.churn is None and "no champion churn model" in done.churn_message
    assert done.health.accounts == 40 and done.flags == {"silent_dissatisfied": 1}
    assert load_churn_scores(engine, D).empty
    assert "modelled_risk" not in silent_details(engine)[FADING]["signals"]


def test_pulse_score_scores_churn_before_the_flags(engine: Engine, tmp_path: Path) -> None:
    land(engine, tmp_path / "world", cycle=False, scale=1.0)
    register_champion(engine, tmp_path)
    done = _pulse("score", "--as-of", D.isoformat(), "--no-text", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["accounts"] == 40
    assert doc["churn"]["model_version"] == 1 and doc["churn"]["scored"] == 40
    assert doc["flags"]["silent_dissatisfied"] >= 1
    assert list(doc["seconds"]) == ["features", "health", "churn", "flags"]
    # the flags read the churn scores this very run stored
    churn = load_churn_scores(engine, D).set_index("account_id")["probability"]
    bare = load_churn_scores(engine, D, drivers=False)  # what the flags read
    assert "drivers" not in bare and bare.set_index("account_id")["probability"].equals(churn)
    details = silent_details(engine)[FADING]
    assert details["churn_probability"] == pytest.approx(churn[FADING], abs=1e-4)
    assert details["signals"]["modelled_risk"] > 0
    text = _pulse("score", "--as-of", D.isoformat(), "--no-text")
    assert "Churn risk: scored 40 accounts" in " ".join(text.stdout.split()), text.stdout


def test_the_history_backfill_runs_the_same_step(engine: Engine, tmp_path: Path) -> None:
    land(engine, tmp_path / "world", cycle=False, scale=1.0)
    register_champion(engine, tmp_path)
    run = score_history(engine, end=D + timedelta(days=1), days=3, flag_days=1, rescore=True)
    assert run.scored == [D - timedelta(days=2), D - timedelta(days=1), D]
    assert flag_dates(engine) == [D] and run.flagged == 1
    assert load_churn_scores(engine, D - timedelta(days=1)).empty  # health only before
    churn = load_churn_scores(engine, D).set_index("account_id")["probability"]
    assert len(churn) == 40
    details = silent_details(engine)[FADING]
    assert details["churn_probability"] == pytest.approx(churn[FADING], abs=1e-4)
