"""Reading the quarantine: what was stopped, where it came from, and why.

Two kinds of entry: `row` (the row was stopped and did not land) and `field_cleared` (the row
landed, key `row_key`, without the optional value `value` of `field`).
"""
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
    cols = [Q.c.quarantine_id, Q.c.kind, Q.c.source, Q.c.file, Q.c.row_number, Q.c.row_key,
            Q.c.field, Q.c.code, Q.c.reason, Q.c.value, Q.c.status, Q.c.landed_at]
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
            select(Q.c.source, Q.c.field, Q.c.code, Q.c.kind, func.count())
            .where(*_where(source=None, code=None, status=status))
            .group_by(Q.c.source, Q.c.field, Q.c.code, Q.c.kind)
            .order_by(func.count().desc())
        ).all()
    return {
        "total": sum(r[4] for r in rows),
        "rows": sum(r[4] for r in rows if r[3] == "row"),
        "fields_cleared": sum(r[4] for r in rows if r[3] == "field_cleared"),
        "by_reason": [
            {"source": s, "reason": reason_key(f, c), "code": c, "kind": k, "rows": n}
            for s, f, c, k, n in rows
        ],
    }


def get_row(engine: Engine, quarantine_id: int) -> dict[str, Any]:
    ensure_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(select(Q).where(Q.c.quarantine_id == quarantine_id)).mappings().first()
    if row is None:
        raise PulseError(f"no quarantined row with id {quarantine_id}")
    return {k: v for k, v in row.items() if k != "row_hash"}
