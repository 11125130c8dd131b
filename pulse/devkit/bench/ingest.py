"""Benchmarks that print figures: Pulse's landing path against each database's raw bulk load."""
from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from pulse.core.settings import get_settings
from pulse.sql.db import create_schema, drop_schema, make_engine, upgrade

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
USAGE_COLS = ["event_id", "account_id", "occurred_at", "feature", "contact_id", "component",
              "region", "quantity", "outcome"]


def write_usage(folder: Path, rows: int, *, accounts: int = 1000, seed: int = 1) -> tuple[Path, Path]:
    """An accounts file and a usage file of `rows` valid rows, generated column-wise."""
    rng = np.random.default_rng(seed)
    acc = folder / "accounts.csv"
    ids = np.char.add("acc-", np.arange(accounts).astype(str))
    pd.DataFrame({"account_id": ids, "name": np.char.add("Company ", ids),
                  "mrr": rng.integers(50, 5000, accounts)}).to_csv(acc, index=False)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    secs = rng.integers(0, 300 * 86400, rows)
    ts = pd.to_datetime(start) + pd.to_timedelta(secs, unit="s")
    frame = pd.DataFrame({
        "event_id": np.char.add("ev-", np.arange(rows).astype(str)),
        "account_id": ids[rng.integers(0, accounts, rows)],
        "occurred_at": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature": np.array(["reports", "dashboards", "api", "export", "alerts"])[
            rng.integers(0, 5, rows)],
        "contact_id": np.char.add("c-", rng.integers(0, accounts * 5, rows).astype(str)),
        "component": np.array(["web", "api", "jobs"])[rng.integers(0, 3, rows)],
        "region": np.array(["us-east", "eu-west"])[rng.integers(0, 2, rows)],
        "quantity": rng.integers(1, 20, rows),
        "outcome": np.where(rng.random(rows) < 0.03, "error", "ok"),
    })
    usage = folder / "usage.csv"
    frame.to_csv(usage, index=False)
    return acc, usage


def _raw_sqlite(engine: Engine, usage: Path) -> None:
    """SQLite's own bulk load: read the file, executemany in one transaction."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with open(usage, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        rows = [(*r, now, now) for r in reader]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.executemany(
            f"INSERT INTO usage_events ({', '.join(USAGE_COLS)}, landed_at, updated_at) "
            f"VALUES ({', '.join('?' * (len(USAGE_COLS) + 2))})", rows)
        raw.commit()
    finally:
        raw.close()


def _raw_postgres(engine: Engine, usage: Path) -> None:
    """PostgreSQL's own bulk load: COPY the file straight into the table."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE usage_events ALTER COLUMN landed_at SET DEFAULT now(), "
                          "ALTER COLUMN updated_at SET DEFAULT now()"))
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        with open(usage, "rb") as fh, cur.copy(
            f"COPY usage_events ({', '.join(USAGE_COLS)}) FROM STDIN (FORMAT csv, HEADER true)"
        ) as cp:
            while block := fh.read(1 << 20):
                cp.write(block)
        raw.commit()
    finally:
        raw.close()


@dataclass
class Figure:
    database: str
    rows: int
    pulse_seconds: float
    raw_seconds: float
    reland_seconds: float

    @property
    def pulse_rate(self) -> float:
        return self.rows / self.pulse_seconds

    @property
    def raw_rate(self) -> float:
        return self.rows / self.raw_seconds

    @property
    def ratio(self) -> float:
        return self.pulse_rate / self.raw_rate

    def to_dict(self) -> dict[str, Any]:
        return {"database": self.database, "rows": self.rows,
                "pulse_rows_per_s": round(self.pulse_rate), "raw_rows_per_s": round(self.raw_rate),
                "pulse_seconds": round(self.pulse_seconds, 2),
                "raw_seconds": round(self.raw_seconds, 2), "ratio": round(self.ratio, 3),
                "reland_rows_per_s": round(self.rows / self.reland_seconds)}


def _measure(db: str, rows: int, acc: Path, usage: Path, make: Any, raw_load: Any,
             console: Console) -> Figure:
    from pulse.listeners.landing import land_file

    console.print(f"{db}: raw bulk load of {rows:,} rows ...")
    engine = make("raw")
    upgrade(engine)
    land_file(engine, acc)
    t = time.perf_counter()
    raw_load(engine, usage)
    raw_s = time.perf_counter() - t
    engine.dispose()
    console.print(f"{db}: pulse ingest of {rows:,} rows ...")
    engine = make("pulse")
    upgrade(engine)
    land_file(engine, acc)
    t = time.perf_counter()
    result = land_file(engine, usage)
    pulse_s = time.perf_counter() - t
    if result.inserted != rows:
        raise AssertionError(f"expected {rows} inserted, got {result.to_dict()}")
    console.print(f"{db}: pulse ingest of the same {rows:,} rows again (all unchanged) ...")
    t = time.perf_counter()
    again = land_file(engine, usage)
    reland_s = time.perf_counter() - t
    if again.unchanged != rows:
        raise AssertionError(f"expected {rows} unchanged, got {again.to_dict()}")
    engine.dispose()
    return Figure(db, rows, pulse_s, raw_s, reland_s)


def run_ingest_bench(*, rows: int, postgres_url: str | None, fmt: str, console: Console) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        acc, usage = write_usage(folder, rows)
        console.print(f"generated {rows:,} usage rows ({usage.stat().st_size / 1e6:.0f} MB) "
                      f"in {time.perf_counter() - t:.1f} s")
        figures.append(_measure(
            "sqlite", rows, acc, usage,
            lambda tag: make_engine(f"sqlite:///{folder / (tag + '.db')}"), _raw_sqlite, console))
        pg = postgres_url or get_settings().test_postgres_url
        if pg != "none":
            schemas: list[str] = []

            def make_pg(tag: str) -> Engine:
                schema = f"pulse_bench_{tag}_{os.getpid()}"
                schemas.append(schema)
                return create_schema(pg, schema)

            try:
                figures.append(_measure("postgresql", rows, acc, usage, make_pg, _raw_postgres,
                                        console))
            finally:
                for s in schemas:
                    drop_schema(pg, s)
    if fmt == "json":
        print(json.dumps([f.to_dict() for f in figures], indent=2))
        return figures
    table = Table(title=f"pulse bench ingest: {rows:,} usage rows", title_justify="left")
    for col in ("database", "pulse ingest rows/s", "raw bulk load rows/s", "pulse s", "raw s",
                "ratio (target >= 0.5)", "re-land rows/s"):
        table.add_column(col, justify="right")
    for f in figures:
        table.add_row(f.database, f"{f.pulse_rate:,.0f}", f"{f.raw_rate:,.0f}",
                      f"{f.pulse_seconds:.1f}", f"{f.raw_seconds:.1f}", f"{f.ratio:.2f}",
                      f"{f.rows / f.reland_seconds:,.0f}")
    console.print(table)
    console.print("raw bulk load = SQLite executemany in one transaction / PostgreSQL COPY of "
                  "the same file, no checks; pulse ingest = validate every row, then load new "
                  "events directly; re-land = the same file again, every row compared through "
                  "the staged merge and found unchanged.")
    return figures
