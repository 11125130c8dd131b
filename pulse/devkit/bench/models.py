"""Benchmarks that print figures: the churn model on held-out time, and scoring at scale.

`pulse bench models` generates a demo world (or reads a folder of contract files), lands it
on a temporary SQLite warehouse, trains and registers a churn model as of the world's last
day and reports it on its validation window: later snapshots whose labels the model never
saw (the training snapshots' whole label windows end before it starts). When the silent
flag exists (`models.flags.compute_flags`) it also reports that flag's precision and recall
on the last day against the hidden truth (`truth.json`).

`pulse bench score` synthesises N accounts with about 1.1 usage rows per account and day,
then times each stage on SQLite and PostgreSQL: landing, features, health, churn scoring
(with a champion trained beforehand on a small demo world) and flags.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pulse.core.errors import InvalidArgumentError
from pulse.core.settings import get_settings

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine


log = logging.getLogger(__name__)

#: Churn horizon of the benchmark. The demo world places its cancellations in its last 60
#: days, and an honest split needs two label windows (training, then validation) inside them.
BENCH_HORIZON_DAYS = 14


def _auc(y: Any, score: Any) -> float | None:
    from pulse.models.metrics import roc_auc  # scikit-learn only when a bench runs

    return roc_auc(y, score)

def _console(width: int = 120, *, stderr: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr)
    # piped figures are read by people too: do not squeeze the tables into 80 columns
    return console if console.is_terminal else Console(width=max(console.width, width),
                                                       stderr=stderr)


def _silent_flags_available() -> bool:
    try:
        from pulse.models.flags import compute_flags  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- bench models


@dataclass
class ModelFigure:
    """One world's figures."""

    world: str
    accounts: int
    days: int
    end: str
    horizon_days: int
    train: str = ""
    valid: str = ""
    train_rows: int = 0
    train_churned: int = 0
    valid_rows: int = 0
    valid_churned: int = 0
    roc_auc: float | None = None
    scorecard_roc_auc: float | None = None
    status: str = ""
    pr_auc: float | None = None
    brier: float | None = None
    lift_top_decile: float | None = None
    silent_flagged: int | None = None
    silent_truth: int | None = None
    silent_precision: float | None = None
    silent_recall: float | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _land_world(engine: Engine, folder: Path) -> int:
    from pulse.core.errors import UnknownSourceError
    from pulse.listeners.landing import land_files, source_for_path

    files = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name == "truth.json":
            continue
        try:
            source_for_path(p)
        except UnknownSourceError:
            continue
        files.append(p)
    return sum(r.read for r in land_files(engine, files))


def _silent_figures(engine: Engine, end: date, truth: set[str], fig: ModelFigure) -> None:
    from sqlalchemy import select

    from pulse.models.scoring import score_day
    from pulse.sql.schema import AccountFlag

    score_day(engine, end, basis="occurred")  # churn scores (the champion's) before flags
    t = AccountFlag.__table__
    with engine.connect() as conn:
        flagged = set(conn.execute(select(t.c.account_id).where(
            t.c.as_of == end, t.c.flag == "silent_dissatisfied")).scalars())
    fig.silent_flagged, fig.silent_truth = len(flagged), len(truth)
    fig.silent_precision, fig.silent_recall, _ = silent_scores(
        len(flagged & truth), len(flagged), len(truth))


def silent_scores(hits: int, flagged: int, truth: int
                  ) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 of `flagged` accounts of which `hits` are among `truth`
    silent ones: no precision without a flag, no recall or F1 without a silent account, and
    F1 0 when none was found."""
    precision = hits / flagged if flagged else None
    recall = hits / truth if truth else None
    f1 = 2 * hits / (flagged + truth) if truth else None
    return precision, recall, f1


def run_model_bench(*, seed: int | None, accounts: int, days: int, horizon: int, step: int,
                    valid_days: int, classifier: str, data_dir: Path | None = None,
                    end: date | None = None, console: Console | None = None) -> ModelFigure:
    """Generate (or read) one world, land it, train, and measure; see the module docstring."""
    from pulse.core.errors import TrainingDataError
    from pulse.devkit.demo import generate
    from pulse.models.registry import train_and_register
    from pulse.models.training import data_span
    from pulse.sql.db import make_engine, upgrade

    with tempfile.TemporaryDirectory(prefix="pulse-bench-models-") as tmp:
        folder = Path(tmp)
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        if data_dir is None:
            world = folder / "world"
            end = end or datetime.now(UTC).date() - timedelta(days=1)
            generate(world, accounts=accounts, days=days, seed=int(seed or 0), end=end)
            label = f"demo seed {seed}"
        else:
            world = data_dir
            label = str(data_dir)
        seconds["generate"] = time.perf_counter() - t
        truth: dict[str, Any] = {}
        if (world / "truth.json").is_file():
            truth = json.loads((world / "truth.json").read_text(encoding="utf-8"))
        engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
        try:
            upgrade(engine)
            t = time.perf_counter()
            rows = _land_world(engine, world)
            seconds["land"] = time.perf_counter() - t
            if console:
                console.print(f"{label}: landed {rows:,} rows in {seconds['land']:.1f} s")
            gen = truth.get("generated_with", {})
            if end is None:
                end = (date.fromisoformat(gen["end"]) if gen.get("end")
                       else data_span(engine, datetime.now(UTC).date())[1])
            n_accounts = int(gen.get("accounts", accounts))
            n_days = int(gen.get("days", days))
            fig = ModelFigure(label, n_accounts, n_days, end.isoformat(), horizon)
            t = time.perf_counter()
            try:
                result = train_and_register(
                    engine, as_of=end, horizon_days=horizon, basis="occurred",
                    step_days=step, valid_days=valid_days, classifier=classifier,
                    artifact_dir=folder / "models")
            except TrainingDataError as exc:
                fig.error = str(exc)
            else:
                r, m = result.record, result.record.metrics
                fig.train = f"{r.train_start} to {r.train_end}"
                fig.valid = f"{r.valid_start} to {r.valid_end}"
                fig.train_rows, fig.train_churned = m["train_rows"], m["train_positives"]
                fig.valid_rows, fig.valid_churned = m["n"], m["positives"]
                fig.roc_auc, fig.pr_auc = m["roc_auc"], m["pr_auc"]
                fig.scorecard_roc_auc, fig.status = m.get("scorecard_roc_auc"), r.status
                fig.brier, fig.lift_top_decile = m["brier"], m["lift_top_decile"]
            seconds["train"] = time.perf_counter() - t
            if console:
                console.print(f"{label}: trained in {seconds['train']:.1f} s")
            if _silent_flags_available() and "silent_dissatisfied" in truth:
                t = time.perf_counter()
                _silent_figures(engine, end, set(truth["silent_dissatisfied"]), fig)
                seconds["flags"] = time.perf_counter() - t
            fig.seconds = {k: round(v, 2) for k, v in seconds.items()}
            return fig
        finally:
            engine.dispose()


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


# ------------------------------------------------------------------ bench models --variant

#: Churn horizon of the variant protocol, like the outside evaluation: score as of 90 days
#: before the end and compare with what happened in those 90 days.
VARIANT_HORIZON_DAYS = 90
#: Worlds shorter than this score with a shorter horizon (a sixth of their history), so that
#: training still finds snapshots whose horizon has completed.
_FULL_HORIZON_MIN_DAYS = 240
SILENT_FLAG = "silent_dissatisfied"


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    digits: int
    target: float | None = None
    higher_is_better: bool = True

    def met(self, value: float | None) -> bool | None:
        if value is None or self.target is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


#: Every figure of a world, in the order printed, with the issue's targets.
TARGETS: tuple[Target, ...] = (
    Target("champion_auc", "churn ROC AUC, champion", 3, 0.80),
    Target("risk_list_auc", "churn ROC AUC, the risk list's probability", 3, 0.80),
    Target("logistic_auc", "ROC AUC, plain logistic regression", 3),
    Target("hgb_auc", "ROC AUC, default gradient boosting", 3),
    Target("health_auc", "health ROC AUC (lower = riskier)", 3),
    Target("lift_top_decile", "lift, top 10% by churn risk", 2, 4.0),
    Target("churners_green", "churners banded green", 2, 0.20, higher_is_better=False),
    Target("red_amber", "accounts banded red + amber", 2, 0.30, higher_is_better=False),
    Target("green_share", "accounts banded green", 2),
    Target("silent_precision", "silent flag precision", 2, 0.60),
    Target("silent_recall", "silent flag recall", 2),
    Target("silent_f1", "silent flag F1", 2, 0.65),
)


@dataclass
class WorldFigure:
    """One variant world (or the Telco set), scored as of `as_of` against the next `horizon_days`."""

    world: str
    variant: str
    seed: int | None
    accounts: int = 0
    days: int = 0
    end: str = ""
    as_of: str = ""
    horizon_days: int = VARIANT_HORIZON_DAYS
    rows_landed: int = 0
    scored: int = 0
    churned: int = 0
    silent_truth: int | None = None
    silent_flagged: int | None = None
    silent_hits: int | None = None
    train_rows: int | None = None
    train_positives: int | None = None
    model: str = ""
    champion_auc: float | None = None
    #: what a CSM sees: the risk list's probability (the champion's, else the calibrated
    #: scorecard's), where `champion_auc` measures a model that was not promoted all the same
    risk_list_auc: float | None = None
    logistic_auc: float | None = None
    hgb_auc: float | None = None
    health_auc: float | None = None
    lift_top_decile: float | None = None
    churners_green: float | None = None
    red_amber: float | None = None
    green_share: float | None = None
    silent_precision: float | None = None
    silent_recall: float | None = None
    silent_f1: float | None = None
    #: the same accounts at other plain bars (`SilentRule.min_evidence`, BAR_STEPS around
    #: the product's): per bar, [hits, flagged]
    silent_at_bars: dict[str, list[int]] = field(default_factory=dict)
    #: the plain bar that would have given this world its best F1, chosen with hindsight
    #: (no rule could): bar, hits, flagged, f1
    silent_hindsight: dict[str, float] | None = None
    baselines_from: str = ""
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def risk_list_auc(y: Any, shown: Any) -> float | None:
    """ROC AUC of the churn probability the risk list shows (`shown`, NaN where a row has
    none), or None when no row has one. A row without a probability sorts last in the list,
    so it counts as the lowest risk."""
    import numpy as np

    shown = np.asarray(shown, dtype="float64")
    if np.isnan(shown).all():
        return None
    return _auc(y, np.where(np.isnan(shown), -1.0, shown))


def _lift(y: Any, score: Any) -> float | None:
    import numpy as np

    y, score = np.asarray(y, dtype=int), np.asarray(score, dtype=float)
    ok = ~np.isnan(score)
    y, score = y[ok], score[ok]
    if y.size == 0 or y.sum() == 0:
        return None
    k = max(1, -(-y.size // 10))
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def variant_horizon(days: int) -> int:
    """The churn horizon for a world of `days` days: 90, or a sixth of a shorter history."""
    return VARIANT_HORIZON_DAYS if days >= _FULL_HORIZON_MIN_DAYS else max(14, days // 6)


def truth_outcomes(truth: dict[str, Any], as_of: date, horizon_days: int
                   ) -> tuple[dict[str, date], set[str]]:
    """(cancel date of every account, the accounts silently dissatisfied on `as_of`).

    Uses `silent_periods` when truth.json has them, else the default world's
    `silent_dissatisfied` list (silent on its last day).
    """
    cancels = {a: date.fromisoformat(str(d)[:10]) for a, d in truth.get("churn", {}).items()}
    silent: set[str] = set()
    periods = truth.get("silent_periods")
    if periods is not None:
        for acc, spans in periods.items():
            if acc in cancels and cancels[acc] <= as_of:
                continue
            for start, stop in spans:
                if date.fromisoformat(start) <= as_of and (
                        stop is None or date.fromisoformat(stop) > as_of):
                    silent.add(acc)
    else:
        silent = set(truth.get("silent_dissatisfied", []))
    return cancels, silent


def _baselines(data: Any, frame: Any, y: Any, random_state: int = 0
               ) -> tuple[float | None, float | None]:
    """ROC AUC of a plain standardised LogisticRegression and a default
    HistGradientBoostingClassifier, fitted on `data`'s labelled snapshots, on `frame`."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from pulse.models.training import LABEL

    numeric = [c for c in data.numeric if c in data.frame and c in frame]
    categorical = [c for c in data.categorical if c in data.frame and c in frame]
    train = data.frame
    x_train = train[numeric + categorical]
    y_train = train[LABEL].astype(int).to_numpy()
    x_test = frame[numeric + categorical]

    def prep(scale: bool) -> ColumnTransformer:
        num = [SimpleImputer(strategy="median")] + ([StandardScaler()] if scale else [])
        return ColumnTransformer([
            ("num", make_pipeline(*num), numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                                  OneHotEncoder(handle_unknown="ignore")), categorical),
        ], sparse_threshold=0.0)

    def as_text(x: Any) -> Any:
        x = x.copy()
        for c in categorical:
            x[c] = x[c].astype(object).where(x[c].notna(), "(missing)").astype(str)
        x[numeric] = x[numeric].astype(float)
        return x

    import warnings

    out: list[float | None] = []
    for clf in (LogisticRegression(max_iter=2000),
                HistGradientBoostingClassifier(random_state=random_state)):
        pipe = Pipeline([("prep", prep(isinstance(clf, LogisticRegression))), ("clf", clf)])
        with warnings.catch_warnings():  # features never observed (e.g. no CSAT) are dropped
            warnings.simplefilter("ignore", UserWarning)
            pipe.fit(as_text(x_train), y_train)
            out.append(_auc(y, np.asarray(pipe.predict_proba(as_text(x_test)))[:, 1]))
    return out[0], out[1]


