"""`pulse model train|list|report`, `pulse churn score` and `pulse bench models|score`:
the churn model's registry on the command line."""
from __future__ import annotations

import json
import sys
from datetime import date
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Basis, Format, parse_day

if TYPE_CHECKING:
    from pulse.models.registry import ModelRecord

out = Console()
err = Console(stderr=True)

model_app = typer.Typer(help="Train, list and report churn models (the model registry).",
                        no_args_is_help=True)
churn_app = typer.Typer(help="Churn risk of every account with the champion model.",
                        no_args_is_help=True)



class Classifier(str, Enum):
    auto = "auto"
    hgb = "hgb"
    logistic = "logistic"


#: `pulse model train` reads history on the same basis as `pulse score` by default: "auto"
#: once the warehouse knows it, else "occurred" (history loaded after the fact).
TRAIN_BASIS = Basis.auto




def _engine() -> Any:
    from pulse.sql.db import make_engine
    from pulse.sql.features import ensure_features_schema

    engine = make_engine()
    ensure_features_schema(engine)
    return engine


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _with_status(message: str, fmt: Format, work: Any) -> Any:
    if fmt is Format.table and sys.stderr.isatty():
        with err.status(message) as status:
            return work(lambda msg: status.update(msg))
    return work(None)


# --------------------------------------------------------------------------- model


