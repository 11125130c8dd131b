"""`pulse bench text`: Pulse's text models beside a plain TF-IDF baseline, on public corpora.

Three tasks, each trained on one split and scored on the other, the same split for both:

- airline sentiment: US airline tweets (negative / neutral / positive), accuracy and macro-F1;
- complaint reason: the `negativereason` of the negative tweets (10 classes), macro-F1;
- routing: Firefox bug reports (title + description) to one of 37 Bugzilla components.

Routing is also measured as routing is used: the complaint reasons and the Firefox components
each go through Pulse's `Router` (models/text_routing.py), which picks its confidence threshold
from cross-validation on the training split alone; on the test split the bench reports
accuracy, precision at 50/80/100% coverage, the largest coverage at which precision stays at
0.9, and the share the router sent on by itself with the precision of that share. The
baseline's confidence is its largest predicted probability.

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


@dataclass
class RoutingFigure:
    task: str
    classes: int
    train: int
    test: int
    baseline_accuracy: float
    baseline_coverage_at_90: float
    baseline_precision_at_50: float
    baseline_precision_at_80: float
    baseline_precision_at_100: float
    pulse_accuracy: float
    pulse_coverage_at_90: float
    pulse_precision_at_50: float
    pulse_precision_at_80: float
    pulse_precision_at_100: float
    threshold: float | None  # chosen by cross-validation on the training split
    cv_coverage: float  # the share routed at that threshold in cross-validation
    auto_routed: float  # the share of the test split at or above it
    auto_precision: float | None  # the precision of that share on the test split
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


def _split(texts: Any, labels: Any, random_state: int) -> tuple[Any, Any, Any, Any]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    X = np.asarray(texts, dtype=object)
    y = np.asarray(labels, dtype=object)
    return tuple(train_test_split(X, y, test_size=0.3, stratify=y,  # type: ignore[return-value]
                                  random_state=random_state))


def _baseline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())


def compare(task: str, texts: Any, labels: Any, *, random_state: int = 0,
            baseline: Any = None) -> TextFigure:
    """Fit the baseline and Pulse's TextClassifier on 70% and score both on the other 30%
    (`baseline`: an already fitted baseline on the same split)."""
    from sklearn.metrics import accuracy_score, f1_score

    from pulse.models.text_classifier import TextClassifier

    started = time.perf_counter()
    X_tr, X_te, y_tr, y_te = _split(texts, labels, random_state)
    base = baseline if baseline is not None else _baseline().fit(X_tr, y_tr)
    base_pred = base.predict(X_te)
    ours = TextClassifier(random_state=random_state).fit(X_tr, y_tr).predict(X_te)
    return TextFigure(
        task=task, classes=len(set(y_tr) | set(y_te)), train=len(y_tr), test=len(y_te),
        baseline_accuracy=float(accuracy_score(y_te, base_pred)),
        baseline_macro_f1=float(f1_score(y_te, base_pred, average="macro")),
        pulse_accuracy=float(accuracy_score(y_te, ours)),
        pulse_macro_f1=float(f1_score(y_te, ours, average="macro")),
        seconds=time.perf_counter() - started,
    )


def compare_routing(task: str, texts: Any, labels: Any, *, random_state: int = 0,
                    baseline: Any = None) -> RoutingFigure:
    """Pulse's Router (threshold from cross-validation on the 70%) and the baseline (its top
    probability as confidence), both scored on the 30% as routers: precision at coverage."""
    import numpy as np

    from pulse.models.text_routing import (
        Router,
        coverage_at_precision,
        precision_at_coverage,
        precision_coverage,
    )

    started = time.perf_counter()
    X_tr, X_te, y_tr, y_te = _split(texts, labels, random_state)
    base = baseline if baseline is not None else _baseline().fit(X_tr, y_tr)
    proba = base.predict_proba(X_te)
    base_ok = np.asarray(base.classes_, dtype=object)[proba.argmax(axis=1)] == y_te
    base_curve = precision_coverage(base_ok, proba.max(axis=1))
    router = Router(random_state=random_state).fit(X_tr, y_tr)
    got = router.route(X_te)
    ok = got["team"].to_numpy(dtype=object) == y_te
    curve = precision_coverage(ok, got["confidence"].to_numpy())
    routed = got["routed"].to_numpy(dtype=bool)
    return RoutingFigure(
        task=task, classes=len(set(y_tr) | set(y_te)), train=len(y_tr), test=len(y_te),
        baseline_accuracy=float(base_ok.mean()),
        baseline_coverage_at_90=coverage_at_precision(base_curve, 0.9),
        baseline_precision_at_50=precision_at_coverage(base_curve, 0.5),
        baseline_precision_at_80=precision_at_coverage(base_curve, 0.8),
        baseline_precision_at_100=precision_at_coverage(base_curve, 1.0),
        pulse_accuracy=float(ok.mean()),
        pulse_coverage_at_90=coverage_at_precision(curve, 0.9),
        pulse_precision_at_50=precision_at_coverage(curve, 0.5),
        pulse_precision_at_80=precision_at_coverage(curve, 0.8),
        pulse_precision_at_100=precision_at_coverage(curve, 1.0),
        threshold=float(router.threshold_) if np.isfinite(router.threshold_) else None,
        cv_coverage=float(router.coverage_),
        auto_routed=float(routed.mean()),
        auto_precision=float(ok[routed].mean()) if routed.any() else None,
        seconds=time.perf_counter() - started,
    )


def _sample(texts: Any, labels: Any, n: int | None, random_state: int) -> tuple[Any, Any]:
    """At most `n` items of a corpus, a seeded sample stratified by label (all when None)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    if n is None or n >= len(labels):
        return texts, labels
    X = np.asarray(texts, dtype=object)
    y = np.asarray(labels, dtype=object)
    kept, _, y_kept, _ = train_test_split(X, y, train_size=n, stratify=y,
                                          random_state=random_state)
    return kept, y_kept


