"""Reading the quarantine: what was stopped, where it came from, and why."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from pulse.core.errors import PulseError
from pulse.listeners.landing import get_source, reason_key
from pulse.sql.db import ensure_schema
from pulse.sql.schema import QuarantineRow

Q = QuarantineRow.__table__


def _where(*, source: str | None, code: str | None, status: str) -> list[Any]:
    cond: list[Any] = []
    if status not in ("open", "relanded", "all"):
        raise PulseError(f"invalid status {status!r}: expected open, relanded or all")
    if status != "all":
        cond.append(Q.c.status == status)
    if source:
        cond.append(Q.c.source == get_source(source).name)
    if code:
        cond.append(Q.c.code == code)
    return cond


def list_rows(engine: Engine, *, source: str | None = None, code: str | None = None,
              status: str = "open", limit: int = 50) -> list[dict[str, Any]]:
    ensure_schema(engine)
    cols = [Q.c.quarantine_id, Q.c.source, Q.c.file, Q.c.row_number, Q.c.field, Q.c.code,
            Q.c.reason, Q.c.status, Q.c.landed_at]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*cols).where(*_where(source=source, code=code, status=status))
            .order_by(Q.c.quarantine_id.desc()).limit(limit)
        ).mappings().all()
    return [dict(r) for r in rows]


def summarise(engine: Engine, *, status: str = "open") -> dict[str, Any]:
    """Counts per source and reason."""
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Q.c.source, Q.c.field, Q.c.code, func.count())
            .where(*_where(source=None, code=None, status=status))
            .group_by(Q.c.source, Q.c.field, Q.c.code)
            .order_by(func.count().desc())
        ).all()
    return {
        "total": sum(r[3] for r in rows),
        "by_reason": [
            {"source": s, "reason": reason_key(f, c), "code": c, "rows": n} for s, f, c, n in rows
        ],
    }


def get_row(engine: Engine, quarantine_id: int) -> dict[str, Any]:
    ensure_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(select(Q).where(Q.c.quarantine_id == quarantine_id)).mappings().first()
    if row is None:
        raise PulseError(f"no quarantined row with id {quarantine_id}")
    return {k: v for k, v in row.items() if k != "row_hash"}
