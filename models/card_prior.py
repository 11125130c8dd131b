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
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

__all__ = ["CardPrior", "MIN_MEASURES"]

#: Fewest measures with a value in training for the prior to be fitted at all.
MIN_MEASURES = 2
#: Inverse regularisation strength of the logistic fit on the points (scaled to 0..1).
PRIOR_C = 1.0


@cache
def _default_card() -> Any:
    """The packaged default scorecard, read once per process (every candidate on every time
    fold fits a prior)."""
    from pulse.models.scorecard import DEFAULT_SCORECARD, load_scorecard

    return load_scorecard(DEFAULT_SCORECARD)


class CardPrior:
    """A logistic regression of churn on the default scorecard's points (see the module).

    `card_` is the fitted card (the usable measures, their ranges set on the training rows),
    or None when fewer than `MIN_MEASURES` measures can be used; then `usable` is False and
    the model is not pooled.
    """

    def fit(self, data: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None
            ) -> CardPrior:
        from pulse.models.calibration import fit_ranges
        from pulse.models.scorecard import Card

        card = _default_card()
        measures = tuple(m for m in card.standard.measures
                         if m.feature in data.columns and data[m.feature].notna().any())
        self.card_: Any = None
        if len(measures) < MIN_MEASURES:
            return self
        sub = replace(card, standard=Card(card.standard.name, measures),
                      onboarding=None, calibration=None)
        self.card_ = fit_ranges(sub, data, skip=set()).standard
        x = self._points(data)
        target = np.asarray(y).astype(int)
        self.logistic_ = LogisticRegression(C=PRIOR_C, max_iter=1000).fit(
            x, target, sample_weight=sample_weight)
        return self

    @property
    def usable(self) -> bool:
        return getattr(self, "card_", None) is not None

    @property
    def features(self) -> list[str]:
        """The features the prior reads, in measure order (a feature may repeat)."""
        return [m.feature for m in self.card_.measures]

    def _points(self, data: pd.DataFrame) -> np.ndarray:
        from pulse.models.calibration import measure_points

        return np.nan_to_num(measure_points(data, self.card_) / 100.0, nan=0.5)

    def logit(self, data: pd.DataFrame) -> np.ndarray:
        """The prior's log-odds of churn for every row of `data` (the model's features)."""
        return np.asarray(self.logistic_.decision_function(self._points(data)), dtype="float64")
