"""Figures of churn probabilities against what happened: ranking, calibration and lift.

`evaluate` gives ROC AUC, PR AUC, Brier score and lift in the top decile; `calibration_table`
the predicted against observed churn rate in bins of equal size (for a calibration chart).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from pulse.core.errors import ModelInputError

__all__ = ["calibration_table", "evaluate"]


def roc_auc(y_true: Any, score: Any) -> float | None:
    """ROC AUC of `score` (higher = more likely positive) over the rows where it is known;
    None when those rows hold one class only."""
    from sklearn.metrics import roc_auc_score

    y, x = np.asarray(y_true, dtype=int), np.asarray(score, dtype=float)
    ok = ~np.isnan(x)
    y, x = y[ok], x[ok]
    if y.size == 0 or y.min() == y.max():
        return None
    return float(roc_auc_score(y, x))


def _binary_truth(y_true: Any, p: Any, pos_label: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    prob = np.asarray(p, dtype=float)
    if y.ndim != 1 or prob.ndim != 1 or len(y) != len(prob):
        raise ModelInputError(
            f"y_true and p must be 1-D and of equal length (got shapes {y.shape} and "
            f"{prob.shape})")
    if len(y) == 0:
        raise ModelInputError("cannot evaluate on zero rows")
    if not np.isfinite(prob).all() or (prob < 0).any() or (prob > 1).any():
        raise ModelInputError("p must hold probabilities between 0 and 1, with no missing values")
    if pos_label is None:
        if y.dtype == bool:
            pos_label = True
        elif np.issubdtype(y.dtype, np.number) and set(np.unique(y)) <= {0, 1}:
            pos_label = 1
        else:
            raise ModelInputError(
                f"cannot tell the churn label among {list(np.unique(y))[:5]}: pass pos_label")
    return (y == pos_label).astype(int), prob


def evaluate(y_true: Any, p: Any, *, pos_label: Any = None) -> dict[str, float | int | None]:
    """Ranking and calibration figures of churn probabilities against what happened.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Outcomes: 0/1, booleans, or any labels with `pos_label` naming churn.
    p : array-like of shape (n_samples,)
        Predicted churn probabilities.
    pos_label : Any, default=None
        The churn label; inferred for 0/1 and boolean outcomes.

    Returns
    -------
    metrics : dict
        ``n``, ``positives``, ``base_rate`` (observed churn rate), ``mean_predicted``,
        ``roc_auc``, ``pr_auc`` (average precision), ``brier`` (mean squared error of the
        probabilities) and ``lift_top_decile`` (churn rate among the 10% highest risks over
        the base rate). ``roc_auc`` and ``pr_auc`` are None when only one class is present;
        ``lift_top_decile`` is None when nobody churned.
    """
    y, prob = _binary_truth(y_true, p, pos_label)
    n = len(y)
    positives = int(y.sum())
    base_rate = positives / n
    both = 0 < positives < n
    k = max(1, math.ceil(n / 10))
    top = np.argsort(-prob, kind="stable")[:k]
    return {
        "n": n,
        "positives": positives,
        "base_rate": base_rate,
        "mean_predicted": float(prob.mean()),
        "roc_auc": float(roc_auc_score(y, prob)) if both else None,
        "pr_auc": float(average_precision_score(y, prob)) if both else None,
        "brier": float(np.mean((prob - y) ** 2)),
        "lift_top_decile": float(y[top].mean() / base_rate) if positives else None,
    }


def calibration_table(y_true: Any, p: Any, *, n_bins: int = 10,
                      pos_label: Any = None) -> pd.DataFrame:
    """Predicted against observed churn rate in bins of equal size (for a calibration chart).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Outcomes, as for `evaluate`.
    p : array-like of shape (n_samples,)
        Predicted churn probabilities.
    n_bins : int, default=10
        Number of quantile bins (fewer when probabilities tie).
    pos_label : Any, default=None
        The churn label; inferred for 0/1 and boolean outcomes.

    Returns
    -------
    table : DataFrame
        One row per bin, lowest risk first: ``bin``, ``n``, ``mean_predicted``, ``observed``.
    """
    y, prob = _binary_truth(y_true, p, pos_label)
    order = np.argsort(prob, kind="stable")
    bins = np.empty(len(prob), dtype=int)
    bins[order] = np.arange(len(prob)) * n_bins // len(prob)
    frame = pd.DataFrame({"bin": bins, "p": prob, "y": y})
    table = frame.groupby("bin").agg(n=("y", "size"), mean_predicted=("p", "mean"),
                                     observed=("y", "mean"))
    return table.reset_index()
