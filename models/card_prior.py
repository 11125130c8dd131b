"""The scorecard's measures as a second opinion inside the churn model.

The scorecard (models/scorecard.yaml) turns each measure into points from 0 to 100, through
fixed bands or a linear range. Points are bounded and run the way a CSM expects, so a whale's
usage counts no more than a small account's full use, and an outlier cannot dominate.
A classifier fitted on the raw features has none of this.

`CardPrior` is fitted on the churn model's own training rows, so nothing it learns comes from
the rows it is judged on:

* each linear measure's range is set to the 10th and 90th percentiles of its feature, as
  `pulse scorecard calibrate` does (models/calibration.py `fit_ranges`): the points then
  spread this customer base, whatever the scale of its usage;
* then an L2-regularised logistic regression of churn on every measure's points. A measure
  with no value on a row counts as neutral (50 points) there.

The churn model pools its classifier with this fit at the output (`ChurnModel.card_prior`, a
logarithmic opinion pool). The packaged default scorecard defines the measures, never a user's
or a calibrated card: the prior must mean the same when the model is trained and when it
scores. Measures whose feature the model does not take are left out. With fewer than two
measures left (a data set that is not Pulse's own, such as IBM Telco), there is no prior.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

__all__ = ["CardPrior", "MIN_MEASURES"]

#: Fewest measures with a value in training for the prior to be fitted at all.
MIN_MEASURES = 2
#: Inverse regularisation strength of the logistic fit on the points (scaled to 0..1).
PRIOR_C = 1.0


class CardPrior:
    """A logistic regression of churn on the default scorecard's points (see the module).

    `fit` leaves `measures_` empty when fewer than `MIN_MEASURES` measures can be used; then
    `usable` is False and the model is not pooled.
    """

    def fit(self, data: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None
            ) -> CardPrior:
        from pulse.models.calibration import fit_ranges
        from pulse.models.scorecard import DEFAULT_SCORECARD, Card, load_scorecard

        card = load_scorecard(DEFAULT_SCORECARD)
        measures = []
        for m in card.standard.measures:
            if m.feature in data.columns and data[m.feature].notna().any():
                measures.append(m)
        self.measures_: tuple[Any, ...] = ()
        if len(measures) < MIN_MEASURES:
            return self
        sub = replace(card, standard=Card(card.standard.name, tuple(measures)),
                      onboarding=None, calibration=None)
        self.measures_ = fit_ranges(sub, data, skip=set()).standard.measures
        x = self._points(data)
        target = np.asarray(y).astype(int)
        self.logistic_ = LogisticRegression(C=PRIOR_C, max_iter=1000).fit(
            x, target, sample_weight=sample_weight)
        return self

    @property
    def usable(self) -> bool:
        return bool(getattr(self, "measures_", ()))

    @property
    def features(self) -> list[str]:
        """The features the prior reads, in measure order (a feature may repeat)."""
        return [m.feature for m in self.measures_]

    def _points(self, data: pd.DataFrame) -> np.ndarray:
        cols = [m.points(data[m.feature].to_numpy(dtype="float64")) / 100.0
                for m in self.measures_]
        return np.nan_to_num(np.column_stack(cols), nan=0.5)

    def logit(self, data: pd.DataFrame) -> np.ndarray:
        """The prior's log-odds of churn for every row of `data` (the model's features)."""
        return np.asarray(self.logistic_.decision_function(self._points(data)), dtype="float64")
