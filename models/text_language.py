"""Which language a text is in, well enough to know when no model of ours can read it.

`detect(texts)` gives an ISO 639-1 code per text, or `und` (undetermined: too short, or no
language stands out). Two plain signals, nothing downloaded:

- **script**: a text whose letters are mostly kana is `ja`, Han without kana `zh`, Hangul
  `ko`, Cyrillic `ru`, Arabic `ar`, Hebrew `he`, Greek `el`, Thai `th`, Devanagari `hi`;
- **function words** for Latin-script texts: the language whose most common short words
  ("the", "and" / "le", "est" / "el", "que" ...) the text holds most of, with at least two of
  them and more than any other language.

`covered(texts)` reads the languages a model was trained on the same way: a language counts
when at least 5% of the training texts are in it. A text in a language no model covers is
never read by the English words of a model trained on English: `models.text.sentiment`
labels it `unknown` (method `other-language`) instead of guessing, and the feedback's
relevance step never calls it off-topic.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

UNDETERMINED = "und"
#: A language is covered by a model when at least this share of its training texts is in it.
COVERED_SHARE = 0.05

_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are was were to of in it this that for with on you not have "
                    "has be can my we our your they what when why how do does doesn't don't "
                    "just but from at".split()),
    "fr": frozenset("le la les des est une un et pas ne je nous vous il elle que qui pour "
                    "dans sur avec ce cette mais du au aux sont plus très avons".split()),
    "es": frozenset("el la los las es una un y no que de en por para con se lo del al "
                    "pero muy está están tenemos nuestro nuestra hay como".split()),
    "de": frozenset("der die das und ist nicht ein eine wir ich sie es mit für auf den dem "
                    "zu von im sind haben aber auch noch bitte".split()),
    "pt": frozenset("o os as é um uma e não que do da dos das em para com se mas muito "
                    "está estão temos nosso nossa há como foi".split()),
    "it": frozenset("il lo gli le è un una e non che di del della per con si ma molto "
                    "sono abbiamo nostro nostra come anche".split()),
    "nl": frozenset("de het een en is niet wij ik we zijn met voor op van dat dit maar ook "
                    "heeft hebben geen".split()),
}

# (language, test on a character's Unicode name)
_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("ja", "HIRAGANA"), ("ja", "KATAKANA"), ("ko", "HANGUL"), ("zh", "CJK"),
    ("ru", "CYRILLIC"), ("ar", "ARABIC"), ("he", "HEBREW"), ("el", "GREEK"), ("th", "THAI"),
    ("hi", "DEVANAGARI"),
)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_URLISH = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|\S+@\S+")


def _script_language(text: str) -> str | None:
    letters = 0
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        if ord(ch) < 0x250:  # Latin
            continue
        name = unicodedata.name(ch, "")
        for lang, key in _SCRIPTS:
            if key in name:
                counts[lang] = counts.get(lang, 0) + 1
                break
    if not letters or not counts:
        return None
    if counts.get("ja"):  # kana mixed with Han is Japanese
        counts["ja"] += counts.pop("zh", 0)
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    return lang if n / letters >= 0.3 else None


def detect_one(text: Any) -> str:
    """The language of one text (see the module), or `und`."""
    if not isinstance(text, str) or not text.strip():
        return UNDETERMINED
    text = _URLISH.sub(" ", text)
    by_script = _script_language(text)
    if by_script:
        return by_script
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return UNDETERMINED
    hits = {lang: sum(w in vocab for w in words) for lang, vocab in _FUNCTION_WORDS.items()}
    ranked = sorted(hits.items(), key=lambda kv: kv[1], reverse=True)
    (best, n), (_, second) = ranked[0], ranked[1]
    return best if n >= 2 and n > second else UNDETERMINED


def detect(texts: Iterable[Any]) -> np.ndarray:
    """The language code of each text, aligned with the input."""
    return np.asarray([detect_one(t) for t in texts], dtype=object)


def covered(texts: Sequence[Any], *, share: float = COVERED_SHARE) -> frozenset[str]:
    """The languages at least `share` of `texts` are written in (undetermined ones aside)."""
    langs = detect(texts)
    langs = langs[langs != UNDETERMINED]
    if not len(langs):
        return frozenset()
    values, counts = np.unique(langs.astype(str), return_counts=True)
    return frozenset(str(v) for v, c in zip(values, counts, strict=True)
                     if c / len(langs) >= share)


def unsupported(texts: Sequence[Any], languages: Iterable[str]) -> np.ndarray:
    """True for each text in a determined language outside `languages`."""
    langs = detect(texts)
    known = set(languages)
    return np.asarray([lang != UNDETERMINED and lang not in known for lang in langs],
                      dtype=bool)


__all__ = ["COVERED_SHARE", "UNDETERMINED", "covered", "detect", "detect_one", "unsupported"]
