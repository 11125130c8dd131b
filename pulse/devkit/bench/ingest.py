"""Benchmarks that print figures: Pulse's landing path against each database's raw bulk load."""
from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from pulse.sql.db import create_schema, drop_schema, make_engine, schema_url, upgrade

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


def write_usage_file(out: Path, rows: int, *, bad_share: float = 0.005, accounts: int = 1000,
                     seed: int = 1, accounts_out: Path | None = None) -> Path:
    """A usage file shaped like real data, written in blocks (memory does not grow with it).

    UUID-like event ids, account ids from an accounts file, timestamps with milliseconds,
    some optional fields empty, quantities with decimals, and `bad_share` of the rows broken
    in the ways real exports break: a wrong field count, a bad timestamp, an unknown account,
    a negative quantity, an unknown outcome, a missing required value. The accounts file
    (`accounts_out`, default `accounts.csv` beside `out`) names the accounts the rows use.
    """
    rng = np.random.default_rng(seed)
    ids = np.char.add("ACC-", np.char.zfill(np.arange(accounts).astype(str), 6))
    out.parent.mkdir(parents=True, exist_ok=True)
    acc = accounts_out or out.parent / "accounts.csv"
    acc.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"account_id": ids, "name": np.char.add("Company ", ids),
                  "mrr": rng.integers(50, 5000, accounts)}).to_csv(acc, index=False)
    features = np.array(["reports.view", "dashboards.edit", "api.call", "export.csv",
                         "alerts.create", "search", "billing.view", "sso.login"])
    components = np.array(["web", "api", "jobs", "search", "", ""])
    regions = np.array(["us-east-1", "eu-west-1", "ap-south-1", ""])
    start = pd.Timestamp("2026-01-01", tz="UTC")
    block = 100_000
    with open(out, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(USAGE_COLS) + "\n")
        for first in range(0, rows, block):
            n = min(block, rows - first)
            hexes = rng.integers(0, 2**63, size=n, dtype=np.int64)
            event = np.char.add("evt_", np.char.zfill(np.char.mod("%x", hexes), 16))
            ms = rng.integers(0, 300 * 86400 * 1000, n)
            ts = (start + pd.to_timedelta(ms, unit="ms")).strftime("%Y-%m-%dT%H:%M:%S.%f")
            ts = np.char.add(np.asarray(ts, dtype="U23"), "Z")  # milliseconds
            qty = np.char.mod("%.2f", rng.gamma(1.5, 4.0, n))
            qty = np.where(rng.random(n) < 0.6, np.char.mod("%d", rng.integers(1, 50, n)), qty)
            contact = np.char.add("CON-", np.char.mod("%07d", rng.integers(0, accounts * 8, n)))
            contact = np.where(rng.random(n) < 0.15, "", contact)
            frame = pd.DataFrame({
                "event_id": event,
                "account_id": ids[rng.integers(0, accounts, n)],
                "occurred_at": ts,
                "feature": features[rng.integers(0, len(features), n)],
                "contact_id": contact,
                "component": components[rng.integers(0, len(components), n)],
                "region": regions[rng.integers(0, len(regions), n)],
                "quantity": qty,
                "outcome": np.where(rng.random(n) < 0.03, "error", "ok"),
            })
            bad = np.flatnonzero(rng.random(n) < bad_share)
            kinds = rng.integers(0, 6, len(bad))
            for kind, col, value in ((0, "occurred_at", "yesterday at noon"),
                                     (1, "account_id", "ACC-UNKNOWN"),
                                     (2, "quantity", "-3"), (3, "outcome", "failed"),
                                     (4, "feature", "")):
                frame.iloc[bad[kinds == kind], frame.columns.get_loc(col)] = value
            lines = frame.to_csv(index=False, header=False, lineterminator="\n").split("\n")
            for i in bad[kinds == 5]:  # a stray delimiter: one field too many
                lines[i] += ",extra"
            fh.write("\n".join(lines))
    return out


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


