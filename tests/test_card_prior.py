"""The scorecard's points pooled into the churn model (models/card_prior.py, `card_prior`):
what the prior is fitted on, the pool's arithmetic, the drivers' what-if through both parts,
persistence, and the prior's absence where the scorecard's measures are not among the inputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from pulse.core.errors import ModelInputError
from pulse.models.card_prior import CardPrior
from pulse.models.churn import ChurnModel
from pulse.models.churn_artifact import load_model, save_model
from pulse.models.drivers import contributions
from pulse.models.scorecard import DEFAULT_SCORECARD, load_scorecard

NUMERIC = ["usage_trend_28d_pct", "active_days_28d", "error_rate_28d", "tickets_30d", "seats"]


def _world(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Accounts whose churn follows falling usage and few active days; usage runs on a
    heavy-tailed scale, some error rates are missing. Returns rows, labels and account ids
    (three snapshots per account)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "usage_trend_28d_pct": rng.standard_t(3, n) * 25.0,
        "active_days_28d": rng.integers(0, 29, n).astype(float),
        "error_rate_28d": rng.random(n) * 0.1,
        "tickets_30d": rng.poisson(1.0, n).astype(float),
        "seats": rng.lognormal(2.0, 1.0, n),
        "plan": rng.choice(["basic", "pro"], n),
    })
    frame.loc[rng.random(n) < 0.2, "error_rate_28d"] = np.nan
    z = (-2.0 - 0.04 * np.clip(frame["usage_trend_28d_pct"], -60, 60)
         - 0.08 * frame["active_days_28d"] + 0.3 * frame["tickets_30d"])
    y = (rng.random(n) < expit(z)).astype(int)
    return frame, y, np.arange(n) % (n // 3)


def _model(card_prior: float, classifier: str = "logistic") -> ChurnModel:
    return ChurnModel(numeric=NUMERIC, categorical=["plan"], classifier=classifier,
                      log_transform=True, weight_groups=True, card_prior=card_prior,
                      random_state=0)


def test_the_prior_reads_the_default_cards_measures_with_ranges_fitted_on_the_training_rows(
) -> None:
    frame, y, _ids = _world()
    prior = CardPrior().fit(frame[NUMERIC], y)
    assert prior.usable
    card = load_scorecard(DEFAULT_SCORECARD).standard
    # only the card's measures whose feature is an input, in the card's order
    expected = [m.feature for m in card.measures if m.feature in NUMERIC]
    assert prior.features == expected
    assert "seats" not in prior.features  # an input the card has no measure for
    usage = next(m for m in prior.card_.measures if m.feature == "usage_trend_28d_pct")
    lo, hi = np.percentile(frame["usage_trend_28d_pct"], [10, 90])
    assert usage.low == pytest.approx(lo, rel=0.01) and usage.high == pytest.approx(hi, rel=0.01)
    # the prior alone ranks the outcome it was fitted on
    assert roc_auc_score(y, prior.logit(frame)) > 0.7


def test_the_pooled_risk_is_the_weighted_mean_of_both_log_odds() -> None:
    frame, y, ids = _world()
    pooled = _model(0.5).fit(frame, y, groups=ids)
    assert pooled.card_ is not None
    data = pooled._prepare(frame)
    p_classifier = pooled.pipeline_.predict_proba(data)[:, 1]
    expected = expit(0.5 * logit(p_classifier) + 0.5 * pooled.card_.logit(data))
    np.testing.assert_allclose(pooled.predict_risk(frame), expected, rtol=1e-9)
    # weight 0 leaves the classifier alone, and fits no prior
    plain = _model(0.0).fit(frame, y, groups=ids)
    assert plain.card_ is None
    np.testing.assert_allclose(plain.predict_risk(frame), p_classifier, rtol=1e-9)
    # the pool stays a probability near the observed rate
    assert abs(pooled.predict_risk(frame).mean() - y.mean()) < 0.03


def test_drivers_move_both_parts_of_the_pool() -> None:
    """The fast what-if of `contributions` equals its definition through `predict_risk`: the
    row's risk minus its risk with one feature typical, the prior recomputed too."""
    frame, y, ids = _world(1500)
    model = _model(0.5, classifier="blend").fit(frame, y, groups=ids)
    rows = frame.head(25)
    fast = contributions(model, rows)
    risk = model.predict_risk(rows)
    for name in ("usage_trend_28d_pct", "error_rate_28d", "seats", "plan"):
        typical = rows.copy()
        value = model.reference_[name]
        typical[name] = np.nan if value is None else value
        slow = risk - model.predict_risk(typical)
        np.testing.assert_allclose(fast[name].to_numpy(), slow, atol=1e-9, err_msg=name)
    assert (fast["usage_trend_28d_pct"].abs() > 0.005).any()


