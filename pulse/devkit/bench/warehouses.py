"""The warehouses a benchmark measures side by side: SQLite (the embedded default), then
PostgreSQL (the real deployment) in a schema of its own, dropped afterwards."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from sqlalchemy import Engine

from pulse.core.settings import get_settings

T = TypeVar("T")


def on_each_warehouse(root: Path, prefix: str, postgres_url: str | None,
                      console: Console | None, work: Callable[[str, Engine], T]
                      ) -> dict[str, T]:
    """`work(dialect, engine)` on a new SQLite file under `root`, then on PostgreSQL
    (`postgres_url`, else the test database of the settings; 'none' skips it, and an unreachable
    server is reported and skipped), each engine disposed and the PostgreSQL schema
    `{prefix}_{pid}` dropped whatever happens. The results by dialect."""
    from pulse.sql.db import create_schema, drop_schema, make_engine

    out: dict[str, T] = {}
    path = root / f"{prefix}.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        out["sqlite"] = work("sqlite", engine)
    finally:
        engine.dispose()
        path.unlink(missing_ok=True)
    pg = postgres_url or get_settings().test_postgres_url
    if not pg or pg == "none":
        return out
    schema = f"{prefix}_{os.getpid()}"
    try:
        engine = create_schema(pg, schema)
    except Exception as exc:  # an unreachable server: report and go on
        if console:
            console.print(f"postgresql: skipped ({str(exc).splitlines()[0]})")
        return out
    try:
        out["postgresql"] = work("postgresql", engine)
    finally:
        engine.dispose()
        drop_schema(pg, schema)
    return out
