"""`pulse text ...`: train the sentiment model on your own examples, classify a text; and
`pulse bench text`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pulse.cli.common import Format

text_app = typer.Typer(help="Sentiment, feedback kind and routing of texts.",
                       no_args_is_help=True)
train_app = typer.Typer(help="Train a text model on your own labelled examples.",
                        no_args_is_help=True)
text_app.add_typer(train_app, name="train")


@train_app.command("sentiment")
def train_sentiment_cmd(
    csv: Annotated[Path, typer.Argument(help="CSV of labelled texts")],
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the label")] = "label",
    folds: Annotated[int, typer.Option(min=2, help="cross-validation folds")] = 5,
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
) -> None:
    """Cross-validate, then train on all rows and save to $PULSE_HOME/models."""
    from pulse.core.errors import PulseError
    from pulse.models.text_classifier import cross_validate, read_labelled_csv
    from pulse.models.text_store import clear_cache, train_sentiment, user_sentiment_path

    console = Console()
    try:
        data = read_labelled_csv(csv, text_column=text_column, label_column=label_column)
        scores = cross_validate(data["text"], data["label"], folds=folds)
        path = train_sentiment(data["text"], data["label"], path=user_sentiment_path())
    except PulseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    clear_cache()
    counts = data["label"].value_counts().sort_index().to_dict()
    if fmt is Format.json:
        typer.echo(json.dumps({"rows": len(data), "labels": counts, **scores,
                               "model": str(path)}, indent=2))
        return
    console.print(f"trained on {len(data)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    console.print(f"{scores['folds']}-fold cross-validated accuracy {scores['accuracy']:.3f}, "
                  f"macro-F1 {scores['macro_f1']:.3f}")
    console.print(f"saved to {path}")


@train_app.command("routing")
def train_routing_cmd(
    csv: Annotated[Path, typer.Argument(help="CSV of routed texts (columns text, team[, "
                                             "component])")],
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML (default: shipped)")] = None,
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    team_column: Annotated[str, typer.Option(help="column holding the team")] = "team",
    component_column: Annotated[str, typer.Option(
        help="column holding the component (optional)")] = "component",
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
) -> None:
    """Learn routing from your examples: cross-validate, choose the confidence threshold where
    precision reaches 0.9, train on all rows and save to $PULSE_HOME/models."""
    from pulse.core.errors import PulseError
    from pulse.models.text_routing import load_taxonomy, read_routing_examples, train_router
    from pulse.models.text_store import clear_cache

    console = Console()
    try:
        tax = load_taxonomy(taxonomy)
        data = read_routing_examples(csv, text_column=text_column, team_column=team_column,
                                     component_column=component_column)
        router, path = train_router(data, tax)
    except PulseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    clear_cache()
    _print_router(router, console, fmt, source=str(csv), saved=str(path))


@text_app.command("router")
def router_cmd(
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML (default: shipped)")] = None,
    examples: Annotated[Path | None, typer.Option(
        help="CSV of routing examples (columns text, team[, component])")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
) -> None:
    """The router `route` uses, and its precision at each confidence threshold (held out)."""
    from pulse.core.errors import PulseError
    from pulse.models.text_routing import routing_model

    console = Console()
    try:
        router, method = routing_model(taxonomy, examples)
    except PulseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if router is None:
        message = ("no labelled examples: the taxonomy's keywords route, with a fixed bar of "
                   "0.5 and no measured precision")
        if fmt is Format.json:
            typer.echo(json.dumps({"method": method, "note": message}, indent=2))
        else:
            console.print(message)
        return
    _print_router(router, console, fmt, source=method)


#: Thresholds at which `pulse text router` reads the precision curve.
CURVE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _print_router(router: Any, console: Console, fmt: Format, *, source: str,
                  saved: str | None = None) -> None:
    from rich.table import Table

    from pulse.models.text_routing import curve_at

    summary = router.summary()
    marks = sorted(set(CURVE_THRESHOLDS) | ({summary["threshold"]} if summary["threshold"]
                                            is not None else set()))
    curve = curve_at(router.curve_, marks)
    if fmt is Format.json:
        typer.echo(json.dumps({"source": source, **summary, "model": saved,
                               "curve": curve.round(4).to_dict("records")}, indent=2))
        return
    console.print(f"router from {source}: {summary['examples']} examples, held-out accuracy "
                  f"{summary['cv_accuracy']:.3f}")
    if summary["threshold"] is None:
        console.print(f"no threshold reaches precision {summary['target_precision']}: "
                      "everything goes to triage with a suggested team")
    else:
        console.print(f"routes automatically at confidence >= {summary['threshold']:.3f}: "
                      f"{router.coverage_:.1%} of held-out examples, precision "
                      f"{router.precision_:.3f} (target {summary['target_precision']})")
    table = Table(title="precision at each confidence threshold (held-out examples)")
    for col in ("threshold", "routed", "coverage", "precision"):
        table.add_column(col, justify="right")
    for row in curve.itertuples():
        chosen = " (chosen)" if row.threshold == summary["threshold"] else ""
        table.add_row(f"{row.threshold:.3f}{chosen}", str(row.routed), f"{row.coverage:.1%}",
                      "-" if row.routed == 0 else f"{row.precision:.3f}")
    console.print(table)
    if saved:
        console.print(f"saved to {saved}")


@text_app.command("classify")
def classify_cmd(
    texts: Annotated[list[str], typer.Argument(help="one or more texts")],
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML (default: shipped)")] = None,
    examples: Annotated[Path | None, typer.Option(
        help="CSV of routing examples (columns text, team[, component])")] = None,
    min_confidence: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="below this a text goes to triage (default: the threshold "
                               "measured on held-out examples; 0.5 for keywords alone)")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
) -> None:
    """Sentiment, feedback kind and route of each text."""
    from rich.table import Table

    from pulse.core.errors import PulseError
    from pulse.models.text import classify

    console = Console()
    try:
        frame = classify(texts, taxonomy=taxonomy, examples=examples,
                         min_confidence=min_confidence)
    except PulseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if fmt is Format.json:
        typer.echo(frame.to_json(orient="records", indent=2))
        return
    table = Table()
    for col in ("text", "sentiment", "kind", "team", "component", "confidence"):
        table.add_column(col)
    for row in frame.itertuples():
        table.add_row(row.text, f"{row.sentiment} ({row.sentiment_score:+.2f}, "
                                f"{row.sentiment_method})",
                      f"{row.kind} ({row.kind_confidence:.2f})",
                      row.team if row.team != "triage"
                      else f"triage (suggested: {row.suggested_team})", row.component,
                      f"{row.route_confidence:.2f} ({row.route_method})")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `text`; `pulse text bench` is the same as `pulse bench text`."""
    from pulse.devkit.bench.text import bench_text

    if not any(c.name == "bench" for c in text_app.registered_commands):
        text_app.command("bench", help="The same as `pulse bench text`.")(bench_text)
    app.add_typer(text_app, name="text")
