"""The churn model pooled with the scorecard's health: the prior, its input, and who gets it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from pulse.core.errors import ModelInputError
from pulse.models.churn import ChurnModel, _Pooled
from pulse.models.drivers import explain
from pulse.models.health import health_of_rows
from pulse.models.scorecard import DEFAULT_SCORECARD, load_scorecard
from pulse.models.selection import BASELINES, CANDIDATES, PRIOR
from pulse.models.training import DERIVED, NOT_POINT_IN_TIME, NUMERIC, add_derived
from pulse.sql.features import FEATURES


def _world(n: int = 1200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn follows a health-like prior; one weak count and noise beside it."""
    rng = np.random.default_rng(seed)
    health = rng.uniform(20, 100, n)
    events = rng.lognormal(3.0, 1.0, n)
    z = -1.0 - 0.06 * (health - 60) - 0.3 * (np.log1p(events) - 3.0)
    y = (rng.random(n) < expit(z)).astype(int)
    return pd.DataFrame({"prior_score": health, "events": events,
                         "noise": rng.normal(size=n)}), y


def test_pooled_risk_is_the_log_odds_mean_of_model_and_prior() -> None:
    X, y = _world()
    model = ChurnModel(numeric=["prior_score", "events", "noise"], categorical=[],
                       classifier="logistic", prior="prior_score", prior_weight=0.5,
                       cv=3, random_state=0).fit(X, y)
    pooled = model.pipeline_.named_steps["model"]
    assert isinstance(pooled, _Pooled)
    z = model.pipeline_.named_steps["prep"].transform(model._prepare(X))
    inner = pooled.estimator_.predict_proba(z)[:, 1]
    prior = pooled.prior_.predict_proba(z[:, [model.prior_column_]])[:, 1]
    expected = expit(0.5 * logit(inner) + 0.5 * logit(prior))
    assert model.predict_risk(X) == pytest.approx(expected, abs=1e-9)
    # the prior's side falls as the score rises: a better score never raises the risk
    assert pooled.prior_.coef_[0, 0] < 0
    # and the pooled probabilities stay about the observed rate
    assert abs(model.predict_risk(X).mean() - y.mean()) < 0.05


def test_the_prior_is_a_driver_in_words() -> None:
    X, y = _world()
    model = ChurnModel(numeric=["prior_score", "events", "noise"], categorical=[],
                       classifier="hgb", prior="prior_score", cv=3, random_state=0).fit(X, y)
    worst = int(np.argmin(X["prior_score"].to_numpy()))
    drivers = explain(model, X.iloc[[worst]], top=3)[0]
    assert drivers and drivers[0].feature == "prior_score"
    assert drivers[0].effect > 0


def test_a_prior_must_be_a_numeric_input_and_its_weight_a_share() -> None:
    X, y = _world(300)
    with pytest.raises(ModelInputError, match="prior 'missing' must be one of the numeric"):
        ChurnModel(numeric=["events"], categorical=[], prior="missing").fit(X, y)
    with pytest.raises(ModelInputError, match="prior_weight"):
        ChurnModel(numeric=["prior_score", "events"], categorical=[], prior="prior_score",
                   prior_weight=1.0).fit(X, y)


def test_candidates_pool_with_the_scorecard_and_baselines_read_raw_inputs() -> None:
    assert PRIOR in DERIVED and PRIOR in NUMERIC
    numeric = ["events_28d", PRIOR]
    for config in CANDIDATES:
        model = config.build(numeric, ["plan"])
        assert model.prior == PRIOR and PRIOR in model.numeric
    for config in BASELINES.values():
        model = config.build(numeric, ["plan"])
        assert model.prior is None and PRIOR not in model.numeric
    # inputs without the scorecard's health (the Telco set): modelled on their own
    assert CANDIDATES[0].build(["tenure"], []).prior is None


def test_scorecard_health_reads_the_default_card_without_the_latest_state_measures() -> None:
    rng = np.random.default_rng(3)
    n = 40
    frame = pd.DataFrame({f: rng.uniform(0, 50, n) for f in FEATURES if f != "cancelled"})
    frame["account_id"] = [f"a{i}" for i in range(n)]
    frame["account_age_days"] = 400.0
    frame["cancelled"] = False
    got = add_derived(frame)[PRIOR].to_numpy()
    blind = frame.copy()
    for name in NOT_POINT_IN_TIME:
        if name in blind:
            blind[name] = np.nan
    assert got == pytest.approx(health_of_rows(blind, load_scorecard(DEFAULT_SCORECARD)))
    # seats are kept in their latest state: they never move the input
    moved = frame.copy()
    moved["seat_utilisation_28d"] = 0.0
    assert add_derived(moved)[PRIOR].to_numpy() == pytest.approx(got)
    assert np.isfinite(got).all() and (got >= 0).all() and (got <= 100).all()
