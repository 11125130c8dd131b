"""`pulse bench scale`: the wall time of a full scoring day against shard and worker count,
with the usage features read from the daily rollups and from the raw events.

A synthetic warehouse of `accounts` accounts is written straight into the database (numpy
columns, bulk inserts on SQLite, COPY on PostgreSQL; no Python loop over rows): accounts,
contacts, purchases, tickets and `days` days of usage events, then the daily rollups
(`pulse.sql.rollups.rebuild`). A champion churn model (a small logistic model, fitted in a
blink on a synthetic frame) is registered so that churn really scores.

Then, for each usage source, shard count and worker count, one scoring day runs exactly as the
`pulse_health` DAG runs it (the same functions its tasks call): `begin_date`, then per shard
`features`, `health`, `churn` (`pulse.models.sharded`), the shards spread over `workers`
processes (a `ProcessPoolExecutor`, started and warmed before the clock starts: an Airflow
worker's slot is a process too), then once `finish_churn`, `check_complete` + `compute_flags`
and `publish_date`. Every configuration runs side by side in the same warehouse and the same
run, and its time is divided by the baseline's (rollups, 1 shard, 1 worker).

Checked on every run, not only timed: each configuration scored the same accounts with the
same health and churn probability as the baseline, and the features read from the raw events
equal those read from the rollups.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine, Table

log = logging.getLogger(__name__)

BASIS = "occurred"
USAGE_SOURCES = ("rollups", "events")
_FEATURES = np.array(["dashboard", "reports", "exports", "api", "alerts", "search"])
_COMPONENTS = np.array(["web", "api", "mobile"])
_FEATURE_SHARE = [0.45, 0.2, 0.1, 0.1, 0.1, 0.05]
_COMPONENT_SHARE = [0.7, 0.25, 0.05]
_PLANS = np.array(["starter", "team", "business", "enterprise"])
#: the numeric features the stand-in champion reads
_MODEL_FEATURES = ["events_7d_vs_28d", "error_rate_28d", "days_since_last_use"]


@dataclass
class ScaleRun:
    """One scoring day: its configuration, wall time, and what it scored."""

    usage: str
    shards: int
    workers: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    accounts: int = 0
    ratio: float = 0.0  # seconds / the baseline's (rollups, 1 shard, 1 worker)
    same_as_baseline: bool = False  # same accounts, health and churn probability


@dataclass
class ScaleReport:
    database: str
    accounts: int
    days: int
    as_of: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # generate, rollups
    runs: list[ScaleRun] = field(default_factory=list)
    baseline_seconds: float = 0.0
    features_agree: bool = False  # raw-event features == rollup features
    feature_columns: int = 0
    chart: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the warehouse


def _instants(epoch_s: np.ndarray, dialect: str) -> np.ndarray:
    """Epoch seconds as the database stores an instant (sql.types.UTCDateTime)."""
    text = np.datetime_as_string(epoch_s.astype("datetime64[s]"), unit="us")
    text = np.char.replace(text, "T", " ")
    return np.char.add(text, "+00:00") if dialect == "postgresql" else text


def _days(epoch_s: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(epoch_s.astype("datetime64[s]").astype("datetime64[D]"))


def write_frame(engine: Engine, table: Table, frame: pd.DataFrame) -> None:
    """Bulk-load a frame whose columns are named as `table`'s and already hold the stored
    values: COPY on PostgreSQL, one executemany on SQLite."""
    import io

    names = list(frame.columns)
    with engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if conn.dialect.name == "postgresql":
                buf = io.StringIO()
                frame.to_csv(buf, index=False, header=False, na_rep="\\N")
                with cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN "
                              "(FORMAT csv, NULL '\\N')") as cp:
                    cp.write(buf.getvalue())
            else:
                columns = [frame[c].astype(object).where(frame[c].notna(), None).tolist()
                           for c in names]
                cur.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
                                f"({', '.join('?' * len(names))})", zip(*columns, strict=True))
        finally:
            cur.close()


def generate_warehouse(engine: Engine, *, accounts: int, days: int, as_of: date, seed: int = 1,
                       chunk_accounts: int = 10_000,
                       progress: Callable[[str, int, int], None] | None = None
                       ) -> dict[str, int]:
    """Write a synthetic book straight into the warehouse; returns rows per table.

    Every account uses the product on most days of the last `days` (ending with `as_of`), a
    few events per active day over features and components, by its contacts; about 10% fade
    over their last weeks and a few pay late or cancel. `progress(table, done, total)` after
    each chunk.
    """
    from pulse.sql.schema import Account, Contact, PurchaseEvent, Ticket, UsageEvent

    dialect = engine.dialect.name
    rng = np.random.default_rng(seed)
    end = int(datetime.combine(as_of + timedelta(days=1), datetime.min.time(), UTC).timestamp())
    t0 = end - days * 86400
    landed = _instants(np.array([t0 - 86400]), dialect)[0]
    n = accounts
    ids = np.char.add("A", np.char.zfill(np.arange(n).astype(str), 7))
    plan = rng.integers(0, 4, n)
    seats = np.maximum(1, np.rint(rng.lognormal(1.6 + 0.4 * plan, 0.7))).astype(np.int64)
    mrr = np.round(seats * np.array([15.0, 30.0, 55.0, 90.0])[plan], 2)
    created = t0 - rng.integers(30, 900, n) * 86400
    renewal = _days(end + rng.integers(1, 365, n) * 86400)
    counts: dict[str, int] = {}

    def lineage(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(landed_at=landed, updated_at=landed)

    write_frame(engine, Account.__table__, lineage(pd.DataFrame({
        "account_id": ids, "name": np.char.add("Company ", ids), "mrr": mrr,
        "currency": "USD", "plan": _PLANS[plan], "seats": seats,
        "created_at": _instants(created, dialect), "renewal_date": renewal})))
    counts["accounts"] = n
    if progress:
        progress("accounts", n, n)

    per = np.minimum(seats, 6)
    first_contact = np.concatenate([[0], np.cumsum(per)[:-1]])
    owner = np.repeat(np.arange(n), per)
    contact_ids = np.char.add("C", np.char.zfill(np.arange(len(owner)).astype(str), 8))
    write_frame(engine, Contact.__table__, lineage(pd.DataFrame({
        "contact_id": contact_ids, "account_id": ids[owner],
        "email": np.char.add(contact_ids, "@bench.example"), "timezone": "UTC",
        "opted_out": False})))
    counts["contacts"] = len(owner)

    # usage: per account a daily activity rate and events per active day; fading accounts
    # lose their activity over their last weeks
    activity = rng.beta(2.0, 2.5, n)
    rate = rng.gamma(2.0, 0.75, n) * np.sqrt(per)
    fade_from = np.where(rng.random(n) < 0.10, days - rng.integers(14, 42, n), days)
    written = 0
    for lo in range(0, n, chunk_accounts):
        acc = np.arange(lo, min(lo + chunk_accounts, n))
        acc_day = np.repeat(acc, days)
        day = np.tile(np.arange(days), len(acc))
        fading = np.clip((day - fade_from[acc_day] + 1) / 28.0, 0.0, 1.0)
        active = rng.random(len(day)) < activity[acc_day] * (1.0 - fading)
        acc_day, day = acc_day[active], day[active]
        per_day = rng.poisson(rate[acc_day]) + 1
        a = np.repeat(acc_day, per_day)
        d = np.repeat(day, per_day)
        m = len(a)
        at = t0 + d * 86400 + rng.integers(0, 86400, m)
        contact = first_contact[a] + (rng.random(m) * per[a]).astype(np.int64)
        event_ids = np.char.add("u", np.char.zfill(np.arange(written, written + m).astype(str),
                                                   11))
        write_frame(engine, UsageEvent.__table__, lineage(pd.DataFrame({
            "event_id": event_ids, "account_id": ids[a],
            "occurred_at": _instants(at, dialect),
            "feature": _FEATURES[rng.choice(len(_FEATURES), m, p=_FEATURE_SHARE)],
            "contact_id": contact_ids[contact],
            "component": _COMPONENTS[rng.choice(len(_COMPONENTS), m, p=_COMPONENT_SHARE)],
            "quantity": rng.integers(1, 20, m).astype(np.float64),
            "outcome": np.where(rng.random(m) < 0.03, "error", "ok")})))
        written += m
        if progress:
            progress("usage events", written, 0)
    counts["usage_events"] = written

    # billing: a start, monthly payments (2% fail), and 3% cancel in the window
    months = max(1, days // 30 + 1)
    acc = np.repeat(np.arange(n), months)
    when = end - (np.tile(np.arange(months), n) * 30 + rng.integers(1, 30, n * months)) * 86400
    failed = rng.random(len(acc)) < 0.02
    gone = np.flatnonzero(rng.random(n) < 0.03)
    bill = pd.DataFrame({
        "account_id": np.concatenate([ids, ids[acc], ids[gone]]),
        "t": np.concatenate([created, when, end - rng.integers(1, days, len(gone)) * 86400]),
        "kind": np.concatenate([np.full(n, "subscription_started"),
                                np.where(failed, "payment_failed", "payment_succeeded"),
                                np.full(len(gone), "cancelled")]),
        "amount": np.concatenate([mrr, mrr[acc], np.zeros(len(gone))]),
        "mrr_after": np.concatenate([mrr, np.full(len(acc), np.nan), np.zeros(len(gone))])})
    write_frame(engine, PurchaseEvent.__table__, lineage(pd.DataFrame({
        "event_id": np.char.add("p", np.char.zfill(np.arange(len(bill)).astype(str), 9)),
        "account_id": bill["account_id"].to_numpy(),
        "occurred_at": _instants(bill["t"].to_numpy(), dialect),
        "kind": bill["kind"].to_numpy(), "amount": bill["amount"].to_numpy(),
        "currency": "USD", "mrr_after": bill["mrr_after"].to_numpy()})))
    counts["purchase_events"] = len(bill)

    # support: about one ticket per account per quarter, most solved within days
    k = max(1, n * days // 90)
    acc = rng.integers(0, n, k)
    opened = t0 + rng.integers(0, days * 86400 - 7200, k)
    resolved = opened + rng.integers(600, 5 * 86400, k)
    solved = resolved < end
    first = opened + rng.integers(300, 86400, k)
    answered = first < end
    write_frame(engine, Ticket.__table__, lineage(pd.DataFrame({
        "ticket_id": np.char.add("t", np.char.zfill(np.arange(k).astype(str), 9)),
        "account_id": ids[acc], "opened_at": _instants(opened, dialect),
        "resolved_at": pd.Series(_instants(resolved, dialect)).where(solved, None),
        "first_response_at": pd.Series(_instants(first, dialect)).where(answered, None),
        "status": np.where(solved, "solved", "open"), "channel": "email",
        "priority": np.array(["low", "normal", "high", "urgent"])[
            rng.choice(4, k, p=[0.3, 0.5, 0.15, 0.05])],
        "subject": "Question about the product"})))
    counts["tickets"] = k
    return counts


def register_stand_in_champion(engine: Engine, folder: Path, as_of: date, *, seed: int = 1
                               ) -> None:
    """A champion churn model fitted in a blink on a synthetic frame (the accounts whose last
    week fell against their month rank riskiest): what scoring costs does not depend on how
    the model was trained, only that there is one."""
    from sqlalchemy import insert

    from pulse.models.churn import ChurnModel
    from pulse.models.churn_artifact import save_model
    from pulse.models.registry import REGISTRY

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"events_7d_vs_28d": rng.gamma(4.0, 0.25, 2000),
                          "error_rate_28d": rng.beta(1.0, 30.0, 2000),
                          "days_since_last_use": rng.integers(0, 30, 2000).astype(float)})
    y = ((frame["events_7d_vs_28d"] < 0.6) | (frame["days_since_last_use"] > 20)).astype(int)
    model = ChurnModel(numeric=_MODEL_FEATURES, categorical=[], classifier="logistic",
                       calibration="none").fit(frame, y.to_numpy())
    path = save_model(model, folder / "churn-bench.joblib")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(REGISTRY).values(
            kind="churn", trained_at=now, train_start=as_of - timedelta(days=90),
            train_end=as_of - timedelta(days=30), valid_start=as_of - timedelta(days=29),
            valid_end=as_of, horizon_days=30, features=_MODEL_FEATURES, metrics={},
            artifact_path=str(path), status="champion", promoted_at=now,
            note="pulse bench scale: a stand-in"))


# --------------------------------------------------------------------------- one scoring day

_ENGINES: dict[str, Engine] = {}


def _engine(url: str) -> Engine:
    """One engine per worker process and URL."""
    from pulse.sql.db import make_engine

    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def _warm(url: str) -> int:
    """Import what a shard needs and connect, before the clock starts."""
    import os

    from sqlalchemy import text

    import pulse.models.health
    import pulse.models.registry
    import pulse.models.sharded  # noqa: F401

    with _engine(url).connect() as conn:
        conn.execute(text("SELECT 1"))
    time.sleep(0.3)  # so that each of the pool's processes takes one
    return os.getpid()


def score_one_shard(url: str, as_of: date, shard: dict[str, int], usage: str
                    ) -> dict[str, float]:
    """What the DAG's mapped `score_shard` group runs for one shard: features, health, churn
    (in a worker process); returns the seconds of each."""
    from pulse.models.sharded import score_churn_shard, score_features_shard, score_health_shard
    from pulse.sql.shards import Shard

    engine, s = _engine(url), Shard.from_dict(shard)
    out: dict[str, float] = {}
    t = time.perf_counter()
    score_features_shard(engine, as_of, s, basis=BASIS, usage_source=usage)
    out["features"] = time.perf_counter() - t
    t = time.perf_counter()
    score_health_shard(engine, as_of, s)
    out["health"] = time.perf_counter() - t
    t = time.perf_counter()
    score_churn_shard(engine, as_of, s, basis=BASIS)
    out["churn"] = time.perf_counter() - t
    return out


@contextmanager
def worker_pool(url: str, workers: int) -> Iterator[ProcessPoolExecutor]:
    """`workers` fresh processes (spawned: nothing inherited from this one), warmed."""
    pool = ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        list(pool.map(_warm, [url] * workers))
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def score_day(engine: Engine, url: str, as_of: date, *, shards: int, usage: str,
              pool: ProcessPoolExecutor, workers: int) -> ScaleRun:
    """One full scoring day (see the module docstring), timed."""
    from pulse.models.flags import compute_flags
    from pulse.models.outage import refresh_impacts
    from pulse.models.sharded import begin_date, check_complete, finish_churn, publish_date

    run = ScaleRun(usage, shards, workers, 0.0)
    started = time.perf_counter()
    t = started
    refresh_impacts(engine)
    listed = begin_date(engine, as_of, shards=shards, run_id=f"bench-{uuid.uuid4().hex[:8]}")
    run.stages["prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    done = [f.result() for f in [pool.submit(score_one_shard, url, as_of, s.to_dict(), usage)
                                 for s in listed]]
    run.stages["shards"] = time.perf_counter() - t
    for step in ("features", "health", "churn"):  # summed over shards (CPU, not wall)
        run.stages[f"{step} (sum)"] = sum(d[step] for d in done)
    t = time.perf_counter()
    finish_churn(engine, as_of)
    check_complete(engine, as_of, basis=BASIS)
    compute_flags(engine, as_of)
    run.stages["drivers + flags"] = time.perf_counter() - t
    t = time.perf_counter()
    run.accounts = publish_date(engine, as_of, basis=BASIS)
    run.stages["publish"] = time.perf_counter() - t
    run.seconds = time.perf_counter() - started
    return run


def _scored(engine: Engine, as_of: date) -> pd.DataFrame:
    """The date's risk list in numbers: per account its health and churn probability."""
    from pulse.sql.flags import load_churn_scores
    from pulse.sql.health import load_health

    health = load_health(engine, as_of)[["account_id", "score", "band"]]
    churn = load_churn_scores(engine, as_of, drivers=False)[["account_id", "probability"]]
    return (health.merge(churn, on="account_id", how="left")
            .sort_values("account_id").reset_index(drop=True))


