"""Understanding text: sentiment, feedback kind and routing to the team that owns it.

Three questions asked of every mention, ticket and survey comment:

- **Sentiment** (negative / neutral / positive): the user's own model at
  `$PULSE_HOME/models/text-sentiment.joblib` (`pulse text train sentiment FILE.csv`) when there
  is one; else a model trained at first use from the seed examples shipped in
  `models/text_seed/sentiment.csv` (cached on disk under `$PULSE_HOME/models/`); only when
  neither exists, a word lexicon (`models/negative_words.py` and `POSITIVE_TERMS` in
  models/text_lexicon.py).
- **Feedback kind** (bug, feature_request, complaint, praise, question): a model trained from
  `models/text_seed/kind.csv`, combined with plain rules ("would be great if", "doesn't work",
  a question mark...) that a reader can check.
- **Routing**: a taxonomy (YAML) of teams, components and keywords (`models/taxonomy.yaml`);
  a `Router` learned from labelled examples (yours, else the seed examples of the taxonomy's
  components) with the keywords as hints, keyword scores alone when there are no examples.
  Every routed item keeps its confidence; below the threshold measured on held-out examples
  (where precision reaches 0.9) it goes to the "triage" team with a suggested team.

All three return a DataFrame aligned with the input (index 0..n-1) and work on whole batches.

The classifier behind them, `TextClassifier`, is a scikit-learn estimator: word 1-2-gram and
character 2-5-gram TF-IDF (sublinear tf) feeding a class-balanced linear SVM, averaged with a
Complement Naive Bayes on the words.

The pieces live side by side: normalising and lexicons in models/text_lexicon.py, the
estimator in models/text_classifier.py, the seed and user models in models/text_store.py, and
the taxonomy and routing in models/text_routing.py; this module answers the three questions.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pulse.models.text_language import unsupported
from pulse.models.text_lexicon import _as_list, _lexicon_text, lexicon_sentiment
from pulse.models.text_routing import Taxonomy, route
from pulse.models.text_store import _seed_model, _user_model, user_sentiment_path

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
#: The sentiment of a text in a language no model covers (models/text_language.py), and its
#: method: never guessed as negative, and counted (`pulse feedback languages`).
UNKNOWN, OTHER_LANGUAGE = "unknown", "other-language"
KINDS: tuple[str, ...] = ("bug", "feature_request", "complaint", "praise", "question")


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
    if model is None:  # the word lists are English
        out = lexicon_sentiment(items)
        out.loc[unsupported(items, ("en",)), ["label", "score", "method"]] = \
            [UNKNOWN, 0.0, OTHER_LANGUAGE]
        return out
    proba = model.predict_proba(items)
    classes = [str(c) for c in model.classes_]
    label = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    pos = proba[:, classes.index("positive")] if "positive" in classes else 0.0
    neg = proba[:, classes.index("negative")] if "negative" in classes else 0.0
    score = np.round(np.asarray(pos - neg, dtype=float), 4)
    out = pd.DataFrame({"label": label, "score": score, "method": method})
    languages = getattr(model, "languages_", None)
    if languages:  # a text in a language the model never learnt is not guessed at
        other = unsupported(items, languages)
        out.loc[other, ["label", "score", "method"]] = [UNKNOWN, 0.0, OTHER_LANGUAGE]
    return out


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


def classify(texts: Iterable[Any] | str, *, taxonomy: Taxonomy | str | Path | None = None,
             examples: pd.DataFrame | str | Path | None = None,
             min_confidence: float | None = None) -> pd.DataFrame:
    """Sentiment, kind and route side by side (what `pulse text classify` prints)."""
    items = _as_list(texts)
    s = sentiment(items)
    k = feedback_kind(items)
    r = route(items, taxonomy=taxonomy, examples=examples, min_confidence=min_confidence)
    return pd.DataFrame({
        "text": items, "sentiment": s["label"], "sentiment_score": s["score"],
        "sentiment_method": s["method"], "kind": k["kind"], "kind_confidence": k["confidence"],
        "team": r["team"], "component": r["component"], "route_confidence": r["confidence"],
        "route_method": r["method"], "suggested_team": r["suggested_team"],
    })