def _own_training_data(engine: Engine, as_of: date, horizon: int, step: int = 7) -> Any:
    """Labelled weekly snapshots up to `as_of` whose horizon has completed, made by the bench
    itself from the product's snapshot functions, after the same whole-book refreshes (tone,
    incident impacts): the baselines' training data when the product's own planning refuses
    the history (too short for its windows), and the feature ablation's."""
    from types import SimpleNamespace

    import pandas as pd

    from pulse.models.scoring import refresh_inputs
    from pulse.models.training import (
        CATEGORICAL,
        LABEL,
        NUMERIC,
        account_attributes,
        cancellations,
        data_span,
        label_snapshots,
        model_frame,
        snapshot_features,
    )

    first, _ = data_span(engine, as_of, basis="occurred")
    # the whole-book inputs the product's training refreshes first (`build_training_data`)
    refresh_inputs(engine, first)
    last = as_of - timedelta(days=horizon)
    days = []
    day = last
    while day >= first + timedelta(days=28):
        days.append(day)
        day -= timedelta(days=step)
    if not days:
        raise ValueError(f"no snapshot between {first + timedelta(days=28)} (four weeks of "
                         f"history) and {last} (the horizon before {as_of})")
    snaps = pd.concat([snapshot_features(engine, d, basis="occurred") for d in days],
                      ignore_index=True)
    snaps = snaps[~snaps["cancelled"]].reset_index(drop=True)
    snaps[LABEL] = label_snapshots(snaps, cancellations(engine, as_of, basis="occurred"),
                                   horizon)
    frame = model_frame(snaps, account_attributes(engine))
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return SimpleNamespace(frame=frame, numeric=list(NUMERIC), categorical=list(CATEGORICAL))


def _scoring_frame(engine: Engine, as_of: date) -> Any:
    """The rows the champion scores as of `as_of`: features of every account still there."""
    from pulse.models.training import account_attributes, model_frame
    from pulse.sql.features import load_features

    features = load_features(engine, as_of)
    cancelled = features["cancelled"].fillna(False).astype(bool).to_numpy()
    features = features[~cancelled].reset_index(drop=True)
    return model_frame(features, account_attributes(engine))


def _stored_rows(engine: Engine, as_of: date) -> Any:
    """Health, band, churn probability and flags as of `as_of`, from the tables (the
    fallback when the risk list fails)."""
    import pandas as pd
    from sqlalchemy import select

    from pulse.sql.schema import AccountFlag, AccountHealth, ChurnScore

    h, c, f = AccountHealth.__table__, ChurnScore.__table__, AccountFlag.__table__
    with engine.connect() as conn:
        health = pd.DataFrame(conn.execute(select(h.c.account_id, h.c.score, h.c.band)
                                           .where(h.c.as_of == as_of)).all(),
                              columns=["account_id", "health", "band"])
        churn = pd.DataFrame(conn.execute(select(c.c.account_id, c.c.probability)
                                          .where(c.c.as_of == as_of)).all(),
                             columns=["account_id", "churn_probability"])
        flags = pd.DataFrame(conn.execute(select(f.c.account_id, f.c.flag)
                                          .where(f.c.as_of == as_of)).all(),
                             columns=["account_id", "flag"])
    frame = health.merge(churn, on="account_id", how="outer")
    grouped = flags.groupby("account_id")["flag"].agg(list)
    frame["flags"] = frame["account_id"].map(grouped)
    frame["flags"] = [v if isinstance(v, list) else [] for v in frame["flags"]]
    return frame


