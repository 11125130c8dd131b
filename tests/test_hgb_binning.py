"""Gradient boosting's weighted bin thresholds (models/hgb_binning.py) equal scikit-learn's."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble._hist_gradient_boosting import binning

from pulse.models import hgb_binning


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Columns shaped like the churn features: counts with ties, heavy tails, ratios with
    exact repeats, a few distinct values, missing values."""
    counts = rng.poisson(3, n).astype(float)
    heavy = rng.lognormal(3, 2, n)
    ratio = np.round(rng.uniform(0, 2, n), 2)
    with_nan = rng.normal(size=n)
    with_nan[rng.random(n) < 0.3] = np.nan
    return {
        "counts": counts, "heavy": heavy, "ratio": ratio, "with_nan": with_nan,
        "few": rng.integers(0, 7, n).astype(float),
        "ties_at_quantiles": np.repeat(np.arange(n // 4, dtype=float), 4)[:n],
    }


def _weights(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    per_account = 1.0 / rng.integers(1, 30, n)  # each account once, over its snapshots
    balanced = np.where(rng.random(n) < 0.1, 4.5, 0.55)  # class weights of a 10% class
    zeros = per_account.copy()
    zeros[rng.random(n) < 0.2] = 0.0
    return {"unit": np.ones(n), "per_account": per_account, "balanced": balanced,
            "product": per_account * balanced, "some_zero": zeros,
            "integers": rng.integers(1, 5, n).astype(float)}


@pytest.mark.parametrize("n", [40, 1_000, 9_000])
def test_the_thresholds_equal_scikit_learns_value_for_value(n: int) -> None:
    rng = np.random.default_rng(n)
    columns, weights = _columns(rng, n), _weights(rng, n)
    compared = vectorised = 0
    for cname, col in columns.items():
        for wname, w in weights.items():
            for max_bins in (255, 16):
                ours = hgb_binning.find_binning_thresholds(col.copy(), max_bins, w.copy())
                theirs = hgb_binning._ORIGINAL(col.copy(), max_bins, sample_weight=w.copy())
                np.testing.assert_array_equal(ours, theirs, err_msg=f"{cname} / {wname}")
                compared += 1
                vectorised += len(np.unique(col[(w != 0) & ~np.isnan(col)])) > max_bins
    assert compared == len(columns) * len(weights) * 2
    assert vectorised >= len(weights) * (2 if n < 1_000 else 6)  # not only the midpoints


def test_installed_for_this_release_and_the_trees_are_the_same() -> None:
    """The churn model's import installs it; a forest fitted with it predicts exactly what
    one fitted with scikit-learn's own binning predicts."""
    import pulse.models.churn  # noqa: F401  (installs it)

    assert binning._find_binning_thresholds is hgb_binning.find_binning_thresholds
    rng = np.random.default_rng(7)
    n = 3_000
    X = np.column_stack(list(_columns(rng, n).values()))
    y = (rng.random(n) < 0.15).astype(int)
    w = _weights(rng, n)["product"]

    def fit() -> np.ndarray:
        model = HistGradientBoostingClassifier(max_iter=30, random_state=0,
                                               early_stopping=False)
        return model.fit(X, y, sample_weight=w).predict_proba(X)[:, 1]

    ours = fit()
    binning._find_binning_thresholds = hgb_binning._ORIGINAL
    try:
        theirs = fit()
    finally:
        hgb_binning.install()
    np.testing.assert_array_equal(ours, theirs)
    assert binning._find_binning_thresholds is hgb_binning.find_binning_thresholds


def test_another_release_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hgb_binning.sklearn, "__version__", "2.0.0")
    monkeypatch.setattr(binning, "_find_binning_thresholds", hgb_binning._ORIGINAL)
    assert hgb_binning.install() is False
    assert binning._find_binning_thresholds is hgb_binning._ORIGINAL
