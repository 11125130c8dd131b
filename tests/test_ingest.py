"""Landing files: counts, idempotency, updates, atomicity, batching, gzip and quarantine retry.

Every test runs on SQLite and on PostgreSQL (the `engine` fixture).
"""
from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

import pulse.listeners.landing
from pulse.listeners.landing import IngestResult, land_file, retry_quarantine
from pulse.sql.schema import ENTITY_TABLES, Account, Contact, IngestRun, QuarantineRow, Ticket

CORPUS = Path(__file__).resolve().parent / "corpus"
DAY1 = datetime(2026, 6, 1, 8, tzinfo=UTC)
DAY2 = datetime(2026, 6, 2, 8, tzinfo=UTC)
Q = QuarantineRow.__table__

ACCOUNTS = """account_id,name,mrr,currency,seats,created_at,renewal_date
acc-1,Northwind Traders,1250.00,USD,40,2025-03-14T09:00:00Z,2027-03-14
acc-2,Zoë & Müller GmbH,89.5,eur,3,2026-01-02,2026-12-02
acc-3,Initech,0,USD,,,
"""
CONTACTS = """contact_id,account_id,email,timezone,opted_out
con-1,acc-1,ana@northwind.example,America/New_York,false
con-2,acc-2,zoe@zoe-mueller.example,Europe/Berlin,yes
con-3,acc-404,who@nowhere.example,UTC,no
con-4,acc-1,not-an-email,UTC,no
"""
USAGE = """event_id,account_id,occurred_at,feature,quantity,outcome
ev-1,acc-1,2025-05-20T14:03:11Z,report_export,3,ok
ev-2,acc-1,2025-05-20T14:05:40-05:00,api_call,120,ERROR
ev-3,acc-2,2025-05-21 08:15:00,dashboard_view,,
ev-4,acc-2,2025-05-21 08:15:00,dashboard_view,,fail
"""
BODY = "Our weekly export fails.\nIt worked last week, we changed nothing."
TICKETS = f"""ticket_id,account_id,opened_at,resolved_at,status,priority,subject,body
t-1,acc-1,2025-05-18T10:00:00Z,,open,high,Export times out,"{BODY}"
t-1,acc-1,2025-05-18T10:00:00Z,2025-05-19T16:30:00Z,solved,high,Export times out,"{BODY}"
"""
INCIDENTS = """\
{"incident_id": "inc-1", "title": "Exports failing", "started_at": "2025-05-20T13:55:00Z", \
"status": "resolved", "impact": "major", "resolved_at": "2025-05-20T16:10:00Z", \
"components": ["reports", "api"], "regions": ["us-east"]}

{"incident_id": "inc-2", "title": "Slow dashboards", "started_at": "2025-05-22T08:00:00Z", \
"components": ["dashboard"], "regions": []}
{"incident_id": "inc-3", "title": {"en": "nested"}, "started_at": "2025-05-22T08:00:00Z"}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _land(engine: Engine, path: Path, **kw: Any) -> IngestResult:
    """Land a file and check the one invariant every result keeps."""
    result = land_file(engine, path, **kw)
    assert result.read == result.inserted + result.updated + result.unchanged + result.quarantined
    return result


def _counts(result: IngestResult) -> tuple[int, int, int, int, int]:
    return (result.read, result.inserted, result.updated, result.unchanged, result.quarantined)


def _rows(engine: Engine, table: Any, *, skip: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    cols = [c for c in table.columns if c.name not in skip]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*cols).order_by(*table.primary_key))]


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every entity table and of the quarantine."""
    return {t.name: _rows(engine, t) for t in [*ENTITY_TABLES.values(), Q]}


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """One file per source, with some bad rows and a ticket that changes within its file."""
    return {
        "accounts": _write(tmp_path, "accounts.csv", ACCOUNTS),
        "contacts": _write(tmp_path, "contacts.csv", CONTACTS),
        "usage": _write(tmp_path, "usage.csv", USAGE),
        "tickets": _write(tmp_path, "tickets.csv", TICKETS),
        "incidents": _write(tmp_path, "incidents.jsonl", INCIDENTS),
    }


