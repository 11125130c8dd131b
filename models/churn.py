"""Churn risk: a calibrated scikit-learn classifier that explains every row it scores.

`ChurnModel` works on any tabular pandas frame: it infers numeric and categorical columns
(or takes them as given), preprocesses them in a `ColumnTransformer`, fits a gradient-boosted
or logistic classifier and calibrates its probabilities with `CalibratedClassifierCV`, so that
a risk of 0.30 means about 30 in 100 such accounts churn.

Every score comes with its drivers (models/drivers.py): for each feature, what the risk would
be if that feature alone were typical (the training median, or the most common category), and
by how many probability points the account's actual value moves it. `explain` returns the top
drivers per row; `drivers_in_words` turns them into sentences a CSM can read.

Beside the model: saving and loading it (models/churn_artifact.py), `evaluate` (ROC AUC,
PR AUC, Brier score, lift in the top decile) and `calibration_table` (models/metrics.py), and
`time_split` for snapshots taken at many as-of dates (models/timesplit.py).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from pulse.core.errors import ModelInputError
from pulse.models import hgb_binning

log = logging.getLogger(__name__)

# gradient boosting's weighted bin thresholds in one pass (models/hgb_binning.py)
hgb_binning.install()

__all__ = ["ChurnModel"]

_MISSING_CATEGORY = "(missing)"
_CLASSIFIERS = ("hgb", "logistic", "hgb_default", "blend")
_CALIBRATIONS = ("sigmoid", "isotonic", "none")
_CLASS_WEIGHTS = (None, "balanced")
# Gradient boosting holds out 15% of each training fold to stop adding trees; below this many
# rows that hold-out is too small to trust, and a fixed 100 trees are fitted instead.
_EARLY_STOPPING_MIN_ROWS = 1000
#: The trees' L2 penalty on leaf values, per account (see `ChurnModel._trees`).
TREES_L2 = 1.0


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------


class ChurnModel(ClassifierMixin, BaseEstimator):
    """Calibrated churn-risk classifier for any tabular frame, with per-row drivers.

    A `Pipeline` of a `ColumnTransformer` (numeric: median imputation with a missing-value
    indicator, plus standard scaling for the linear model; categorical: constant imputation
    and one-hot encoding that folds rare and unseen categories together) and a classifier
    wrapped in `CalibratedClassifierCV`, so that `predict_proba` returns calibrated
    probabilities.

    Parameters
    ----------
    numeric : list of str, default=None
        Numeric feature columns. When both `numeric` and `categorical` are None, every column
        of `X` is a feature and its kind is inferred from its dtype (numbers and booleans are
        numeric; strings, objects and categoricals are categorical). When either is given, the
        model uses exactly the listed columns and ignores the others (ids, dates, labels).
    categorical : list of str, default=None
        Categorical feature columns; see `numeric`.
    classifier : {"hgb", "logistic", "hgb_default", "blend"}, default="hgb"
        "hgb" is a `HistGradientBoostingClassifier` with small, regularised trees (non-linear,
        interactions, no scaling needed); "logistic" is an L2-regularised
        `LogisticRegression` on scaled features; "hgb_default" is a
        `HistGradientBoostingClassifier` with the library's defaults (a baseline); "blend"
        averages the probabilities of the two ("logistic" with `C` and "hgb", both with
        `class_weight`): the trees' interactions and thresholds beside the line's steadiness
        on few churners, never far from the better of the two on any one data set.
    C : float, default=1.0
        Inverse regularisation strength of the logistic classifier.
    class_weight : {None, "balanced"} or dict, default=None
        "balanced" weighs each class inversely to its frequency when fitting the classifier
        (churners are rare); the calibration that follows brings the probabilities back to
        the observed rates.
    log_transform : bool, default=False
        Apply ``sign(x) * log1p(|x|)`` to the numeric features before imputation: counts and
        amounts are heavy-tailed, and a linear model reads their logarithm better.
    weight_groups : bool, default=False
        With `groups` given to `fit`, weigh every row by one over its group's rows, so that
        each group (account) counts once however many snapshots it has: accounts that stay
        for the whole history would otherwise outweigh those that joined late or left early
        (the churners), and a churner's near-identical consecutive snapshots would count as
        many independent examples. The weights average one per row, so the regularisation of
        the logistic regression keeps its meaning; the trees' L2 penalty is scaled by the rows
        per account (`TREES_L2` per account), as though each account's rows summed to one.
    missing_indicator : bool, default=True
        Add a 0/1 column per numeric feature that has missing values in training.
    calibration : {"sigmoid", "isotonic", "none"}, default="sigmoid"
        Calibration method of `CalibratedClassifierCV`. "sigmoid" (Platt scaling) is smooth
        and monotone, so drivers measure the classifier and not the steps of a calibration
        curve; it calibrated as well as "isotonic" on Telco, CDNOW and synthetic snapshots.
        "isotonic" is more flexible but overfits calibration folds of less than about a
        thousand rows, and its steps can make a small change look like a big driver. "none"
        fits the classifier once on every row, uncalibrated (for baselines, and for ranking
        candidates quickly).
    cv : int, cross-validation splitter or iterable of (train, test) indices, default=3
        Folds for calibration. An int means stratified, shuffled folds, or stratified group
        folds when `fit` receives `groups`. The calibration is fitted on predictions for rows
        the fold's classifier did not see (see `ensemble`).
    ensemble : bool, default=False
        False: the calibration is fitted on out-of-fold predictions and the classifier once
        on every training row, so the ranking is that of the full fit (a monotone
        calibration cannot change it). True: one calibrated classifier per fold, averaged.
    max_categories : int, default=20
        Most one-hot columns per categorical feature (the rest are folded into one
        "infrequent" column).
    min_frequency : float or int, default=0.01
        Categories rarer than this share (float) or count (int) of the training rows are
        folded into the "infrequent" column; unseen categories at predict time join it too.
    random_state : int, RandomState instance or None, default=None
        Seeds the calibration folds and the gradient-boosting early-stopping split.
    n_jobs : int, default=None
        Calibration folds fitted in parallel (`None` means 1).
    card_prior : float, default=0.0
        The share, in [0, 1), of the scorecard's opinion in the output: the log-odds of the
        calibrated classifier and of a logistic fit on the default scorecard's points
        (models/card_prior.py, fitted on the same training rows and weights) are averaged with
        weights ``1 - card_prior`` and `card_prior` (a logarithmic opinion pool). 0 leaves the
        classifier alone, as it is when fewer than two of the scorecard's measures are among
        the features.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; `classes_[1]` (1, True, "Yes" ...) is the churn class.
    n_features_in_ : int
        Number of features used.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features used, when `X` was a DataFrame with string column names.
    features_ : list of str
        The features used, in input order (generated names ``x0, x1, ...`` for arrays).
    numeric_ : list of str
        The numeric features.
    categorical_ : list of str
        The categorical features.
    unused_ : list of str
        Features left out of the fit because every training row misses them or they hold a
        single value (they cannot move a prediction; they are still accepted when scoring).
    reference_ : dict
        The typical value of each feature: the training median (numeric) or most common
        category, or None (missing) when most training rows miss it. The baseline that
        `contributions` and `explain` compare each row against.
    pipeline_ : Pipeline
        The fitted preprocessing and calibrated classifier.
    base_rate_ : float
        Share of churners among the training rows.
    card_ : CardPrior or None
        The fitted scorecard opinion pooled at the output, or None (see `card_prior`).

    Examples
    --------
    >>> model = ChurnModel(random_state=0).fit(train[features], train["churned"])
    >>> risk = model.predict_risk(today[features])
    >>> drivers = explain(model, today[features], top=3)
    >>> drivers_in_words(drivers[0])
    ['tenure is 2 (typical 29) raises risk by 18 points', ...]
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        classifier: str = "hgb",
        C: float = 1.0,
        class_weight: str | dict[Any, float] | None = None,
        log_transform: bool = False,
        missing_indicator: bool = True,
        weight_groups: bool = False,
        calibration: str = "sigmoid",
        cv: Any = 3,
        ensemble: bool = False,
        max_categories: int = 20,
        min_frequency: float | int = 0.01,
        random_state: Any = None,
        n_jobs: int | None = None,
        card_prior: float = 0.0,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.classifier = classifier
        self.C = C
        self.class_weight = class_weight
        self.log_transform = log_transform
        self.missing_indicator = missing_indicator
        self.weight_groups = weight_groups
        self.calibration = calibration
        self.cv = cv
        self.ensemble = ensemble
        self.max_categories = max_categories
        self.min_frequency = min_frequency
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.card_prior = card_prior

    # -- scikit-learn plumbing ---------------------------------------------------------------

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, *, groups: Any = None) -> ChurnModel:
        """Fit the preprocessing, the classifier and its calibration.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Training rows. Missing values are allowed in every column.
        y : array-like of shape (n_samples,)
            Binary labels; the greater one (1, True, "Yes") is the churn class.
        groups : array-like of shape (n_samples,), default=None
            Group of each row, typically the account id when `X` holds snapshots of the same
            accounts at many as-of dates: calibration folds then never split a group, so the
            calibrator is not fitted on accounts the classifier has already seen. With
            `weight_groups`, each group also counts once in the fit.

        Returns
        -------
        self : ChurnModel
            The fitted model.
        """
        if self.classifier not in _CLASSIFIERS:
            raise ModelInputError(
                f"invalid value for classifier: expected one of {_CLASSIFIERS} "
                f"(not {self.classifier!r})")
        if self.calibration not in _CALIBRATIONS:
            raise ModelInputError(
                f"invalid value for calibration: expected one of {_CALIBRATIONS} "
                f"(not {self.calibration!r})")
        if not (self.class_weight in _CLASS_WEIGHTS or isinstance(self.class_weight, dict)):
            raise ModelInputError(
                f"invalid value for class_weight: expected None, 'balanced' or a dict "
                f"(not {self.class_weight!r})")
        if not 0.0 <= float(self.card_prior) < 1.0:
            raise ModelInputError(
                f"invalid value for card_prior: expected a share in [0, 1) "
                f"(not {self.card_prior!r})")

        frame = _two_dimensional(X)
        explicit = self.numeric is not None or self.categorical is not None
        if explicit:
            numeric = list(self.numeric or [])
            categorical = list(self.categorical or [])
            _check_columns(frame, numeric, categorical)
            wanted = set(numeric) | set(categorical)
            frame = frame[[c for c in frame.columns if c in wanted]]
        if frame.shape[0] == 0:
            raise ModelInputError(
                f"Found array with 0 sample(s) (shape={frame.shape}) while a minimum of 1 "
                "is required: the churn model needs training rows")
        if frame.shape[1] == 0:
            raise ModelInputError(
                f"0 feature(s) (shape={frame.shape}) while a minimum of 1 is required.")
        validate_data(self, frame, reset=True, skip_check_array=True)
        frame = _named(frame, self._internal_names())
        if not explicit:
            numeric, categorical = _infer_kinds(frame)
        self.features_ = [str(c) for c in frame.columns]
        self.numeric_ = [c for c in self.features_ if c in set(map(str, numeric))]
        self.categorical_ = [c for c in self.features_ if c in set(map(str, categorical))]

        y = check_array(column_or_1d(y, warn=True), ensure_2d=False, dtype=None,
                        input_name="y")
        if len(y) != len(frame):
            raise ModelInputError(f"X has {len(frame)} rows but y has {len(y)} labels")
        if pd.isna(y).any():
            raise ModelInputError("y has missing labels: every training row needs a label")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) > 2:
            raise ModelInputError(
                "Only binary classification is supported. The churn model needs two classes "
                f"in y (churned or not), got {len(self.classes_)}: {list(self.classes_)[:5]}")
        if len(self.classes_) < 2:
            raise ModelInputError(
                "the churn model needs two classes in y (churned or not), but only one class "
                f"is present: {self.classes_[0]!r}")
        target = (y == self.classes_[1]).astype(int)
        self.base_rate_ = float(target.mean())

        data = self._coerce(frame)
        self.reference_ = self._typical_values(data)
        self.unused_ = self._unusable(data)
        # rows per account: the trees' penalty is stated per account when each counts once
        self.rows_per_group_ = 1.0
        if self.weight_groups and groups is not None and len(np.asarray(groups)) == len(data):
            self.rows_per_group_ = len(data) / max(1, pd.Series(np.asarray(groups)).nunique())
        if self.calibration == "none":
            if groups is not None and len(np.asarray(groups)) != len(data):
                raise ModelInputError(
                    f"groups has {len(np.asarray(groups))} values but X has {len(data)} rows")
            self.pipeline_ = Pipeline([("prep", self._preprocessor()),
                                       ("model", self._classifier(len(data)))])
        else:
            splits = self._splits(data, target, groups)
            smallest_train = min(len(train) for train, _ in splits)
            self.pipeline_ = Pipeline([
                ("prep", self._preprocessor()),
                ("model", CalibratedClassifierCV(
                    self._classifier(len(data) if not self.ensemble else smallest_train),
                    method=self.calibration, cv=splits, n_jobs=self.n_jobs,
                    ensemble=self.ensemble)),
            ])
        weights = _group_weights(groups) if self.weight_groups and groups is not None else None
        if weights is None:
            self.pipeline_.fit(data, target)
        else:
            self.pipeline_.fit(data, target, model__sample_weight=weights)
        self.card_ = None
        if self.card_prior > 0:
            from pulse.models.card_prior import CardPrior

            card = CardPrior().fit(data[[c for c in self.numeric_ if c not in self.unused_]],
                                   target, sample_weight=weights)
            self.card_ = card if card.usable else None
        log.info("fitted churn model: %d rows, %d features, %s calibrated with %s",
                 len(data), len(self.features_), self.classifier, self.calibration)
        return self

    def _internal_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(c) for c in names]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _splits(self, data: pd.DataFrame, target: np.ndarray,
                groups: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        counts = np.bincount(target, minlength=2)
        if isinstance(self.cv, int | np.integer) and not isinstance(self.cv, bool):
            if self.cv < 2:
                raise ModelInputError(f"invalid value for cv: expected 2 or more (not {self.cv})")
            if counts.min() < self.cv:
                raise ModelInputError(
                    f"too few examples of one class to calibrate with cv={self.cv}: "
                    f"{counts[1]} churned and {counts[0]} not (need at least {self.cv} of each)")
            if groups is None:
                splitter: Any = StratifiedKFold(
                    n_splits=self.cv, shuffle=True, random_state=self.random_state)
            else:
                splitter = StratifiedGroupKFold(
                    n_splits=self.cv, shuffle=True, random_state=self.random_state)
        else:
            splitter = self.cv
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(data):
                raise ModelInputError(
                    f"groups has {len(groups)} values but X has {len(data)} rows")
        folds = (splitter.split(data, target, groups) if hasattr(splitter, "split")
                 else splitter)
        splits = [(np.asarray(a), np.asarray(b)) for a, b in folds]
        for _, test in splits:
            if len(np.unique(target[test])) < 2:
                raise ModelInputError(
                    "a calibration fold holds only one class; use fewer folds (cv) or more data")
        return splits

    def _unusable(self, data: pd.DataFrame) -> list[str]:
        """Features that cannot move a prediction: missing on every row, or one value on
        every row. Kept when leaving them out would leave no feature at all."""
        unused = []
        for name in self.features_:
            s = data[name]
            present = s.notna()
            if not present.any() or (present.all() and s.nunique(dropna=True) <= 1):
                unused.append(name)
        if len(unused) == len(self.features_):
            return []
        if unused:
            log.info("left out %d feature(s) with no information in training: %s",
                     len(unused), ", ".join(unused))
        return unused

    def _preprocessor(self) -> ColumnTransformer:
        scale = self.classifier in ("logistic", "blend")
        unused = set(getattr(self, "unused_", []))
        parts: list[tuple[str, Any, list[str]]] = []
        for i, name in enumerate(self.features_):
            if name in unused:
                parts.append((f"f{i}", "drop", [name]))
                continue
            if name in self.numeric_:
                steps: list[tuple[str, Any]] = []
                if self.log_transform:
                    steps.append(("log", FunctionTransformer(
                        _signed_log1p, feature_names_out="one-to-one")))
                steps.append(("impute", SimpleImputer(
                    strategy="median", add_indicator=self.missing_indicator,
                    keep_empty_features=True)))
                if scale:
                    steps.append(("scale", StandardScaler()))
            else:
                steps = [
                    ("impute", SimpleImputer(strategy="constant", fill_value=_MISSING_CATEGORY,
                                             keep_empty_features=True)),
                    ("onehot", OneHotEncoder(
                        handle_unknown="infrequent_if_exist", min_frequency=self.min_frequency,
                        max_categories=self.max_categories, sparse_output=False)),
                ]
            # One transformer per input column, so that output_indices_ maps every input
            # feature to its output columns (used by contributions()).
            parts.append((f"f{i}", Pipeline(steps), [name]))
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)

    def _classifier(self, n_train: int) -> Any:
        if self.classifier == "logistic":
            return LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000)
        if self.classifier == "blend":
            return _Blend(LogisticRegression(C=self.C, class_weight=self.class_weight,
                                             max_iter=2000), self._trees(n_train))
        if self.classifier == "hgb_default":
            return HistGradientBoostingClassifier(class_weight=self.class_weight,
                                                  random_state=self.random_state)
        return self._trees(n_train)

    def _trees(self, n_train: int) -> HistGradientBoostingClassifier:
        # Small, regularised trees, and early stopping from 1,000 training rows on (scikit-learn
        # turns it on only above 10,000): compared with the library defaults this ranked as well
        # or better on Telco and on CDNOW snapshots, with fewer trees to evaluate in explain().
        # The L2 penalty on leaf values is TREES_L2 per account: with `weight_groups` the rows
        # weigh one on average, so an account's weekly snapshots would together weigh as many
        # independent examples against a penalty meant for one; scaled by the rows per account
        # it is what the same fit with each account's snapshots summing to one would get.
        early = n_train >= _EARLY_STOPPING_MIN_ROWS
        return HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=300 if early else 100, max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=TREES_L2 * getattr(self, "rows_per_group_", 1.0),
            early_stopping=early,
            validation_fraction=0.15, n_iter_no_change=10, class_weight=self.class_weight,
            random_state=self.random_state)

    # -- scoring -----------------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probability of each class.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to score. A DataFrame may hold extra columns; the features are picked by name.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            Columns follow `classes_`; column 1 is the churn risk.
        """
        check_is_fitted(self)
        risk = self.pooled(*self.risk_parts(X))
        return np.column_stack([1.0 - risk, risk])

    def risk_parts(self, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """The two opinions `predict_risk` pools: the classifier's risk of each row, and the
        scorecard prior's log-odds (None without a prior). ``pooled(*parts)`` is the risk."""
        check_is_fitted(self)
        data = self._prepare(X)
        risk = np.asarray(self.pipeline_.predict_proba(data)[:, 1], dtype="float64")
        card = getattr(self, "card_", None)  # None in artifacts from before the prior
        return risk, (None if card is None else card.logit(data))

    def pooled(self, risk: np.ndarray, card_logit: np.ndarray | None) -> np.ndarray:
        """The classifier's risk pooled with the scorecard's log-odds (`card_prior`); the
        classifier's risk as it is without a prior (`card_logit` None)."""
        if card_logit is None:
            return np.asarray(risk, dtype="float64")
        eps = 1e-6
        p = np.clip(np.asarray(risk, dtype="float64"), eps, 1.0 - eps)
        a = float(self.card_prior)
        return np.asarray(expit((1.0 - a) * logit(p) + a * card_logit), dtype="float64")

    def predict_risk(self, X: Any) -> np.ndarray:
        """Calibrated churn probability of each row.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        risk : ndarray of shape (n_samples,)
            Probability of the churn class, `classes_[1]`.
        """
        return self.predict_proba(X)[:, 1]

    def predict(self, X: Any) -> np.ndarray:
        """Most probable label of each row (churn when the risk exceeds one half).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Values from `classes_`.
        """
        check_is_fitted(self)
        return self.classes_[(self.predict_risk(X) > 0.5).astype(int)]

    # -- input handling ----------------------------------------------------------------------

    def _prepare(self, X: Any) -> pd.DataFrame:
        """Validate rows to score and coerce them to the training layout."""
        check_is_fitted(self)
        frame = _two_dimensional(X)
        names = getattr(self, "feature_names_in_", None)
        if names is not None and _has_string_columns(frame):
            missing = [c for c in names if c not in frame.columns]
            if missing:
                raise ModelInputError(
                    f"X lacks {len(missing)} feature column(s) the model was fitted on: "
                    f"{missing[:10]}")
            frame = frame[list(names)]
        validate_data(self, frame, reset=False, skip_check_array=True)
        return self._coerce(_named(frame, self.features_))

    def _coerce(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Numeric features as float64 (NaN when missing), categorical ones as str or NaN."""
        columns: dict[str, np.ndarray] = {}
        for name in self.features_:
            s = frame[name]
            if name in self.numeric_:
                columns[name] = _as_float(s, name)
            else:
                columns[name] = _as_category(s)
        return pd.DataFrame(columns, index=frame.index, columns=self.features_)

    def _typical_values(self, data: pd.DataFrame) -> dict[str, Any]:
        """The most common state of each feature: missing when most rows miss it, else the
        median (numeric) or the most frequent category."""
        typical: dict[str, Any] = {}
        for name in self.features_:
            s = data[name]
            if s.isna().mean() > 0.5:
                typical[name] = None
            elif name in self.numeric_:
                typical[name] = float(s.median())
            else:
                typical[name] = str(s.value_counts(dropna=True).index[0])
        return typical


class _Blend(ClassifierMixin, BaseEstimator):
    """The mean probability of a linear and a tree classifier (soft voting).

    scikit-learn's `VotingClassifier` takes sample weights only through ``**fit_params``,
    which `CalibratedClassifierCV` does not see (without metadata routing it would then fit
    the classifier unweighted and weigh only the calibration); this one names them.
    """

    def __init__(self, linear: Any, trees: Any) -> None:
        self.linear = linear
        self.trees = trees

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _Blend:
        self.estimators_ = [clone(self.linear).fit(X, y, sample_weight=sample_weight),
                            clone(self.trees).fit(X, y, sample_weight=sample_weight)]
        self.classes_ = self.estimators_[0].classes_
        self.n_features_in_ = self.estimators_[0].n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return np.mean([e.predict_proba(X) for e in self.estimators_], axis=0)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# --------------------------------------------------------------------------------------------
# Input helpers
# --------------------------------------------------------------------------------------------


def _two_dimensional(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError("sparse input is not supported by ChurnModel: pass a dense "
                        "array or a DataFrame")
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ModelInputError(
            f"Expected 2D array, got {arr.ndim}D array instead: pass a DataFrame or an "
            "array of shape (n_samples, n_features). Reshape your data with "
            "array.reshape(-1, 1) if it has a single feature or array.reshape(1, -1) if it "
            "contains a single sample.")
    return pd.DataFrame(arr)


def _has_string_columns(frame: pd.DataFrame) -> bool:
    return all(isinstance(c, str) for c in frame.columns)


def _named(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    if [str(c) for c in frame.columns] == names and _has_string_columns(frame):
        return frame
    renamed = frame.copy(deep=False)
    renamed.columns = names
    return renamed


def _check_columns(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> None:
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ModelInputError(f"columns listed as both numeric and categorical: {both}")
    if not numeric and not categorical:
        raise ModelInputError("no feature columns: numeric and categorical are both empty")
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise ModelInputError(f"feature columns not in X: {missing[:10]}")


def _infer_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric: list[str] = []
    categorical: list[str] = []
    unusable: list[str] = []
    for name in frame.columns:
        dtype = frame[name].dtype
        if pd.api.types.is_complex_dtype(dtype):
            raise ModelInputError(f"Complex data not supported: column {name!r} is {dtype}")
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            numeric.append(str(name))
        elif (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
              or isinstance(dtype, pd.CategoricalDtype)):
            categorical.append(str(name))
        else:
            unusable.append(f"{name} ({dtype})")
    if unusable:
        raise ModelInputError(
            f"cannot use column(s) {unusable} as features: expected numbers, booleans, strings "
            "or categories; drop them or name the features with numeric=/categorical=")
    return numeric, categorical


def _group_weights(groups: Any) -> np.ndarray:
    """One over the number of rows of each row's group, scaled to a mean of 1 (so that the
    regularisation strength means what it means without weights)."""
    g = pd.Series(np.asarray(groups))
    if g.isna().any():
        raise ModelInputError("groups has missing values: every row needs its group (account)")
    w = 1.0 / g.map(g.value_counts()).to_numpy(dtype="float64")
    return w * (len(w) / w.sum())


def _signed_log1p(x: Any) -> Any:
    """``sign(x) * log1p(|x|)``: the logarithm of heavy-tailed counts, defined for any sign."""
    return np.sign(x) * np.log1p(np.abs(x))


def _as_float(s: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_complex_dtype(s.dtype):
        raise ModelInputError(f"Complex data not supported: column {name!r} is {s.dtype}")
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan)
    converted = pd.to_numeric(s, errors="coerce")
    bad = converted.isna() & s.notna()
    if bad.any():
        first = s[bad].iloc[0]
        raise ModelInputError(
            f"invalid value for numeric feature {name!r} in row {s.index[bad.argmax()]!r}: "
            f"expected a number (not {first!r})")
    return converted.to_numpy(dtype="float64", na_value=np.nan)


def _as_category(s: pd.Series) -> np.ndarray:
    """Category labels as str (NaN when missing); 3 and 3.0 are the same category "3"."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        numbers = s.to_numpy(dtype="float64", na_value=np.nan)
        out = np.full(len(numbers), np.nan, dtype=object)
        present = ~np.isnan(numbers)
        out[present] = [str(int(x)) if x.is_integer() else str(x) for x in numbers[present]]
        return out
    return s.astype("string").to_numpy(dtype=object, na_value=np.nan)
