"""`pulse bench text`: Pulse's text models beside a plain TF-IDF baseline, on public corpora.

Three tasks, each trained on one split and scored on the other, the same split for both:

- airline sentiment: US airline tweets (negative / neutral / positive), accuracy and macro-F1;
- complaint reason: the `negativereason` of the negative tweets (10 classes), macro-F1;
- routing: Firefox bug reports (title + description) to one of 37 Bugzilla components.

The split is a seeded (random_state=0) stratified 70/30 split. The tweets span only eight days
(2015-02-16 to 2015-02-24) and their topics move with the news of each day (a storm, a
cancelled-flights wave), so a time split mostly measures that drift; the Firefox reports carry
no dates. The baseline is what anyone would try first: word unigram+bigram TF-IDF into
scikit-learn's LogisticRegression with default settings. Nothing is downloaded: the corpora are
read from the team's shared folder (`pulse.core.shared.shared_path("datasets", ...)`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pulse.core.formats import Format

SPLIT = "seeded stratified 70/30 (random_state=0)"


@dataclass
class TextFigure:
    task: str
    classes: int
    train: int
    test: int
    baseline_accuracy: float
    baseline_macro_f1: float
    pulse_accuracy: float
    pulse_macro_f1: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def datasets_dir() -> Path:
    from pulse.core.settings import get_settings
    from pulse.core.shared import shared_path

    root = get_settings().datasets
    return root.expanduser() if root else shared_path("datasets")


def airline_csv() -> Path:
    return datasets_dir() / "airline-tweets" / "Tweets.csv"


def firefox_csv() -> Path:
    return datasets_dir() / "firefox-components" / "Bugilla_Firefox_Task3.csv"


def load_airline(path: Path | None = None) -> Any:
    import pandas as pd

    from pulse.core.errors import InputFileError

    path = path or airline_csv()
    if not path.is_file():
        raise InputFileError(f"the airline tweets are missing: {path}")
    return pd.read_csv(path, usecols=["airline_sentiment", "negativereason", "text"])


def load_firefox(path: Path | None = None) -> Any:
    import pandas as pd

    from pulse.core.errors import InputFileError

    path = path or firefox_csv()
    if not path.is_file():
        raise InputFileError(f"the Firefox bug reports are missing: {path}")
    frame = pd.read_csv(path)
    return pd.DataFrame({
        "text": frame["IssueTitle"].fillna("").astype(str).str.strip() + "\n"
        + frame["Description"].fillna("").astype(str),
        "label": frame["ComponentName"].astype(str).str.strip(),
    })


def compare(task: str, texts: Any, labels: Any, *, random_state: int = 0) -> TextFigure:
    """Fit the baseline and Pulse's TextClassifier on 70% and score both on the other 30%."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    from pulse.models.text_classifier import TextClassifier

    started = time.perf_counter()
    X = np.asarray(texts, dtype=object)
    y = np.asarray(labels, dtype=object)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y,
                                              random_state=random_state)
    base = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())
    base_pred = base.fit(X_tr, y_tr).predict(X_te)
    ours = TextClassifier(random_state=random_state).fit(X_tr, y_tr).predict(X_te)
    return TextFigure(
        task=task, classes=len(set(y)), train=len(y_tr), test=len(y_te),
        baseline_accuracy=float(accuracy_score(y_te, base_pred)),
        baseline_macro_f1=float(f1_score(y_te, base_pred, average="macro")),
        pulse_accuracy=float(accuracy_score(y_te, ours)),
        pulse_macro_f1=float(f1_score(y_te, ours, average="macro")),
        seconds=time.perf_counter() - started,
    )


def run_text_bench(*, tasks: tuple[str, ...] = ("sentiment", "complaint_reason", "routing"),
                   random_state: int = 0) -> list[TextFigure]:
    """The figures of `pulse bench text` (raises InputFileError when a corpus is missing)."""
    figures = []
    if "sentiment" in tasks or "complaint_reason" in tasks:
        tweets = load_airline()
        if "sentiment" in tasks:
            figures.append(compare("airline sentiment", tweets["text"],
                                   tweets["airline_sentiment"], random_state=random_state))
        if "complaint_reason" in tasks:
            neg = tweets[tweets["airline_sentiment"].eq("negative")
                         & tweets["negativereason"].notna()]
            figures.append(compare("airline complaint reason", neg["text"],
                                   neg["negativereason"], random_state=random_state))
    if "routing" in tasks:
        bugs = load_firefox()
        figures.append(compare("firefox component routing", bugs["text"], bugs["label"],
                               random_state=random_state))
    return figures


def bench_text(
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
) -> None:
    """Sentiment, complaint reason and routing: Pulse's model beside a TF-IDF baseline."""
    from pulse.core.errors import PulseError

    console = Console()
    try:
        figures = run_text_bench()
    except PulseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if fmt is Format.json:
        typer.echo(json.dumps({"split": SPLIT, "baseline": "TF-IDF word 1-2-grams + "
                               "LogisticRegression()", "tasks": [f.to_dict() for f in figures]},
                              indent=2))
        return
    table = Table(title=f"pulse bench text ({SPLIT} split)")
    for col in ("task", "classes", "train", "test", "baseline acc", "baseline macro-F1",
                "pulse acc", "pulse macro-F1", "seconds"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for f in figures:
        table.add_row(f.task, str(f.classes), str(f.train), str(f.test),
                      f"{f.baseline_accuracy:.3f}", f"{f.baseline_macro_f1:.3f}",
                      f"{f.pulse_accuracy:.3f}", f"{f.pulse_macro_f1:.3f}", f"{f.seconds:.1f}")
    console.print(table)
    console.print("baseline: TF-IDF word 1-2-grams + LogisticRegression() (defaults); pulse: "
                  "pulse.models.text_classifier.TextClassifier")
