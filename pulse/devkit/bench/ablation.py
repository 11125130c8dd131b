"""`pulse bench features --ablate`: which groups of the churn model's inputs earn their place.

For each variant world (generated, landed on a temporary SQLite warehouse), as `pulse bench
models` does: the scoring date is `horizon` days before the end, the training rows are every
weekly snapshot whose horizon completed by then (what the product's final refit reads), and
the scored rows are the accounts still there on the scoring date, labelled by truth.json
(cancelled within the horizon after it).

The product's first candidate (`models.selection.CANDIDATES[0]`, the blend the time folds
must beat) is fitted on every input, then once without each group of `GROUPS`, on the same
rows and seed, and each fit ranks the scored accounts (ROC AUC; the calibration is left out,
as a monotone map cannot change a ranking). A group's **gain** on a world is the AUC with
every input minus the AUC without the group: positive when the model ranks worse without it.

Over the worlds, the mean gain and its standard error (the spread of the per-world gains
over the root of their number) give the verdict: **earns its place** when the mean gain is
above two standard errors, **hurts** when it is below minus two, **no data in these worlds**
when none of its inputs takes two values in any world's training rows, else **not
measurable** (each world's AUC carries a sampling error of about 0.02 to 0.04, but the two fits score the
same accounts, so their difference is far less noisy than either figure).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

#: The model's inputs (`models.training.NUMERIC` and `CATEGORICAL`) in the groups the ablation
#: leaves out together: the kinds of signal the churn model is meant to read. Every input is in
#: exactly one group (tests/test_bench_ablation.py holds them to the catalogue).
GROUPS: dict[str, tuple[str, ...]] = {
    "usage level and recency": (
        "events_7d", "events_28d", "events_prev_28d", "active_days_7d", "active_days_28d",
        "distinct_features_28d", "active_users_28d", "days_since_last_use"),
    "trends against its own past (7, 28, 90 days)": (
        "usage_trend_28d_pct", "events_7d_vs_28d", "events_28d_vs_90d", "events_slope_12w",
        "active_days_7d_vs_28d", "active_days_28d_vs_90d", "active_users_28d_vs_prev",
        "usage_trend_7d_pct", "active_days_trend_7d_pct"),
    "long own-past baseline (180 days)": (
        "events_28d_vs_180d", "active_days_28d_vs_180d", "error_rate_28d_minus_180d"),
    "errors": ("error_rate_28d", "error_rate_28d_vs_90d"),
    "seat use": ("active_users_peak_90d", "active_users_peak_180d", "seat_use_vs_peak_90d",
                 "seat_use_vs_peak_180d"),
    "time to renewal and plan term": (
        "billing_term_days", "is_annual", "days_to_renewal_est", "renews_within_90d"),
    "payment failures and recovery": (
        "open_failed_payments", "failed_payments_90d", "recovered_payments_90d",
        "days_since_failed_payment"),
    "downgrades": ("downgrades_90d",),
    "support volume and service": (
        "tickets_30d", "tickets_90d", "open_tickets", "open_urgent_tickets",
        "resolve_hours_median_90d", "resolve_hours_mean_90d", "days_since_last_ticket",
        "first_response_hours_median_90d", "first_response_late_share_90d"),
    "support tone (sentiment model)": (
        "tickets_negative_share_90d", "mentions_negative_share_90d", "negative_texts_28d",
        "negative_texts_90d", "tone_scored_share_90d"),
    "public mentions": ("mentions_28d", "negative_mentions_28d", "negative_share_28d"),
    "CSAT": ("csat_last", "csat_90d", "csat_responses_90d"),
    "incident minutes": ("incident_minutes_28d",),
    "champion gone": ("champion_gone",),
    "tenure": ("account_age_days", "tenure_days"),
    "plan, segment, region": ("plan", "segment", "region"),
}

#: A group earns its place (or hurts) when its mean gain is this many standard errors from 0.
VERDICT_SE = 2.0


def chosen_groups(names: list[str] | None) -> dict[str, tuple[str, ...]]:
    """The groups of `GROUPS` named (all of them for None or []); an unknown name raises
    `InvalidArgumentError` listing the choices."""
    from pulse.core.errors import InvalidArgumentError

    if not names:
        return dict(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise InvalidArgumentError(f"unknown group {unknown[0]!r}: expected one of "
                                   + ", ".join(repr(g) for g in GROUPS))
    return {n: GROUPS[n] for n in dict.fromkeys(names)}


@dataclass
class WorldAblation:
    world: str
    variant: str
    seed: int
    as_of: str | None = None
    horizon_days: int | None = None
    training_rows: int = 0
    training_churned: int = 0
    scored: int = 0
    churners: int = 0
    auc_all: float | None = None
    auc_without: dict[str, float | None] = field(default_factory=dict)
    # whether any of the group's inputs takes two values or more in the training rows: a
    # group without (no CSAT surveys, no incidents) cannot earn its place in that world
    varies: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def gain(self, group: str) -> float | None:
        without = self.auc_without.get(group)
        if self.auc_all is None or without is None:
            return None
        return self.auc_all - without


@dataclass
class GroupVerdict:
    group: str
    mean_gain: float | None
    se: float | None
    worlds: int
    worlds_gained: int  # worlds where the model ranked worse without the group
    verdict: str
    worlds_with_data: int = 0  # worlds where the group's inputs vary (see WorldAblation)


def _auc(y: Any, score: Any) -> float | None:
    from pulse.models.metrics import roc_auc

    return roc_auc(y, score)


def ranked_without(train: pd.DataFrame, test: pd.DataFrame, y: Any, drop: tuple[str, ...],
                   *, numeric: list[str], categorical: list[str], random_state: int = 0
                   ) -> float | None:
    """ROC AUC on `test` of the product's first candidate fitted on `train` without `drop`."""
    import numpy as np

    from pulse.models.selection import CANDIDATES
    from pulse.models.training import LABEL

    gone = set(drop)
    num = [c for c in numeric if c not in gone]
    cat = [c for c in categorical if c not in gone]
    model = CANDIDATES[0].build(num, cat, random_state=random_state, calibration="none")
    model.fit(train, train[LABEL].astype(int).to_numpy(), groups=train["account_id"].to_numpy())
    return _auc(y, np.asarray(model.predict_proba(test))[:, 1])