def test_every_outcome_is_counted_once(engine: Engine, tmp_path: Path) -> None:
    _land(engine, _write(tmp_path, "accounts.csv", ACCOUNTS), now=DAY1)
    later = _write(tmp_path, "accounts_later.csv", ACCOUNTS.replace(
        "acc-2,Zoë & Müller GmbH,89.5,", "acc-2,Zoë & Müller GmbH,120,"
    ).replace("acc-3,Initech,0,USD,,,\n", "acc-4,Hooli,300,USD,,,\nacc-5,Bad Mrr,lots,USD,,,\n"))
    result = _land(engine, later, now=DAY2)
    assert _counts(result) == (4, 1, 1, 1, 1)
    assert result.reasons == {"mrr: not a decimal number": 1}
    with Session(engine) as session:
        run = session.get_one(IngestRun, result.run_id)
    assert (run.status, run.read, run.inserted, run.updated, run.unchanged, run.quarantined) == (
        "ok", 4, 1, 1, 1, 1)


def test_landing_the_same_files_twice_changes_nothing(
    engine: Engine, world: dict[str, Path]
) -> None:
    first = {name: _land(engine, path, now=DAY1) for name, path in world.items()}
    assert {n: _counts(r) for n, r in first.items()} == {
        "accounts": (3, 3, 0, 0, 0),
        "contacts": (4, 2, 0, 0, 2),
        "usage": (4, 3, 0, 0, 1),  # ev-4's outcome 'fail' is not cleared to a made-up 'ok'
        "tickets": (2, 1, 1, 0, 0),
        "incidents": (3, 2, 0, 0, 1),
    }
    before = _snapshot(engine)

    again = {name: _land(engine, path, now=DAY2) for name, path in world.items()}

    assert {n: _counts(r) for n, r in again.items()} == {
        name: (r.read, 0, 0, r.read - r.quarantined, r.quarantined) for name, r in first.items()
    }
    # updated_at and run_id included: not one row was rewritten, no quarantine row added
    assert _snapshot(engine) == before
    assert _count(engine, Q) == 4


def test_a_later_file_updates_an_account(engine: Engine, tmp_path: Path) -> None:
    first = _land(engine, _write(tmp_path, "accounts.csv", ACCOUNTS), now=DAY1)
    changed = ACCOUNTS.replace("acc-2,Zoë & Müller GmbH,89.5,", "acc-2,Zoë & Müller GmbH,250.25,")
    second = _land(engine, _write(tmp_path, "accounts_2.csv", changed), now=DAY2)

    assert _counts(second) == (3, 0, 1, 2, 0)
    with Session(engine) as session:
        rows = {a.account_id: a for a in session.scalars(select(Account))}
    acc2 = rows["acc-2"]
    assert acc2.mrr == Decimal("250.25")
    assert (acc2.landed_at, acc2.updated_at, acc2.run_id) == (DAY1, DAY2, second.run_id)
    acc1 = rows["acc-1"]
    assert (acc1.mrr, acc1.updated_at, acc1.run_id) == (Decimal(1250), DAY1, first.run_id)


def test_a_column_a_later_file_leaves_out_keeps_its_stored_value(
    engine: Engine, tmp_path: Path
) -> None:
    _land(engine, _write(tmp_path, "accounts.csv", ACCOUNTS), now=DAY1)
    partial = "account_id,name,mrr\nacc-2,Zoë & Müller GmbH,300\n"

    result = _land(engine, _write(tmp_path, "accounts_mrr.csv", partial), now=DAY2)

    assert _counts(result) == (1, 0, 1, 0, 0)
    with Session(engine) as session:
        acc2 = session.get(Account, "acc-2")
    assert acc2 is not None
    assert (acc2.mrr, acc2.currency, acc2.seats) == (Decimal(300), "EUR", 3)
    # an empty value in a column the file does give still clears it
    cleared = "account_id,name,mrr,seats\nacc-2,Zoë & Müller GmbH,300,\n"
    assert _counts(_land(engine, _write(tmp_path, "accounts_seats.csv", cleared))) == (
        1, 0, 1, 0, 0)
    with Session(engine) as session:
        acc2 = session.get(Account, "acc-2")
    assert acc2 is not None and acc2.seats is None and acc2.currency == "EUR"


@pytest.mark.parametrize("batch", [None, 1])
def test_a_ticket_opened_then_solved_in_one_file(
    engine: Engine, world: dict[str, Path], batch: int | None
) -> None:
    _land(engine, world["accounts"], now=DAY1)

    result = _land(engine, world["tickets"], now=DAY1, batch=batch)

    assert _counts(result) == (2, 1, 1, 0, 0)
    with Session(engine) as session:
        ticket = session.scalars(select(Ticket)).one()
    assert (ticket.status, ticket.resolved_at) == ("solved", datetime(2025, 5, 19, 16, 30,
                                                                      tzinfo=UTC))
    assert ticket.body == BODY
    assert _counts(_land(engine, world["tickets"], now=DAY2, batch=batch)) == (2, 0, 0, 2, 0)