@model_app.command("train")
def model_train(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Training date, YYYY-MM-DD: nothing after it is read (default: "
        "today, UTC).")] = None,
    horizon: Annotated[int, typer.Option(
        help="Churn horizon in days: the label is a cancellation within this many days "
        "after a snapshot.", min=1)] = 90,
    basis: Annotated[Basis, typer.Option(
        help="'occurred': rows that had happened by each snapshot date (history loaded after "
        "the fact); 'known': rows that had also landed by then; 'auto' (as `pulse score`): rows "
        "landed in a backfill count from when they happened, other rows from when they "
        "landed.")] = TRAIN_BASIS,
    step: Annotated[int, typer.Option(help="Days between snapshots.", min=1)] = 7,
    valid_days: Annotated[int, typer.Option(
        help="Days of validation snapshots (the latest whose horizon is complete).", min=1)]
    = 28,
    warmup: Annotated[int, typer.Option(
        help="Days of history before the first snapshot.", min=0)] = 56,
    classifier: Annotated[Classifier, typer.Option(
        help="'auto': choose among logistic regressions and gradient boosting by time-series "
        "cross-validation; 'hgb' or 'logistic': choose only among that kind.")]
    = Classifier.auto,
    exact_horizon: Annotated[bool, typer.Option(
        "--exact-horizon", help="Refuse when the history is too short for --horizon, instead "
        "of using the longest horizon that fits.")] = False,
    min_roc_auc: Annotated[float, typer.Option(
        help="Minimum validation ROC AUC before a model may become champion.", min=0.0,
        max=1.0)] = 0.60,
    beat_scorecard: Annotated[bool, typer.Option(
        "--beat-scorecard/--no-beat-scorecard",
        help="Also require a validation ROC AUC no worse than the scorecard's own ranking "
        "by more than two of its standard errors.")]
    = True,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate/--no-calibrate",
        help="Then fit the scorecard's bands (and weights) to the same history and make the "
        "result active, as `pulse scorecard calibrate --apply` does.")] = True,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Train a churn model on history, evaluate it on a later window, register it.

    Snapshots are taken every --step days across the whole history whose horizon has
    completed. A configuration is chosen by time-series cross-validation, measured on the
    latest --valid-days of snapshots (trained only on snapshots whose labels end before
    them) beside a plain logistic regression and default gradient boosting (the better
    baseline replaces it when it ranks better), then refitted on every labelled snapshot.
    When the history is too short for --horizon, the longest horizon that fits is used and
    said. It must first clear a minimum bar on its validation window (ROC AUC >= --min-roc-auc and,
    unless --no-beat-scorecard, better than ranking by the scorecard's health). Then it
    becomes the champion only when it beats the current champion on the same validation
    window (higher ROC AUC; a tie goes to the lower Brier score); otherwise it is kept as a
    challenger with a note saying why.
    """
    from pulse.models.registry import train_and_register

    engine = _engine()
    day = parse_day(as_of)
    snapshots: dict[Any, Any] = {}  # shared by the training and the calibration
    result = _with_status("building training snapshots", fmt, lambda stage: train_and_register(
        engine, as_of=day, horizon_days=horizon, basis=basis.value, step_days=step,
        valid_days=valid_days, warmup_days=warmup, classifier=classifier.value,
        min_roc_auc=min_roc_auc, must_beat_scorecard=beat_scorecard,
        shorten_horizon=not exact_horizon, snapshots=snapshots, on_stage=stage))
    calibration = None
    if calibrate:
        from pulse.models.calibration import calibrate_and_apply

        calibration = calibrate_and_apply(engine, as_of=day, horizon_days=horizon,
                                          basis=basis.value, snapshots=snapshots)
    tone = getattr(result.data, "tone", None)
    if fmt is Format.json:
        doc = result.to_dict()
        if tone is not None:
            doc["support_tone"] = {"classified": tone.classified, "error": tone.error}
        if calibration is not None:
            cal, proposal, applied = calibration
            doc["scorecard_calibration"] = {**cal.to_dict(), "proposal": str(proposal),
                                            "applied": str(applied) if applied else None}
        print(json.dumps(doc, indent=2))
        return
    r = result.record
    out.print(Text(f"churn model v{r.version}: {r.status}", style="bold"))
    if r.metrics.get("horizon_note"):
        out.print(Text(f"note: {r.metrics['horizon_note']}", style="yellow"))
    out.print(Text(r.note or ""))
    if tone is not None:
        out.print(Text(f"support tone, read by the sentiment model first: {tone.words}",
                       style="yellow" if tone.error else ""))
    _print_record(r)
    out.print(f"artifact: {r.artifact_path}")
    if calibration is not None:
        from pulse.cli.health import print_calibration

        cal, proposal, applied = calibration
        out.print(Text("scorecard calibration", style="bold"))
        print_calibration(cal)
        out.print(f"proposal: {proposal}" + (f"; applied: {applied}" if applied else
                                             "; not applied"))


def _print_record(r: ModelRecord) -> None:
    m = r.metrics
    if m.get("model"):
        sel = m.get("selection") or {}
        means = {k: v for k, v in (sel.get("mean_roc_auc") or {}).items() if v is not None}
        how = (f", chosen by mean ROC AUC over {sel.get('folds')} time folds ("
               + ", ".join(f"{k} {v:.3f}" for k, v in means.items()) + ")") if means else ""
        out.print(Text(f"model: {m['model']}{how}"))
    out.print(f"training snapshots {r.train_start} to {r.train_end}: "
              f"{_num(m.get('train_rows'))} rows, {_num(m.get('train_positives'))} churned "
              f"({_num(m.get('train_accounts'))} accounts)")
    out.print(f"validation snapshots {r.valid_start} to {r.valid_end}: {_num(m.get('n'))} rows, "
              f"{_num(m.get('positives'))} churned within {r.horizon_days} days "
              f"(base rate {_num(m.get('base_rate'), 4)})")
    refit = m.get("refit")
    if refit:
        out.print(f"registered model refitted on every labelled snapshot, {refit['span'][0]} to "
                  f"{refit['span'][1]}: {refit['rows']:,} rows of {refit['snapshots']} dates, "
                  f"{refit['positives']:,} churned ({refit['accounts']:,} accounts)")
    table = Table(title="Validation window", title_justify="left")
    for col in ("metric", f"v{r.version}"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    from pulse.models.selection import BASELINES

    # in BASELINES' order, simplest first (PostgreSQL's JSONB keeps keys in its own order)
    stored = {k: v for k, v in (m.get("baselines") or {}).items() if "roc_auc" in v}
    baselines = {k: stored[k] for k in sorted(
        stored, key=lambda k: (list(BASELINES).index(k) if k in BASELINES else len(BASELINES),
                               k))}
    for key in baselines:
        table.add_column(f"{key} baseline", justify="right")
    champ = m.get("champion_on_window")
    if champ:
        table.add_column(f"champion v{champ['version']} (same window)", justify="right")
    for key, label in (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("brier", "Brier score"),
                       ("lift_top_decile", "lift, top decile"),
                       ("mean_predicted", "mean predicted"), ("base_rate", "observed rate")):
        digits = 4 if key in ("brier", "mean_predicted", "base_rate") else 3
        row = [label, _num(m.get(key), digits)]
        for b in baselines.values():
            row.append(_num(b.get(key, m.get(key) if key == "base_rate" else None), digits))
        if champ:
            row.append(_num(champ.get(key), digits))
        table.add_row(*row)
    out.print(table)


@model_app.command("list")
def model_list(
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Every registered churn model, newest first, with its windows and metrics."""
    from pulse.models.registry import list_models

    models = list_models(_engine())
    if fmt is Format.json:
        print(json.dumps([m.to_dict() for m in models], indent=2))
        return
    if not models:
        out.print("no churn model is registered yet: run `pulse model train`")
        return
    table = Table(title="Churn models (newest first)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("model", "status", "training", "validation", "days", "AUC", "PR AUC",
                "Brier", "lift"):
        table.add_column(col, no_wrap=True, justify="left" if col in (
            "status", "training", "validation") else "right")
    for m in models:
        x = m.metrics
        table.add_row(
            f"v{m.version}", m.status, _span(m.train_start, m.train_end),
            _span(m.valid_start, m.valid_end), str(m.horizon_days), _num(x.get("roc_auc")),
            _num(x.get("pr_auc")), _num(x.get("brier"), 4), _num(x.get("lift_top_decile"), 2))
    # piped output is read by people too: do not squeeze the table into 80 columns
    (out if out.is_terminal else Console(width=max(out.width, 120))).print(table)
    for m in models:
        out.print(Text(f"v{m.version}, trained {m.trained_at:%Y-%m-%d %H:%M} UTC: "
                       f"{m.note or ''}"))
    out.print("days: the churn horizon; AUC: ROC AUC and lift: in the top 10% of risk, both "
              "on the model's validation window")


def _span(start: date, end: date) -> str:
    """`2026-03-03..05-19` (the end without its year when it is the same)."""
    return f"{start}..{end:%m-%d}" if start.year == end.year else f"{start}..{end}"


@model_app.command("report")
def model_report(
    version: Annotated[int | None, typer.Argument(
        help="Model version (default: the champion, else the newest).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Print a model's validation metrics, calibration, lift and churners by health band, and
    write the same as charts (PNG) under $PULSE_HOME/reports/."""
    from pulse.core.settings import get_settings
    from pulse.models.charts import model_charts
    from pulse.models.registry import get_model

    record = get_model(_engine(), version)
    charts = model_charts(record, get_settings().resolved_home() / "reports")
    if fmt is Format.json:
        print(json.dumps({**record.to_dict(curves=True),
                          "charts": {k: str(v) for k, v in charts.items()}}, indent=2))
        return
    out.print(Text(f"churn model v{record.version}: {record.status}", style="bold"))
    if record.note:
        out.print(Text(record.note))
    _print_record(record)
    calib = Table(title="Calibration (validation, bins of equal size)", title_justify="left")
    for col in ("bin", "snapshots", "predicted", "observed"):
        calib.add_column(col, justify="right")
    for b in record.metrics.get("calibration", []):
        calib.add_row(str(b["bin"] + 1), f"{b['n']:,}", f"{b['mean_predicted']:.3f}",
                      f"{b['observed']:.3f}")
    out.print(calib)
    gains = record.metrics.get("gains", [])
    if gains:
        captured = {round(t, 2): c for t, c in gains}
        out.print("churners found among the riskiest 10% / 20% / 30% of accounts: "
                  + " / ".join(f"{100 * captured.get(k, float('nan')):.0f}%"
                               for k in (0.1, 0.2, 0.3)))
    by_band = record.metrics.get("by_band") or []
    if by_band:
        made_with = record.metrics.get("by_band_scorecard")
        bands = Table(title="Churners by health band (validation snapshots, the bands of "
                      + (f"scorecard {made_with}" if made_with else "the scorecard in use then")
                      + ")", title_justify="left")
        for col in ("band", "snapshots", "accounts", "churners", "churn rate",
                    "share of churners"):
            bands.add_column(col, justify="left" if col == "band" else "right")
        for b in by_band:
            rate = b.get("churn_rate")
            bands.add_row(b["band"], f"{b['snapshots']:,}", f"{b.get('accounts', 0):,}",
                          f"{b['churners']:,}", "-" if rate is None else f"{rate:.3f}",
                          f"{100 * b['share_of_churners']:.0f}%")
        out.print(bands)
        from pulse.models.scorecard import load_scorecard

        now = load_scorecard().label
        if made_with and made_with != now:
            out.print(f"The scorecard now in use ({now}) is not the one above (the training's "
                      "calibration may have applied new cut points since): `pulse scorecard "
                      "calibrate` shows the churners per band under its cut points.",
                      soft_wrap=True)
    out.print(f"features ({len(record.features)}): {', '.join(record.features)}")
    unused = record.metrics.get("unused_features") or []
    if unused:
        out.print(f"left out (no information in training): {', '.join(unused)}")
    for name, path in charts.items():
        out.print(Text(f"{name} chart: {path}"))


# --------------------------------------------------------------------------- churn


@churn_app.command("score")
def churn_score(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="The date to score, YYYY-MM-DD (default: today, UTC).")] = None,
    basis: Annotated[Basis, typer.Option(
        help="Basis of the features when the date has none yet (`pulse score` computes "
        "them): 'auto', 'known' or 'occurred'.")] = Basis.auto,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Score every account's churn risk as of a date with the champion model, with the top
    drivers of the riskiest in words; re-running a date replaces that date's scores."""
    from pulse.models.registry import score_churn_summary

    engine = _engine()
    day = parse_day(as_of)
    summary = _with_status(f"scoring churn as of {day}", fmt, lambda stage: score_churn_summary(
        engine, day, basis=basis.value, on_stage=stage))
    if fmt is Format.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    if summary.model_version is None:
        err.print(Text(summary.message))
        return
    out.print(Text(summary.message))
    if summary.skipped_cancelled:
        out.print(f"{summary.skipped_cancelled:,} cancelled account(s) left out (churned, "
                  "not at risk)")


# --------------------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    """Add `model` and `churn`."""
    app.add_typer(model_app, name="model")
    app.add_typer(churn_app, name="churn")
