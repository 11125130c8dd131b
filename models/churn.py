"""Churn risk: a calibrated scikit-learn classifier that explains every row it scores.

`ChurnModel` works on any tabular pandas frame: it infers numeric and categorical columns
(or takes them as given), preprocesses them in a `ColumnTransformer`, fits a gradient-boosted
or logistic classifier and calibrates its probabilities with `CalibratedClassifierCV`, so that
a risk of 0.30 means about 30 in 100 such accounts churn.

Every score comes with its drivers: for each feature, what the risk would be if that feature
alone were typical (the training median, or the most common category), and by how many
probability points the account's actual value moves it. `explain` returns the top drivers per
row; `drivers_in_words` turns them into sentences a CSM can read.

Helpers beside the model: `evaluate` (ROC AUC, PR AUC, Brier score, lift in the top decile),
`calibration_table`, and `time_split` for snapshots taken at many as-of dates.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from pulse.core.errors import ModelArtifactError, ModelInputError

log = logging.getLogger(__name__)

__all__ = [
    "ChurnModel",
    "Driver",
    "ModelArtifactError",
    "ModelInputError",
    "calibration_table",
    "drivers_in_words",
    "evaluate",
    "read_artifact_header",
    "time_split",
]

ARTIFACT_FORMAT = "pulse.churn-model"
ARTIFACT_FORMAT_VERSION = 1
_MISSING_CATEGORY = "(missing)"
_CLASSIFIERS = ("hgb", "logistic")
_CALIBRATIONS = ("sigmoid", "isotonic")
# Gradient boosting holds out 15% of each training fold to stop adding trees; below this many
# rows that hold-out is too small to trust, and a fixed 100 trees are fitted instead.
_EARLY_STOPPING_MIN_ROWS = 1000


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
    classifier : {"hgb", "logistic"}, default="hgb"
        "hgb" is a `HistGradientBoostingClassifier` (non-linear, interactions, no scaling
        needed); "logistic" is an L2-regularised `LogisticRegression` on scaled features.
    calibration : {"sigmoid", "isotonic"}, default="sigmoid"
        Calibration method of `CalibratedClassifierCV`. "sigmoid" (Platt scaling) is smooth
        and monotone, so drivers measure the classifier and not the steps of a calibration
        curve; it calibrated as well as "isotonic" on Telco, CDNOW and synthetic snapshots.
        "isotonic" is more flexible but overfits calibration folds of less than about a
        thousand rows, and its steps can make a small change look like a big driver.
    cv : int, cross-validation splitter or iterable of (train, test) indices, default=3
        Folds for calibration. An int means stratified, shuffled folds, or stratified group
        folds when `fit` receives `groups`. Each fold's classifier is calibrated on the rows
        it did not see, and `predict_proba` averages the folds.
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
    reference_ : dict
        The typical value of each feature: the training median (numeric) or most common
        category, or None (missing) when most training rows miss it. The baseline that
        `contributions` and `explain` compare each row against.
    pipeline_ : Pipeline
        The fitted preprocessing and calibrated classifier.
    base_rate_ : float
        Share of churners among the training rows.

    Examples
    --------
    >>> model = ChurnModel(random_state=0).fit(train[features], train["churned"])
    >>> risk = model.predict_risk(today[features])
    >>> drivers = model.explain(today[features], top=3)
    >>> drivers_in_words(drivers[0])
    ['tenure is 2 (typical 29) raises risk by 18 points', ...]
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        classifier: str = "hgb",
        calibration: str = "sigmoid",
        cv: Any = 3,
        max_categories: int = 20,
        min_frequency: float | int = 0.01,
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.classifier = classifier
        self.calibration = calibration
        self.cv = cv
        self.max_categories = max_categories
        self.min_frequency = min_frequency
        self.random_state = random_state
        self.n_jobs = n_jobs

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
            calibrator is not fitted on accounts the classifier has already seen.

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
        splits = self._splits(data, target, groups)

        smallest_train = min(len(train) for train, _ in splits)
        self.pipeline_ = Pipeline([
            ("prep", self._preprocessor()),
            ("model", CalibratedClassifierCV(
                self._classifier(smallest_train), method=self.calibration, cv=splits,
                n_jobs=self.n_jobs)),
        ])
        self.pipeline_.fit(data, target)
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

    def _preprocessor(self) -> ColumnTransformer:
        scale = self.classifier == "logistic"
        parts: list[tuple[str, Any, list[str]]] = []
        for i, name in enumerate(self.features_):
            if name in self.numeric_:
                steps: list[tuple[str, Any]] = [
                    ("impute", SimpleImputer(strategy="median", add_indicator=True,
                                             keep_empty_features=True))]
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
            return LogisticRegression(C=1.0, max_iter=2000)
        # Small, regularised trees, and early stopping from 1,000 training rows on (scikit-learn
        # turns it on only above 10,000): compared with the library defaults this ranked as well
        # or better on Telco and on CDNOW snapshots, with fewer trees to evaluate in explain().
        early = n_train >= _EARLY_STOPPING_MIN_ROWS
        return HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=300 if early else 100, max_leaf_nodes=15,
            min_samples_leaf=40, l2_regularization=1.0, early_stopping=early,
            validation_fraction=0.15, n_iter_no_change=10, random_state=self.random_state)

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
        return self.pipeline_.predict_proba(self._prepare(X))

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

    # -- explanations ------------------------------------------------------------------------

    def contributions(self, X: Any) -> pd.DataFrame:
        """Signed effect of every feature on every row's risk, in probability (0..1).

        The effect of feature *f* on a row is the row's risk minus the risk the same row would
        have if *f* alone took its typical value (`reference_`). Positive effects raise risk.
        Effects are "what if" differences, so they need not add up to the total risk. One
        batched prediction per feature, over only the rows whose value is not already typical.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to explain.

        Returns
        -------
        effects : DataFrame of shape (n_samples, n_features)
            Indexed like `X` (when a DataFrame), one column per feature.
        """
        data = self._prepare(X)
        return pd.DataFrame(self._effects(data), index=data.index, columns=self.features_)

    def _effects(self, data: pd.DataFrame) -> np.ndarray:
        prep = self.pipeline_.named_steps["prep"]
        model = self.pipeline_.named_steps["model"]
        z = prep.transform(data)
        typical_row = prep.transform(
            self._coerce(pd.DataFrame([self.reference_], columns=self.features_)))[0]
        risk = model.predict_proba(z)[:, 1]
        effects = np.zeros((len(data), len(self.features_)))
        for j in range(len(self.features_)):
            cols = prep.output_indices_[f"f{j}"]
            if cols.stop == cols.start:
                continue
            typical = typical_row[cols]
            rows = np.flatnonzero((z[:, cols] != typical).any(axis=1))
            if len(rows) == 0:
                continue
            what_if = z[rows]
            what_if[:, cols] = typical
            effects[rows, j] = risk[rows] - model.predict_proba(what_if)[:, 1]
        return effects

    def explain(self, X: Any, top: int = 3, *, min_effect: float = 0.005
                ) -> list[list[Driver]]:
        """The `top` features that move each row's risk the most, largest first.

        Parameters
        ----------
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
        effects, order, values = self._ranked(self._prepare(X), top)
        out: list[list[Driver]] = []
        refs = [self.reference_[f] for f in self.features_]
        for i in range(len(order)):
            row: list[Driver] = []
            for j in order[i]:
                size = float(effects[i, j])
                if size == 0.0 or abs(size) < min_effect:
                    break
                row.append(Driver(self.features_[j], _scalar(values[j][i]), refs[j], size))
            out.append(row)
        return out

    def explain_frame(self, X: Any, top: int = 3, *, min_effect: float = 0.005
                      ) -> pd.DataFrame:
        """`explain` as one long table: a row per (input row, driver).

        Parameters
        ----------
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
        data = self._prepare(X)
        effects, order, values = self._ranked(data, top)
        n, k = order.shape
        rows = np.repeat(np.arange(n), k)
        cols = order.ravel()
        size = effects[rows, cols]
        keep = (size != 0.0) & (np.abs(size) >= min_effect)
        rows, cols, size = rows[keep], cols[keep], size[keep]
        value_matrix = np.empty((n, len(self.features_)), dtype=object)
        for j, v in enumerate(values):
            value_matrix[:, j] = v
        features = np.asarray(self.features_, dtype=object)
        refs = np.asarray([self.reference_[f] for f in self.features_], dtype=object)
        return pd.DataFrame({
            "row": data.index.to_numpy()[rows],
            "rank": np.tile(np.arange(1, k + 1), n)[keep],
            "feature": features[cols],
            "value": value_matrix[rows, cols],
            "reference": refs[cols],
            "effect": size,
            "direction": np.where(size > 0, "raises", "lowers"),
        })

    def _ranked(self, data: pd.DataFrame, top: int
                ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        if not isinstance(top, int | np.integer) or top < 1:
            raise ModelInputError(f"invalid value for top: expected a positive int (not {top!r})")
        effects = self._effects(data)
        k = min(int(top), effects.shape[1])
        order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :k]
        values = [data[f].to_numpy() for f in self.features_]
        return effects, order, values

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

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to `path` (a JSON header line, then a joblib payload).

        The header records the scikit-learn, numpy and pandas versions, so that `load` can
        refuse an artifact from an incompatible scikit-learn before unpickling anything.

        Parameters
        ----------
        path : str or PathLike
            Destination file; written atomically (a temporary file, then a rename).

        Returns
        -------
        path : Path
            The file written.
        """
        check_is_fitted(self)
        path = Path(path)
        header = {
            "format": ARTIFACT_FORMAT,
            "format_version": ARTIFACT_FORMAT_VERSION,
            "sklearn_version": sklearn.__version__,
            "numpy_version": np.__version__,
            "pandas_version": pd.__version__,
            "classifier": self.classifier,
            "calibration": self.calibration,
            "features": self.features_,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(header).encode() + b"\n")
                joblib.dump(self, fh, compress=3)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ChurnModel:
        """Read a model written by `save`.

        Only load artifacts you trust: the payload is a pickle.

        Parameters
        ----------
        path : str or PathLike
            File written by `save`.

        Returns
        -------
        model : ChurnModel
            The fitted model.

        Raises
        ------
        ModelArtifactError
            The file is missing, is not a churn model artifact, or was written by a
            scikit-learn whose major.minor version differs from the installed one.
        """
        path = Path(path)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise ModelArtifactError(f"cannot read model artifact {path}: {exc.strerror}") from exc
        with fh:
            header = read_artifact_header(path, fh)
            saved = str(header.get("sklearn_version"))
            if _minor(saved) != _minor(sklearn.__version__):
                raise ModelArtifactError(
                    f"model artifact {path} was saved with scikit-learn {saved}, which the "
                    f"installed scikit-learn {sklearn.__version__} cannot load safely: expected "
                    f"an artifact from {_minor(sklearn.__version__)}.x; retrain the model, or "
                    f"load it where scikit-learn {_minor(saved)}.x is installed")
            try:
                model = joblib.load(fh)
            except Exception as exc:
                raise ModelArtifactError(
                    f"cannot unpickle model artifact {path}: {type(exc).__name__}: {exc}"
                ) from exc
        if not isinstance(model, cls):
            raise ModelArtifactError(
                f"model artifact {path} holds a {type(model).__name__}, expected {cls.__name__}")
        return model