def same_scores(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if list(a["account_id"]) != list(b["account_id"]) or list(a["band"]) != list(b["band"]):
        return False
    return all(np.allclose(a[c].astype(float), b[c].astype(float), rtol=1e-9, atol=1e-12,
                           equal_nan=True) for c in ("score", "probability"))


def same_features(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Every feature equal (numbers to a relative 1e-9), `computed_at` aside."""
    a = a.drop(columns=["computed_at"]).sort_values("account_id").reset_index(drop=True)
    b = b.drop(columns=["computed_at"]).sort_values("account_id").reset_index(drop=True)
    if list(a.columns) != list(b.columns) or list(a["account_id"]) != list(b["account_id"]):
        return False
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xs, ys = x.astype("float64"), y.astype("float64")
            ok = ((xs - ys).abs() <= 1e-9 * ys.abs().clip(lower=1.0)) | (xs.isna() & ys.isna())
        else:
            ok = (x.astype(str) == y.astype(str)) | (x.isna() & y.isna())
        if not ok.all():
            log.warning("features differ in %s: %s", col, list(zip(x[~ok], y[~ok]))[:3])
            return False
    return True


# --------------------------------------------------------------------------- the bench


def run_scale_bench(*, accounts: int = 100_000, days: int = 56, shards: list[int] | None = None,
                    workers: list[int] | None = None, database_url: str | None = None,
                    usage: list[str] | None = None, seed: int = 1, chart: Path | None = None,
                    console: Console | None = None) -> ScaleReport:
    """Generate the warehouse, score the date in every configuration, check and time them."""
    from pulse.sql.db import create_schema, drop_schema, make_engine, schema_url, upgrade
    from pulse.sql.features import load_features
    from pulse.sql.rollups import rebuild

    shard_counts = sorted(set(shards or [1, 2, 4]))
    worker_counts = sorted(set(workers or [1, 2]))
    sources = [u for u in USAGE_SOURCES if u in (usage or USAGE_SOURCES)]
    as_of = datetime.now(UTC).date() - timedelta(days=1)

    def say(msg: str) -> None:
        if console:
            console.print(msg)

    with tempfile.TemporaryDirectory(prefix="pulse-bench-scale-") as tmp:
        folder = Path(tmp)
        schema: str | None = None
        if database_url and not database_url.startswith("sqlite"):
            schema = f"pulse_bench_scale_{uuid.uuid4().hex[:8]}"
            create_schema(database_url, schema).dispose()
            url = schema_url(database_url, schema)
        else:
            url = database_url or f"sqlite:///{folder / 'warehouse.db'}"
        engine = make_engine(url)
        try:
            upgrade(engine)
            report = ScaleReport(engine.dialect.name, accounts, days, as_of.isoformat())
            say(f"{report.database}: generating {accounts:,} accounts x {days} days ...")
            last = [0.0]

            def progress(table: str, done: int, total: int) -> None:
                now = time.perf_counter()
                if now - last[0] >= 5.0 or (total and done >= total):
                    last[0] = now
                    say(f"  {table}: {done:,}" + (f" of {total:,}" if total else ""))

            t = time.perf_counter()
            report.rows = generate_warehouse(engine, accounts=accounts, days=days, as_of=as_of,
                                             seed=seed, progress=progress)
            report.seconds["generate"] = round(time.perf_counter() - t, 2)
            say(f"  written in {report.seconds['generate']:.1f} s: " + ", ".join(
                f"{v:,} {k}" for k, v in report.rows.items()))
            t = time.perf_counter()
            rolled = rebuild(engine, batch_accounts=10_000, progress=lambda r, total: progress(
                "rollups (accounts)", r.accounts, total))
            report.seconds["rollups"] = round(time.perf_counter() - t, 2)
            report.rows["usage_daily"] = rolled.daily_rows
            report.rows["usage_daily_users"] = rolled.user_rows
            say(f"  rollups in {report.seconds['rollups']:.1f} s: {rolled.daily_rows:,} daily "
                f"rows, {rolled.user_rows:,} user rows")
            register_stand_in_champion(engine, folder, as_of, seed=seed)

            reference: pd.DataFrame | None = None
            features: dict[str, pd.DataFrame] = {}
            configs = [(u, s, w) for w in worker_counts for u in sources for s in shard_counts]
            # the baseline first, then the others, in one pool per worker count
            configs.sort(key=lambda c: (c != (sources[0], shard_counts[0], worker_counts[0])))
            for w in worker_counts:
                with worker_pool(url, w) as pool:
                    for u, s, _ in [c for c in configs if c[2] == w]:
                        run = score_day(engine, url, as_of, shards=s, usage=u, pool=pool,
                                        workers=w)
                        scored = _scored(engine, as_of)
                        if reference is None:
                            reference = scored
                            report.baseline_seconds = run.seconds
                        run.same_as_baseline = same_scores(scored, reference)
                        if u not in features:
                            features[u] = load_features(engine, as_of)
                        run.ratio = run.seconds / report.baseline_seconds
                        report.runs.append(run)
                        say(f"  {u}, {s} shard(s), {w} worker(s): {run.seconds:.2f} s, "
                            f"{run.accounts:,} accounts")
            if len(features) == 2:
                report.features_agree = same_features(features["rollups"], features["events"])
                report.feature_columns = features["rollups"].shape[1] - 3
        finally:
            engine.dispose()
            if schema is not None and database_url:
                drop_schema(database_url, schema)
    if chart is not None:
        report.chart = str(draw_chart(report, chart))
    return report


def draw_chart(report: ScaleReport, path: Path) -> Path:
    """A PNG: wall time of a scoring day against shards, one line per usage source and worker
    count, with the ratio to the baseline on each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    keys = sorted({(r.usage, r.workers) for r in report.runs})
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]  # one per worker count
    for usage, workers in keys:
        runs = sorted((r for r in report.runs if (r.usage, r.workers) == (usage, workers)),
                      key=lambda r: r.shards)
        xs, ys = [r.shards for r in runs], [r.seconds for r in runs]
        ax.plot(xs, ys, marker="o" if usage == "rollups" else "s",
                linestyle="-" if usage == "rollups" else "--",
                color=colours[sorted({r.workers for r in report.runs}).index(workers) % 4],
                label=f"{usage}, {workers} worker(s)")
        for r in runs:
            ax.annotate(f"{r.ratio:.2f}x", (r.shards, r.seconds), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    ax.set_xlabel("shards")
    ax.set_xticks(sorted({r.shards for r in report.runs}))
    ax.set_ylabel("wall time of a scoring day (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"pulse bench scale: {report.accounts:,} accounts x {report.days} days "
                 f"({report.database}); ratio to rollups, 1 shard, 1 worker", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def print_report(report: ScaleReport, console: Console) -> None:
    """The runs as a table (Σ: summed over the shards' tasks, in whichever process)."""
    from rich.console import Console as Wide
    from rich.table import Table

    console = Wide(width=max(console.width, 160), file=console.file)
    table = Table(title=(
        f"pulse bench scale: a full scoring day of {report.accounts:,} accounts "
        f"({report.rows.get('usage_events', 0):,} usage events, "
        f"{report.rows.get('usage_daily', 0):,} daily rollup rows) on {report.database}"),
        title_justify="left")
    for col in ("usage", "shards", "workers", "wall s", "ratio", "shard tasks s",
                "features Σs", "health Σs", "churn Σs", "drivers+flags s", "accounts",
                "same risk"):
        table.add_column(col, justify="left" if col == "usage" else "right", no_wrap=True)
    for r in report.runs:
        table.add_row(r.usage, str(r.shards), str(r.workers), f"{r.seconds:.2f}",
                      f"{r.ratio:.2f}", f"{r.stages['shards']:.2f}",
                      f"{r.stages['features (sum)']:.2f}", f"{r.stages['health (sum)']:.2f}",
                      f"{r.stages['churn (sum)']:.2f}", f"{r.stages['drivers + flags']:.2f}",
                      f"{r.accounts:,}", "yes" if r.same_as_baseline else "NO")
    console.print(table)
    console.print(
        f"baseline: rollups, 1 shard, 1 worker, {report.baseline_seconds:.2f} s (ratio = wall "
        "time / baseline, measured in the same run). Generated in "
        f"{report.seconds.get('generate', 0):.1f} s, rollups rebuilt in "
        f"{report.seconds.get('rollups', 0):.1f} s.")
    if any(r.usage == "events" for r in report.runs):
        console.print("features from the raw events "
                      + ("equal" if report.features_agree else "DIFFER FROM")
                      + f" those from the rollups ({report.feature_columns} features).")
    if report.chart:
        console.print(f"chart: {report.chart}")


def print_json(report: ScaleReport) -> None:
    print(json.dumps(report.to_dict(), indent=2))
