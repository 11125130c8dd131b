"""The demo world through the landing path: exactly its malformed rows end in quarantine."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, func, select

from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.sql.schema import ENTITY_TABLES


def test_demo_world_lands_and_quarantines_exactly_the_malformed_rows(
    engine: Engine, tmp_path: Path
) -> None:
    summary = generate(tmp_path / "demo", accounts=80, days=45, seed=11, end=date(2026, 6, 30),
                       malformed_rate=0.02)
    truth = json.loads(summary.truth_path.read_text())
    results = {r.source: r for r in land_files(engine, summary.files.values())}
    assert set(results) == set(summary.files)
    for source, result in results.items():
        assert result.read == summary.rows[source], source
        assert result.quarantined == truth["malformed"][source], (source, result.reasons)
        assert result.read == result.inserted + result.updated + result.unchanged + \
            result.quarantined
    with engine.connect() as conn:
        accounts = conn.execute(
            select(func.count()).select_from(ENTITY_TABLES["accounts"])).scalar_one()
    assert accounts == len(truth["groups"])
    # the whole world again: nothing changes
    again = land_files(engine, summary.files.values())
    assert all(r.inserted == 0 and r.updated == 0 for r in again), [r.to_dict() for r in again]
