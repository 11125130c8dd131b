"""Check-ins as drafts a CSM approves (issue 13, setting `checkins: auto | approve`).

With `PULSE_CHECKINS=approve` (the default) `plan_checkins` writes each check-in as an
outbox row with status `draft`: the sender (`send_due`) never takes it. Its CSM reads it
(`show_draft`), may add a personal note, drop a suggested feature, leave out the renewal
date or change the subject (`edit_draft`), and approves it (`approve_drafts`): the row becomes
`queued` and goes through the outbox's rules like any other message. With `auto` check-ins
are queued at once.

An edit stays inside the customer vocabulary: the context is rebuilt as a `CustomerCheckin`
(the CSM's note is the only free text, and it is theirs), so a draft can never be edited
into carrying the evidence.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Engine, select, update

from pulse.core.errors import InvalidArgumentError
from pulse.outreach.message import Outgoing
from pulse.outreach.outbox_send import rendering_rows
from pulse.outreach.render import Renderer, one_line
from pulse.outreach.vocabulary import CustomerCheckin
from pulse.sql.schema import OutboxMessage

OUTBOX = OutboxMessage.__table__
DRAFT = "draft"
NOTE_MAX = 2000


def list_drafts(engine: Engine, *, csm_email: str | None = None) -> pd.DataFrame:
    """The check-ins waiting for approval, oldest first (optionally one CSM's)."""
    cols = [OUTBOX.c.message_id, OUTBOX.c.account_id, OUTBOX.c.to_email, OUTBOX.c.to_name,
            OUTBOX.c.from_email, OUTBOX.c.subject, OUTBOX.c.queued_at]
    stmt = select(*cols).where(OUTBOX.c.status == DRAFT).order_by(OUTBOX.c.message_id)
    if csm_email:
        stmt = stmt.where(OUTBOX.c.from_email == csm_email.strip().lower())
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in cols])


def _row(engine: Engine, message_id: int) -> dict:
    with engine.connect() as conn:
        row = conn.execute(rendering_rows().where(OUTBOX.c.message_id == message_id)
                           ).mappings().first()
    if row is None:
        raise InvalidArgumentError(f"no outbox message {message_id}")
    if row["status"] != DRAFT:
        raise InvalidArgumentError(f"message {message_id} is not a draft (it is "
                                   f"{row['status']!r})")
    return dict(row)


def show_draft(engine: Engine, message_id: int) -> Outgoing:
    """The draft rendered exactly as its recipient would read it."""
    return Renderer().outgoing(_row(engine, message_id))


def edit_draft(engine: Engine, message_id: int, *, note: str | None = None,
               drop_features: Sequence[str] = (), drop_renewal: bool = False,
               subject: str | None = None, now: datetime | None = None) -> Outgoing:
    """Change a draft within the customer vocabulary; returns it rendered anew."""
    row = _row(engine, message_id)
    checkin = CustomerCheckin.from_context(row["context"] or {})
    known = {f.feature for f in checkin.features} | {f.label for f in checkin.features}
    unknown = sorted(set(drop_features) - known)
    if unknown:
        raise InvalidArgumentError(
            f"draft {message_id} suggests no feature {', '.join(map(repr, unknown))}: expected "
            f"one of {', '.join(sorted(f.feature for f in checkin.features)) or 'none'}")
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidArgumentError(f"a note has at most {NOTE_MAX} characters "
                                   f"(not {len(note)})")
    changes: dict = {"features": tuple(f for f in checkin.features
                                       if f.feature not in drop_features
                                       and f.label not in drop_features)}
    if note is not None:
        changes["note"] = note.strip() or None
    if drop_renewal:
        changes["renewal_date"] = None
    context = dataclasses.replace(checkin, **changes).to_context()
    renderer = Renderer()
    new_subject = one_line(subject) if subject is not None else row["subject"]
    if not new_subject:
        new_subject = renderer.subject(row["template"], context, to_name=row["to_name"])
    stamp = now or datetime.now(UTC)
    with engine.begin() as conn:
        done = conn.execute(update(OUTBOX).where(OUTBOX.c.message_id == message_id,
                                                 OUTBOX.c.status == DRAFT)
                            .values(context=context, subject=new_subject, updated_at=stamp))
    if done.rowcount != 1:
        raise InvalidArgumentError(f"message {message_id} stopped being a draft meanwhile")
    return renderer.outgoing({**row, "context": context, "subject": new_subject})


def approve_drafts(engine: Engine, message_ids: Sequence[int], *,
                   now: datetime | None = None) -> list[int]:
    """Queue the drafts for sending (the outbox's rules still apply); returns the ids that
    were drafts and are queued now. Approving twice queues once."""
    if not message_ids:
        return []
    renderer = Renderer()
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(OUTBOX).where(
            OUTBOX.c.message_id.in_(list(message_ids)), OUTBOX.c.status == DRAFT)).mappings()]
    for row in rows:  # refuse before changing anything: every draft must render for sending
        renderer.outgoing(row)
    stamp = now or datetime.now(UTC)
    ids = [int(r["message_id"]) for r in rows]
    if ids:
        with engine.begin() as conn:
            conn.execute(update(OUTBOX).where(OUTBOX.c.message_id.in_(ids),
                                              OUTBOX.c.status == DRAFT)
                         .values(status="queued", updated_at=stamp))
    return ids


__all__ = ["DRAFT", "approve_drafts", "edit_draft", "list_drafts", "show_draft"]
