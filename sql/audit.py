"""The audit log: who did what, when and why (`audit_log`).

`record(conn, actor=..., action=...)` writes one entry inside the caller's transaction, so an
action and its entry commit together or not at all. The console writes one for each sign-in,
sign-out and failed sign-in, `pulse user add` and `pulse user disable` one each, and every
console page that changes something calls it with the user's reason. Entries hold no secret:
no password, no session id, no token.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from pulse.sql.schema import AuditEntry

#: The actions written so far; pages add their own (`snooze`, `handled`, ...).
SIGN_IN, SIGN_OUT, SIGN_IN_FAILED = "sign_in", "sign_out", "sign_in_failed"
USER_ADD, USER_DISABLE = "user_add", "user_disable"


def record(conn: Connection, *, actor: str, action: str, target: str | None = None,
           reason: str | None = None, detail: dict[str, Any] | None = None,
           address: str | None = None, at: datetime | None = None) -> None:
    """Write one audit entry: `actor` (a user's email, or `cli:NAME`) did `action` to
    `target` (an account id, a user's email, ...) because of `reason` (what the user typed)."""
    conn.execute(insert(AuditEntry.__table__).values(
        at=at or datetime.now(UTC), actor=actor[:254], action=action[:48],
        target=target[:254] if target else None, reason=reason or None, detail=detail,
        address=address[:64] if address else None))


def entries(engine: Engine, *, actor: str | None = None, action: str | None = None,
            target: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest entries, newest first, optionally of one actor, action or target."""
    t = AuditEntry.__table__
    query = select(t).order_by(t.c.at.desc(), t.c.audit_id.desc()).limit(limit)
    if actor is not None:
        query = query.where(t.c.actor == actor)
    if action is not None:
        query = query.where(t.c.action == action)
    if target is not None:
        query = query.where(t.c.target == target)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
