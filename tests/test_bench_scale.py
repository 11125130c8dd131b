"""`pulse bench scale` runs as users run it, at a small size, and its figures hold: every
configuration (usage source x shards x workers) scored the same accounts with the same health
and churn probability as the baseline, the features read from the raw events equal those read
from the rollups, each ratio is its time over the baseline's, and the chart is a PNG. On
SQLite, and on PostgreSQL under CI=true. No time is asserted (the machine may be busy)."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, need_postgres

ACCOUNTS = 300


@pytest.mark.slow  # about 30 s of CPU on SQLite, 25 on PostgreSQL (8 scoring days each)
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_bench_scale_scores_every_configuration_alike(pulse_home: Path, tmp_path: Path,
                                                      database: str) -> None:
    # 1 and 4 shards (the bench's default adds 2): 8 scoring days, not 12; a middle shard
    # count adds nothing the two ends do not show
    shards: tuple[int, ...] = (1, 4)
    args = ["--shards", "1", "--shards", "4"]
    if database == "postgresql":
        need_postgres()
        args += ["--database-url", PG_URL]
    chart = tmp_path / "scale.png"
    pulse = str(Path(sys.executable).parent / "pulse")
    proc = subprocess.run(
        [pulse, "bench", "scale", "--accounts", str(ACCOUNTS), "--days", "56",
         "--chart", str(chart), "--format", "json", *args],
        env={**os.environ, "PULSE_HOME": str(pulse_home)}, capture_output=True, text=True,
        check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["database"] == database and report["accounts"] == ACCOUNTS

    rows = report["rows"]
    assert rows["accounts"] == ACCOUNTS and rows["contacts"] >= ACCOUNTS
    # the rollups hold fewer rows than the events they sum
    assert 0 < rows["usage_daily"] < rows["usage_events"]

    runs = report["runs"]
    configs = {(r["usage"], r["shards"], r["workers"]) for r in runs}
    assert configs == set(itertools.product(("rollups", "events"), shards, (1, 2)))
    assert len(runs) == len(configs)
    baseline = runs[0]
    assert (baseline["usage"], baseline["shards"], baseline["workers"]) == ("rollups", 1, 1)
    assert baseline["seconds"] == report["baseline_seconds"] > 0 and baseline["ratio"] == 1.0
    for r in runs:
        label = f"{r['usage']}, {r['shards']} shards, {r['workers']} workers"
        assert r["accounts"] == ACCOUNTS, label
        assert r["same_as_baseline"], f"{label}: another risk list than the baseline's"
        assert abs(r["ratio"] - r["seconds"] / baseline["seconds"]) < 1e-9, label
        assert 0 < r["stages"]["shards"] < r["seconds"], label
        assert r["stages"]["features (sum)"] > 0 and r["stages"]["churn (sum)"] > 0, label
    assert report["features_agree"] and report["feature_columns"] > 50

    assert report["chart"] == str(chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
