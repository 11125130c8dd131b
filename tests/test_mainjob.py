"""`pulse demo run`, the main job behind `make demo`, run as a user runs it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pulse.sql.db import make_engine
from pulse.sql.schema import ENTITY_TABLES, IngestRun

PULSE = str(Path(sys.executable).parent / "pulse")


@pytest.mark.airflow
def test_demo_run_lands_a_world_through_airflow(pulse_home: Path) -> None:
    env = {**os.environ, "PULSE_HOME": str(pulse_home), "COLUMNS": "200"}
    env.pop("PULSE_DATABASE_URL", None)
    proc = subprocess.run([PULSE, "demo", "run", "--accounts", "40", "--days", "21"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "task report done" in proc.stdout
    assert "task risk_list done" in proc.stdout and "Risk list" in proc.stdout
    # The live incident: its hit accounts match the demo truth, and the latency is printed.
    text = " ".join(proc.stdout.split())  # rich wraps long lines wherever it likes
    live = re.search(r"(\d+) accounts hit, \d+ exposed \(demo truth: (\d+) hit; matching "
                     r"(\d+)\).*?first notice queued in ([\d.]+) s", text)
    assert live, proc.stdout[-3000:]
    assert live[1] == live[2] == live[3] and float(live[4]) < 300
    assert "task send done" in proc.stdout and "Outbox" in proc.stdout
    assert (pulse_home / "outbox" / "index.html").is_file()
    assert re.search(r"surveys: \d+ queued", text) and "task queue done" in text
    assert "task chatter done" in text and "Feedback digests written" in text
    digests = sorted((pulse_home / "digests").glob("*/*.md"))
    assert digests and all(p.with_suffix(".html").is_file() for p in digests)
    for p in digests:  # every digest written is listed, as a row of week and team
        assert f"│ {p.parent.name} │ {p.stem}" in text, p
    pairs = re.findall(r"(\w+) (\d+)/(\d+)", proc.stdout.split("vs rows quarantined:")[1])
    assert len(pairs) == 7 and all(a == b for _, a, b in pairs), pairs
    engine = make_engine(f"sqlite:///{pulse_home / 'pulse.db'}")
    with engine.connect() as conn:
        accounts = conn.execute(
            select(func.count()).select_from(ENTITY_TABLES["accounts"])).scalar_one()
        failed = conn.execute(
            select(func.count()).where(IngestRun.status != "ok")).scalar_one()
    engine.dispose()
    assert accounts == 40 and failed == 0
    assert not list((pulse_home / "landing").iterdir())  # every file moved aside