def silent_figures(fig: WorldFigure, rows: Any, silent: set[str]) -> None:
    """The silent flag's precision, recall and F1 on `rows` (account_id, flags: the accounts
    still there on the scoring date) against the truly silent accounts `silent`.

    truth.json keeps an account silent after it cancelled (the reference world's spells run
    "until it left"); the accounts gone by the scoring date are out of `rows`, as the flag
    never fires on a cancelled account, so neither side counts them.
    """
    flagged = set(rows["account_id"][silent_flagged(rows)])
    truth_silent = silent & set(rows["account_id"])
    fig.silent_truth, fig.silent_flagged = len(truth_silent), len(flagged)
    fig.silent_hits = len(flagged & truth_silent)
    # flagging nobody, or only the wrong accounts, scores F1 0
    fig.silent_precision, fig.silent_recall, fig.silent_f1 = silent_scores(
        fig.silent_hits, len(flagged), len(truth_silent))


def silent_flagged(rows: Any) -> Any:
    """Whether the silent flag fired on each row of `rows` (its `flags`: a list, or none)."""
    import numpy as np

    return np.array([isinstance(fl, (list, tuple)) and SILENT_FLAG in fl
                     for fl in rows["flags"]], dtype=bool)


#: The plain bars `silent_bars` counts, as steps from the product's `min_evidence`.
BAR_STEPS = (-0.5, -0.25, 0.0, 0.25, 0.5)
#: The plain bars searched for each world's best F1 with hindsight.
HINDSIGHT_BARS = tuple(round(0.5 + 0.05 * i, 2) for i in range(151))  # 0.5 to 8


def silent_bars(fig: WorldFigure, rows: Any, silent: set[str], evidence: Any,
                rule: Any) -> None:
    """The silent flag on the same accounts at other plain bars, through the product's own
    rule (`SilentRule.fires` with another `min_evidence`; the recent-ticket rise kept):
    `silent_at_bars` at BAR_STEPS around today's bar, and `silent_hindsight`, the bar that
    would have given this world its best F1, which only the truth can choose: how much any
    bar could gain, against what the evidence holds.

    `evidence` is `models.flags.silent_evidence` of the scoring date. Unless today's bar
    reproduces the flag on every account of `rows`, nothing is counted and a note says so.
    """
    from dataclasses import replace

    import numpy as np

    ev = evidence.set_index("account_id").reindex(rows["account_id"])
    values = ev["evidence"].to_numpy(dtype="float64")
    since = ev["days_since_last_ticket"].to_numpy(dtype="float64")
    truth = rows["account_id"].isin(silent).to_numpy()
    flagged = silent_flagged(rows)

    def fired(bar: float) -> Any:
        return replace(rule, min_evidence=bar).fires(values, since)

    if not np.array_equal(fired(rule.min_evidence), flagged):
        fig.notes.append("the silent evidence does not reproduce the flag on every account: "
                         "no figures at other bars")
        return

    def counts(bar: float) -> list[int]:
        hit = fired(bar)
        return [int((hit & truth).sum()), int(hit.sum())]

    fig.silent_at_bars = {f"{rule.min_evidence + d:.2f}": counts(rule.min_evidence + d)
                          for d in BAR_STEPS if rule.min_evidence + d > 0}
    if truth.any():
        # the best F1; among equals, the bar nearest today's
        scored = [(silent_scores(c[0], c[1], int(truth.sum()))[2] or 0.0,
                   -abs(bar - rule.min_evidence), bar, c)
                  for bar in HINDSIGHT_BARS for c in [counts(bar)]]
        f1, _, bar, (hits, n) = max(scored)
        fig.silent_hindsight = {"bar": bar, "hits": hits, "flagged": n, "f1": f1}


def _silent_bars(fig: WorldFigure, engine: Engine, as_of: date, rows: Any,
                 silent: set[str]) -> Any:
    """`silent_bars` on the date's evidence, read as the flags read it; returns the evidence."""
    from pulse.models.flags import flag_settings, silent_evidence

    evidence = silent_evidence(engine, as_of)
    silent_bars(fig, rows, silent, evidence, flag_settings().silent)
    return evidence


#: What `--only` can narrow a variant bench to.
ONLY = ("silent",)


def churned_within(ids: Any, cancels: dict[str, date], as_of: date, horizon: int) -> Any:
    """1 for each account of `ids` that cancelled on days as_of+1 .. as_of+horizon, else 0."""
    import pandas as pd

    when = pd.Series(list(ids), dtype=object).map(cancels)  # NaN: never cancelled
    stop = as_of + timedelta(days=horizon)
    return (when.notna() & (when > as_of) & (when <= stop)).to_numpy(dtype=int)


def write_world_rows(folder: Path, fig: WorldFigure, engine: Engine, as_of: date, rows: Any,
                     cancels: dict[str, date], silent: set[str],
                     evidence: Any = None) -> Path:
    """`--rows DIR`: one CSV per world (`<variant>-seed<N>.csv`) of the accounts measured,
    for looking into the figures: what the product said of each (health, band, the risk
    list's probability, the model's, the flags), what happened (the cancellation date, and
    `churned`: whether it fell within the horizon, as measured; whether truth.json had it
    silently dissatisfied), the silent flag's evidence per signal, fired or not
    (`models.flags.silent_evidence`, columns `silent_*`), and the date's point-in-time
    features as stored (`sql.features.load_features`, columns `feature_*`). `evidence`: the
    first of these when already read."""
    import pandas as pd

    from pulse.models.flags import silent_evidence
    from pulse.sql.features import load_features

    out = pd.DataFrame({"account_id": rows["account_id"]})
    for col in ("health", "band", "churn_probability", "model_probability"):
        out[col] = rows[col].to_numpy() if col in rows else None
    out["flags"] = [";".join(fl) if isinstance(fl, (list, tuple)) else ""
                    for fl in rows["flags"]]
    out["cancelled_on"] = out["account_id"].map(
        lambda a: cancels[a].isoformat() if a in cancels else None)
    out["churned"] = rows["churned"].to_numpy()
    out["silent_truth"] = out["account_id"].isin(silent).astype(int)
    if evidence is None:
        evidence = silent_evidence(engine, as_of)
    evidence = evidence.add_prefix("silent_")
    out = out.merge(evidence.rename(columns={"silent_account_id": "account_id"}),
                    on="account_id", how="left")
    features = load_features(engine, as_of).drop(columns=["as_of"], errors="ignore")
    out = out.merge(features.add_prefix("feature_").rename(
        columns={"feature_account_id": "account_id"}), on="account_id", how="left")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fig.variant}-seed{fig.seed}.csv"
    out.to_csv(path, index=False)
    return path


