"""Drivers: what moves each account's churn risk, per account, and the same in words.

A driver is one feature's push on one row's risk: the row's risk minus the risk the same row
would have if that feature alone were typical (the model's training median, or the most common
category). `contributions` gives every feature's effect on every row, `explain` the top
drivers of each row (`explain_frame` the same as one long table), and `drivers_in_words`
turns one row's drivers into sentences a CSM can read.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pulse.core.errors import ModelInputError
from pulse.models.churn import ChurnModel

__all__ = [
    "Driver",
    "contributions",
    "drivers_in_words",
    "explain",
    "explain_frame",
    "format_number",
]


# --------------------------------------------------------------------------------------------
# Drivers in words
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Driver:
    """One feature's push on one row's churn risk.

    Parameters
    ----------
    feature : str
        The input column.
    value : Any
        The row's value (None when missing).
    reference : Any
        The typical value the row is compared with (training median or most common category).
    effect : float
        Risk minus the risk with the typical value, in probability (0.12 = 12 points);
        positive raises risk.
    """

    feature: str
    value: Any
    reference: Any
    effect: float

    @property
    def direction(self) -> str:
        """ "raises" or "lowers" (risk)."""
        return "raises" if self.effect > 0 else "lowers"

    @property
    def points(self) -> float:
        """Size of the effect in probability points (always positive)."""
        return abs(self.effect) * 100.0

    def in_words(self, label: str | Callable[[Driver], str] | None = None) -> str:
        """This driver as a sentence; see `drivers_in_words`."""
        if callable(label):
            subject = label(self)
        elif label is not None and "{" in label:
            subject = label.format(**_format_fields(self))
        else:
            subject = f"{label or self.feature} {_describe_value(self)}"
        return f"{subject} {self.direction} risk by {_points(self.points)}"


Label = str | Callable[[Driver], str]


def drivers_in_words(drivers: Sequence[Driver], labels: Mapping[str, Label] | None = None
                     ) -> list[str]:
    """Sentences a CSM can read, one per driver of one row.

    Parameters
    ----------
    drivers : sequence of Driver
        One row's drivers, as returned by `explain`.
    labels : mapping of str to str or callable, default=None
        Human wording per feature. A plain label names the feature ("tenure (months)");
        a label with braces is a template filled with ``value``, ``reference``, ``abs``
        (the absolute value) and ``updown`` ("up", "down" or "flat"), e.g.
        ``"usage events {updown} {abs:.0%} over 28 days"``; a callable receives the Driver
        and returns the phrase.

    Returns
    -------
    sentences : list of str
        E.g. ``"usage events down 48% over 28 days raises risk by 12 points"``.
    """
    labels = labels or {}
    return [d.in_words(labels.get(d.feature)) for d in drivers]


def _format_fields(d: Driver) -> dict[str, Any]:
    value = d.value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "value": value,
        "reference": d.reference,
        "abs": abs(value) if numeric else value,
        "updown": ("up" if value > 0 else "down" if value < 0 else "flat") if numeric else "",
    }


def _describe_value(d: Driver) -> str:
    if d.value is None:
        return "is missing"
    if isinstance(d.value, int | float) and not isinstance(d.value, bool):
        ref = d.reference
        if isinstance(ref, int | float) and not (isinstance(ref, float) and math.isnan(ref)):
            return f"is {format_number(d.value)} (typical {format_number(ref)})"
        return f"is {format_number(d.value)}"
    return f"is {d.value}"


def format_number(x: float) -> str:
    """A number for a sentence: 1,234 / 1,235 / 12.3 / 0.012."""
    if float(x).is_integer():
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2g}"


def _points(points: float) -> str:
    if points >= 0.95:
        n = round(points)
        return f"{n} point" if n == 1 else f"{n} points"
    return f"{points:.1f} points"


# --------------------------------------------------------------------------------------------
# What if this feature were typical
# --------------------------------------------------------------------------------------------


def contributions(model: ChurnModel, X: Any) -> pd.DataFrame:
    """Signed effect of every feature on every row's risk, in probability (0..1).

    The effect of feature *f* on a row is the row's risk minus the risk the same row would
    have if *f* alone took its typical value (`reference_`). Positive effects raise risk.
    Effects are "what if" differences, so they need not add up to the total risk. One
    batched prediction per feature, over only the rows whose value is not already typical.

    Parameters
    ----------
    model : ChurnModel
        The fitted model.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Rows to explain.

    Returns
    -------
    effects : DataFrame of shape (n_samples, n_features)
        Indexed like `X` (when a DataFrame), one column per feature.
    """
    data = model._prepare(X)
    return pd.DataFrame(_effects(model, data), index=data.index, columns=model.features_)


def _effects(model: ChurnModel, data: pd.DataFrame) -> np.ndarray:
    prep = model.pipeline_.named_steps["prep"]
    calibrated = model.pipeline_.named_steps["model"]
    z = prep.transform(data)
    typical_row = prep.transform(
        model._coerce(pd.DataFrame([model.reference_], columns=model.features_)))[0]
    card = getattr(model, "card_", None)  # the scorecard pooled at the output, if any
    card_logit = card.logit(data) if card is not None else None
    card_features = set(card.features) if card is not None else set()
    risk = model.pooled(calibrated.predict_proba(z)[:, 1], card_logit)
    effects = np.zeros((len(data), len(model.features_)))
    for j, name in enumerate(model.features_):
        cols = prep.output_indices_[f"f{j}"]
        if cols.stop == cols.start:
            continue
        typical = typical_row[cols]
        rows = np.flatnonzero((z[:, cols] != typical).any(axis=1))
        if len(rows) == 0:
            continue
        what_if = z[rows]
        what_if[:, cols] = typical
        logit_ = None if card_logit is None else card_logit[rows]
        if card is not None and name in card_features:
            typical_data = data.iloc[rows].copy()
            value = model.reference_.get(name)
            typical_data[name] = np.nan if value is None else value
            logit_ = card.logit(typical_data)
        effects[rows, j] = risk[rows] - model.pooled(calibrated.predict_proba(what_if)[:, 1],
                                                    logit_)
    return effects


def explain(model: ChurnModel, X: Any, top: int = 3, *, min_effect: float = 0.005
            ) -> list[list[Driver]]:
    """The `top` features that move each row's risk the most, largest first.

    Parameters
    ----------
    model : ChurnModel
        The fitted model.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Rows to explain.
    top : int, default=3
        Most drivers per row.
    min_effect : float, default=0.005
        Smallest effect listed (0.005 = half a probability point); smaller pushes are
        noise to a reader, so a row may have fewer than `top` drivers, or none.

    Returns
    -------
    drivers : list of list of Driver
        One list per row, in the order of `X`.
    """
    effects, order, values = _ranked(model, model._prepare(X), top)
    out: list[list[Driver]] = []
    refs = [model.reference_[f] for f in model.features_]
    for i in range(len(order)):
        row: list[Driver] = []
        for j in order[i]:
            size = float(effects[i, j])
            if size == 0.0 or abs(size) < min_effect:
                break
            row.append(Driver(model.features_[j], _scalar(values[j][i]), refs[j], size))
        out.append(row)
    return out


def explain_frame(model: ChurnModel, X: Any, top: int = 3, *, min_effect: float = 0.005
                  ) -> pd.DataFrame:
    """`explain` as one long table: a row per (input row, driver).

    Parameters
    ----------
    model : ChurnModel
        The fitted model.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Rows to explain.
    top : int, default=3
        Most drivers per row.
    min_effect : float, default=0.005
        Smallest effect listed, in probability.

    Returns
    -------
    drivers : DataFrame
        Columns ``row`` (the index label of `X`), ``rank`` (1 = largest), ``feature``,
        ``value``, ``reference``, ``effect`` (probability, positive raises risk) and
        ``direction`` ("raises" or "lowers").
    """
    data = model._prepare(X)
    effects, order, values = _ranked(model, data, top)
    n, k = order.shape
    rows = np.repeat(np.arange(n), k)
    cols = order.ravel()
    size = effects[rows, cols]
    keep = (size != 0.0) & (np.abs(size) >= min_effect)
    rows, cols, size = rows[keep], cols[keep], size[keep]
    value_matrix = np.empty((n, len(model.features_)), dtype=object)
    for j, v in enumerate(values):
        value_matrix[:, j] = v
    features = np.asarray(model.features_, dtype=object)
    refs = np.asarray([model.reference_[f] for f in model.features_], dtype=object)
    return pd.DataFrame({
        "row": data.index.to_numpy()[rows],
        "rank": np.tile(np.arange(1, k + 1), n)[keep],
        "feature": features[cols],
        "value": value_matrix[rows, cols],
        "reference": refs[cols],
        "effect": size,
        "direction": np.where(size > 0, "raises", "lowers"),
    })


def _ranked(model: ChurnModel, data: pd.DataFrame, top: int
            ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    if not isinstance(top, int | np.integer) or top < 1:
        raise ModelInputError(f"invalid value for top: expected a positive int (not {top!r})")
    effects = _effects(model, data)
    k = min(int(top), effects.shape[1])
    order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :k]
    values = [data[f].to_numpy() for f in model.features_]
    return effects, order, values


def _scalar(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