def ablate_frames(train: pd.DataFrame, test: pd.DataFrame, y: Any, fig: WorldAblation,
                  groups: dict[str, tuple[str, ...]] | None = None,
                  console: Console | None = None) -> WorldAblation:
    """Fill `fig` with the AUC of every input and without each group (see the docstring)."""
    from pulse.models.training import CATEGORICAL, NUMERIC

    numeric = [c for c in NUMERIC if c in train and c in test]
    categorical = [c for c in CATEGORICAL if c in train and c in test]
    t = time.perf_counter()
    fig.auc_all = ranked_without(train, test, y, (), numeric=numeric, categorical=categorical)
    for name, members in (groups or GROUPS).items():
        fig.varies[name] = any(train[c].nunique(dropna=True) > 1 for c in members
                               if c in train)
        fig.auc_without[name] = ranked_without(train, test, y, members, numeric=numeric,
                                               categorical=categorical)
        if console:
            gain = fig.gain(name)
            console.print(f"  {fig.world}: without {name}: AUC "
                          f"{_f(fig.auc_without[name])} (gain {_f(gain, signed=True)})")
    fig.seconds["fits"] = round(time.perf_counter() - t, 1)
    return fig


def measure_world(name: str, *, seed: int, accounts: int | None, months: int | None,
                  end: date | None, step: int = 7, console: Console | None = None,
                  groups: dict[str, tuple[str, ...]] | None = None) -> WorldAblation:
    """Generate, land and ablate one variant world (see the module docstring)."""
    from pulse.devkit.bench.features import landed_variant
    from pulse.devkit.bench.models import _own_training_data, churned_within
    from pulse.models.training import account_attributes, model_frame, snapshot_features

    fig = WorldAblation(f"{name} seed {seed}", name, seed)
    end = end or datetime.now(UTC).date() - timedelta(days=1)
    with landed_variant(name, seed=seed, accounts=accounts, months=months, end=end,
                        seconds=fig.seconds) as (engine, truth, horizon):
        as_of = end - timedelta(days=horizon)
        fig.as_of, fig.horizon_days = as_of.isoformat(), horizon
        t = time.perf_counter()
        try:
            train = _own_training_data(engine, as_of, horizon, step).frame
        except ValueError as exc:
            fig.error = str(exc)
            return fig
        today = snapshot_features(engine, as_of, basis="occurred")
        today = today[~today["cancelled"].fillna(False).astype(bool)]
        test = model_frame(today.reset_index(drop=True), account_attributes(engine))
        fig.seconds["features"] = round(time.perf_counter() - t, 1)
    cancels = {a: date.fromisoformat(str(d)[:10]) for a, d in truth.get("churn", {}).items()}
    y = churned_within(test["account_id"], cancels, as_of, horizon)
    fig.training_rows, fig.training_churned = len(train), int(train["churned"].sum())
    fig.scored, fig.churners = len(test), int(y.sum())
    if console:
        console.print(f"{fig.world}: {fig.training_rows:,} training rows "
                      f"({fig.training_churned:,} churned), {fig.scored:,} accounts scored as "
                      f"of {as_of} ({fig.churners} churned within {horizon} days)")
    if fig.training_churned == 0 or fig.churners == 0 or fig.churners == fig.scored:
        fig.error = "no churner to learn from or to rank"
        return fig
    return ablate_frames(train, test, y, fig, groups, console=console)


