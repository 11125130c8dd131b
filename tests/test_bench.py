"""`pulse bench ingest` runs and reports figures for both databases.

The bench exists to show Pulse's landing path against each database's own bulk load of the
same rows, run side by side. No absolute time is asserted (the machine may be busy); the ratio
is, with a floor far below the target (0.6 at a million rows) but far above what a per-row
Python path gives (under 0.05): it fails on a landing path that stops being set-based.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PG_URL, need_postgres


def test_bench_ingest_reports_both_databases(pulse_home: Path) -> None:
    need_postgres()
    pulse = str(Path(sys.executable).parent / "pulse")
    proc = subprocess.run(
        [pulse, "bench", "ingest", "--rows", "20000", "--postgres-url", PG_URL,
         "--format", "json"],
        env={**os.environ, "PULSE_HOME": str(pulse_home)}, capture_output=True, text=True,
        check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout[proc.stdout.index("["):])
    assert [f["database"] for f in figures] == ["sqlite", "postgresql"]
    for f in figures:
        assert f["rows"] == 20000
        assert f["pulse_rows_per_s"] > 0 and f["raw_rows_per_s"] > 0
        assert abs(f["ratio"] - f["pulse_rows_per_s"] / f["raw_rows_per_s"]) < 0.01
        # Pulse validates every row, writes its lineage and keeps the daily rollups of the
        # account-days it touched (sql/rollups.py, in the same transaction); the raw load does
        # none of it. The rollups take about 0.4 s of a 20,000-row file on SQLite here (a
        # synthetic file where nearly every row is its own account-day, their worst case):
        # from about 0.2x the raw load without them to about 0.12x
        assert f["ratio"] >= 0.1, f"{f['database']}: pulse ingest at {f['ratio']:.2f}x the raw load"
        assert f["reland_rows_per_s"] > 0
