"""`TextClassifier`, the scikit-learn estimator behind models/text.py, and its training data.

Word 1-2-gram and character 2-5-gram TF-IDF (sublinear tf) feeding a class-balanced linear
SVM, averaged with a Complement Naive Bayes on the words; `read_labelled_csv` reads labelled
examples, `cross_validate` scores the estimator on them and `out_of_fold_scores` gives the
held-out scores of several settings at once (what routing chooses its threshold from).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from pulse.core.errors import InputFileError, TextError
from pulse.models.text_language import covered
from pulse.models.text_lexicon import _as_list, normalise

# --------------------------------------------------------------------------- the estimator


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Word and character TF-IDF into two linear models: a strong, fast text classifier.

    A class-balanced linear SVM reads word 1-2-grams and character 2-5-grams (sublinear tf);
    a Complement Naive Bayes reads the word n-grams. Their scores are standardised per text and
    averaged (`nb_weight` for the Naive Bayes share); probabilities are a softmax of that
    average with `temperature` (a confidence for ranking and thresholds, not a calibrated risk).

    Parameters
    ----------
    word_ngrams : tuple of int, default=(1, 2)
        Word n-gram range.
    char_ngrams : tuple of int or None, default=(2, 5)
        Character n-gram range (within word boundaries); None leaves characters out.
    C : float, default=0.1
        Inverse regularisation strength of the linear SVM.
    nb_weight : float, default=0.5
        Share of the Naive Bayes scores in the average (0 turns it off).
    class_weight : "balanced" or None, default="balanced"
        Balanced weights trade a little accuracy for recall on rare classes (macro-F1).
    max_features : int or None, default=200000
        Cap on the vocabulary of each vectoriser.
    temperature : float, default=2.0
        Sharpness of the softmax that turns scores into probabilities.
    random_state : int or None, default=0
        Seed of the solver.
    """

    def __init__(self, *, word_ngrams: tuple[int, int] = (1, 2),
                 char_ngrams: tuple[int, int] | None = (2, 5), C: float = 0.1,
                 nb_weight: float = 0.5, class_weight: str | None = "balanced",
                 max_features: int | None = 200_000, temperature: float = 2.0,
                 random_state: int | None = 0) -> None:
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.C = C
        self.nb_weight = nb_weight
        self.class_weight = class_weight
        self.max_features = max_features
        self.temperature = temperature
        self.random_state = random_state

    def _vectorisers(self, n_samples: int) -> tuple[Any, Any]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        min_df = 2 if n_samples >= 1000 else 1
        word = TfidfVectorizer(preprocessor=normalise, ngram_range=tuple(self.word_ngrams),
                               sublinear_tf=True, min_df=min_df,
                               max_features=self.max_features, dtype=np.float32)
        char = None if self.char_ngrams is None else TfidfVectorizer(
            preprocessor=normalise, analyzer="char_wb", ngram_range=tuple(self.char_ngrams),
            sublinear_tf=True, min_df=min_df, max_features=self.max_features,
            dtype=np.float32)
        return word, char

    def fit(self, texts: Iterable[Any], labels: Iterable[Any]) -> TextClassifier:
        """Learn from texts and their labels (at least two distinct labels)."""
        import scipy.sparse as sp
        from sklearn.naive_bayes import ComplementNB
        from sklearn.svm import LinearSVC

        X = _as_list(texts)
        y = np.asarray([str(v) for v in labels], dtype=object)
        if len(X) != len(y):
            raise TextError(f"got {len(X)} texts but {len(y)} labels")
        if len(set(y)) < 2:
            raise TextError(f"need at least two different labels to learn from (got "
                            f"{sorted(set(y))!r})")
        self.word_, self.char_ = self._vectorisers(len(X))
        words = self.word_.fit_transform(X)
        both = words if self.char_ is None else \
            sp.hstack([words, self.char_.fit_transform(X)]).tocsr()
        self.svm_ = LinearSVC(C=self.C, class_weight=self.class_weight,
                              random_state=self.random_state).fit(both, y)
        self.nb_ = ComplementNB(alpha=1.0).fit(words, y) if self.nb_weight > 0 else None
        self.classes_ = self.svm_.classes_
        self.n_samples_ = len(X)
        # the languages it learnt from: a text in another one is not read (models/text_language)
        self.languages_ = covered(X)
        return self

    def decision_function(self, texts: Iterable[Any]) -> np.ndarray:
        """(n_samples, n_classes) standardised scores, columns in the order of `classes_`."""
        import scipy.sparse as sp

        check_is_fitted(self, "svm_")
        X = _as_list(texts)
        if not X:
            return np.zeros((0, len(self.classes_)))
        words = self.word_.transform(X)
        both = words if self.char_ is None else sp.hstack([words, self.char_.transform(X)])
        score = _standardise(self.svm_.decision_function(both), len(self.classes_))
        if self.nb_ is not None:
            nb = _standardise(self.nb_.predict_log_proba(words), len(self.classes_))
            score = (1.0 - self.nb_weight) * score + self.nb_weight * nb
        return score

    def svm_scores(self, texts: Iterable[Any]) -> np.ndarray:
        """(n_samples, n_classes) raw SVM decision values: their level keeps how much evidence
        a text holds (a text of unknown words scores low for every class)."""
        import scipy.sparse as sp

        check_is_fitted(self, "svm_")
        X = _as_list(texts)
        if not X:
            return np.zeros((0, len(self.classes_)))
        words = self.word_.transform(X)
        both = words if self.char_ is None else sp.hstack([words, self.char_.transform(X)])
        return _columns(self.svm_.decision_function(both), len(self.classes_))

    def predict_proba(self, texts: Iterable[Any]) -> np.ndarray:
        """Class probabilities (softmax of the scores), columns in the order of `classes_`."""
        return softmax(self.decision_function(texts), self.temperature)

    def predict(self, texts: Iterable[Any]) -> np.ndarray:
        """The most probable label of each text."""
        score = self.decision_function(texts)
        return np.asarray(self.classes_, dtype=object)[score.argmax(axis=1)] if len(score) \
            else np.asarray([], dtype=object)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model with joblib (to a temporary file, then renamed)."""
        import joblib

        check_is_fitted(self, "svm_")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        joblib.dump(self, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextClassifier:
        """Read a model written by `save`."""
        import joblib

        try:
            model = joblib.load(Path(path))
        except Exception as exc:  # joblib raises many kinds; callers catch ours
            raise TextError(f"cannot read the text model {path}: {exc}") from exc
        if not isinstance(model, cls):
            raise TextError(f"{path} holds a {type(model).__name__}, not a TextClassifier")
        return model


def softmax(score: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of `score * temperature` (how scores become probabilities)."""
    score = np.asarray(score, dtype=float) * temperature
    score = score - score.max(axis=1, keepdims=True)
    expd = np.exp(score)
    return expd / expd.sum(axis=1, keepdims=True)