def verdicts(worlds: list[WorldAblation], groups: dict[str, tuple[str, ...]] | None = None
             ) -> list[GroupVerdict]:
    """Each group's mean gain over the worlds, its standard error and the verdict, the
    largest gain first."""
    out = []
    for name in (groups or GROUPS):
        gains = [g for g in (w.gain(name) for w in worlds) if g is not None]
        n = len(gains)
        mean = sum(gains) / n if n else None
        se = None
        if n >= 2 and mean is not None:
            se = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1) / n)
        with_data = sum(w.varies.get(name, True) for w in worlds)
        if worlds and with_data == 0:
            verdict = "no data in these worlds"
        elif mean is None or se is None:
            verdict = "too few worlds"
        elif mean > VERDICT_SE * se:
            verdict = "earns its place"
        elif mean < -VERDICT_SE * se:
            verdict = "hurts"
        else:
            verdict = "not measurable"
        out.append(GroupVerdict(name, mean, se, n, sum(g > 0 for g in gains), verdict,
                                with_data))
    out.sort(key=lambda v: -(v.mean_gain if v.mean_gain is not None else -math.inf))
    return out


def _f(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def print_tables(worlds: list[WorldAblation], console: Console, chart: Path | None = None,
                 groups: dict[str, tuple[str, ...]] | None = None) -> None:
    from rich.table import Table

    ok = [w for w in worlds if w.error is None]
    table = Table(title="ROC AUC with every input, and each group's gain (AUC with it minus "
                        "without it) per world")
    table.add_column("group", min_width=24)
    for w in ok:
        table.add_column(w.world, justify="right")
    table.add_row("every input", *(_f(w.auc_all) for w in ok))
    for name in (groups or GROUPS):
        table.add_row(name, *(_f(w.gain(name), signed=True) for w in ok))
    console.print(table)
    summary = Table(title=f"Which groups earn their place ({len(ok)} worlds; verdict at "
                          f"{VERDICT_SE:g} standard errors)")
    for col in ("group", "mean gain", "standard error", "worlds gained", "worlds with data",
                "verdict"):
        summary.add_column(col, justify="left" if col in ("group", "verdict") else "right",
                           no_wrap=col != "group")
    for v in verdicts(ok, groups):
        style = {"earns its place": "green", "hurts": "red"}.get(v.verdict, "")
        summary.add_row(v.group, _f(v.mean_gain, signed=True), _f(v.se),
                        f"{v.worlds_gained} of {v.worlds}", f"{v.worlds_with_data}",
                        f"[{style}]{v.verdict}[/]" if style else v.verdict)
    console.print(summary)
    for w in worlds:
        if w.error:
            console.print(f"{w.world}: not measured: {w.error}")
    if chart:
        console.print(f"chart: {chart}")


def draw_chart(worlds: list[WorldAblation], path: Path,
               groups: dict[str, tuple[str, ...]] | None = None) -> Path:
    """A PNG: each group's mean gain with two standard errors either side, one dot a world."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [w for w in worlds if w.error is None]
    rows = verdicts(ok, groups)[::-1]  # the largest gain on top
    fig, ax = plt.subplots(figsize=(8.5, 0.38 * len(rows) + 1.4))
    colour = {"earns its place": "#4c9a6a", "hurts": "#c8553d"}
    for i, v in enumerate(rows):
        if v.mean_gain is None:
            continue
        ax.barh(i, v.mean_gain, color=colour.get(v.verdict, "#bbbbbb"))
        if v.se is not None:
            ax.errorbar(v.mean_gain, i, xerr=VERDICT_SE * v.se, color="#333333", capsize=3,
                        linewidth=1)
        dots = [g for g in (w.gain(v.group) for w in ok) if g is not None]
        ax.plot(dots, [i] * len(dots), "k.", markersize=3, alpha=0.5)
    ax.axvline(0.0, color="#333333", linewidth=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([v.group + (" (no data)" if v.verdict == "no data in these worlds"
                                   else "") for v in rows], fontsize=8)
    ax.set_xlabel("ROC AUC with the group minus without it (bars: mean over worlds; "
                  f"lines: {VERDICT_SE:g} standard errors; dots: worlds)", fontsize=8)
    ax.set_title(f"pulse bench features --ablate: {len(ok)} worlds "
                 "(green: earns its place, red: hurts)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_ablation(variants: list[str], seeds: list[int], *, accounts: int | None,
                 months: int | None, end: date | None, step: int, fmt: str,
                 chart: Path | None, console: Console,
                 groups: dict[str, tuple[str, ...]] | None = None) -> list[WorldAblation]:
    """Every (variant, seed) world; the tables (or JSON) and the chart. `groups`: those to
    leave out one at a time (default all of `GROUPS`)."""
    groups = groups or dict(GROUPS)
    from pulse.devkit.demo.variants import variant_names

    worlds = [measure_world(n, seed=s, accounts=accounts, months=months, end=end, step=step,
                            console=console, groups=groups)
              for n in variant_names(variants) for s in seeds]
    drawn = draw_chart(worlds, chart, groups) if chart is not None else None
    if fmt == "json":
        print(json.dumps({"worlds": [asdict(w) for w in worlds],
                          "groups": {k: list(v) for k, v in groups.items()},
                          "verdicts": [asdict(v) for v in verdicts(
                              [w for w in worlds if w.error is None], groups)],
                          "chart": str(drawn) if drawn else None}, indent=2))
    else:
        print_tables(worlds, console, drawn, groups)
    return worlds
