"""Text normalising and word lexicons: the shared preprocessing of models/text.py.

`normalise` turns raw text into what the classifiers read (URLs, e-mails, @handles and numbers
as tokens); the lexicon helpers count whole-word terms (`count_terms`) and give the fallback
sentiment when no model is there (`lexicon_sentiment`: models/negative_words.py against
`POSITIVE_TERMS`).
"""
from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

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