def _columns(score: np.ndarray, n_classes: int) -> np.ndarray:
    """Decision values with one column per class (a binary SVM's one column becomes two)."""
    score = np.asarray(score, dtype=float)
    if score.ndim == 1 or (n_classes == 2 and score.shape[1] == 1):
        return np.column_stack([-score.ravel(), score.ravel()]) / 2.0
    return score


def _standardise(score: np.ndarray, n_classes: int) -> np.ndarray:
    """Scores centred and scaled per row (a binary SVM's one column becomes two)."""
    score = np.asarray(score, dtype=float)
    if score.ndim == 1 or (n_classes == 2 and score.shape[1] == 1):
        score = np.column_stack([-score.ravel(), score.ravel()]) / 2.0
        return score
    sd = score.std(axis=1, keepdims=True)
    return (score - score.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


# --------------------------------------------------------------------------- training data


def read_text_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV file of texts, every value a string ("" for a blank); InputFileError when it is
    missing, unreadable, or lacks one of the `required` columns."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputFileError(f"no such file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {path} as CSV: {exc}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputFileError(f"{path.name} has no column {missing[0]!r} (columns: "
                             f"{', '.join(map(repr, frame.columns))})")
    return frame


def read_labelled_csv(path: str | Path, *, text_column: str = "text",
                      label_column: str = "label") -> pd.DataFrame:
    """Texts and labels from a CSV file: a DataFrame with columns text, label (blanks dropped)."""
    path = Path(path)
    frame = read_text_csv(path, (text_column, label_column))
    out = pd.DataFrame({"text": frame[text_column].str.strip(),
                        "label": frame[label_column].str.strip()})
    out = out[(out["text"] != "") & (out["label"] != "")].reset_index(drop=True)
    if out["label"].nunique() < 2:
        raise InputFileError(f"{path.name} needs at least two different labels in "
                             f"{label_column!r} (got {sorted(out['label'].unique())!r})")
    return out


def cross_validate(texts: Sequence[str], labels: Sequence[str], *, folds: int = 5,
                   random_state: int = 0, **params: Any) -> dict[str, float]:
    """Stratified k-fold accuracy and macro-F1 of a TextClassifier on these examples."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(_as_list(texts), dtype=object)
    y = np.asarray([str(v) for v in labels], dtype=object)
    smallest = int(pd.Series(y).value_counts().min())
    k = max(2, min(folds, smallest))
    if smallest < 2:
        raise TextError("every label needs at least two examples to cross-validate")
    pred = np.empty(len(y), dtype=object)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=random_state).split(X, y):
        model = TextClassifier(random_state=random_state, **params).fit(X[train], y[train])
        pred[test] = model.predict(X[test])
    return {"folds": k, "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro"))}


def out_of_fold_scores(texts: Iterable[Any], labels: Iterable[Any], *, Cs: Sequence[float],
                       folds: int = 5, random_state: int = 0,
                       prior_texts: Sequence[str] = (), prior_labels: Sequence[str] = (),
                       ) -> tuple[np.ndarray, dict[float, np.ndarray], np.ndarray]:
    """Held-out SVM decision values of a TextClassifier for every example, for several `C`.

    Stratified k-fold (k = `folds`, fewer when the rarest label has fewer examples); each fold
    is vectorised once and the linear SVM fitted for every C. `prior_texts` (with
    `prior_labels`) join every training fold and are never scored: hand-written hints such as
    a taxonomy's keywords. Returns (classes, {C: raw decision values of shape (n_samples,
    n_classes)}, scored), `scored` marking the examples held out (a label with a single
    example stays in training).
    """
    import scipy.sparse as sp
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    X = np.asarray(_as_list(texts), dtype=object)
    y = np.asarray([str(v) for v in labels], dtype=object)
    PX = np.asarray(_as_list(prior_texts), dtype=object)
    Py = np.asarray([str(v) for v in prior_labels], dtype=object)
    classes = np.asarray(sorted(set(y) | set(Py)), dtype=object)
    counts = pd.Series(y).value_counts()
    scored = pd.Series(y).map(counts).to_numpy() >= 2
    k = int(max(2, min(folds, counts[counts >= 2].min() if (counts >= 2).any() else 2)))
    if scored.sum() < k or len(set(y[scored])) < 2:
        raise TextError("need at least two labels with two examples each to hold any out")
    svm = {float(c): np.zeros((len(y), len(classes))) for c in Cs}
    idx = np.flatnonzero(scored)
    always = np.flatnonzero(~scored)
    split = StratifiedKFold(k, shuffle=True, random_state=random_state)
    for train_at, test_at in split.split(X[idx], y[idx]):
        train = np.r_[idx[train_at], always]
        test = idx[test_at]
        Xtr = np.r_[X[train], PX]
        ytr = np.r_[y[train], Py]
        word, char = TextClassifier()._vectorisers(len(Xtr))
        both = sp.hstack([word.fit_transform(Xtr), char.fit_transform(Xtr)]).tocsr()
        test_both = sp.hstack([word.transform(X[test]), char.transform(X[test])]).tocsr()
        present = np.searchsorted(classes, np.unique(ytr))
        for c in Cs:
            model = LinearSVC(C=float(c), class_weight="balanced",
                              random_state=random_state).fit(both, ytr)
            part = np.full((len(test), len(classes)), -3.0)  # a label the fold never saw
            part[:, present] = _columns(model.decision_function(test_both), len(present))
            svm[float(c)][test] = part
    return classes, svm, scored
