"""Choosing the churn model's configuration on time folds, and the baselines beside it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pulse.core.errors import ModelInputError
from pulse.models.selection import (
    BASELINES,
    CANDIDATES,
    _mean_auc_se,
    auc_se,
    baseline_figures,
    baseline_to_replace,
    best_baseline,
    candidates_for,
    select_config,
)


def _linear_world(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn logistic in one heavy-tailed count; the rest is noise, one column all missing."""
    rng = np.random.default_rng(seed)
    events = rng.lognormal(3.0, 1.0, n)
    noise = rng.normal(size=n)
    logit = -2.5 - 1.2 * (np.log1p(events) - 3.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"events": events, "noise": noise, "empty": np.nan,
                          "plan": rng.choice(["a", "b"], n)})
    return frame, y


def test_auc_standard_error() -> None:
    # Hanley and McNeil (1982): AUC 0.8 with 50 churners and 50 retained.
    assert auc_se(0.8, 50, 50) == pytest.approx(0.0445, abs=5e-4)
    assert auc_se(0.8, 500, 500) < auc_se(0.8, 50, 50) / 3
    assert np.isnan(auc_se(0.8, 0, 10))
    # Counted in accounts: four snapshots of the same 10 churners are not 40 churners.
    y = np.array([1, 0] * 40)
    groups = np.array([f"a{i % 10}" if i % 2 == 0 else f"b{i % 20}" for i in range(80)])
    folds = [(np.arange(0), np.arange(80))]
    assert _mean_auc_se([0.8], y, folds, groups) > _mean_auc_se([0.8], y, folds) * 1.5


def test_selection_takes_the_first_within_the_noise_of_the_best() -> None:
    frame, y = _linear_world()
    n = len(y)
    folds = [(np.arange(0, n // 2), np.arange(n // 2, 3 * n // 4)),
             (np.arange(0, 3 * n // 4), np.arange(3 * n // 4, n))]
    sel = select_config(frame, y, folds, numeric=["events", "noise", "empty"],
                        categorical=["plan"])
    means = {k: sel.mean(k) for k in sel.scores}
    assert set(means) == {c.name for c in CANDIDATES} and sel.folds == 2
    best = max(v for v in means.values() if v is not None)
    assert best > 0.7
    assert sel.margin > 0.005  # a few hundred churners leave a visible margin
    chosen = means[sel.chosen.name]
    assert chosen is not None and best - chosen < sel.margin
    # Nothing preferred to the chosen one was within the margin.
    for c in CANDIDATES[:CANDIDATES.index(sel.chosen)]:
        assert best - means[c.name] >= sel.margin  # type: ignore[operator]
    assert sel.to_dict()["chosen"] == sel.chosen.name


def test_baselines_are_measured_and_ranked() -> None:
    frame, y = _linear_world(seed=1)
    train, valid = frame.iloc[:2000], frame.iloc[2000:]
    figures, models = baseline_figures(train, y[:2000], valid, y[2000:],
                                       numeric=["events", "noise", "empty"],
                                       categorical=["plan"])
    assert set(figures) == set(BASELINES) == set(models)
    for f in figures.values():
        assert 0.5 < f["roc_auc"] <= 1.0 and f["lift_top_decile"] > 1.0
        assert 0.0 < f["pr_auc"] < 1.0
    key = best_baseline(figures)
    assert key is not None and figures[key]["roc_auc"] == max(
        f["roc_auc"] for f in figures.values())
    # The all-missing column is left out of every fit, and scoring still accepts it.
    assert all(m.unused_ == ["empty"] for m in models.values())
    assert best_baseline({"logistic": {"error": "x"}, "hgb": {"roc_auc": 0.6}}) == "hgb"
    assert [c.classifier for c in candidates_for("logistic")] == ["logistic"] * 3
    # the blend is preferred, every candidate weighs each account once
    assert [c.name for c in candidates_for("blend")] == ["blend"] == [CANDIDATES[0].name]
    assert all(c.params.get("weight_groups") for c in CANDIDATES)
    with pytest.raises(ModelInputError, match="expected 'auto' or one of"):
        candidates_for("forest")


def test_a_baseline_replaces_the_chosen_model_only_beyond_its_standard_error() -> None:
    figures = {"logistic": {"roc_auc": 0.78}, "hgb": {"roc_auc": 0.80}}
    # better by 0.05 with a standard error of 0.04: the hgb baseline takes its place
    assert baseline_to_replace(figures, 0.75, 0.04) == "hgb"
    # better by 0.05 within a standard error of 0.06: a tie, the chosen model stays
    assert baseline_to_replace(figures, 0.75, 0.06) is None
    # without a margin, any lead over the tie counts; none when the model ranks better
    assert baseline_to_replace(figures, 0.79, 0.0) == "hgb"
    assert baseline_to_replace(figures, 0.81, 0.0) is None
    assert baseline_to_replace(figures, None, 0.0) is None
    assert baseline_to_replace({"logistic": {"error": "x"}}, 0.5, 0.0) is None
