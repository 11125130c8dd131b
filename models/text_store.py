"""Where the text models live: the seed models trained at first use, the user's model, caching.

Seed models are trained from `models/text_seed/<name>.csv` and cached in memory and under
`$PULSE_HOME/models/`; the user's sentiment model is read from there too (`train_sentiment`
writes it). `clear_cache` forgets the in-process models.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from pulse.core.errors import TextError
from pulse.models.text_classifier import TextClassifier, read_labelled_csv

log = logging.getLogger(__name__)

SEED_DIR = Path(__file__).with_name("text_seed")
USER_SENTIMENT_MODEL = "text-sentiment.joblib"


# --------------------------------------------------------------------------- model store


def models_dir() -> Path:
    from pulse.core.settings import get_settings

    return get_settings().resolved_home() / "models"


def user_sentiment_path() -> Path:
    return models_dir() / USER_SENTIMENT_MODEL


_memo: dict[tuple[str, ...], Any] = {}  # TextClassifier, or a routing Router


def _seed_model(name: str, label_column: str) -> TextClassifier | None:
    """The model trained from `text_seed/<name>.csv`, cached in memory and under PULSE_HOME."""
    import sklearn

    seed = SEED_DIR / f"{name}.csv"
    if not seed.is_file():
        return None
    digest = hashlib.sha256(seed.read_bytes() + sklearn.__version__.encode()).hexdigest()[:12]
    # The model depends only on the shipped seed file and scikit-learn (the digest), so one
    # process learns it once, whatever PULSE_HOME says; each home still gets its cached copy.
    key = ("seed", name, digest)
    cached = models_dir() / f"text-{name}-seed-{digest}.joblib"
    if key in _memo:
        if not cached.is_file():
            try:
                _memo[key].save(cached)
            except OSError as exc:
                log.warning("cannot cache the %s seed model at %s: %s", name, cached, exc)
        return _memo[key]
    model: TextClassifier | None = None
    if cached.is_file():
        try:
            model = TextClassifier.load(cached)
            check_is_fitted(model, ["svm_", "languages_"])  # an older file may not fit this code
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


def clear_cache() -> None:
    """Forget the in-process models (tests, or after retraining in the same process)."""
    _memo.clear()
