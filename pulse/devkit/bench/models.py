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
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pulse.core.settings import get_settings

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

#: Churn horizon of the benchmark. The demo world places its cancellations in its last 60
#: days, and an honest split needs two label windows (training, then validation) inside them.
BENCH_HORIZON_DAYS = 14


def _console() -> Console:
    from rich.console import Console

    console = Console()
    # piped figures are read by people too: do not squeeze the tables into 80 columns
    return console if console.is_terminal else Console(width=max(console.width, 120))


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

    from pulse.models.flags import compute_flags
    from pulse.models.health import score_date
    from pulse.sql.schema import AccountFlag

    score_date(engine, end, basis="occurred")
    compute_flags(engine, end)
    t = AccountFlag.__table__
    with engine.connect() as conn:
        flagged = set(conn.execute(select(t.c.account_id).where(
            t.c.as_of == end, t.c.flag == "silent_dissatisfied")).scalars())
    hits = len(flagged & truth)
    fig.silent_flagged, fig.silent_truth = len(flagged), len(truth)
    fig.silent_precision = hits / len(flagged) if flagged else None
    fig.silent_recall = hits / len(truth) if truth else None


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


def bench_models(
    seed: Annotated[list[int], typer.Option(
        "--seed", help="Seed of the demo world; repeat for several worlds.")] = [7],  # noqa: B006
    accounts: Annotated[int, typer.Option(help="Accounts in each world.", min=20)] = 2000,
    days: Annotated[int, typer.Option(help="Days of history in each world.", min=60)] = 180,
    horizon: Annotated[int, typer.Option(
        help="Churn horizon in days (the demo world's cancellations fall in its last 60 "
        "days, so both label windows must fit there).", min=1)] = BENCH_HORIZON_DAYS,
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
) -> None:
    """Churn ROC AUC and lift on a later, held-out window, and the silent flag's precision and
    recall against the demo truth (figures, not a pass/fail test)."""
    from rich.table import Table

    console = _console()
    last = date.fromisoformat(end) if end else None
    figures = []
    for s in ([None] if data is not None else seed):
        figures.append(run_model_bench(
            seed=s, accounts=accounts, days=days, horizon=horizon, step=step,
            valid_days=valid_days, classifier=classifier, data_dir=data, end=last,
            console=console if fmt == "table" else None))
    if fmt == "json":
        print(json.dumps([asdict(f) for f in figures], indent=2))
        return
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
    pd.DataFrame({
        "ticket_id": pd.Series(np.arange(k)).map("t{:09d}".format),
        "account_id": ids[acc], "opened_at": _ts(opened),
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
    from pulse.sql.db import create_schema, drop_schema, make_engine

    figures: list[ScoreFigure] = []
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
        engine = make_engine(f"sqlite:///{root / 'bench.db'}")
        try:
            figures.append(_time_stages("sqlite", engine, data, fitted, end, counts, console))
        finally:
            engine.dispose()
        (root / "bench.db").unlink(missing_ok=True)
        pg = postgres_url or get_settings().test_postgres_url
        if pg != "none":
            schema = f"pulse_bench_score_{os.getpid()}"
            try:
                engine = create_schema(pg, schema)
            except Exception as exc:  # an unreachable server: report and go on
                if console:
                    console.print(f"postgresql: skipped ({str(exc).splitlines()[0]})")
            else:
                try:
                    figures.append(_time_stages("postgresql", engine, data, fitted, end,
                                                counts, console))
                finally:
                    engine.dispose()
                    drop_schema(pg, schema)
    return figures


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