def _measure_world(engine: Engine, fig: WorldFigure, truth: dict[str, Any], as_of: date,
                   horizon: int, artifact_dir: Path, console: Console | None,
                   only: str | None = None, rows_dir: Path | None = None) -> None:
    """Train, score, flag and rank as of `as_of` through the product's functions; fill `fig`.

    Every stage runs on its own: an error is written into its figures' cells and the next
    stage still runs. `only="silent"` runs just what the silent flag reads (the product's
    "score a date" step, `models.scoring.score_day`, with the default scorecard and no
    champion: features, health, flags) and fills only its figures, without the minutes of
    training. The full run trains first, so the same step also scores churn before the
    flags.
    """
    import numpy as np
    import pandas as pd

    def stage(name: str, work: Any) -> Any:
        t = time.perf_counter()
        try:
            return work()
        except Exception as exc:  # a bench reports a failing product function and goes on
            fig.errors[name] = _error_text(exc)
            log.debug("bench %s: %s failed", fig.world, name, exc_info=True)
            return None
        finally:
            fig.seconds[name] = round(time.perf_counter() - t, 2)
            if console:
                console.print(f"  {fig.world}: {name} {fig.seconds[name]:.1f} s"
                              + (f" [red]{fig.errors[name]}[/]" if name in fig.errors else ""))

    from pulse.models.registry import champion, train_and_register
    from pulse.models.risklist import build_risk_list
    from pulse.models.scoring import score_day

    def score(card: Any = None) -> None:
        """The product's "score a date" step: features, health, churn scores (with a
        champion), flags; each part's seconds beside the stages'."""
        done = score_day(engine, as_of, scorecard=card, basis="occurred")
        fig.seconds.update({f"score: {k}": round(v, 2) for k, v in done.seconds.items()})
        if done.churn is None:
            fig.notes.append("no champion: the silent flag read no modelled risk")

    if only is not None and only not in ONLY:
        raise InvalidArgumentError(f"--only takes one of {', '.join(ONLY)}, not {only!r}")
    if only == "silent":
        # as `pulse score` does first: the incidents' impacts, and the sentiment model reads
        # the texts of the 90 days before the date (the full run's training does both, from
        # the whole history)
        from pulse.models.scoring import refresh_inputs

        stage("inputs", lambda: refresh_inputs(engine, as_of))
        stage("score date", score)
        rows = stage("stored scores", lambda: _stored_rows(engine, as_of))
        if rows is None or rows.empty:
            return
        cancels, silent = truth_outcomes(truth, as_of, horizon)
        gone = {a for a, d in cancels.items() if d <= as_of}
        rows = rows[~rows["account_id"].isin(gone)].reset_index(drop=True)
        y = churned_within(rows["account_id"], cancels, as_of, horizon)
        fig.scored, fig.churned = len(rows), int(y.sum())
        silent_figures(fig, rows, silent)
        evidence = stage("silent at other bars", lambda: _silent_bars(fig, engine, as_of,
                                                                      rows, silent))
        if rows_dir is not None:
            stage("write rows", lambda: write_world_rows(
                rows_dir, fig, engine, as_of, rows.assign(churned=y), cancels, silent,
                evidence))
        return

    # one cache of feature snapshots for the training and the calibration, as `pulse model
    # train` shares it: both read the same dates from an unchanged warehouse
    snapshots: dict[Any, Any] = {}
    result = stage("train", lambda: train_and_register(
        engine, as_of=as_of, horizon_days=horizon, basis="occurred",
        artifact_dir=artifact_dir, snapshots=snapshots))
    if result is not None:
        m = result.record.metrics
        fig.train_rows, fig.train_positives = m.get("train_rows"), m.get("train_positives")
        fig.model = (f"v{result.record.version} {m.get('model') or m.get('classifier', '')} "
                     f"{result.record.status}").strip()
    # as `pulse model train` does: the bands (and weights) fitted to the same history; the
    # calibrated card is passed along, never applied to the user's $PULSE_HOME
    from pulse.models.calibration import fit_calibration
    from pulse.models.scorecard import BANDS, parse_scorecard

    cal = stage("calibrate", lambda: fit_calibration(
        engine, as_of=as_of, horizon_days=horizon, basis="occurred", fit_weights_=True,
        snapshots=snapshots))
    card = (parse_scorecard(cal.yaml_text, source="calibrated by the bench")
            if cal is not None and cal.fitted else None)
    if cal is not None and not cal.fitted:
        fig.errors["calibrate"] = str(cal.fallback)
    stage("score date", lambda: score(card))
    rows = stage("risk list", lambda: pd.DataFrame(build_risk_list(engine, as_of,
                                                                   scorecard=card)))
    if rows is None or rows.empty:
        rows = stage("stored scores", lambda: _stored_rows(engine, as_of))
    if rows is None or rows.empty:
        return
    for col in ("health", "band", "churn_probability", "flags"):
        if col not in rows:
            rows[col] = None
    cancels, silent = truth_outcomes(truth, as_of, horizon)
    gone = {a for a, d in cancels.items() if d <= as_of}
    rows = rows[~rows["account_id"].isin(gone)].reset_index(drop=True)
    y = churned_within(rows["account_id"], cancels, as_of, horizon)
    fig.scored, fig.churned = len(rows), int(y.sum())
    # The champion's own probabilities (the risk list shows a scorecard stand-in without one).
    stored = stage("read churn scores", lambda: _stored_rows(engine, as_of))
    if stored is not None:
        by_id = stored.set_index("account_id")["churn_probability"]
        prob = pd.to_numeric(rows["account_id"].map(by_id), errors="coerce").to_numpy(
            dtype=float)
    else:
        prob = np.full(len(rows), np.nan)
    if np.isnan(prob).all() and result is not None and champion(engine) is None:
        # The new model was not promoted (no champion): measure it all the same, and say so.
        fig.notes.append("no champion: the trained model is measured as a challenger")

        def challenger() -> Any:
            frame = _scoring_frame(engine, as_of)
            risk = pd.Series(result.record.load().predict_risk(frame),
                             index=frame["account_id"])
            return rows["account_id"].map(risk).to_numpy(dtype=float)
        got = stage("challenger scores", challenger)
        if got is not None:
            prob = got
    fig.champion_auc = _auc(y, prob)
    fig.lift_top_decile = _lift(y, prob)
    shown = pd.to_numeric(rows["churn_probability"], errors="coerce").to_numpy(dtype=float)
    fig.risk_list_auc = risk_list_auc(y, shown)
    if fig.risk_list_auc is None and np.isnan(shown).all():
        fig.notes.append("the risk list shows no probability (no champion, no calibrated "
                         "scorecard): no risk-list ROC AUC")
    health = pd.to_numeric(rows["health"], errors="coerce").to_numpy(dtype=float)
    fig.health_auc = _auc(y, -health)
    band = rows["band"].astype(object).to_numpy()
    banded = np.array([b in BANDS for b in band])
    if banded.any():
        fig.red_amber = float(np.isin(band[banded], ["red", "amber"]).mean())
        fig.green_share = float((band[banded] == "green").mean())
        if (y[banded] == 1).any():
            fig.churners_green = float((band[banded & (y == 1)] == "green").mean())
    silent_figures(fig, rows, silent)
    evidence = stage("silent at other bars", lambda: _silent_bars(fig, engine, as_of, rows,
                                                                  silent))
    if rows_dir is not None:
        stage("write rows", lambda: write_world_rows(rows_dir, fig, engine, as_of,
                                                     rows.assign(model_probability=prob,
                                                                 churned=y),
                                                     cancels, silent, evidence))

    def baselines() -> tuple[float | None, float | None]:
        from pulse.core.errors import TrainingDataError
        from pulse.models.training import build_training_data

        if result is not None and result.data is not None:
            data = result.data
        else:
            try:
                data = build_training_data(engine, as_of=as_of, horizon_days=horizon,
                                           basis="occurred", snapshots=snapshots)
            except TrainingDataError as exc:
                fig.notes.append(f"baselines trained on the bench's own weekly snapshots "
                                 f"(the product's planning refused: {str(exc)[:120]}...)")
                data = _own_training_data(engine, as_of, horizon)
        labelled = data.frame["as_of"] + pd.Timedelta(days=horizon) <= pd.Timestamp(as_of)
        data.frame = data.frame[labelled].reset_index(drop=True)
        frame = _scoring_frame(engine, as_of).set_index("account_id")
        frame = frame.reindex(rows["account_id"]).reset_index()
        if fig.train_rows is None:
            from pulse.models.training import LABEL

            fig.train_rows = len(data.frame)
            fig.train_positives = int(data.frame[LABEL].sum())
        return _baselines(data, frame, y)
    got = stage("baselines", baselines)
    if got is not None:
        fig.logistic_auc, fig.hgb_auc = got
        fig.baselines_from = "bench: all labelled snapshots up to the scoring date"
    if result is not None and isinstance(result.record.metrics.get("baselines"), dict):
        fig.notes.append("training reported baselines on its validation window: "
                         + json.dumps(result.record.metrics["baselines"], default=str)[:300])


def run_variant_bench(name: str, *, seed: int, accounts: int | None = None,
                      months: int | None = None, end: date | None = None,
                      console: Console | None = None, only: str | None = None,
                      rows_dir: Path | None = None) -> WorldFigure:
    """Generate the variant world, land it on a temporary SQLite warehouse and measure it as
    of `horizon` days before its end (see `variant_horizon`)."""
    from pulse.devkit.demo.variants import generate_variant
    from pulse.sql.db import make_engine, upgrade

    fig = WorldFigure(f"{name} seed {seed}", name, seed)
    with tempfile.TemporaryDirectory(prefix="pulse-bench-models-") as tmp:
        folder = Path(tmp)
        world = folder / "world"
        end = end or datetime.now(UTC).date() - timedelta(days=1)
        t = time.perf_counter()
        try:
            generate_variant(world, name, accounts=accounts, months=months, seed=seed, end=end)
        except Exception as exc:
            fig.errors["generate"] = _error_text(exc)
            return fig
        fig.seconds["generate"] = round(time.perf_counter() - t, 2)
        truth = json.loads((world / "truth.json").read_text(encoding="utf-8"))
        gen = truth["generated_with"]
        fig.accounts, fig.days, fig.end = int(gen["accounts"]), int(gen["days"]), gen["end"]
        horizon = variant_horizon(fig.days)
        fig.horizon_days = horizon
        if horizon != VARIANT_HORIZON_DAYS:
            fig.notes.append(f"{fig.days} days of history: horizon {horizon} days (a sixth "
                             f"of the history) instead of {VARIANT_HORIZON_DAYS}")
        as_of = end - timedelta(days=horizon)
        fig.as_of = as_of.isoformat()
        engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
        try:
            upgrade(engine)
            t = time.perf_counter()
            try:
                fig.rows_landed = _land_world(engine, world)
            except Exception as exc:
                fig.errors["land"] = _error_text(exc)
                return fig
            fig.seconds["land"] = round(time.perf_counter() - t, 2)
            if console:
                console.print(f"{fig.world}: {fig.accounts:,} accounts x {fig.days} days, "
                              f"landed {fig.rows_landed:,} rows in {fig.seconds['land']:.1f} s;"
                              f" scoring as of {as_of} (horizon {horizon} days)")
            _measure_world(engine, fig, truth, as_of, horizon, folder / "models", console,
                           only=only, rows_dir=rows_dir)
        finally:
            engine.dispose()
    return fig


