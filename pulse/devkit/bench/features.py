"""`pulse bench features`: which catalogue features carry the churn signal, on variant worlds.

For each variant world (generated, landed on a temporary SQLite warehouse, scored on the
default basis), take snapshots every `step` days from four weeks after the first row to
`horizon` days before the end (so every label's horizon has completed), label each active
account by whether truth.json has it cancel within the horizon after the snapshot, and
compute every numeric catalogue feature's univariate ROC AUC against that label:

- `auc`: on the rows where the feature has a value (coverage says how many do);
- `signal`: `|auc - 0.5| * 2`, 0 for noise and 1 for a perfect ranking either way;
- `dir`: `+` when a higher value means more churn, `-` when a lower one does.

Pooling snapshots gives more positives than one date; `auc_last` is the AUC at the last
snapshot alone (the date the model bench scores). Features whose value a later row could
change (see models/training.py NOT_POINT_IN_TIME) are marked, since their AUC is not honest.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pulse.core.formats import Format

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from sqlalchemy import Engine


@dataclass
class FeatureSignal:
    feature: str
    auc: float | None
    auc_last: float | None
    coverage: float
    point_in_time: bool

    @property
    def signal(self) -> float | None:
        return None if self.auc is None else abs(self.auc - 0.5) * 2

    @property
    def direction(self) -> str:
        return "" if self.auc is None else ("+" if self.auc >= 0.5 else "-")


@dataclass
class WorldSignal:
    world: str
    snapshots: int = 0
    rows: int = 0
    positives: int = 0
    features: list[FeatureSignal] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"world": self.world, "snapshots": self.snapshots, "rows": self.rows,
                "positives": self.positives, "seconds": self.seconds, "error": self.error,
                "features": [{"feature": f.feature, "auc": f.auc, "auc_last": f.auc_last,
                              "signal": f.signal, "direction": f.direction,
                              "coverage": f.coverage, "point_in_time": f.point_in_time}
                             for f in self.features]}


def _auc(y: Any, score: Any) -> float | None:
    from pulse.models.metrics import roc_auc  # scikit-learn only when a bench runs

    return roc_auc(y, score)

def labelled_snapshots(engine: Engine, truth: dict[str, Any], end: date, horizon: int,
                       step: int) -> pd.DataFrame:
    """Feature snapshots with the label `churned` (cancelled within `horizon` days after)."""
    import pandas as pd

    from pulse.models.training import data_span, snapshot_features

    first, _ = data_span(engine, end, basis="occurred")
    cancels = pd.Series({a: pd.Timestamp(str(d)[:10]) for a, d in
                         truth.get("churn", {}).items()}, dtype="datetime64[ns]")
    last = end - timedelta(days=horizon)
    days: list[date] = []
    day = last
    while day >= first + timedelta(days=28):
        days.append(day)
        day -= timedelta(days=step)
    frames = []
    for d in sorted(days):
        snap = snapshot_features(engine, d)
        cancel = snap["account_id"].map(cancels)
        at = pd.Timestamp(d)
        snap = snap[~(cancel <= at).fillna(False).astype(bool)
                    & ~snap["cancelled"].astype(bool)].copy()
        cancel = snap["account_id"].map(cancels)
        snap["churned"] = ((cancel > at) & (cancel <= at + pd.Timedelta(days=horizon))
                           ).fillna(False).astype(int)
        frames.append(snap)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def feature_signals(frame: pd.DataFrame) -> list[FeatureSignal]:
    """Univariate ROC AUC of every numeric catalogue feature (see the module docstring)."""
    from pulse.models.training import NOT_POINT_IN_TIME
    from pulse.sql.features import FEATURES

    last = frame["as_of"].max()
    at_last = frame[frame["as_of"] == last]
    out = []
    for name in FEATURES:
        if name not in frame or name == "cancelled":
            continue
        col = frame[name].astype("float64")
        out.append(FeatureSignal(
            name, _auc(frame["churned"], col), _auc(at_last["churned"], at_last[name]),
            float(col.notna().mean()) if len(col) else 0.0, name not in NOT_POINT_IN_TIME))
    out.sort(key=lambda f: -(f.signal or 0.0))
    return out


@contextmanager
def landed_variant(name: str, *, seed: int, accounts: int | None, months: int | None,
                   end: date, seconds: dict[str, float]
                   ) -> Iterator[tuple[Engine, dict[str, Any], int]]:
    """A variant world generated and landed on a temporary SQLite warehouse: (the engine,
    truth.json, the churn horizon for its length); the timings go to `seconds`."""
    from pulse.devkit.bench.models import _land_world, variant_horizon
    from pulse.devkit.demo.variants import generate_variant
    from pulse.sql.db import make_engine, upgrade

    with tempfile.TemporaryDirectory(prefix="pulse-bench-features-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        generate_variant(folder / "world", name, accounts=accounts, months=months, seed=seed,
                         end=end)
        truth = json.loads((folder / "world" / "truth.json").read_text(encoding="utf-8"))
        horizon = variant_horizon(int(truth["generated_with"]["days"]))
        seconds["generate"] = round(time.perf_counter() - t, 1)
        engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
        try:
            upgrade(engine)
            t = time.perf_counter()
            _land_world(engine, folder / "world")
            seconds["land"] = round(time.perf_counter() - t, 1)
            yield engine, truth, horizon
        finally:
            engine.dispose()


def measure_variant(name: str, *, seed: int, accounts: int | None, months: int | None,
                    step: int, end: date | None = None,
                    console: Console | None = None) -> WorldSignal:
    """Generate, land and measure one variant world (see the module docstring)."""
    result = WorldSignal(f"{name} seed {seed}")
    end = end or datetime.now(UTC).date() - timedelta(days=1)
    with landed_variant(name, seed=seed, accounts=accounts, months=months, end=end,
                        seconds=result.seconds) as (engine, truth, horizon):
        t = time.perf_counter()
        frame = labelled_snapshots(engine, truth, end, horizon, step)
        result.seconds["features"] = round(time.perf_counter() - t, 1)
    if frame.empty:
        result.error = "no snapshot with a completed horizon"
        return result
    result.snapshots = int(frame["as_of"].nunique())
    result.rows, result.positives = len(frame), int(frame["churned"].sum())
    result.features = feature_signals(frame)
    if console:
        console.print(f"{result.world}: {result.snapshots} snapshots, {result.rows:,} rows, "
                      f"{result.positives:,} churned within {horizon} days")
    return result


def _table(results: list[WorldSignal], console: Console) -> None:
    from rich.table import Table

    names = [f.feature for f in results[0].features] if results else []
    pit = {f.feature: f.point_in_time for r in results for f in r.features}
    table = Table(title="Univariate ROC AUC against churn within the horizon "
                        "(pooled snapshots; last snapshot in brackets)")
    table.add_column("feature")
    for r in results:
        table.add_column(r.world, justify="right")
    table.add_column("mean signal", justify="right")
    for name in names:
        cells, signals = [], []
        for r in results:
            f = next((x for x in r.features if x.feature == name), None)
            if f is None or f.auc is None:
                cells.append("-")
                continue
            signals.append(f.signal or 0.0)
            last = "-" if f.auc_last is None else f"{f.auc_last:.2f}"
            cells.append(f"{f.auc:.3f} ({last}) {f.direction} {100 * f.coverage:.0f}%")
        mean = f"{sum(signals) / len(signals):.3f}" if signals else "-"
        table.add_row(name + ("" if pit.get(name, True) else " *"), *cells, mean)
    console.print(table)
    console.print("cells: AUC pooled (AUC at the last snapshot) direction coverage; "
                  "* = not point in time (models/training.py NOT_POINT_IN_TIME)")


def bench_features(
    variant: Annotated[list[str] | None, typer.Option(
        help="Variant world(s) to measure (see `pulse demo variants`), or 'all'; "
        "repeatable.")] = None,
    seed: Annotated[list[int] | None, typer.Option(
        "--seed", help="Seed of the worlds; repeat for several (default 1).")] = None,
    accounts: Annotated[int | None, typer.Option(
        help="Accounts per world (default: the variant's own).", min=50)] = None,
    months: Annotated[int | None, typer.Option(
        help="Months of history (default: the variant's own).", min=3)] = None,
    step: Annotated[int | None, typer.Option(
        help="Days between snapshots (default 14; 7 with --ablate, as the model bench).",
        min=1)] = None,
    ablate: Annotated[bool, typer.Option(
        "--ablate", help="Instead of each feature alone: the churn model's ROC AUC on the "
        "scoring date (90 days before the end, as `pulse bench models`) with every input and "
        "without each group of inputs, and which groups earn their place over the worlds.")]
    = False,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="With --ablate: leave out only this group of inputs (repeatable; "
        "default every group; the names are in the table, or in the JSON's `groups`).")]
    = None,
    end: Annotated[str | None, typer.Option(
        help="Last day of the generated worlds, YYYY-MM-DD (default: yesterday).")] = None,
    chart: Annotated[Path | None, typer.Option(
        help="With --ablate: where to draw the PNG chart (default "
        "$PULSE_HOME/bench/ablation.png); 'none' to skip.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Which features carry the churn signal: each feature's univariate ROC AUC on variant
    worlds, pooled over snapshots whose horizon has completed; with --ablate, which groups of
    the model's inputs earn their place (the model's AUC without each)."""
    from pulse.cli.common import out, parse_day

    names = variant or ["reference", "whales", "steady"]
    seeds = seed or [1]
    last = parse_day(end) if end else None
    if ablate:
        from rich.console import Console

        from pulse.core.settings import get_settings
        from pulse.devkit.bench.ablation import chosen_groups, run_ablation

        groups = chosen_groups(group)  # an unknown name stops here, before any world

        target = None
        if chart is None or str(chart).lower() != "none":
            target = chart or get_settings().resolved_home() / "bench" / "ablation.png"
        # with --format json the figures go to stdout and the progress to stderr
        run_ablation(names, seeds, accounts=accounts, months=months, end=last,
                     step=step or 7, fmt=fmt.value, chart=target,
                     console=out if fmt is Format.table else Console(stderr=True),
                     groups=groups)
        return
    from pulse.devkit.demo.variants import variant_names

    results = [measure_variant(v, seed=s, accounts=accounts, months=months, step=step or 14,
                               end=last, console=out if fmt is Format.table else None)
               for v in variant_names(names) for s in seeds]
    if fmt is Format.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    _table([r for r in results if not r.error], out)
    for r in results:
        if r.error:
            out.print(f"{r.world}: {r.error}")
