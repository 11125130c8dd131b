"""Understanding text: sentiment, feedback kind and routing to the team that owns it.

Three questions asked of every mention, ticket and survey comment:

- **Sentiment** (negative / neutral / positive): the user's own model at
  `$PULSE_HOME/models/text-sentiment.joblib` (`pulse text train sentiment FILE.csv`) when there
  is one; else a model trained at first use from the seed examples shipped in
  `models/text_seed/sentiment.csv` (cached on disk under `$PULSE_HOME/models/`); only when
  neither exists, a word lexicon (`models/negative_words.py` and `POSITIVE_TERMS` below).
- **Feedback kind** (bug, feature_request, complaint, praise, question): a model trained from
  `models/text_seed/kind.csv`, combined with plain rules ("would be great if", "doesn't work",
  a question mark...) that a reader can check.
- **Routing**: a taxonomy (YAML) of teams, components and keywords (`models/taxonomy.yaml`);
  a classifier trained on labelled examples when they are given, keyword scores otherwise.
  Every routed item keeps its confidence; below `min_confidence` it goes to the "triage" team.

All three return a DataFrame aligned with the input (index 0..n-1) and work on whole batches.
The classifier behind them, `TextClassifier`, is a scikit-learn estimator: word 1-2-gram and
character 2-5-gram TF-IDF (sublinear tf) feeding a class-balanced linear SVM, averaged with a
Complement Naive Bayes on the words.
"""
from __future__ import annotations

import hashlib
import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from pulse.core.errors import InputFileError, TaxonomyError, TextError

log = logging.getLogger(__name__)

SEED_DIR = Path(__file__).with_name("text_seed")
DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
KINDS: tuple[str, ...] = ("bug", "feature_request", "complaint", "praise", "question")
TRIAGE = "triage"
USER_SENTIMENT_MODEL = "text-sentiment.joblib"

#: Words that mark a text as positive for the lexicon fallback (same syntax as NEGATIVE_TERMS).
POSITIVE_TERMS: tuple[str, ...] = (
    "thank*", "thx", "great", "love*", "awesome", "excellent", "amazing", "fantastic",
    "brilliant", "perfect*", "happy", "glad", "delighted", "pleased", "impressed", "kudos",
    "well done", "nice", "helpful", "recommend*", "smooth*", "works great", "works well",
    "works like a charm", "best", "superb", "wonderful", "appreciate*", "rock solid", "cheers",
    "good job", "great job", "easy to use", "intuitive", "fast", "quick fix", "solved",
)


# --------------------------------------------------------------------------- normalising


