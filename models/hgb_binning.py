"""Gradient boosting's weighted bin thresholds in one pass per feature, not one per bin.

`HistGradientBoostingClassifier` first cuts every numeric feature into up to 255 bins at its
quantiles. With sample weights (the churn model always has some: every account weighs once
however many snapshots it has, and churners weigh for the class balance), scikit-learn 1.9
computes those quantiles by calling its weighted percentile once per threshold: 254 sorts and
array-API round trips per feature. Profiled on the suite's 300-account training, that binning
was 42 of the 61 seconds spent fitting.

`find_binning_thresholds` computes the same thresholds from one cumulative sum per feature
(a vectorised search for all 254 ranks at once) and returns, value for value, what
scikit-learn's `_find_binning_thresholds` returns: tests/test_hgb_binning.py compares the
two on ties, integer columns, skewed weights and missing values. `install` puts it in place
of scikit-learn's for the process; it does so only for the scikit-learn release it was
written against (the private function it replaces may change in another), and the
unweighted case is left to scikit-learn's own code.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble._hist_gradient_boosting import binning as _binning

#: The scikit-learn release whose `_find_binning_thresholds` this reproduces.
WRITTEN_FOR = "1.9."

_ORIGINAL = _binning._find_binning_thresholds


def find_binning_thresholds(col_data: Any, max_bins: int, sample_weight: Any = None) -> Any:
    """scikit-learn's `_find_binning_thresholds`, with the weighted quantiles vectorised."""
    if sample_weight is None:
        return _ORIGINAL(col_data, max_bins, sample_weight=None)
    missing = np.isnan(col_data)
    if missing.any():
        col_data = col_data[~missing]
        sample_weight = sample_weight[~missing]
    nonzero = sample_weight != 0
    col_data = col_data[nonzero]
    sample_weight = sample_weight[nonzero]
    order = np.argsort(col_data)
    col_data = col_data[order]
    sample_weight = sample_weight[order]
    distinct = np.unique(col_data).astype(_binning.X_DTYPE)
    if len(distinct) <= max_bins:  # a single value, or midpoints: scikit-learn's own path
        return _ORIGINAL(col_data, max_bins, sample_weight=sample_weight)
    thresholds = _weighted_averaged_inverted_cdf(col_data, sample_weight, max_bins)
    unique = np.unique(thresholds)
    if unique.shape[0] != thresholds.shape[0]:
        thresholds = unique
    np.clip(thresholds, a_min=None, a_max=_binning.ALMOST_INF, out=thresholds)
    return thresholds


def _weighted_averaged_inverted_cdf(values: Any, weights: Any, max_bins: int) -> Any:
    """The weighted "averaged_inverted_cdf" quantiles at max_bins - 1 even ranks, as
    `sklearn.utils.stats._weighted_percentile(..., average=True)` computes them one by one:
    the value where the cumulative weight reaches the rank, or, when the rank falls exactly
    on a value's cumulative weight, the mean of that value and the next. `values` is sorted
    and every weight is positive (the caller drops zero weights and missing values)."""
    values = np.asarray(values, dtype=np.float64)
    # scikit-learn sorts again (not stably): ties may swap, which moves the running sums
    # within a run of equal values only; the same sort keeps even the last bits equal
    order = np.argsort(values.reshape(-1, 1), axis=0)[:, 0]
    ordered = values[order]
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    percentiles = np.linspace(0, 100, num=max_bins + 1)[1:-1]
    ranks = percentiles / 100 * cdf[-1]
    last = len(values) - 1
    at = np.clip(np.searchsorted(cdf, ranks), 0, last)
    above = (cdf[at] - ranks) > np.finfo(np.float64).eps
    nxt = np.clip(at + 1, 0, last)
    return np.where(above, ordered[at], (ordered[at] + ordered[nxt]) / 2)


def install() -> bool:
    """Use `find_binning_thresholds` for gradient boosting in this process; True when it is
    in place (False on another scikit-learn release, which keeps its own)."""
    if not sklearn.__version__.startswith(WRITTEN_FOR):
        return False
    _binning._find_binning_thresholds = find_binning_thresholds
    return True