def test_a_pooled_model_round_trips_through_its_artifact(tmp_path: Path) -> None:
    frame, y, ids = _world(1500)
    model = _model(0.5).fit(frame, y, groups=ids)
    path = save_model(model, tmp_path / "model.joblib")
    again = load_model(path)
    np.testing.assert_allclose(again.predict_risk(frame), model.predict_risk(frame))


def test_no_prior_without_two_of_the_cards_measures() -> None:
    """A data set that is not Pulse's own (IBM Telco, say) is modelled on its own."""
    frame, y, ids = _world(1500)
    other = frame.rename(columns={"usage_trend_28d_pct": "trend", "active_days_28d": "days",
                                  "error_rate_28d": "errors"})
    numeric = ["trend", "days", "errors", "tickets_30d", "seats"]
    model = ChurnModel(numeric=numeric, categorical=["plan"], classifier="logistic",
                       card_prior=0.5, random_state=0).fit(other, y, groups=ids)
    assert model.card_ is None  # one measure (tickets_30d) is not enough
    plain = ChurnModel(numeric=numeric, categorical=["plan"], classifier="logistic",
                       random_state=0).fit(other, y, groups=ids)
    np.testing.assert_allclose(model.predict_risk(other), plain.predict_risk(other))


@pytest.mark.parametrize("share", [-0.1, 1.0, 2])
def test_the_share_must_leave_room_for_the_classifier(share: float) -> None:
    frame, y, ids = _world(600)
    with pytest.raises(ModelInputError, match="card_prior"):
        _model(share).fit(frame, y, groups=ids)


def _folds(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.arange(0, n // 2), np.arange(n // 2, 3 * n // 4)),
            (np.arange(0, 3 * n // 4), np.arange(3 * n // 4, n))]


def test_the_folds_pool_the_scorecard_where_it_ranks_better_and_not_elsewhere() -> None:
    from pulse.models.selection import AUC_TIE, POOLED, Config, config_named, select_config

    rng = np.random.default_rng(3)
    n = 4000
    # Usage trends with Cauchy tails: churn follows the trend within the usual range, and a
    # linear model on the raw values is pulled about by the outliers; the scorecard's points
    # are bounded and read the same signal.
    trend = rng.standard_cauchy(n) * 20.0
    seats = rng.normal(size=n)
    frame = pd.DataFrame({"usage_trend_28d_pct": trend,
                          "active_days_28d": rng.integers(0, 29, n).astype(float),
                          "tickets_30d": rng.poisson(1.0, n).astype(float), "seats": seats})
    numeric = list(frame.columns)
    raw = Config("raw logistic", {"classifier": "logistic", "C": 1.0})
    stiff = Config("raw logistic C=0.01", {"classifier": "logistic", "C": 0.01})
    y = (rng.random(n) < expit(-1.5 - 0.06 * np.clip(trend, -40.0, 40.0))).astype(int)
    sel = select_config(frame, y, _folds(n), numeric=numeric, categorical=[],
                        candidates=(raw, stiff))
    assert sel.chosen.name == f"raw logistic{POOLED}", sel.to_dict()
    # measured on the same folds, and clearly better
    assert sel.mean(sel.chosen.name) > sel.mean("raw logistic") + 0.02  # type: ignore[operator]
    assert sel.chosen.params["card_prior"] == 0.5
    assert sel.chosen.build(numeric, []).card_prior == 0.5

    # Churn follows an input the scorecard has no measure for: the prior fitted on its
    # measures is close to flat, and the pool moves the folds' ranking by next to nothing;
    # it is kept only for a gain.
    y = (rng.random(n) < expit(-2.0 + 2.0 * seats)).astype(int)
    sel = select_config(frame, y, _folds(n), numeric=numeric, categorical=[],
                        candidates=(config_named("logistic C=0.1"), raw))
    plain = sel.chosen.name.removesuffix(POOLED)
    gain = sel.mean(f"{plain}{POOLED}") - sel.mean(plain)  # type: ignore[operator]
    assert abs(gain) < 0.005
    assert sel.chosen.name.endswith(POOLED) == (gain >= AUC_TIE)
    assert config_named(f"{plain}{POOLED}").params["card_prior"] == 0.5