def test_a_crash_after_staging_leaves_nothing_half_written(
    engine: Engine, world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    staged: list[int] = []

    def crash_at_merge(conn: Any, source: Any, stage: Any, *args: Any) -> None:
        staged.append(conn.execute(select(func.count()).select_from(stage)).scalar_one())
        raise RuntimeError("disk full")

    def crash_at_finish(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pulse.listeners.landing, "_merge", crash_at_merge)
    with pytest.raises(RuntimeError, match="disk full"):
        land_file(engine, world["accounts"], now=DAY1)
    assert staged == [3]  # the crash came after staging
    monkeypatch.undo()
    # contacts without their accounts: 4 rows quarantined, then a crash before the commit
    monkeypatch.setattr(pulse.listeners.landing, "_finish_run", crash_at_finish)
    with pytest.raises(RuntimeError, match="disk full"):
        land_file(engine, world["contacts"], now=DAY1)

    assert all(_count(engine, t) == 0 for t in [*ENTITY_TABLES.values(), Q])
    with engine.connect() as conn:
        runs = conn.execute(select(IngestRun.file, IngestRun.status, IngestRun.error)
                            .order_by(IngestRun.run_id)).all()
    assert [tuple(r) for r in runs] == [
        ("accounts.csv", "failed", "RuntimeError: disk full"),
        ("contacts.csv", "failed", "RuntimeError: disk full"),
    ]

    monkeypatch.undo()
    assert _counts(_land(engine, world["accounts"], now=DAY1)) == (3, 3, 0, 0, 0)


BATCHED = """ticket_id,account_id,opened_at,resolved_at,status
t-1,acc-1,2025-05-01T10:00:00Z,,open
t-2,acc-1,2025-05-01T11:00:00Z,,open
t-1,acc-1,2025-05-01T10:00:00Z,,pending
t-3,acc-1,2025-05-01T12:00:00Z,,fail
t-2,acc-1,2025-05-01T11:00:00Z,2025-05-02T09:00:00Z,solved
t-4,acc-1,2025-05-01T13:00:00Z,,open
t-1,acc-1,2025-05-01T10:00:00Z,2025-05-03T09:00:00Z,solved
t-6,acc-1,2025-05-01T15:00:00Z
t-5,acc-1,2025-05-01T14:00:00Z,2025-04-30T09:00:00Z,solved
t-4,acc-1,2025-05-01T13:00:00Z,,open
"""


def test_small_batches_give_the_same_result_as_one(engine: Engine, tmp_path: Path) -> None:
    _land(engine, _write(tmp_path, "accounts.csv", ACCOUNTS), now=DAY1)
    path = _write(tmp_path, "tickets.csv", BATCHED)
    skip = ("run_id", "quarantine_id")  # run ids differ between the two landings
    outcomes = []
    for batch in (3, None):
        result = _land(engine, path, now=DAY1, batch=batch)
        outcomes.append((_counts(result), result.reasons,
                         _rows(engine, Ticket.__table__, skip=skip),
                         sorted(_rows(engine, Q, skip=skip))))  # by source, file, row number
        with engine.connect() as conn:
            stored = conn.execute(select(Ticket.ticket_id, Ticket.status)
                                  .order_by(Ticket.ticket_id)).all()
            quarantined = conn.execute(select(Q.c.row_number, Q.c.code, Q.c.raw)
                                       .order_by(Q.c.row_number)).all()
        # t-3's status and t-5's resolved_at are cleared; t-6 has too few fields
        assert _counts(result) == (10, 5, 3, 1, 1)
        assert result.fields_cleared == 2
        assert [tuple(t) for t in stored] == [("t-1", "solved"), ("t-2", "solved"),
                                              ("t-3", None), ("t-4", "open"),
                                              ("t-5", "solved")]
        assert [(n, code) for n, code, _raw in quarantined] == [
            (4, "bad_enum"), (8, "wrong_field_count"), (9, "out_of_order")]
        assert json.loads(quarantined[0].raw)["ticket_id"] == "t-3"
        assert json.loads(quarantined[1].raw) == ["t-6", "acc-1", "2025-05-01T15:00:00Z"]
        # in threes, row 9 shares its chunk with the reader's reject of row 8
        assert json.loads(quarantined[2].raw) == {
            "ticket_id": "t-5", "account_id": "acc-1", "opened_at": "2025-05-01T14:00:00Z",
            "resolved_at": "2025-04-30T09:00:00Z", "status": "solved"}
        with engine.begin() as conn:
            conn.execute(delete(Ticket))
            conn.execute(delete(QuarantineRow))

    in_threes, whole = outcomes
    assert in_threes == whole


def test_gzip_input_lands_like_plain(engine: Engine, tmp_path: Path) -> None:
    gz = tmp_path / "accounts.csv.gz"
    gz.write_bytes(gzip.compress(ACCOUNTS.encode()))
    jgz = tmp_path / "incidents.jsonl.gz"
    jgz.write_bytes(gzip.compress(INCIDENTS.encode()))

    assert _counts(_land(engine, gz, now=DAY1)) == (3, 3, 0, 0, 0)
    assert _counts(_land(engine, jgz, now=DAY1)) == (3, 2, 0, 0, 1)
    plain = _land(engine, _write(tmp_path, "accounts.csv", ACCOUNTS), now=DAY2)
    assert _counts(plain) == (3, 0, 0, 3, 0)
    with engine.connect() as conn:
        assert conn.execute(select(Account.name).where(Account.account_id == "acc-2")
                            ).scalar_one() == "Zoë & Müller GmbH"


# --------------------------------------------------------------------------- retry


def _quarantine(engine: Engine) -> dict[str, dict[str, Any]]:
    """Quarantined contacts and usage rows by the key of the row they hold."""
    key = {"contacts": "contact_id", "usage": "event_id"}
    with engine.connect() as conn:
        rows = conn.execute(select(Q)).mappings().all()
    return {json.loads(r["raw"])[key[r["source"]]]: dict(r) for r in rows}


def test_retry_relands_rows_whose_account_arrived(engine: Engine, world: dict[str, Path],
                                                  tmp_path: Path) -> None:
    _land(engine, world["accounts"], now=DAY1)
    _land(engine, world["contacts"], now=DAY1)
    runs_before = _count(engine, IngestRun)
    assert {k: q["code"] for k, q in _quarantine(engine).items()} == {
        "con-3": "unknown_account", "con-4": "bad_email"}
    # the account arrives in a later file: the contact waiting for it lands with it
    late = _land(engine, _write(tmp_path, "accounts_404.csv",
                                "account_id,name,mrr\nacc-404,Late,1\n"))
    assert late.relanded == 1

    q = _quarantine(engine)
    assert q["con-3"]["status"] == "relanded"
    assert q["con-4"]["status"] == "open"  # another code: not retried
    with Session(engine) as session:
        contact = session.get_one(Contact, "con-3")
        run = session.get_one(IngestRun, q["con-3"]["resolved_run_id"])
    assert (contact.account_id, contact.email) == ("acc-404", "who@nowhere.example")
    assert contact.run_id == run.run_id
    assert (run.file, run.source, run.status, run.inserted) == (
        "quarantine retry", "contacts", "ok", 1)
    assert _count(engine, IngestRun) == runs_before + 2  # accounts_404.csv and the re-landing
    # nothing open is left for that code: a retry reads nothing and logs no run
    assert _counts(retry_quarantine(engine, code="unknown_account")) == (0, 0, 0, 0, 0)
    assert _count(engine, IngestRun) == runs_before + 2


def test_retry_keeps_a_still_failing_row_open_with_its_new_reason(
    engine: Engine, tmp_path: Path
) -> None:
    _land(engine, _write(tmp_path, "contacts.csv",
                         "contact_id,account_id,email\ncon-9,acc-9,nope\n"), now=DAY1)
    assert _quarantine(engine)["con-9"]["code"] == "unknown_account"
    _land(engine, _write(tmp_path, "accounts.csv", "account_id,name,mrr\nacc-9,Nine,9\n"))

    result = retry_quarantine(engine)

    assert _counts(result) == (1, 0, 0, 0, 1)
    assert result.reasons == {"email: not a valid email address": 1}
    row = _quarantine(engine)["con-9"]
    assert (row["status"], row["field"], row["code"]) == ("open", "email", "bad_email")
    assert "(not 'nope')" in row["reason"]
    assert _count(engine, Contact) == 0


def test_retry_only_touches_the_rows_asked_for(engine: Engine, world: dict[str, Path],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # ev-4 holds a bad required value, so that one row fails again
    usage = USAGE.replace("ev-4,acc-2,2025-05-21 08:15:00,dashboard_view,,fail",
                          "ev-4,acc-2,2025-05-21 08:15:00,,,")
    _land(engine, world["contacts"], now=DAY1)  # no accounts yet: all four quarantined
    _land(engine, _write(tmp_path, "usage.csv", usage), now=DAY1)  # likewise
    # accounts landing re-lands the rows waiting for them by itself; this test is about
    # explicit retries, so switch that off here
    monkeypatch.setattr(pulse.listeners.landing, "reland_waiting", lambda engine: 0)
    _land(engine, world["accounts"], now=DAY1)
    q = _quarantine(engine)
    assert len(q) == 8

    by_id = retry_quarantine(engine, ids=[q["con-1"]["quarantine_id"], q["ev-1"]["quarantine_id"]])
    assert _counts(by_id) == (2, 2, 0, 0, 0)
    by_source = retry_quarantine(engine, source="usage")
    assert _counts(by_source) == (3, 2, 0, 0, 1)  # ev-4 fails again: no feature

    status = {k: r["status"] for k, r in _quarantine(engine).items()}
    assert status == {
        "con-1": "relanded", "con-2": "open", "con-3": "open", "con-4": "open",
        "ev-1": "relanded", "ev-2": "relanded", "ev-3": "relanded", "ev-4": "open",
    }
    assert _quarantine(engine)["ev-4"]["code"] == "missing_required"


def test_retry_leaves_undecodable_rows_alone(engine: Engine) -> None:
    _land(engine, CORPUS / "accounts_base.csv", now=DAY1)
    _land(engine, CORPUS / "usage_bad_encoding.csv", now=DAY1)

    result = retry_quarantine(engine)

    # the stored text has U+FFFD for the bad byte: landing it would store the damage
    assert _counts(result) == (0, 0, 0, 0, 0)
    with engine.connect() as conn:
        assert conn.execute(select(Q.c.status, Q.c.code)).one() == ("open", "bad_encoding")
        assert conn.execute(select(ENTITY_TABLES["usage"].c.event_id)).scalars().all() == [
            "ev-good"]


def test_a_retry_that_relands_nothing_leaves_no_run(engine: Engine, world: dict[str, Path]
                                                    ) -> None:
    _land(engine, world["contacts"], now=DAY1)  # no accounts yet: all quarantined
    runs_before = _count(engine, IngestRun)

    result = retry_quarantine(engine, code="unknown_account")

    assert (result.read, result.quarantined, result.run_id) == (4, 4, None)
    assert _count(engine, IngestRun) == runs_before
    assert _count(engine, Q) == 4


@pytest.mark.parametrize("batch", [None, 2])
def test_events_with_known_or_repeated_keys_fall_back_to_the_merge(
    engine: Engine, tmp_path: Path, batch: int | None
) -> None:
    _land(engine, _write(tmp_path, "accounts.csv", ACCOUNTS), now=DAY1)
    first = _land(engine, _write(tmp_path, "usage.csv", USAGE), now=DAY1, batch=batch)
    assert _counts(first) == (4, 3, 0, 0, 1)  # the direct load: all new (ev-4 quarantined)
    later = USAGE.splitlines()[0] + "\n" + "\n".join([
        "ev-9,acc-1,2025-05-22T10:00:00Z,report_export,1,ok",   # new
        "ev-1,acc-1,2025-05-20T14:03:11Z,report_export,5,ok",   # known, changed
        "ev-2,acc-1,2025-05-20T14:05:40-05:00,api_call,120,error",  # known, the same
        "ev-9,acc-1,2025-05-22T10:00:00Z,report_export,1,ok",   # repeated, the same
    ]) + "\n"

    second = _land(engine, _write(tmp_path, "usage_2.csv", later), now=DAY2, batch=batch)

    assert _counts(second) == (4, 1, 1, 2, 0)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(ENTITY_TABLES["usage"].c.event_id,
                                        ENTITY_TABLES["usage"].c.quantity)).all())
    assert rows == {"ev-1": 5.0, "ev-2": 120.0, "ev-3": 1.0, "ev-9": 1.0}
    with engine.connect() as conn:
        statuses = conn.execute(select(IngestRun.status)).scalars().all()
    assert statuses == ["ok", "ok", "ok"]  # the fallback reuses its run: no failed run left