_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_HANDLE = re.compile(r"(?<!\w)@\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACE = re.compile(r"\s+")


def normalise(text: Any) -> str:
    """Lower-case text with HTML entities decoded and URLs, e-mails, @handles, numbers as tokens.

    The tokens (`_url_`, `_email_`, `_user_`, `_num_`) keep the fact ("it links somewhere",
    "it names an amount") without the particular value, which rarely generalises.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    s = html.unescape(str(text))
    s = _URL.sub(" _url_ ", s)
    s = _EMAIL.sub(" _email_ ", s)
    s = _HANDLE.sub(" _user_ ", s)
    s = _NUMBER.sub(" _num_ ", s)
    s = s.replace("\u2019", "'").lower()
    return _SPACE.sub(" ", s).strip()


def _as_list(texts: Iterable[Any] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    return ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
            for t in texts]


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

    def predict_proba(self, texts: Iterable[Any]) -> np.ndarray:
        """Class probabilities (softmax of the scores), columns in the order of `classes_`."""
        score = self.decision_function(texts) * self.temperature
        score -= score.max(axis=1, keepdims=True)
        expd = np.exp(score)
        return expd / expd.sum(axis=1, keepdims=True)

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


def _standardise(score: np.ndarray, n_classes: int) -> np.ndarray:
    """Scores centred and scaled per row (a binary SVM's one column becomes two)."""
    score = np.asarray(score, dtype=float)
    if score.ndim == 1 or (n_classes == 2 and score.shape[1] == 1):
        score = np.column_stack([-score.ravel(), score.ravel()]) / 2.0
        return score
    sd = score.std(axis=1, keepdims=True)
    return (score - score.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


# --------------------------------------------------------------------------- training data


def read_labelled_csv(path: str | Path, *, text_column: str = "text",
                      label_column: str = "label") -> pd.DataFrame:
    """Texts and labels from a CSV file: a DataFrame with columns text, label (blanks dropped)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputFileError(f"no such file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {path} as CSV: {exc}") from None
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise InputFileError(f"{path.name} has no column {missing[0]!r} (columns: "
                             f"{', '.join(map(repr, frame.columns))})")
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


# --------------------------------------------------------------------------- model store


def models_dir() -> Path:
    from pulse.core.settings import get_settings

    return get_settings().resolved_home() / "models"


def user_sentiment_path() -> Path:
    return models_dir() / USER_SENTIMENT_MODEL


_memo: dict[tuple[str, ...], TextClassifier] = {}


def _seed_model(name: str, label_column: str) -> TextClassifier | None:
    """The model trained from `text_seed/<name>.csv`, cached in memory and under PULSE_HOME."""
    import sklearn

    seed = SEED_DIR / f"{name}.csv"
    if not seed.is_file():
        return None
    digest = hashlib.sha256(seed.read_bytes() + sklearn.__version__.encode()).hexdigest()[:12]
    key = ("seed", name, digest, str(models_dir()))
    if key in _memo:
        return _memo[key]
    cached = models_dir() / f"text-{name}-seed-{digest}.joblib"
    model: TextClassifier | None = None
    if cached.is_file():
        try:
            model = TextClassifier.load(cached)
            check_is_fitted(model, "svm_")  # a file from an older Pulse may not fit this code
        except (TextError, NotFittedError, AttributeError) as exc:
            log.warning("retraining the %s seed model: %s", name, exc)
            model = None
    if model is None:
        data = read_labelled_csv(seed, label_column=label_column)
        model = TextClassifier(C=1.0).fit(data["text"], data["label"])
        try:
            model.save(cached)
        except OSError as exc:  # a read-only home still gets the in-memory model
            log.warning("cannot cache the %s seed model at %s: %s", name, cached, exc)
    _memo[key] = model
    return model


def _user_model(path: Path) -> TextClassifier | None:
    if not path.is_file():
        return None
    stat = path.stat()
    key = ("user", str(path), str(stat.st_mtime_ns), str(stat.st_size))
    if key not in _memo:
        _memo[key] = TextClassifier.load(path)
    return _memo[key]


def train_sentiment(texts: Sequence[str], labels: Sequence[str], *,
                    path: Path | None = None) -> Path:
    """Fit a sentiment model on the user's examples and save it where `sentiment` looks."""
    model = TextClassifier().fit(texts, labels)
    return model.save(path or user_sentiment_path())


# --------------------------------------------------------------------------- lexicons


@lru_cache(maxsize=16)
def _terms_regex(terms: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for raw in terms:
        term = raw.strip().lower().replace("'", "")
        prefix = term.endswith("*")
        words = re.findall(r"[a-z0-9]+", term.rstrip("*"))
        if not words:
            continue
        body = r"\s+".join(map(re.escape, words))
        parts.append(rf"\b{body}" + (r"\w*" if prefix else r"\b"))
    return re.compile("|".join(parts) if parts else r"(?!x)x")


def _lexicon_text(texts: list[str]) -> pd.Series:
    return pd.Series([normalise(t).replace("'", "") for t in texts], dtype=object)


def count_terms(texts: Iterable[Any], terms: Sequence[str]) -> np.ndarray:
    """How many times the lexicon's terms occur in each text (whole words, case ignored)."""
    return _lexicon_text(_as_list(texts)).str.count(_terms_regex(tuple(terms))).to_numpy()


def lexicon_sentiment(texts: Iterable[Any]) -> pd.DataFrame:
    """The fallback: negative and positive term counts; score in [-1, 1]."""
    from pulse.models.negative_words import NEGATIVE_TERMS

    items = _as_list(texts)
    neg = count_terms(items, NEGATIVE_TERMS).astype(float)
    pos = count_terms(items, POSITIVE_TERMS).astype(float)
    score = (pos - neg) / (pos + neg + 1.0)
    label = np.where(score > 0.2, "positive", np.where(score < -0.2, "negative", "neutral"))
    return pd.DataFrame({"label": label, "score": score.round(4), "method": "lexicon"})


# --------------------------------------------------------------------------- sentiment


def sentiment(texts: Iterable[Any] | str) -> pd.DataFrame:
    """Sentiment of each text: columns label, score, method; index 0..n-1.

    `label` is negative, neutral or positive; `score` runs from -1 (surely negative) to +1
    (surely positive): P(positive) - P(negative) for the models, a term balance for the
    lexicon; `method` says which answered: "user-model", "seed-model" or "lexicon".
    """
    items = _as_list(texts)
    if not items:
        return pd.DataFrame({"label": pd.Series(dtype=object), "score": pd.Series(dtype=float),
                             "method": pd.Series(dtype=object)})
    method = "user-model"
    model = _user_model(user_sentiment_path())
    if model is None:
        method, model = "seed-model", _seed_model("sentiment", "label")
    if model is None:
        return lexicon_sentiment(items)
    proba = model.predict_proba(items)
    classes = [str(c) for c in model.classes_]
    label = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    pos = proba[:, classes.index("positive")] if "positive" in classes else 0.0
    neg = proba[:, classes.index("negative")] if "negative" in classes else 0.0
    score = np.round(np.asarray(pos - neg, dtype=float), 4)
    return pd.DataFrame({"label": label, "score": score, "method": method})


# --------------------------------------------------------------------------- feedback kind


#: Plain rules for the kind: (kind, weight, regex on normalised text without apostrophes).
KIND_RULES: tuple[tuple[str, float, str], ...] = (
    ("feature_request", 2.0, r"\b(would|it ?d) (be|love) (great|nice|awesome|helpful|useful|"
                             r"good)\b|\bwould love\b|\bplease (add|support|allow|consider)\b|"
                             r"\bfeature request\b|\bi wish\b|\bany plans\b|\bcould you add\b|"
                             r"\bcan you add\b|\bability to\b|\bsuggestion\b|\broadmap\b|"
                             r"\b(add|support for) (a |an )?(new |dark |bulk )?\w+ (option|mode)\b"),
    ("bug", 2.0, r"\b(doesnt|does not|dont|isnt|wont|cant|is not|not) (work|load|save|sync|"
                 r"open)\w*\b|\berror\w*\b|\bbug\w*\b|\bbroken\b|\bcrash\w*\b|\bfail\w*\b|"
                 r"\bexception\b|\b_num_ (error|status)\b|\b(500|502|503|403|404)\b|"
                 r"\bstopped (working|arriving|updating)\b|\bnot working\b|\bstuck\b|"
                 r"\bhangs?\b|\bfreez\w*\b|\bblank\b|\bwrong\b|\bmissing\b|\bduplicate\w*\b"),
    ("complaint", 1.5, r"\bunacceptable\b|\bterrible\b|\bawful\b|\bworst\b|\bfrustrat\w*\b|"
                       r"\bdisappoint\w*\b|\bfed up\b|\bcancel\w*\b|\brefund\w*\b|"
                       r"\bwaiting\b|\bno (response|reply|answer)\b|\bignored\b|\bnightmare\b|"
                       r"\btoo (expensive|slow)\b|\brip ?off\b|\bunhappy\b|\bnot happy\b"),
    ("praise", 1.5, r"\bthank\w*\b|\bkudos\b|\blove\b|\bgreat (job|work|product)\b|"
                    r"\bawesome\b|\bexcellent\b|\bfantastic\b|\bamazing\b|\bbrilliant\b|"
                    r"\bwell done\b|\bhighly recommend\b|\bdelighted\b|\bsuperb\b"),
    ("question", 1.0, r"\?\s*$|^(how|what|where|when|which|who|why|is there|are there|"
                      r"does|do you|can i|can we|could i|is it)\b"),
)


@lru_cache(maxsize=1)
def _kind_rules() -> tuple[tuple[int, float, re.Pattern[str]], ...]:
    return tuple((KINDS.index(k), w, re.compile(re.sub(r"\((?!\?)", "(?:", rx)))
                 for k, w, rx in KIND_RULES)


def kind_rule_scores(texts: Iterable[Any]) -> np.ndarray:
    """(n_samples, 5) rule weights per kind, columns in the order of KINDS."""
    norm = _lexicon_text(_as_list(texts))
    out = np.zeros((len(norm), len(KINDS)))
    for col, weight, rx in _kind_rules():
        out[:, col] = norm.str.contains(rx).to_numpy(dtype=bool) * weight
    return out


def feedback_kind(texts: Iterable[Any] | str) -> pd.DataFrame:
    """Kind of feedback of each text: columns kind, confidence, method; index 0..n-1.

    The seed model's probabilities and the rules' votes are averaged (the rules' weights
    normalised to sum 1); a text no rule matches keeps the model's answer.
    """
    items = _as_list(texts)
    rules = kind_rule_scores(items)
    model = _seed_model("kind", "kind")
    if model is not None and items:
        raw = model.predict_proba(items)
        proba = np.zeros((len(items), len(KINDS)))
        for j, c in enumerate(model.classes_):
            if str(c) in KINDS:
                proba[:, KINDS.index(str(c))] = raw[:, j]
        proba /= np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
        method = np.where(rules.sum(axis=1) > 0, "model+rules", "model")
    else:
        proba = np.full((len(items), len(KINDS)), 1.0 / len(KINDS))
        method = np.where(rules.sum(axis=1) > 0, "rules", "none")
    fired = rules.sum(axis=1, keepdims=True)
    votes = np.divide(rules, fired, out=np.zeros_like(rules), where=fired > 0)
    combined = np.where(fired > 0, (proba + votes) / 2.0, proba)
    best = combined.argmax(axis=1) if items else np.zeros(0, dtype=int)
    return pd.DataFrame({
        "kind": np.asarray(KINDS, dtype=object)[best],
        "confidence": np.round(combined.max(axis=1) if items else np.zeros(0), 4),
        "method": method,
    })


# --------------------------------------------------------------------------- taxonomy


@dataclass(frozen=True)
class Component:
    name: str
    team: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    """Teams, their components and keywords, as read from a taxonomy YAML file."""

    teams: dict[str, str]  # team -> description
    components: tuple[Component, ...]
    source: str = "<memory>"
    team_keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def first_component(self, team: str) -> str:
        return next((c.name for c in self.components if c.team == team), "")


def _fail(source: str, node: Any, what: str) -> TaxonomyError:
    return TaxonomyError(f"{source}, line {node.start_mark.line + 1}: {what}")


def _keywords(source: str, node: Any, where: str) -> tuple[str, ...]:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise _fail(source, node, f"keywords of {where} must be a list of words "
                                  f"(not {node.tag.rsplit(':', 1)[-1]})")
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise _fail(source, item, f"a keyword of {where} must be a non-empty word or phrase")
        out.append(str(item.value).strip().lower())
    return tuple(out)


def _mapping(source: str, node: Any, what: str) -> list[tuple[str, Any, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise _fail(source, node, f"{what} must be a mapping of names to settings")
    out, seen = [], set()
    for key, value in node.value:
        name = str(key.value).strip()
        if not name:
            raise _fail(source, key, f"an empty name in {what}")
        if name in seen:
            raise _fail(source, key, f"{name!r} appears twice in {what}")
        seen.add(name)
        out.append((name, key, value))
    return out


def parse_taxonomy(text: str, *, source: str = "<string>") -> Taxonomy:
    """A Taxonomy from YAML text; errors name the line of the offending entry."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TaxonomyError(f"{source}{line}: not valid YAML ({problem})") from None
    if root is None:
        raise TaxonomyError(f"{source}: the taxonomy is empty; expected a `teams:` mapping")
    top = dict((name, (k, v)) for name, k, v in _mapping(source, root, "the taxonomy"))
    for name, (key, _) in top.items():
        if name != "teams":
            raise _fail(source, key, f"unknown top-level key {name!r}: expected only `teams`")
    if "teams" not in top:
        raise _fail(source, root, "expected a `teams:` mapping at the top")
    teams: dict[str, str] = {}
    team_keywords: dict[str, tuple[str, ...]] = {}
    components: list[Component] = []
    seen_components: dict[str, str] = {}
    for team, tkey, tnode in _mapping(source, top["teams"][1], "teams"):
        if team == TRIAGE:
            raise _fail(source, tkey, f"{TRIAGE!r} is reserved for the low-confidence queue")
        settings = dict((n, (k, v)) for n, k, v in _mapping(source, tnode, f"team {team!r}"))
        for name, (key, _) in settings.items():
            if name not in ("description", "components", "keywords"):
                raise _fail(source, key, f"unknown key {name!r} in team {team!r}: expected "
                                         "description, components or keywords")
        if "components" not in settings:
            raise _fail(source, tkey, f"team {team!r} has no `components:`")
        teams[team] = str(settings["description"][1].value) if "description" in settings \
            else ""
        if "keywords" in settings:
            team_keywords[team] = _keywords(source, settings["keywords"][1], f"team {team!r}")
        for comp, ckey, cnode in _mapping(source, settings["components"][1],
                                          f"components of team {team!r}"):
            if comp in seen_components:
                raise _fail(source, ckey, f"component {comp!r} of team {team!r} already "
                                          f"belongs to team {seen_components[comp]!r}")
            seen_components[comp] = team
            csettings = dict((n, (k, v)) for n, k, v in
                             _mapping(source, cnode, f"component {comp!r}"))
            for name, (key, _) in csettings.items():
                if name != "keywords":
                    raise _fail(source, key, f"unknown key {name!r} in component {comp!r}: "
                                             "expected keywords")
            if "keywords" not in csettings:
                raise _fail(source, ckey, f"component {comp!r} has no `keywords:`")
            components.append(Component(comp, team, _keywords(
                source, csettings["keywords"][1], f"component {comp!r}")))
    if not components:
        raise _fail(source, root, "the taxonomy names no components")
    return Taxonomy(teams=teams, components=tuple(components), source=source,
                    team_keywords=team_keywords)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read a taxonomy YAML file (default: the one shipped in `models/taxonomy.yaml`)."""
    path = Path(path) if path is not None else DEFAULT_TAXONOMY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaxonomyError(f"no taxonomy file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"cannot read the taxonomy {path}: {exc}") from None
    return parse_taxonomy(text, source=str(path))


# --------------------------------------------------------------------------- routing


def keyword_scores(texts: Iterable[Any], taxonomy: Taxonomy) -> np.ndarray:
    """(n_samples, n_components) counts of distinct keywords of each component found."""
    norm = _lexicon_text(_as_list(texts))
    out = np.zeros((len(norm), len(taxonomy.components)))
    for j, comp in enumerate(taxonomy.components):
        words = comp.keywords
        if comp.name == taxonomy.first_component(comp.team):
            words = words + taxonomy.team_keywords.get(comp.team, ())
        for word in words:
            out[:, j] += norm.str.contains(_terms_regex((word,))).to_numpy(dtype=bool)
    return out


def _keyword_route(texts: list[str], tax: Taxonomy) -> pd.DataFrame:
    scores = keyword_scores(texts, tax)
    teams = list(tax.teams)
    comp_team = np.array([teams.index(c.team) for c in tax.components])
    team_scores = np.zeros((len(texts), len(teams)))
    np.add.at(team_scores.T, comp_team, scores.T)
    best_team = team_scores.argmax(axis=1)
    # confidence: the best team's share of all evidence, shrunk when evidence is thin
    conf = team_scores.max(axis=1) / (team_scores.sum(axis=1) + 0.5)
    masked = np.where(comp_team[None, :] == best_team[:, None], scores, -1.0)
    best_comp = masked.argmax(axis=1)
    return pd.DataFrame({
        "team": np.asarray(teams, dtype=object)[best_team],
        "component": np.asarray([c.name for c in tax.components], dtype=object)[best_comp],
        "confidence": conf, "method": "keywords",
    })


def _examples_frame(examples: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(examples, (str, Path)):
        frame = read_labelled_csv(examples, label_column="team")
        extra = pd.read_csv(examples, dtype=str, keep_default_na=False)
        frame = frame.rename(columns={"label": "team"})
        if "component" in extra.columns:
            mask = (extra["text"].str.strip() != "") & (extra["team"].str.strip() != "")
            frame["component"] = extra.loc[mask, "component"].str.strip().to_numpy()
        return frame
    if not {"text", "team"} <= set(examples.columns):
        raise TextError("routing examples need columns text and team (got "
                        f"{', '.join(map(str, examples.columns))})")
    return examples


def _router(examples: pd.DataFrame) -> TextClassifier:
    digest = hashlib.sha256(pd.util.hash_pandas_object(
        examples[["text", "team"]].astype(str), index=False).to_numpy().tobytes()).hexdigest()
    key = ("router", digest)
    if key not in _memo:
        _memo[key] = TextClassifier().fit(examples["text"], examples["team"])
    return _memo[key]


def route(texts: Iterable[Any] | str, *, taxonomy: Taxonomy | str | Path | None = None,
          examples: pd.DataFrame | str | Path | None = None,
          min_confidence: float = 0.5) -> pd.DataFrame:
    """Team and component for each text: columns team, component, confidence, method.

    With labelled `examples` (a DataFrame or CSV with columns text, team and optionally
    component) a classifier trained on them answers, and the taxonomy's keywords answer the
    texts the classifier is unsure of; without examples the keywords alone answer. Items whose
    confidence is below `min_confidence` go to team "triage"; their confidence is kept and the
    best guess stays in `suggested_team` and `component`, so the queue can be sorted.
    """
    items = _as_list(texts)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    out = _keyword_route(items, tax)
    if examples is not None and items:
        ex = _examples_frame(examples)
        model = _router(ex)
        proba = model.predict_proba(items)
        team = np.asarray(model.classes_, dtype=object)[proba.argmax(axis=1)]
        conf = proba.max(axis=1)
        if "component" in ex.columns:
            usual = ex.groupby("team")["component"].agg(
                lambda s: s[s != ""].mode().iat[0] if (s != "").any() else "")
            comp = pd.Series(team).map(usual).fillna("").to_numpy()
        else:
            comp = np.asarray([tax.first_component(str(t)) for t in team], dtype=object)
        take = (conf >= min_confidence) | (out["confidence"].to_numpy() < conf)
        out["team"] = np.where(take, team, out["team"])
        out["component"] = np.where(take, comp, out["component"])
        out["confidence"] = np.where(take, conf, out["confidence"])
        out["method"] = np.where(take, "model", "keywords")
    low = out["confidence"].to_numpy() < min_confidence
    out["suggested_team"] = out["team"]
    out.loc[low, "team"] = TRIAGE
    out["confidence"] = out["confidence"].astype(float).round(4)
    return out[["team", "component", "confidence", "method", "suggested_team"]]


def clear_cache() -> None:
    """Forget the in-process models (tests, or after retraining in the same process)."""
    _memo.clear()


def classify(texts: Iterable[Any] | str, *, taxonomy: Taxonomy | str | Path | None = None,
             examples: pd.DataFrame | str | Path | None = None,
             min_confidence: float = 0.5) -> pd.DataFrame:
    """Sentiment, kind and route side by side (what `pulse text classify` prints)."""
    items = _as_list(texts)
    s = sentiment(items)
    k = feedback_kind(items)
    r = route(items, taxonomy=taxonomy, examples=examples, min_confidence=min_confidence)
    return pd.DataFrame({
        "text": items, "sentiment": s["label"], "sentiment_score": s["score"],
        "sentiment_method": s["method"], "kind": k["kind"], "kind_confidence": k["confidence"],
        "team": r["team"], "component": r["component"], "route_confidence": r["confidence"],
        "route_method": r["method"],
    })

