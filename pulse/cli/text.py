"""`pulse text ...`: train the sentiment model on your own examples, classify a text; and
`pulse bench text`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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


@text_app.command("classify")
def classify_cmd(
    texts: Annotated[list[str], typer.Argument(help="one or more texts")],
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML (default: shipped)")] = None,
    examples: Annotated[Path | None, typer.Option(
        help="CSV of routing examples (columns text, team[, component])")] = None,
    min_confidence: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="below this a text goes to triage")] = 0.5,
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
                      f"{row.kind} ({row.kind_confidence:.2f})", row.team, row.component,
                      f"{row.route_confidence:.2f} ({row.route_method})")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `text`; `pulse text bench` is the same as `pulse bench text`."""
    from pulse.devkit.bench.text import bench_text

    if not any(c.name == "bench" for c in text_app.registered_commands):
        text_app.command("bench", help="The same as `pulse bench text`.")(bench_text)
    app.add_typer(text_app, name="text")
