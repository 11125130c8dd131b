"""The documented contract is the enforced contract, and its example files land cleanly."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from pulse.listeners.contract import LANDING_ORDER, SOURCES
from pulse.listeners.docs import render
from pulse.listeners.landing import land_file
from pulse.sql.schema import Ticket

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_contract_md_matches_the_code() -> None:
    assert (DOCS / "contract.md").read_text(encoding="utf-8") == render(), (
        "docs/contract.md is stale: run `python -m listeners.docs`"
    )


def test_every_source_has_an_example_covering_all_its_columns() -> None:
    for name in SOURCES:
        files = list((DOCS / "contract").glob(f"{name}.*"))
        assert len(files) == 1, name
        text = files[0].read_text(encoding="utf-8")
        for column in SOURCES[name].read_columns:
            assert column in text, f"{files[0].name} never shows {column}"


def test_example_files_land_without_quarantine(engine: Engine) -> None:
    for name in LANDING_ORDER:
        (path,) = (DOCS / "contract").glob(f"{name}.*")
        result = land_file(engine, path)
        assert result.quarantined == 0, (name, result.reasons)
        assert result.read == result.inserted + result.updated
    with engine.connect() as conn:
        ticket = conn.execute(select(Ticket)).one()
    assert ticket.status == "solved" and ticket.resolved_at is not None
    assert "\n" in ticket.body
