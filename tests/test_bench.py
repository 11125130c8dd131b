"""`pulse bench ingest` runs and reports figures for both databases (no timing asserted)."""
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
        [pulse, "bench", "ingest", "--rows", "3000", "--postgres-url", PG_URL,
         "--format", "json"],
        env={**os.environ, "PULSE_HOME": str(pulse_home)}, capture_output=True, text=True,
        check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout[proc.stdout.index("["):])
    assert [f["database"] for f in figures] == ["sqlite", "postgresql"]
    for f in figures:
        assert f["rows"] == 3000
        assert f["pulse_rows_per_s"] > 0 and f["raw_rows_per_s"] > 0
        assert abs(f["ratio"] - f["pulse_rows_per_s"] / f["raw_rows_per_s"]) < 0.01