@contextmanager
def _pg_schemas(pg: str | None) -> Iterator[Callable[[str], str]]:
    """A maker of throwaway PostgreSQL schemas (`tag` -> the URL of a new schema on `pg`),
    every one dropped when the block ends."""
    schemas: list[str] = []

    def make(tag: str) -> str:
        if pg is None:
            raise RuntimeError("no PostgreSQL configured")
        schema = f"pulse_bench_{tag}_{os.getpid()}"
        schemas.append(schema)
        create_schema(pg, schema).dispose()
        return schema_url(pg, schema)

    try:
        yield make
    finally:
        for schema in schemas:
            drop_schema(pg, schema)  # type: ignore[arg-type]


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
            with _pg_schemas(pg) as pg_url:
                figures.append(_measure("postgresql", rows, acc, usage,
                                        lambda tag: make_engine(pg_url(tag)), _raw_postgres,
                                        console))
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


# --------------------------------------------------------------------------- a given file


def _side(kind: str, url: str, path: Path, accounts: Path) -> dict[str, Any]:
    """One side of `pulse bench ingest --file`, run in a process of its own (it reports its
    own peak RSS): `pulse` lands the file with `land_file`; `plain` loads the rows Pulse
    accepted (a file written beforehand, untimed) with csv + executemany in one transaction
    on SQLite (with Pulse's page cache size and sync level), or COPY on PostgreSQL, into the
    same indexed table."""
    from pulse.listeners.landing import land_file

    engine = make_engine(url)
    if kind == "pulse":
        t = time.perf_counter()
        result = land_file(engine, path, source="usage")
        seconds = time.perf_counter() - t
        engine.dispose()
        return {"seconds": seconds, "rows": result.read, "inserted": result.inserted,
                "quarantined": result.quarantined, "worker_peak_mib": worker_peak_mib()}
    t = time.perf_counter()
    if engine.dialect.name == "postgresql":
        _raw_postgres(engine, path)
        rows = -1
    else:
        import sqlite3

        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        con = sqlite3.connect(str(engine.url.database))
        # the same page cache and sync level as Pulse's connections: only the work differs
        con.execute(f"PRAGMA cache_size=-{get_settings().sqlite_cache_mib * 1024}")
        con.execute("PRAGMA synchronous=NORMAL")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            con.execute("BEGIN")
            con.executemany(
                f"INSERT INTO usage_events ({', '.join(header)}, landed_at, updated_at) "
                f"VALUES ({', '.join('?' * (len(header) + 2))})",
                ((*r, now, now) for r in reader))
            con.commit()
        rows = con.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]
        con.close()
    seconds = time.perf_counter() - t
    engine.dispose()
    return {"seconds": seconds, "rows": rows}


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB since it started (Linux: VmHWM of its own
    address space; `ru_maxrss` would also count the parent's memory at the fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peak_mib() -> float:
    """The peak resident memory in MiB of this process's ingest worker (the largest of its
    finished child processes; 0 without one)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _run_side(kind: str, url: str, path: Path, accounts: Path) -> dict[str, Any]:
    """Run `_side` in a process of its own; it reports its own peak RSS."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pulse.devkit.bench.ingest", kind, url, str(path), str(accounts)],
        stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench side {kind} failed with exit code {proc.returncode}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def _accepted_copy(engine: Engine, path: Path, out: Path) -> int:
    """`path` without the rows the Pulse run quarantined (their row numbers come from the
    quarantine table), streamed: the plain side loads exactly the rows Pulse accepted."""
    with engine.connect() as conn:
        bad = set(conn.execute(text("SELECT row_number FROM quarantine WHERE kind = 'row'"))
                  .scalars().all())
    kept = 0
    with open(path, newline="", encoding="utf-8") as src, \
            open(out, "w", newline="", encoding="utf-8") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for i, rec in enumerate(reader, start=1):
            if rec and i not in bad:
                writer.writerow(rec)
                kept += 1
    return kept