def telco_csv() -> Path | None:
    """The IBM Telco churn CSV under the shared data sets, or None when it is missing."""
    from pulse.core.shared import shared_path

    root = get_settings().datasets
    csv = (Path(root) if root else shared_path("datasets")) / "telco-churn" / \
        "Telco-Customer-Churn.csv"
    return csv if csv.is_file() else None


def run_telco_bench(console: Console | None = None) -> WorldFigure:
    """The product's `ChurnModel` and the two plain baselines on IBM's Telco customers:
    one snapshot, so a stratified 70/30 split (random_state 0). Health, bands and the silent
    flag need a warehouse and are not measured here."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from pulse.models.churn import ChurnModel

    fig = WorldFigure("telco", "telco", None, horizon_days=0)
    csv = telco_csv()
    if csv is None:
        fig.errors["data"] = ("the IBM Telco churn data set is missing (expected "
                              "<datasets>/telco-churn/Telco-Customer-Churn.csv; settings "
                              "`datasets`, PULSE_DATASETS)")
        return fig
    t = time.perf_counter()
    telco = pd.read_csv(csv)
    telco["TotalCharges"] = pd.to_numeric(telco["TotalCharges"].astype(str).str.strip()
                                          .replace("", np.nan))
    y_all = (telco.pop("Churn") == "Yes").astype(int)
    x_all = telco.drop(columns=["customerID"])
    x_train, x_test, y_train, y_test = train_test_split(
        x_all, y_all, test_size=0.3, stratify=y_all, random_state=0)
    fig.accounts, fig.scored, fig.churned = len(telco), len(x_test), int(y_test.sum())
    fig.train_rows, fig.train_positives = len(x_train), int(y_train.sum())
    fig.notes.append("one snapshot: stratified 70/30 split; no health, bands or silent flag")
    try:
        model = ChurnModel(random_state=0).fit(x_train, y_train)
        risk = model.predict_risk(x_test)
        fig.champion_auc, fig.lift_top_decile = _auc(y_test, risk), _lift(y_test, risk)
        fig.model = f"ChurnModel {model.classifier}"
    except Exception as exc:
        fig.errors["model"] = _error_text(exc)

    from types import SimpleNamespace

    from pulse.models.training import LABEL

    numeric = [c for c in x_all if pd.api.types.is_numeric_dtype(x_all[c])]
    data = SimpleNamespace(numeric=numeric, categorical=[c for c in x_all if c not in numeric],
                           frame=x_train.assign(**{LABEL: y_train.to_numpy()}))
    try:
        fig.logistic_auc, fig.hgb_auc = _baselines(data, x_test, y_test)
        fig.baselines_from = "bench: the same 70% split"
    except Exception as exc:
        fig.errors["baselines"] = _error_text(exc)
    fig.seconds["all"] = round(time.perf_counter() - t, 2)
    if console:
        console.print(f"telco: {len(telco):,} customers, measured in {fig.seconds['all']:.1f} s")
    return fig


def _variant_means(figures: list[WorldFigure]) -> dict[str, dict[str, float | None]]:
    """Per variant (over seeds) and overall (over worlds, Telco apart): the mean of each figure."""
    out: dict[str, dict[str, float | None]] = {}
    names = list(dict.fromkeys(f.variant for f in figures))
    for name in names:
        mine = [f for f in figures if f.variant == name]
        out[name] = {t.key: _mean([getattr(f, t.key) for f in mine]) for t in TARGETS}
    worlds = [f for f in figures if f.variant != "telco"]
    if worlds:
        out["mean"] = {t.key: _mean([getattr(f, t.key) for f in worlds]) for t in TARGETS}
    return out


def _pooled_counts(hits: int, flagged: int, truth: int) -> dict[str, Any]:
    p, r, f1 = silent_scores(hits, flagged, truth)
    return {"hits": hits, "flagged": flagged, "truth": truth, "precision": p, "recall": r,
            "f1": f1}


def silent_pooled(figures: list[WorldFigure]) -> dict[str, dict[str, Any]]:
    """Per variant and overall (Telco apart): the silent flag's precision, recall and F1 over
    the accounts of all its worlds together, beside the means of the per-world figures. A
    world of a few hundred accounts holds a handful of silent ones, where one account moves
    its F1 by 0.1; pooled, every account weighs the same. None where nothing was measured."""
    def pooled(mine: list[WorldFigure]) -> dict[str, Any]:
        done = [f for f in mine if f.silent_hits is not None and f.silent_truth is not None]
        hits = sum(f.silent_hits or 0 for f in done)
        flagged = sum(f.silent_flagged or 0 for f in done)
        truth = sum(f.silent_truth or 0 for f in done)
        out = {"worlds": len(done)} | _pooled_counts(hits, flagged, truth)
        # the worlds counted at other bars (a world whose evidence did not reproduce its
        # flag is left out of these, and of their truth)
        swept = [f for f in done if f.silent_at_bars]
        at_bars: dict[str, dict[str, Any]] = {}
        for b in sorted({b for f in swept for b in f.silent_at_bars}, key=float):
            mine_b = [f for f in swept if b in f.silent_at_bars]
            at_bars[b] = _pooled_counts(sum(f.silent_at_bars[b][0] for f in mine_b),
                                        sum(f.silent_at_bars[b][1] for f in mine_b),
                                        sum(f.silent_truth or 0 for f in mine_b))
        best = [f.silent_hindsight | {"truth": f.silent_truth or 0}
                for f in swept if f.silent_hindsight]
        hindsight = _pooled_counts(sum(int(b["hits"]) for b in best),
                                   sum(int(b["flagged"]) for b in best),
                                   sum(int(b["truth"]) for b in best))
        return out | {"at_bars": at_bars, "hindsight": hindsight | {"worlds": len(best)}}

    worlds = [f for f in figures if f.variant != "telco"]
    out = {name: pooled([f for f in worlds if f.variant == name])
           for name in dict.fromkeys(f.variant for f in worlds)}
    if worlds:
        out["all"] = pooled(worlds)
    return out


def draw_chart(figures: list[WorldFigure], path: Path) -> Path:
    """A PNG of every figure per variant (mean over seeds; one dot per seed) with the
    targets drawn as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = _variant_means(figures)
    names = [n for n in means if n != "mean"]
    shown = [t for t in TARGETS]
    cols = 5
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax, t in zip(axes.flat, shown):
        values = [means[n][t.key] for n in names]
        xs = range(len(names))
        ax.bar(xs, [v if v is not None else 0.0 for v in values], color=[
            "#bbbbbb" if v is None else ("#4c9a6a" if t.met(v) in (True, None) else "#c8553d")
            for v in values])
        for x, n in zip(xs, names):
            dots = [getattr(f, t.key) for f in figures if f.variant == n]
            dots = [d for d in dots if d is not None]
            ax.plot([x] * len(dots), dots, "k.", markersize=4)
        if t.target is not None:
            ax.axhline(t.target, color="#333333", linestyle="--", linewidth=1)
            ax.text(len(names) - 0.5, t.target, f" target {t.target:g}", va="bottom",
                    ha="right", fontsize=7)
        ax.set_title(t.label + ("" if t.target is None else
                                (" (≥)" if t.higher_is_better else " (≤)")), fontsize=8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        if "auc" in t.key:
            ax.axhline(0.5, color="#999999", linestyle=":", linewidth=1)  # chance
            ax.set_ylim(0.0, 1.0)
        elif t.key != "lift_top_decile":
            ax.set_ylim(0.0, 1.0)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("pulse bench models: figures per variant (bars: mean over seeds; dots: "
                 "seeds; dashed: targets)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: Short column headings of the figures, for a table with one row per world.
_SHORT: dict[str, str] = {
    "champion_auc": "AUC", "risk_list_auc": "list AUC", "logistic_auc": "LR AUC",
    "hgb_auc": "HGB AUC",
    "health_auc": "health AUC", "lift_top_decile": "lift 10%", "churners_green": "churn green",
    "red_amber": "red+amber", "green_share": "green", "silent_precision": "silent P", "silent_recall": "silent R",
    "silent_f1": "silent F1",
}


def _print_variant_tables(figures: list[WorldFigure], console: Console, chart: Path | None
                          ) -> None:
    from rich.table import Table

    means = _variant_means(figures)

    def cell(t: Target, v: float | None) -> str:
        return _f(v, t.digits) + (" ✗" if t.met(v) is False else "")

    table = Table(title="pulse bench models: each world scored as of the horizon before its "
                  "end, against what happened next (✗: misses the target)",
                  title_justify="left")
    for head in ("world", "as of (horizon)", "scored (churned)", "train rows (churned)",
                 "model"):
        table.add_column(head)
    for t in TARGETS:
        table.add_column(_SHORT[t.key], justify="right")
    table.add_column("silent flagged / truth", justify="right")
    for f in figures:
        table.add_row(
            f.world, f"{f.as_of} ({f.horizon_days} d)" if f.as_of else "-",
            f"{f.scored:,} ({f.churned})",
            "-" if f.train_rows is None else f"{f.train_rows:,} ({f.train_positives})",
            f.model or "-", *(cell(t, getattr(f, t.key)) for t in TARGETS),
            "-" if f.silent_truth is None else f"{f.silent_flagged} / {f.silent_truth}")
    if "mean" in means:
        table.add_row("mean (worlds)", "", "", "", "",
                      *(cell(t, means["mean"][t.key]) for t in TARGETS), "", end_section=True)
    table.add_row("target", "", "", "", "", *(
        "" if t.target is None else ("≥ " if t.higher_is_better else "≤ ") + f"{t.target:g}"
        for t in TARGETS), "")
    console.print(table)
    names = [n for n in means if n != "mean"]
    if len(names) > 1:
        per = Table(title="mean per variant (over seeds)", title_justify="left")
        per.add_column("variant")
        for t in TARGETS:
            per.add_column(_SHORT[t.key], justify="right")
        for n in names:
            per.add_row(n, *(cell(t, means[n][t.key]) for t in TARGETS))
        console.print(per)
    pooled = silent_pooled(figures).get("all")
    if pooled and pooled["truth"]:
        where = (f"all {pooled['worlds']} worlds together" if pooled["worlds"] > 1
                 else "its world")
        console.print(
            f"silent flag over the accounts of {where}: "
            f"{pooled['hits']} of {pooled['flagged']} flagged truly silent, of "
            f"{pooled['truth']} silent: precision {_f(pooled['precision'], 2)}, recall "
            f"{_f(pooled['recall'], 2)}, F1 {_f(pooled['f1'], 2)} (the means above weigh "
            "each world alike, whatever its number of silent accounts)")
        if pooled["at_bars"]:
            console.print(
                "  the same accounts at other plain bars (precision / recall / F1): "
                + "; ".join(f"{b}: {_f(c['precision'], 2)} / {_f(c['recall'], 2)} / "
                            f"{_f(c['f1'], 2)}" for b, c in pooled["at_bars"].items()))
            best = pooled["hindsight"]
            console.print(
                f"  each world at the bar that gives it its best F1, chosen with hindsight "
                f"(no rule could choose it; how much a bar could gain): {_f(best['precision'], 2)}"
                f" / {_f(best['recall'], 2)} / {_f(best['f1'], 2)}")
    console.print("Columns:\n" + "\n".join(f"  {_SHORT[t.key]}: {t.label}" for t in TARGETS))
    for f in figures:
        if f.seconds:
            console.print(f"{f.world}: seconds: " + ", ".join(
                f"{k} {v:.1f}" for k, v in f.seconds.items()))
        for stage_name, msg in f.errors.items():
            console.print(f"{f.world}: {stage_name} failed: {msg}")
        for note in f.notes:
            console.print(f"{f.world}: {note}")
    console.print(
        "Protocol: each variant world is landed on a temporary SQLite warehouse; as of "
        f"{VARIANT_HORIZON_DAYS} days before its end (a sixth of the history for worlds "
        f"under {_FULL_HORIZON_MIN_DAYS} days) `train_and_register` trains and registers a "
        "churn model on history up to that date, then `score_day` (features, health, "
        "churn scores, flags) and `build_risk_list` score it; the figures compare that with "
        "truth.json over the horizon that follows. Baselines: a standardised "
        "LogisticRegression and a default HistGradientBoostingClassifier fitted on every "
        "labelled snapshot up to the scoring date, scored on the same accounts.")
    if chart is not None:
        console.print(f"chart: {chart}")


def run_variant_benches(variants: list[str], seeds: list[int], *, telco: bool,
                        accounts: int | None, months: int | None, end: date | None,
                        console: Console | None, only: str | None = None,
                        rows_dir: Path | None = None) -> list[WorldFigure]:
    """Every (variant, seed) world, then Telco when asked."""
    from pulse.devkit.demo.variants import variant_names

    figures = [run_variant_bench(n, seed=s, accounts=accounts, months=months, end=end,
                                 console=console, only=only, rows_dir=rows_dir)
               for n in variant_names(variants) for s in seeds]
    if telco:
        figures.append(run_telco_bench(console))
    return figures


def bench_models(
    seed: Annotated[list[int], typer.Option(
        "--seed", help="Seed of the demo world; repeat for several worlds.")] = [7],  # noqa: B006
    variant: Annotated[list[str], typer.Option(
        "--variant", help="A demo world variant (`pulse demo variants`), or 'all'; repeat for "
        "several. Each world is scored as of 90 days before its end against what happened "
        "next, through the product's own training, health, flags, churn scores and risk "
        "list.")] = [],  # noqa: B006
    telco: Annotated[bool, typer.Option(
        "--telco", help="Also measure the churn model and the baselines on IBM's Telco "
        "customers (shared data sets).")] = False,
    chart: Annotated[Path | None, typer.Option(
        help="With --variant/--telco: where to draw the PNG chart (default "
        "$PULSE_HOME/bench/models.png); 'none' to skip.")] = None,
    months: Annotated[int | None, typer.Option(
        help="With --variant: months of history instead of each variant's own.", min=3)]
    = None,
    accounts: Annotated[int | None, typer.Option(
        help="Accounts in each world (default 2,000; with --variant the variant's own).",
        min=20)] = None,
    days: Annotated[int, typer.Option(help="Days of history in each world.", min=60)] = 180,
    horizon: Annotated[int, typer.Option(
        help="Churn horizon in days (the demo world's cancellations fall in its last 60 "
        "days, so both label windows must fit there; --variant worlds use 90).", min=1)]
    = BENCH_HORIZON_DAYS,
    step: Annotated[int, typer.Option(help="Days between snapshots.", min=1)] = 7,
    valid_days: Annotated[int, typer.Option(
        help="Days of held-out validation snapshots.", min=1)] = 14,
    classifier: Annotated[str, typer.Option(help="hgb or logistic.")] = "hgb",
    data: Annotated[Path | None, typer.Option(
        help="Measure on this folder of contract files (with an optional truth.json) instead "
        "of generating a world.", exists=True, file_okay=False)] = None,
    end: Annotated[str | None, typer.Option(
        help="Last day of the generated world, YYYY-MM-DD (default: yesterday).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    only: Annotated[str | None, typer.Option(
        help="With --variant: measure only this part ('silent': the product's scoring step, "
        "features, health and flags, without training, so without the modelled risk), in "
        "seconds instead of minutes.")]
    = None,
    rows: Annotated[Path | None, typer.Option(
        "--rows", help="With --variant: also write each world's accounts as measured to "
        "DIR/<variant>-seed<N>.csv (health, band, probabilities, flags, what happened, the "
        "silent flag's evidence per signal, the date's features), to look into the figures.",
        file_okay=False)]
    = None,
) -> None:
    """Churn ROC AUC and lift on a later, held-out window, and the silent flag's precision and
    recall against the demo truth (figures, not a pass/fail test)."""

    from pulse.cli.common import parse_day

    console = _console()
    last = parse_day(end) if end else None
    if only is not None and (only not in ONLY or not variant or telco):
        raise InvalidArgumentError(f"--only takes one of {', '.join(ONLY)}, with --variant "
                                   "and without --telco")
    if variant or telco:
        console = _console(210)
        # with --format json the figures go to stdout and each stage's progress to stderr
        worlds = run_variant_benches(variant, seed, telco=telco, accounts=accounts,
                                     months=months, end=last,
                                     console=console if fmt == "table" else
                                     _console(210, stderr=True), only=only,
                                     rows_dir=rows)
        drawn: Path | None = None
        if chart is None or str(chart).lower() != "none":
            target = chart or get_settings().resolved_home() / "bench" / "models.png"
            try:
                drawn = draw_chart(worlds, target)
            except Exception as exc:  # a chart is a courtesy: report and keep the figures
                log.warning("chart not drawn: %s", exc)
        if fmt == "json":
            print(json.dumps({"worlds": [asdict(f) for f in worlds],
                              "means": _variant_means(worlds),
                              "silent_pooled": silent_pooled(worlds),
                              "targets": [asdict(t) for t in TARGETS],
                              "chart": str(drawn) if drawn else None}, indent=2))
        else:
            _print_variant_tables(worlds, console, drawn)
        return
    figures = []
    for s in ([None] if data is not None else seed):
        figures.append(run_model_bench(
            seed=s, accounts=accounts or 2000, days=days, horizon=horizon, step=step,
            valid_days=valid_days, classifier=classifier, data_dir=data, end=last,
            console=console if fmt == "table" else None))
    if fmt == "json":
        print(json.dumps([asdict(f) for f in figures], indent=2))
        return
    print_model_table(figures, console, horizon=horizon, step=step)


def print_model_table(figures: list[ModelFigure], console: Console, *, horizon: int,
                      step: int) -> None:
    """The figures of `pulse bench models` (without --variant) as a table, one column per
    world, with a mean column when there are several."""
    from rich.table import Table

    table = Table(title=f"pulse bench models: churn within {horizon} days, on a held-out "
                  "later window", title_justify="left")
    table.add_column("")
    for f in figures:
        table.add_column(f.world.replace("demo ", ""), justify="right")
    several = len(figures) > 1
    if several:
        table.add_column("mean", justify="right")

    def add(label: str, cells: list[str], mean: str = "") -> None:
        table.add_row(label, *cells, *([mean] if several else []))

    add("training snapshots", [f.train.replace(" to ", "..") or "-" for f in figures])
    add("held-out snapshots", [f.valid.replace(" to ", "..") or "-" for f in figures])
    add("training rows (churned)", [f"{f.train_rows:,} ({f.train_churned})" for f in figures])
    add("held-out rows (churned)", [f"{f.valid_rows:,} ({f.valid_churned})" for f in figures])
    for key, label, digits in (("roc_auc", "ROC AUC", 3),
                               ("scorecard_roc_auc", "ROC AUC of the scorecard", 3),
                               ("pr_auc", "PR AUC", 3),
                               ("lift_top_decile", "lift, top 10%", 2), ("brier", "Brier", 4)):
        values = [getattr(f, key) for f in figures]
        add(label, [_f(v, digits) for v in values], _f(_mean(values), digits))
    add("model status", [f.status or "-" for f in figures])
    silent = any(f.silent_truth is not None for f in figures)
    if silent:
        add("silent flagged / truth", [f"{f.silent_flagged} / {f.silent_truth}"
                                       for f in figures])
        for key, label in (("silent_precision", "silent precision"),
                           ("silent_recall", "silent recall")):
            values = [getattr(f, key) for f in figures]
            add(label, [_f(v, 2) for v in values], _f(_mean(values), 2))
    console.print(table)
    for f in figures:
        if f.error:
            console.print(f"{f.world}: no model: {f.error}")
    a = figures[0]
    console.print(
        f"{a.accounts:,} accounts x {a.days} days per world; the model is trained as of the "
        f"last day on snapshots every {step} days whose {horizon}-day label windows end "
        "before the held-out window starts, and scored on the held-out snapshots (the latest "
        "whose horizon is complete). Silent flag: as of the last day, against truth.json."
        + ("" if silent else " (No silent-flag figures: " + (
            "the flag is not available yet.)" if not _silent_flags_available()
            else "no truth.json with silent_dissatisfied accounts.)")))


# --------------------------------------------------------------------------- bench score


_FEATURES = ("api_calls", "dashboards", "reports", "exports", "alerts", "webhooks",
             "slack_integration", "sso_login", "invoices", "scheduled_reports")
_PLANS = ("starter", "growth", "business", "enterprise")
_SEGMENTS = ("smb", "mid-market", "enterprise")
_REGIONS = ("us-east", "us-west", "eu-west", "ap-southeast")


def _ts(epoch_s: Any) -> Any:
    import pandas as pd

    return pd.to_datetime(epoch_s, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ")


def synthesise(folder: Path, *, accounts: int, days: int, seed: int = 1,
               end: date | None = None, rows_per_account_day: float = 1.1,
               chunk_rows: int = 2_000_000) -> dict[str, int]:
    """Write accounts, contacts, usage (in files of `chunk_rows`), purchases and tickets.

    About 5% of accounts cancel and 10% fade over their last weeks; usage is columnar numpy,
    so 20 million rows take about a minute to write.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    end = end or datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    t0 = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    n = accounts
    ids = pd.Series(np.arange(n)).map("A{:07d}".format).to_numpy()
    plan = rng.integers(0, 4, n)
    seats = np.maximum(1, np.rint(rng.lognormal(2.0 + 0.5 * plan, 0.8))).astype(int)
    mrr = np.round(seats * np.array([15.0, 30.0, 55.0, 90.0])[plan], 2)
    created = t0 - rng.integers(30, 1500, n) * 86400
    fresh = rng.random(n) < 0.05
    created[fresh] = t0 + rng.integers(0, days - 7, fresh.sum()) * 86400
    cancel_day = np.where(rng.random(n) < 0.05, rng.integers(20, days, n), -1)
    cancel_day[fresh] = -1
    fade_from = np.where(rng.random(n) < 0.10, days - rng.integers(20, 50, n), days)
    renewal = [(end + timedelta(days=int(d))).isoformat() for d in rng.integers(1, 365, n)]
    pd.DataFrame({
        "account_id": ids, "name": np.char.add("Company ", ids.astype(str)), "mrr": mrr,
        "currency": "USD", "plan": np.array(_PLANS)[plan],
        "segment": np.array(_SEGMENTS)[np.minimum(plan, 2)],
        "region": np.array(_REGIONS)[rng.integers(0, 4, n)], "seats": seats,
        "created_at": _ts(created), "renewal_date": renewal,
    }).to_csv(folder / "accounts.csv", index=False)
    counts = {"accounts": n}

    per = np.minimum(seats, 8)
    first_contact = np.concatenate([[0], np.cumsum(per)[:-1]])
    owner = np.repeat(np.arange(n), per)
    pd.DataFrame({
        "contact_id": pd.Series(np.arange(len(owner))).map("C{:08d}".format),
        "account_id": ids[owner],
        "email": pd.Series(np.arange(len(owner))).map("user{}@bench.example".format),
        "timezone": "UTC",
    }).to_csv(folder / "contacts.csv", index=False)
    counts["contacts"] = len(owner)

    weight = rng.lognormal(0.0, 1.0, n) * np.sqrt(per)
    weight /= weight.sum()
    total = int(rows_per_account_day * n * days)
    written, part = 0, 0
    while written < total:
        m = min(chunk_rows, total - written)
        acc = rng.choice(n, size=m, p=weight)
        day = rng.integers(0, days, m)
        first = np.maximum(0, (created[acc] - t0) // 86400)
        fading = (day >= fade_from[acc]) & (
            rng.random(m) < (day - fade_from[acc] + 1) / np.maximum(days - fade_from[acc], 1))
        keep = (day >= first) & ~fading & ((cancel_day[acc] < 0) | (day < cancel_day[acc]))
        acc, day = acc[keep], day[keep]
        k = len(acc)
        contact = first_contact[acc] + (rng.random(k) * per[acc]).astype(int)
        frame = pd.DataFrame({
            "event_id": pd.Series(np.arange(written, written + k)).map("u{:010d}".format),
            "account_id": ids[acc],
            "occurred_at": _ts(t0 + day * 86400 + rng.integers(0, 86400, k)),
            "feature": np.array(_FEATURES)[rng.integers(0, len(_FEATURES), k)],
            "contact_id": pd.Series(contact).map("C{:08d}".format).to_numpy(),
            "quantity": rng.integers(1, 30, k),
            "outcome": np.where(rng.random(k) < 0.03, "error", "ok"),
        })
        frame.to_csv(folder / f"usage_{part:03d}.csv", index=False)
        written += m
        counts["usage"] = counts.get("usage", 0) + k
        part += 1

    # Billing: a monthly payment per account, a few failures and downgrades, the cancellations.
    months = max(1, days // 30)
    acc = np.repeat(np.arange(n), months)
    mday = np.tile(np.arange(months) * 30, n) + rng.integers(0, 30, n * months)
    ok = (mday < days) & (t0 + mday * 86400 >= created[acc]) & (
        (cancel_day[acc] < 0) | (mday < cancel_day[acc]))
    acc, mday = acc[ok], mday[ok]
    failed = rng.random(len(acc)) < 0.02
    kind = np.where(failed, "payment_failed", "payment_succeeded")
    rows = [pd.DataFrame({"account_id": ids[acc], "t": t0 + mday * 86400 + 7200, "kind": kind,
                          "amount": mrr[acc], "mrr_after": None})]
    down = np.flatnonzero(rng.random(n) < 0.03)
    rows.append(pd.DataFrame({"account_id": ids[down],
                              "t": t0 + rng.integers(0, days, len(down)) * 86400 + 36000,
                              "kind": "downgraded", "amount": 0.0,
                              "mrr_after": np.round(mrr[down] * 0.7, 2)}))
    gone = np.flatnonzero(cancel_day >= 0)
    rows.append(pd.DataFrame({"account_id": ids[gone], "t": t0 + cancel_day[gone] * 86400
                              + 43200, "kind": "cancelled", "amount": 0.0, "mrr_after": 0.0}))
    bill = pd.concat(rows, ignore_index=True)
    bill = bill[bill["t"] < t0 + days * 86400]
    pd.DataFrame({
        "event_id": pd.Series(np.arange(len(bill))).map("p{:09d}".format),
        "account_id": bill["account_id"].to_numpy(), "occurred_at": _ts(bill["t"].to_numpy()),
        "kind": bill["kind"].to_numpy(), "amount": bill["amount"].to_numpy(),
        "mrr_after": bill["mrr_after"].to_numpy(),
    }).to_csv(folder / "purchases.csv", index=False)
    counts["purchases"] = len(bill)

    # Tickets: about one per account per quarter, most solved within days.
    k = int(n * days / 90)
    acc = rng.integers(0, n, k)
    opened = t0 + rng.integers(0, days, k) * 86400 + rng.integers(0, 86400, k)
    opened = np.maximum(opened, created[acc] + 3600)
    keep = opened < t0 + days * 86400 - 3600
    acc, opened = acc[keep], opened[keep]
    k = len(acc)
    resolved = opened + rng.integers(600, 6 * 86400, k)
    solved = resolved < t0 + days * 86400 - 3600
    # a channel each, and a first response a few minutes to a day later (some never answered)
    channel = np.array(["email", "chat", "web", "phone"])[rng.choice(4, k, p=[0.5, 0.2, 0.2,
                                                                          0.1])]
    first = np.minimum(opened + np.exp(rng.normal(np.log(3600), 1.5, k)).astype(np.int64),
                       resolved)
    answered = (first < t0 + days * 86400 - 3600) & (rng.random(k) < 0.95)
    pd.DataFrame({
        "ticket_id": pd.Series(np.arange(k)).map("t{:09d}".format),
        "account_id": ids[acc], "opened_at": _ts(opened), "channel": channel,
        "first_response_at": np.where(answered, _ts(first), ""),
        "resolved_at": np.where(solved, _ts(resolved), ""),
        "status": np.where(solved, "solved", "open"),
        "priority": np.array(["low", "normal", "high", "urgent"])[
            rng.choice(4, k, p=[0.3, 0.5, 0.15, 0.05])],
        "subject": "Question about the product",
    }).to_csv(folder / "tickets.csv", index=False)
    counts["tickets"] = k
    return counts


def _bench_champion(folder: Path, console: Console | None) -> Any:
    """A churn model fitted on a small demo world, to be the champion of the bench warehouse."""
    from pulse.devkit.demo import generate
    from pulse.models.registry import fit_and_evaluate
    from pulse.models.training import build_training_data
    from pulse.sql.db import make_engine, upgrade

    end = datetime.now(UTC).date() - timedelta(days=1)
    world = folder / "champion-world"
    generate(world, accounts=1500, days=150, seed=11, end=end)
    engine = make_engine(f"sqlite:///{folder / 'champion.db'}")
    try:
        upgrade(engine)
        _land_world(engine, world)
        data = build_training_data(engine, as_of=end, horizon_days=BENCH_HORIZON_DAYS,
                                   valid_days=14)
        fitted = fit_and_evaluate(data)
    finally:
        engine.dispose()
    if console:
        console.print(f"champion for scoring: fitted on a 1,500-account demo world (validation "
                      f"ROC AUC {fitted.metrics['roc_auc']:.3f})")
    return fitted


@dataclass
class ScoreFigure:
    database: str
    accounts: int
    usage_rows: int
    seconds: dict[str, float] = field(default_factory=dict)
    churn_explained: int = 0

    @property
    def scoring_seconds(self) -> float:
        return sum(v for k, v in self.seconds.items() if k != "land")


def _time_stages(db: str, engine: Engine, folder: Path, fitted: Any, end: date,
                 counts: dict[str, int], console: Console | None) -> ScoreFigure:
    from pulse.listeners.landing import land_files
    from pulse.models.health import score_accounts
    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.models.registry import register_fitted, score_churn_summary
    from pulse.sql.db import upgrade
    from pulse.sql.features import compute_features

    fig = ScoreFigure(db, counts["accounts"], counts.get("usage", 0))
    upgrade(engine)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".csv")

    def stage(name: str, work: Any) -> Any:
        if console:
            console.print(f"{db}: {name} ...")
        t = time.perf_counter()
        value = work()
        fig.seconds[name] = time.perf_counter() - t
        return value

    stage("land", lambda: land_files(engine, files))
    stage("features", lambda: compute_features(engine, end, basis="occurred",
                                                      negative_terms=NEGATIVE_TERMS))
    stage("health", lambda: score_accounts(engine, end))
    register_fitted(engine, fitted, artifact_dir=folder.parent / f"models-{db}")
    summary = stage("churn scoring", lambda: score_churn_summary(engine, end))
    fig.churn_explained = summary.explained
    if _silent_flags_available():
        from pulse.models.flags import compute_flags

        stage("flags", lambda: compute_flags(engine, end))
    return fig


def run_score_bench(*, accounts: int, days: int, seed: int, postgres_url: str | None,
                    console: Console | None) -> list[ScoreFigure]:
    from pulse.devkit.bench.warehouses import on_each_warehouse

    with tempfile.TemporaryDirectory(prefix="pulse-bench-score-") as tmp:
        root = Path(tmp)
        data = root / "data"
        end = datetime.now(UTC).date() - timedelta(days=1)
        t = time.perf_counter()
        counts = synthesise(data, accounts=accounts, days=days, seed=seed, end=end)
        if console:
            console.print(f"synthesised {accounts:,} accounts x {days} days: "
                          f"{counts['usage']:,} usage rows, {counts['purchases']:,} billing "
                          f"events, {counts['tickets']:,} tickets in "
                          f"{time.perf_counter() - t:.0f} s")
        fitted = _bench_champion(root, console)
        timed = on_each_warehouse(
            root, "pulse_bench_score", postgres_url, console,
            lambda dialect, engine: _time_stages(dialect, engine, data, fitted, end, counts,
                                                 console))
    return list(timed.values())


def bench_score(
    accounts: Annotated[int, typer.Option(help="Accounts to synthesise.", min=100)] = 10_000,
    days: Annotated[int, typer.Option(help="Days of history.", min=60)] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL to measure too (default PULSE_TEST_POSTGRES_URL or the local test "
        "database); 'none' to skip.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Stage timings of scoring N accounts: land, features, health, churn scoring, flags
    (figures, not a pass/fail test)."""
    from rich.table import Table

    console = _console()
    figures = run_score_bench(accounts=accounts, days=days, seed=seed,
                              postgres_url=postgres_url,
                              console=console if fmt == "table" else None)
    if fmt == "json":
        print(json.dumps([{**asdict(f), "seconds": {k: round(v, 2) for k, v in
                                                    f.seconds.items()},
                           "scoring_seconds": round(f.scoring_seconds, 2)} for f in figures],
                         indent=2))
        return
    stages = list(dict.fromkeys(k for f in figures for k in f.seconds))
    table = Table(title=f"pulse bench score: {accounts:,} accounts x {days} days "
                  f"({figures[0].usage_rows:,} usage rows)", title_justify="left")
    table.add_column("stage")
    for f in figures:
        table.add_column(f"{f.database} s", justify="right")
    for s in stages:
        table.add_row(s, *(f"{f.seconds[s]:.1f}" if s in f.seconds else "-" for f in figures))
    table.add_row("scoring (all but land)", *(f"{f.scoring_seconds:.1f}" for f in figures))
    console.print(table)
    console.print("land = validate and load every file; features = one set-based query as of "
                  "the last day; health = the scorecard; churn scoring = the champion's risk "
                  "for every account, drivers for the riskiest (at most 2,000); flags = "
                  "silent dissatisfaction and the others, when available.")
