"""Ingest streams: memory set by the batch size, not the file; repeats across batches.

The memory test lands two generated usage files, one six times the other, each in a fresh
process with small batches, and reads each process's peak RSS (VmHWM): what grows with the file
must stay far below what the file adds (a landing that keeps every key, every cleared value
or every row in memory grows with it). No time is asserted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from pulse.core.errors import InputFileError
from pulse.devkit.bench.ingest import write_usage_file
from pulse.listeners.landing import LagTally, land_file
from pulse.sql.schema import IngestRun, QuarantineRow, UsageEvent
from tests.conftest import PG_URL, need_postgres

Q = QuarantineRow.__table__

ACCOUNTS = "account_id,name,mrr\nacc-1,Northwind,10\nacc-2,Initech,20\n"
# batches of two: ev-1 repeats in the third batch, ev-2 in the fourth; ev-1's contact id is
# cleared in its first row and given in its last, ev-2's the other way round
USAGE = """event_id,account_id,occurred_at,feature,contact_id,quantity
ev-1,acc-1,2026-05-01T10:00:00Z,api,bad id,1
ev-2,acc-1,2026-05-01T10:01:00Z,api,con-2,2
ev-3,acc-2,2026-05-01T10:02:00Z,api,,3
ev-4,acc-2,2026-05-01T10:03:00Z,api,,4
ev-1,acc-1,2026-05-01T10:00:00Z,api,con-1,5
ev-5,acc-2,2026-05-01T10:04:00Z,api,,6
ev-6,acc-2,2026-05-01T10:05:00Z,api,,7
ev-2,acc-1,2026-05-01T10:01:00Z,api,bad id,2
"""


def _usage(engine: Engine) -> dict[str, tuple[str | None, float]]:
    with engine.connect() as conn:
        rows = conn.execute(select(UsageEvent.event_id, UsageEvent.contact_id,
                                   UsageEvent.quantity)).all()
    return {e: (c, float(q)) for e, c, q in rows}


def _cleared(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(Q.c.row_key, Q.c.status).where(
            Q.c.kind == "field_cleared")).all()
    return {k: s for k, s in rows}


def test_keys_repeated_across_batches_are_replayed_in_file_order(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    land_file(engine, tmp_path / "accounts.csv")
    path = tmp_path / "usage.csv"
    path.write_text(USAGE)
    result = land_file(engine, path, batch=2)
    # ev-1: inserted, then updated (quantity and contact); ev-2: inserted, then updated
    # (its contact id cleared); ev-3..ev-6 inserted
    assert (result.read, result.inserted, result.updated, result.unchanged,
            result.quarantined) == (8, 6, 2, 0, 0)
    assert result.fields_cleared == 2
    assert _usage(engine) == {"ev-1": ("con-1", 5.0), "ev-2": (None, 2.0),
                              "ev-3": (None, 3.0), "ev-4": (None, 4.0),
                              "ev-5": (None, 6.0), "ev-6": (None, 7.0)}
    # the key's last row decides: ev-1's cleared value was replaced, ev-2's stays open
    assert _cleared(engine) == {"ev-1": "relanded", "ev-2": "open"}
    again = land_file(engine, path, batch=3)
    assert (again.read, again.inserted, again.updated, again.unchanged) == (8, 0, 0, 8)
    assert _cleared(engine) == {"ev-1": "relanded", "ev-2": "open"}


def _peak_mib(folder: Path, rows: int, batch: int, *, worker: bool = False) -> float:
    """Land a generated usage file of `rows` rows in a fresh process; its peak RSS in MiB
    (with `worker`, the file is read by an ingest worker process: the two peaks added)."""
    data = folder / f"f{rows}"
    data.mkdir()
    usage = write_usage_file(data / "usage.csv", rows, bad_share=0.01, seed=rows)
    script = (
        "import json, sys\n"
        "from pulse.sql.db import make_engine, upgrade\n"
        "from pulse.listeners.landing import land_file\n"
        "e = make_engine(sys.argv[1]); upgrade(e)\n"
        "land_file(e, sys.argv[2])\n"
        "r = land_file(e, sys.argv[3])\n"
        "from pulse.devkit.bench.ingest import peak_rss_mib, worker_peak_mib\n"
        "print(json.dumps({**r.to_dict(), 'peak_mib': peak_rss_mib() + worker_peak_mib(),\n"
        "                  'worker_mib': worker_peak_mib()}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{data / 'w.db'}", str(data / "accounts.csv"),
         str(usage)],
        env={**os.environ, "PULSE_BATCH_ROWS": str(batch), "PULSE_SQLITE_CACHE_MIB": "2",
             "PULSE_INGEST_WORKER": "sqlite" if worker else "",
             "PULSE_INGEST_WORKER_MIN_MIB": "0", "PULSE_INGEST_WORKER_MAX_LOAD": "1000"},
        capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["read"] == rows and result["quarantined"] > 0
    assert result["inserted"] + result["quarantined"] == rows
    assert (result["worker_mib"] > 0) == worker
    return float(result["peak_mib"])


@pytest.mark.parametrize("worker", [False, True], ids=["one-process", "worker"])
def test_peak_memory_is_set_by_the_batch_not_the_file(tmp_path: Path, worker: bool) -> None:
    small, large = 20_000, 120_000
    small_mib = _peak_mib(tmp_path, small, batch=2_000, worker=worker)
    large_mib = _peak_mib(tmp_path, large, batch=2_000, worker=worker)
    file_mib = (tmp_path / f"f{large}" / "usage.csv").stat().st_size / 2**20
    small_file_mib = (tmp_path / f"f{small}" / "usage.csv").stat().st_size / 2**20
    # six times the rows (about 10 MiB more file): the process may not grow by a third of it
    # (SQLite's page cache is held at 2 MiB here; it is bounded by a setting, not the file)
    assert large_mib - small_mib < (file_mib - small_file_mib) / 3, (small_mib, large_mib)


def test_bench_ingest_file_prints_both_sides(tmp_path: Path, pulse_home: Path) -> None:
    pulse = str(Path(sys.executable).parent / "pulse")
    env = {**os.environ, "PULSE_HOME": str(pulse_home)}
    made = subprocess.run(
        [pulse, "bench", "usage-file", "--rows", "3000", "--bad-share", "0.02",
         "--out", str(tmp_path / "usage.csv")], env=env, capture_output=True, text=True,
        check=False, timeout=300)
    assert made.returncode == 0, made.stderr
    pg = PG_URL if os.environ.get("CI") else "none"
    if pg != "none":
        need_postgres()
    proc = subprocess.run(
        [pulse, "bench", "ingest", "--file", str(tmp_path / "usage.csv"), "--postgres-url", pg,
         "--format", "json"], env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout[proc.stdout.index("["):])
    assert [f["database"] for f in figures] == (["sqlite"] if pg == "none"
                                                else ["sqlite", "postgresql"])
    for f in figures:
        assert f["rows"] == 3000
        assert 0 < f["quarantined"] < 200
        assert f["plain_rows"] == 3000 - f["quarantined"]  # the same rows Pulse accepted
        assert abs(f["ratio"] - f["pulse_rows_per_s"] / f["plain_rows_per_s"]) < 0.01
        assert 20 < f["pulse_peak_mib"] < 300 and 5 < f["plain_peak_mib"] < 300


# new events in batches of two: bad rows and a cleared contact id in several batches, so on
# PostgreSQL they are met while the direct load's COPY holds the connection
NEW_EVENTS = """event_id,account_id,occurred_at,feature,contact_id,quantity
ev-1,acc-1,2026-05-01T10:00:00Z,api,con-1,1
ev-2,acc-9,2026-05-01T10:01:00Z,api,con-2,2
ev-3,acc-2,2026-05-01T10:02:00Z,api,bad id,3
ev-4,acc-2,yesterday,api,,4
ev-5,acc-2,2026-05-01T10:04:00Z,api,,-6
ev-6,acc-2,2026-05-01T10:05:00Z,api,also bad,7
ev-7,acc-1,2026-05-01T10:06:00Z,api,,8
"""


def _quarantined(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(Q.c.row_number, Q.c.code).where(Q.c.kind == "row")).all()
    return {int(n): c for n, c in rows}


def test_a_direct_load_writes_its_quarantine_once_its_rows_are_in(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    land_file(engine, tmp_path / "accounts.csv")
    path = tmp_path / "usage.csv"
    path.write_text(NEW_EVENTS)
    result = land_file(engine, path, batch=2, now=datetime(2026, 5, 3, 10, tzinfo=UTC))
    assert (result.read, result.inserted, result.quarantined, result.fields_cleared) == \
        (7, 4, 3, 2)
    assert _quarantined(engine) == {2: "unknown_account", 4: "bad_timestamp",
                                    5: "out_of_range"}
    assert _cleared(engine) == {"ev-3": "open", "ev-6": "open"}
    assert set(_usage(engine)) == {"ev-1", "ev-3", "ev-6", "ev-7"}
    # the lag tallied on the way: the rows happened two days before they landed
    assert result.median_lag_days is not None and 1.9 < result.median_lag_days < 2.1


def test_a_key_met_again_mid_load_lands_through_the_merge_with_one_quarantine(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    land_file(engine, tmp_path / "accounts.csv")
    first = tmp_path / "usage_first.csv"
    first.write_text("event_id,account_id,occurred_at,feature,quantity\n"
                     "ev-7,acc-1,2026-05-01T10:06:00Z,api,8\n")
    land_file(engine, first)
    path = tmp_path / "usage.csv"
    path.write_text(NEW_EVENTS)  # ev-7, already stored, comes in the last batch
    result = land_file(engine, path, batch=2)
    assert (result.read, result.inserted, result.unchanged, result.quarantined) == (7, 3, 1, 3)
    assert _quarantined(engine) == {2: "unknown_account", 4: "bad_timestamp",
                                    5: "out_of_range"}
    assert set(_usage(engine)) == {"ev-1", "ev-3", "ev-6", "ev-7"}


def test_a_file_broken_after_its_copy_began_lands_nothing(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    land_file(engine, tmp_path / "accounts.csv")
    path = tmp_path / "usage.csv"
    path.write_text(NEW_EVENTS + 'ev-8,acc-1,2026-05-01T10:07:00Z,"api,,1\n')  # never closed
    with pytest.raises(InputFileError, match="never closed"):
        land_file(engine, path, batch=2)
    assert _usage(engine) == {}
    assert _quarantined(engine) == {} and _cleared(engine) == {}
    with engine.connect() as conn:
        status = conn.execute(select(IngestRun.status).where(
            IngestRun.source == "usage")).scalar_one()
    assert status == "failed"


def test_the_lag_tally_finds_the_middle_lag_to_the_hour() -> None:
    rng = np.random.default_rng(3)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    tally = LagTally("occurred_at", now)
    lags_h = np.concatenate([rng.exponential(500.0, 5001), [-3.0, 20_000.0]])
    times = pd.Series(pd.Timestamp(now) - pd.to_timedelta(lags_h, unit="h"))
    for part in np.array_split(np.arange(len(times)), 4):  # chunk by chunk
        tally.add(times.iloc[part])
    tally.add(pd.Series([pd.NaT], dtype=times.dtype))  # missing times do not count
    exact = np.sort(lags_h)[len(lags_h) // 2] / 24  # the row at n // 2, as the SQL takes it
    assert abs(tally.median_days() - exact) <= 1 / 24
    assert abs(tally.span_days() - (lags_h.max() - lags_h.min()) / 24) < 1e-6
    assert LagTally("occurred_at", now).median_days() is None


def test_foreign_keys_are_enforced_again_after_a_direct_load(
        engine: Engine, tmp_path: Path) -> None:
    """A direct load on SQLite leaves the per-row foreign key checks to its own account
    check; the pooled connection gets them back, even when the landing fails."""
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    land_file(engine, tmp_path / "accounts.csv")
    path = tmp_path / "usage.csv"
    path.write_text(NEW_EVENTS)
    land_file(engine, path, batch=2)
    broken = tmp_path / "usage_broken.csv"
    broken.write_text(NEW_EVENTS.replace("ev-", "ew-") + 'ew-8,acc-1,2026-05-01T10:07:00Z,"api\n')
    with pytest.raises(InputFileError):
        land_file(engine, broken, batch=2)
    with engine.connect() as conn, pytest.raises(IntegrityError):
        conn.execute(UsageEvent.__table__.insert().values(
            event_id="orphan", account_id="acc-404", occurred_at=datetime(2026, 5, 1, tzinfo=UTC),
            feature="api", quantity=1, outcome="ok", landed_at=datetime.now(UTC),
            updated_at=datetime.now(UTC)))