def run_text_bench(*, tasks: tuple[str, ...] = ("sentiment", "complaint_reason", "routing"),
                   random_state: int = 0, sample: int | None = None,
                   ) -> tuple[list[TextFigure], list[RoutingFigure]]:
    """The figures of `pulse bench text` (raises InputFileError when a corpus is missing):
    classifier figures, and routing figures for the complaint reasons and the components.
    `sample`: at most that many items per task, a seeded sample stratified by label."""
    figures: list[TextFigure] = []
    routing: list[RoutingFigure] = []

    def both(task: str, texts: Any, labels: Any) -> None:
        texts, labels = _sample(texts, labels, sample, random_state)
        X_tr, _, y_tr, _ = _split(texts, labels, random_state)
        base = _baseline().fit(X_tr, y_tr)  # one baseline fit serves both figures
        figures.append(compare(task, texts, labels, random_state=random_state, baseline=base))
        routing.append(compare_routing(task, texts, labels, random_state=random_state,
                                       baseline=base))

    if "sentiment" in tasks or "complaint_reason" in tasks:
        tweets = load_airline()
        if "sentiment" in tasks:
            figures.append(compare("airline sentiment", *_sample(
                tweets["text"], tweets["airline_sentiment"], sample, random_state),
                random_state=random_state))
        if "complaint_reason" in tasks:
            neg = tweets[tweets["airline_sentiment"].eq("negative")
                         & tweets["negativereason"].notna()]
            both("airline complaint reason", neg["text"], neg["negativereason"])
    if "routing" in tasks:
        bugs = load_firefox()
        both("firefox component routing", bugs["text"], bugs["label"])
    return figures, routing


def bench_text(
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
    task: Annotated[list[str] | None, typer.Option(
        "--task", help="only these: sentiment, complaint_reason (airline tweets), routing "
                       "(Firefox components); repeat for several; default all")] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", min=100, help="at most this many items per task, a seeded sample "
                                  "stratified by label (default: the whole corpus)")] = None,
) -> None:
    """Sentiment, complaint reason and routing: Pulse's model beside a TF-IDF baseline."""
    from pulse.core.errors import PulseError

    console = Console()
    known = ("sentiment", "complaint_reason", "routing")
    unknown = sorted(set(task or ()) - set(known))
    if unknown:
        console.print(f"[red]error:[/red] unknown task {', '.join(unknown)} "
                      f"(expected one of {', '.join(known)})")
        raise typer.Exit(2)
    try:
        figures, routing = run_text_bench(tasks=tuple(task) if task else known,
                                          sample=sample)
    except PulseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if fmt is Format.json:
        typer.echo(json.dumps({"split": SPLIT, "sample": sample, "baseline": "TF-IDF word 1-2-grams + "
                               "LogisticRegression()", "tasks": [f.to_dict() for f in figures],
                               "routing": [f.to_dict() for f in routing]}, indent=2))
        return
    of = "" if sample is None else f", at most {sample:,} items per task"
    table = Table(title=f"pulse bench text ({SPLIT} split{of})")
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

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    rt = Table(title="routing: precision at coverage on the test split")
    for col in ("task", "who", "accuracy", "coverage at P>=0.9", "P@50%", "P@80%", "P@100%",
                "threshold (CV)", "auto-routed", "its precision"):
        rt.add_column(col, justify="left" if col in ("task", "who") else "right")
    for r in routing:
        rt.add_row(r.task, "baseline", pct(r.baseline_accuracy), pct(r.baseline_coverage_at_90),
                   pct(r.baseline_precision_at_50), pct(r.baseline_precision_at_80),
                   pct(r.baseline_precision_at_100), "", "", "")
        rt.add_row("", "pulse router", pct(r.pulse_accuracy), pct(r.pulse_coverage_at_90),
                   pct(r.pulse_precision_at_50), pct(r.pulse_precision_at_80),
                   pct(r.pulse_precision_at_100),
                   "none reaches 0.9" if r.threshold is None else f"{r.threshold:.3f}",
                   pct(r.auto_routed), pct(r.auto_precision))
    console.print(rt)
    console.print("coverage at P>=0.9: the largest share of the test split the confidence "
                  "ranking routes at precision 0.9 (known only after the fact); threshold: "
                  "chosen by the router from cross-validation on the training split; "
                  "auto-routed: the test share at or above it, and its precision")