@dataclass
class FileFigure:
    database: str
    rows: int
    pulse: dict[str, Any]
    plain: dict[str, Any]

    @property
    def ratio(self) -> float:
        return (self.rows / self.pulse["seconds"]) / (self.plain["rows"] / self.plain["seconds"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database, "rows": self.rows,
            "quarantined": self.pulse["quarantined"],
            "pulse_seconds": round(self.pulse["seconds"], 2),
            "pulse_rows_per_s": round(self.rows / self.pulse["seconds"]),
            "pulse_peak_mib": round(self.pulse["peak_mib"], 1),
            # the ingest worker process, when the landing used one (0 otherwise)
            "pulse_worker_peak_mib": round(self.pulse.get("worker_peak_mib", 0.0), 1),
            "plain_rows": self.plain["rows"],
            "plain_seconds": round(self.plain["seconds"], 2),
            "plain_rows_per_s": round(self.plain["rows"] / self.plain["seconds"]),
            "plain_peak_mib": round(self.plain["peak_mib"], 1),
            "ratio": round(self.ratio, 3),
        }


def run_file_bench(*, path: Path, accounts: Path, postgres_url: str | None, fmt: str,
                   console: Console) -> list[FileFigure]:
    """`pulse ingest` of `path` against a plain load of the same rows, each database."""
    from pulse.listeners.landing import land_file

    figures: list[FileFigure] = []
    pg = postgres_url or get_settings().test_postgres_url
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp, \
            _pg_schemas(None if pg == "none" else pg) as pg_url:
        folder = Path(tmp)
        targets: list[tuple[str, Any]] = [
            ("sqlite", lambda tag: f"sqlite:///{folder / (tag + '.db')}")]
        if pg != "none":
            targets.append(("postgresql", pg_url))
        for db, make_url_ in targets:
            urls = {}
            for tag in ("pulse", "plain"):
                urls[tag] = make_url_(tag)
                engine = make_engine(urls[tag])
                upgrade(engine)
                land_file(engine, accounts)
                engine.dispose()
            console.print(f"{db}: pulse ingest of {path.name} ...")
            pulse = _run_side("pulse", urls["pulse"], path, accounts)
            engine = make_engine(urls["pulse"])
            accepted = folder / "usage_accepted.csv"
            kept = _accepted_copy(engine, path, accepted)
            engine.dispose()
            console.print(f"{db}: plain load of the {kept:,} accepted rows ...")
            plain = _run_side("plain", urls["plain"], accepted, accounts)
            plain["rows"] = kept
            accepted.unlink()
            figures.append(FileFigure(db, pulse["rows"], pulse, plain))
    if fmt == "json":
        print(json.dumps([f.to_dict() for f in figures], indent=2))
        return figures
    table = Table(title=f"pulse bench ingest --file {path.name}", title_justify="left")
    for col in ("database", "rows", "pulse s", "pulse rows/s", "pulse peak MiB",
                "worker peak MiB", "plain s",
                "plain rows/s", "plain peak MiB", "ratio (goal >= 0.6)"):
        table.add_column(col, justify="right")
    for f in figures:
        d = f.to_dict()
        table.add_row(f.database, f"{f.rows:,}", f"{d['pulse_seconds']:.1f}",
                      f"{d['pulse_rows_per_s']:,}", f"{d['pulse_peak_mib']:.0f}",
                      f"{d['pulse_worker_peak_mib']:.0f}",
                      f"{d['plain_seconds']:.1f}", f"{d['plain_rows_per_s']:,}",
                      f"{d['plain_peak_mib']:.0f}", f"{f.ratio:.2f}")
    console.print(table)
    console.print("plain = the rows Pulse accepted, loaded with Python csv + executemany in one "
                  "transaction (SQLite) or COPY (PostgreSQL) into the same indexed table, no "
                  "checks; each side runs in a process of its own (peak RSS of that process; "
                  "worker = Pulse's ingest worker process, when it used one).")
    return figures


if __name__ == "__main__":
    import sys

    side = _side(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    print(json.dumps({**side, "peak_mib": peak_rss_mib()}))