def read_artifact_header(path: str | os.PathLike[str], fh: Any = None) -> dict[str, Any]:
    """The JSON header of a saved model (versions, classifier, features), without unpickling.

    Parameters
    ----------
    path : str or PathLike
        File written by `ChurnModel.save`.
    fh : binary file, default=None
        An open handle positioned at the start of the file; it is left just after the header.

    Returns
    -------
    header : dict
        ``format``, ``format_version``, ``sklearn_version``, ``numpy_version``,
        ``pandas_version``, ``classifier``, ``calibration`` and ``features``.
    """
    if fh is None:
        try:
            with Path(path).open("rb") as own:
                return read_artifact_header(path, own)
        except OSError as exc:
            raise ModelArtifactError(f"cannot read model artifact {path}: {exc.strerror}") from exc
    line = fh.readline(1 << 20)
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != ARTIFACT_FORMAT:
        raise ModelArtifactError(
            f"{path} is not a churn model artifact: expected a first line with "
            f'"format": "{ARTIFACT_FORMAT}"')
    if header.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ModelArtifactError(
            f"model artifact {path} has format version {header.get('format_version')!r}, "
            f"expected {ARTIFACT_FORMAT_VERSION}")
    return header


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


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


def _scalar(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


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
        One row's drivers, as returned by `ChurnModel.explain`.
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
# Metrics
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Time-based splits
# --------------------------------------------------------------------------------------------


def time_split(frame: pd.DataFrame, time_col: str, train_end: Any, valid_end: Any, *,
               horizon: Any = None, train_start: Any = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split snapshots taken at many as-of dates into earlier training and later validation.

    Never a random split across time: validation rows are the snapshots dated
    ``train_end <= t < valid_end``; training rows are dated before ``train_end - horizon``,
    so that no training label (churn within `horizon` after its snapshot) was observed on or
    after the first validation date, just as when the model is trained on `train_end` for real.

    Parameters
    ----------
    frame : DataFrame
        Snapshots, one row per (as-of date, account).
    time_col : str
        Column with the as-of date of each snapshot.
    train_end : date-like
        First validation date; training snapshots are strictly earlier.
    valid_end : date-like
        End of the validation window (exclusive).
    horizon : int (days), Timedelta or None, default=None
        Label horizon: training snapshots also satisfy ``t + horizon < train_end``.
    train_start : date-like, default=None
        Earliest training snapshot (inclusive); None keeps everything older.

    Returns
    -------
    train, valid : DataFrame
        Row subsets of `frame`, in its order.
    """
    if time_col not in frame.columns:
        raise ModelInputError(f"time column {time_col!r} not in frame")
    when = pd.to_datetime(frame[time_col])
    if when.isna().any():
        raise ModelInputError(f"time column {time_col!r} has {int(when.isna().sum())} missing dates")
    start, end = pd.Timestamp(train_end), pd.Timestamp(valid_end)
    if when.dt.tz is not None:
        start, end = (t.tz_localize(when.dt.tz) if t.tz is None else t for t in (start, end))
    if not start < end:
        raise ModelInputError(f"train_end {train_end} must be before valid_end {valid_end}")
    gap = pd.Timedelta(days=horizon) if isinstance(horizon, int | float) else pd.Timedelta(
        horizon or 0)
    train_mask = when < start - gap
    if train_start is not None:
        lower = pd.Timestamp(train_start)
        if when.dt.tz is not None and lower.tz is None:
            lower = lower.tz_localize(when.dt.tz)
        train_mask &= when >= lower
    valid_mask = (when >= start) & (when < end)
    if not train_mask.any():
        raise ModelInputError(
            f"no training snapshots before {start - gap} in {time_col!r} "
            f"(earliest is {when.min()})")
    if not valid_mask.any():
        raise ModelInputError(
            f"no validation snapshots in [{start}, {end}) in {time_col!r} "
            f"(dates run {when.min()} to {when.max()})")
    return frame[train_mask.to_numpy()], frame[valid_mask.to_numpy()]
