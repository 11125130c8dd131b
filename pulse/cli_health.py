"""`pulse score` and `pulse scorecard ...`: features, health and the scorecard file."""
from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)

scorecard_app = typer.Typer(help="Check the health scorecard and list what it can measure.",
                            no_args_is_help=True)


class Basis(str, Enum):
    known = "known"
    occurred = "occurred"


class Format(str, Enum):
    table = "table"
    json = "json"


def _as_of(value: str | None) -> date:
    if not value:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date YYYY-MM-DD (not {value!r})") from None


def score(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The date to score, YYYY-MM-DD (default: today, UTC).")] = None,
    scorecard: Annotated[Path | None, typer.Option(
        help="Scorecard YAML (default: $PULSE_SCORECARD, else the built-in one).")] = None,
    basis: Annotated[Basis, typer.Option(
        help="'known': rows that had landed by the date (a re-run gives that day's answer); "
        "'occurred': rows that had happened by then, for history loaded after the fact.")]
    = Basis.known,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Compute every account's features and health as of a date, and store them.

    Re-running a date replaces that date's features and health and nothing else.
    """
    from models.scorecard import load_scorecard, score_date
    from sql.db import make_engine
    from sql.features import ensure_features_schema

    day = _as_of(as_of)
    card = load_scorecard(scorecard)  # a bad file stops here, before any work
    engine = make_engine()
    ensure_features_schema(engine)
    if fmt is Format.table and sys.stderr.isatty():
        with err.status(f"scoring as of {day}") as status:
            summary = score_date(engine, day, scorecard=card, basis=basis.value,
                                 on_stage=lambda msg: status.update(msg))
    else:
        summary = score_date(engine, day, scorecard=card, basis=basis.value)
    if fmt is Format.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    b = summary.bands
    by_card = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.by_scorecard.items()))
    out.print(Text.assemble(
        (f"Scored {summary.accounts:,} accounts as of {day}", "bold"),
        f" ({by_card or 'none'}; {basis.value} basis; scorecard {summary.scorecard})"))
    out.print(Text.assemble(
        ("green ", "green"), f"{b['green']:,}  ", ("amber ", "yellow"), f"{b['amber']:,}  ",
        ("red ", "red"), f"{b['red']:,}", f"  unscored {b['unscored']:,}" if b["unscored"]
        else ""))
    for f in summary.stale:
        out.print(Text.assemble(("stale source ", "yellow"), f.describe(),
                                "; its measures were left out" if card.skip_stale_measures
                                else ""), soft_wrap=True)
    if not summary.stale:
        out.print("Every source is fresh.")
    if summary.accounts == 0 and basis is Basis.known:
        out.print(f"No account had landed by {day}. To score history loaded later, use "
                  "--basis occurred.")
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    out.print(f"Took {secs}.")


@scorecard_app.command("check")
def scorecard_check(
    path: Annotated[Path | None, typer.Argument(
        help="Scorecard YAML (default: $PULSE_SCORECARD, else the built-in one).")] = None,
) -> None:
    """Check a scorecard file; name each problem with its line."""
    from models.scorecard import ScorecardError, load_scorecard

    try:
        card = load_scorecard(path)
    except ScorecardError as exc:
        for line in exc.lines():
            err.print(Text(f"error: {line}"), soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(Text.assemble((f"{card.source}", "bold"), f": ok (version {card.version}; "
                            f"green >= {card.green:g}, amber >= {card.amber:g}, red below)"))
    for c in card.cards():
        title = c.name + (f" (first {card.onboarding_days} days)" if c.name == "onboarding"
                          else "")
        table = Table(title=title, title_justify="left")
        for col in ("measure", "feature", "weight", "points"):
            table.add_column(col, justify="right" if col == "weight" else "left")
        total = sum(m.weight for m in c.measures)
        for m in c.measures:
            table.add_row(Text(m.name), Text(m.feature),
                          f"{m.weight:g} ({100 * m.weight / total:.0f}%)", Text(m.describe()))
        out.print(table)
    if card.stale_after_days:
        out.print("stale after: " + ", ".join(
            f"{k} {v:g} days" for k, v in card.stale_after_days.items())
            + ("; measures of a stale source are left out" if card.skip_stale_measures else ""))


@scorecard_app.command("features")
def scorecard_features() -> None:
    """The features a scorecard measure may use, and what each one means."""
    from sql.features import FEATURES

    table = Table(title="Features (per account, as of a date)", title_justify="left")
    table.add_column("feature")
    table.add_column("source")
    table.add_column("meaning", overflow="fold")
    for f in FEATURES.values():
        table.add_row(f.name, f.source, Text(f.description))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add `score` and `scorecard` to the `pulse` command line."""
    app.command("score")(score)
    app.add_typer(scorecard_app, name="scorecard")
