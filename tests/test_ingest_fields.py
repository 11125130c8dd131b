"""Issue 11, section 2: never drop a whole row for an optional field.

Bad optional values are cleared (the row lands), rows waiting for an account land with it,
keys are clean, JSON Lines is strict, every run ends `ok` or `failed`, and two ingests at once
wait for each other and count right. Every test runs on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

import pulse.listeners.landing as landing
from pulse.core.errors import InputFileError
from pulse.listeners import staging
from pulse.listeners.landing import land_file, retry_quarantine
from pulse.listeners.quarantine import list_rows
from pulse.sql.schema import ENTITY_TABLES, Account, Contact, IngestRun, QuarantineRow

NOW = datetime(2026, 6, 1, tzinfo=UTC)
Q = QuarantineRow.__table__
LONG = "northwind_support_team"  # 22 characters: longer than an X handle may be


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _counts(r: Any) -> tuple[int, ...]:
    return (r.read, r.inserted, r.updated, r.unchanged, r.quarantined)


def _quarantine(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(Q).order_by(Q.c.quarantine_id)).mappings()]


def _accounts(engine: Engine, tmp_path: Path, rows: str = "acc-1,Northwind,10,\n") -> None:
    land_file(engine, _write(tmp_path, "accounts.csv", "account_id,name,mrr,x_handle\n" + rows),
              now=NOW)


# --------------------------------------------------------------------------- cleared fields


def test_a_long_x_handle_is_cleared_and_contact_mention_and_account_land(
    engine: Engine, tmp_path: Path
) -> None:
    accounts = land_file(engine, _write(tmp_path, "accounts.csv", (
        "account_id,name,mrr,x_handle\nacc-1,Northwind,10,northwind\n"
        f"acc-2,Initech,20,@{LONG}\n")), now=NOW)
    contacts = land_file(engine, _write(tmp_path, "contacts.csv", (
        "contact_id,account_id,email,x_handle\n"
        f"con-1,acc-2,ana@initech.example,{LONG}\n")), now=NOW)
    mention = {"mention_id": "m-1", "created_at": "2026-05-01T10:00:00Z", "author_id": "bad id",
               "text": "exports are down again", "author_handle": "ana", "account_id": "acc-2"}
    mentions = land_file(engine, _write(tmp_path, "mentions.jsonl", json.dumps(mention) + "\n"),
                         now=NOW)

    assert (_counts(accounts), accounts.fields_cleared) == ((2, 2, 0, 0, 0), 1)
    assert (_counts(contacts), contacts.fields_cleared) == ((1, 1, 0, 0, 0), 1)
    assert (_counts(mentions), mentions.fields_cleared) == ((1, 1, 0, 0, 0), 1)
    assert accounts.cleared == {"x_handle: not a valid handle": 1}
    with engine.connect() as conn:
        assert conn.execute(select(Account.x_handle).where(Account.account_id == "acc-2")
                            ).scalar_one() is None
        assert conn.execute(select(Contact.email, Contact.x_handle)).one() == (
            "ana@initech.example", None)
        run = conn.execute(select(IngestRun.fields_cleared, IngestRun.quarantined)
                           .where(IngestRun.run_id == accounts.run_id)).one()
    assert tuple(run) == (1, 0)
    listed = {(r["source"], r["kind"], r["row_key"], r["field"], r["code"], r["value"])
              for r in list_rows(engine)}
    assert listed == {
        ("accounts", "field_cleared", "acc-2", "x_handle", "bad_handle", f"@{LONG}"),
        ("contacts", "field_cleared", "con-1", "x_handle", "bad_handle", LONG),
        ("mentions", "field_cleared", "m-1", "author_id", "bad_id", "bad id"),
    }


def test_a_corrected_file_applies_the_value_and_resolves_the_entry(
    engine: Engine, tmp_path: Path
) -> None:
    _accounts(engine, tmp_path, f"acc-1,Northwind,10,{LONG}\n")
    again = land_file(engine, _write(tmp_path, "accounts_again.csv",
                                     f"account_id,name,mrr,x_handle\nacc-1,Northwind,10,{LONG}\n"),
                      now=NOW)
    assert (_counts(again), again.fields_cleared) == ((1, 0, 0, 1, 0), 1)
    assert [(q["status"], q["field"]) for q in _quarantine(engine)] == [("open", "x_handle")]

    fixed = land_file(engine, _write(tmp_path, "accounts_fixed.csv",
                                     "account_id,name,mrr,x_handle\nacc-1,Northwind,10,@NW\n"),
                      now=NOW)

    assert (_counts(fixed), fixed.fields_cleared) == ((1, 0, 1, 0, 0), 0)
    with engine.connect() as conn:
        assert conn.execute(select(Account.x_handle)).scalar_one() == "nw"
    (entry,) = _quarantine(engine)
    assert (entry["status"], entry["resolved_run_id"]) == ("relanded", fixed.run_id)
    assert list_rows(engine) == []


def test_retry_applies_a_cleared_value_again_and_only_that_field(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _accounts(engine, tmp_path, "acc-1,Northwind,10,north-wind\n")
    # the row changes since: the retry must not bring back its old name
    land_file(engine, _write(tmp_path, "accounts_2.csv", "account_id,name,mrr\nacc-1,NW Ltd,10\n"),
              now=NOW)
    still = retry_quarantine(engine)  # the value is still too long: the entry stays open
    assert (still.read, still.fields_cleared) == (1, 1)
    assert [q["status"] for q in _quarantine(engine)] == ["open"]

    # a rule mended (here: hyphens allowed) applies the kept value on retry
    monkeypatch.setattr("pulse.listeners.validate.HANDLE_RE", r"[A-Za-z0-9_-]{1,15}")
    result = retry_quarantine(engine)

    assert (_counts(result), result.fields_cleared) == ((1, 0, 1, 0, 0), 0)
    with engine.connect() as conn:
        assert tuple(conn.execute(select(Account.name, Account.x_handle)).one()) == (
            "NW Ltd", "north-wind")
    assert [q["status"] for q in _quarantine(engine)] == ["relanded"]


def test_required_fields_and_keys_still_quarantine_the_row(engine: Engine, tmp_path: Path
                                                           ) -> None:
    _accounts(engine, tmp_path)
    result = land_file(engine, _write(tmp_path, "contacts.csv", (
        "contact_id,account_id,email,x_handle\n"
        f"con-1,acc-1,not-an-email,{LONG}\n"
        "con 2,acc-1,b@x.example,\n")), now=NOW)
    assert (_counts(result), result.fields_cleared) == ((2, 0, 0, 0, 2), 0)
    assert [(q["kind"], q["code"]) for q in _quarantine(engine)] == [
        ("row", "bad_email"), ("row", "bad_id")]


# --------------------------------------------------------------------------- waiting rows


def test_a_bad_value_whose_default_states_a_fact_quarantines_the_row(
    engine: Engine, tmp_path: Path
) -> None:
    """Clearing `opted_out` would land "not opted out", `outcome` would land "ok": such rows
    are quarantined, never landed with a fact the file did not state."""
    _accounts(engine, tmp_path)
    contacts = land_file(engine, _write(tmp_path, "contacts.csv", (
        "contact_id,account_id,email,opted_out,x_handle\n"
        "c-1,acc-1,ann@example.com,perhaps,ann\n"
        f"c-2,acc-1,bob@example.com,true,{LONG}\n")), now=NOW)
    assert (contacts.inserted, contacts.quarantined, contacts.fields_cleared) == (1, 1, 1)
    with engine.connect() as conn:
        landed = conn.execute(select(Contact.contact_id, Contact.opted_out)).all()
    assert landed == [("c-2", True)]  # bob's bad handle is cleared; ann waits for a fix
    usage = land_file(engine, _write(tmp_path, "usage.csv", (
        "event_id,account_id,occurred_at,feature,outcome\n"
        "e-1,acc-1,2026-05-30T10:00:00Z,reports,fail\n")), now=NOW)
    assert (usage.inserted, usage.quarantined) == (0, 1)


def test_rows_waiting_for_an_account_land_when_a_corrected_file_brings_it(
    engine: Engine, tmp_path: Path
) -> None:
    bad = land_file(engine, _write(tmp_path, "accounts.csv",
                                   "account_id,name,mrr\nacc-1,Northwind,lots\n"), now=NOW)
    assert bad.quarantined == 1
    usage = land_file(engine, _write(tmp_path, "usage.csv", (
        "event_id,account_id,occurred_at,feature\n"
        "ev-1,acc-1,2026-05-01T10:00:00Z,export\nev-2,acc-9,2026-05-01T10:00:00Z,export\n")),
        now=NOW)
    assert usage.quarantined == 2

    fixed = land_file(engine, _write(tmp_path, "accounts_fixed.csv",
                                     "account_id,name,mrr\nacc-1,Northwind,10\n"), now=NOW)

    assert fixed.relanded == 1
    usage_t = ENTITY_TABLES["usage"]
    with engine.connect() as conn:
        assert conn.execute(select(usage_t.c.event_id)).scalars().all() == ["ev-1"]
    assert {json.loads(q["raw"]).get("event_id"): q["status"] for q in _quarantine(engine)
            if q["source"] == "usage"} == {"ev-1": "relanded", "ev-2": "open"}


# --------------------------------------------------------------------------- clean keys


def test_keys_with_control_invisible_or_surrounding_characters_are_refused(
    engine: Engine, tmp_path: Path
) -> None:
    _accounts(engine, tmp_path, "ACC-00001,Northwind,10,\n")
    text = ("event_id,account_id,occurred_at,feature\n"
            '"evt\nsplit",ACC-00001,2026-05-01T10:00:00Z,export\n'
            "ev-2,ACC-00001\u200b,2026-05-01T10:00:00Z,export\n"
            "ev-3\u202e,ACC-00001,2026-05-01T10:00:00Z,export\n"
            '" ev-4",ACC-00001,2026-05-01T10:00:00Z,export\n'
            "ev-5\x85,ACC-00001,2026-05-01T10:00:00Z,export\n"
            "ev-ok,ACC-00001,2026-05-01T10:00:00Z,export\n")
    result = land_file(engine, _write(tmp_path, "usage.csv", text), now=NOW)

    assert _counts(result) == (6, 1, 0, 0, 5)
    assert {(q["field"], q["code"]) for q in _quarantine(engine)} == {
        ("event_id", "bad_id"), ("account_id", "bad_id")}
    usage_t = ENTITY_TABLES["usage"]
    with engine.connect() as conn:
        assert conn.execute(select(usage_t.c.event_id)).scalars().all() == ["ev-ok"]


def test_ids_are_normalised_to_nfc(engine: Engine, tmp_path: Path) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    _accounts(engine, tmp_path, f"{composed},Café,10,\n")
    again = land_file(engine, _write(tmp_path, "accounts_2.csv",
                                     f"account_id,name,mrr\n{decomposed},Café,10\n"), now=NOW)
    assert _counts(again) == (1, 0, 0, 1, 0)
    with engine.connect() as conn:
        assert conn.execute(select(Account.account_id)).scalars().all() == [composed]


# --------------------------------------------------------------------------- JSON Lines


def test_json_lines_refuse_nan_infinity_bombs_and_nul(engine: Engine, tmp_path: Path) -> None:
    def incident(i: str, **extra: Any) -> str:
        rec = {"incident_id": i, "title": "Exports failing", "started_at": "2026-05-01T10:00:00Z"}
        rec.update(extra)
        return json.dumps(rec)

    lines = [
        incident("inc-ok"),
        incident("inc-nan").replace('"Exports failing"', "NaN"),
        '{"incident_id": "inc-inf", "title": "x", "started_at": "2026-05-01", "n": Infinity}',
        "[" * 100_000 + "]" * 100_000,
        incident("inc-nul", title="Exports\u0000failing"),
        incident("inc-raw-nul").replace("Exports", "Exp\x00orts"),
        incident("inc-opt-nul", impact="major\u0000"),
    ]
    result = land_file(engine, _write(tmp_path, "incidents.jsonl", "\n".join(lines) + "\n"),
                       now=NOW)

    assert (_counts(result), result.fields_cleared) == ((7, 2, 0, 0, 5), 1)
    codes = sorted(q["code"] for q in _quarantine(engine) if q["kind"] == "row")
    assert codes == ["bad_encoding", "bad_json", "bad_json", "bad_json", "bad_json"]
    with engine.connect() as conn:
        assert conn.execute(select(IngestRun.status)).scalars().all() == ["ok"]


# --------------------------------------------------------------------------- the run log


def test_a_utf16_file_without_bom_fails_its_run_with_a_reason(engine: Engine, tmp_path: Path
                                                              ) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes("event_id,account_id,occurred_at,feature\n".encode("utf-16-le"))
    with pytest.raises(InputFileError, match="UTF-16"):
        land_file(engine, path, now=NOW)
    with engine.connect() as conn:
        status, error = conn.execute(select(IngestRun.status, IngestRun.error)).one()
    assert status == "failed" and "UTF-16" in error and "\x00" not in error


def test_a_file_name_that_is_not_utf8_lands(engine: Engine, tmp_path: Path) -> None:
    _accounts(engine, tmp_path)
    name = os.fsdecode(b"usage-\xff.csv")
    result = land_file(engine, _write(tmp_path, name, (
        "event_id,account_id,occurred_at,feature\n"
        "ev-1,acc-1,2026-05-01T10:00:00Z,export\nev-2,acc-1,,export\n")), now=NOW)
    assert _counts(result) == (2, 1, 0, 0, 1)
    with engine.connect() as conn:
        runs = conn.execute(select(IngestRun.file, IngestRun.status)
                            .order_by(IngestRun.run_id)).all()
        qfile = conn.execute(select(Q.c.file)).scalar_one()
    assert [tuple(r) for r in runs][-1] == ("usage-\ufffd.csv", "ok")
    assert qfile == "usage-\ufffd.csv"


# --------------------------------------------------------------------------- concurrency


def test_two_ingests_at_once_wait_and_count_what_each_changed(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both landings stage the same file before either merges; the second must wait (SQLite)
    or count against what the first committed (PostgreSQL): together they insert it once."""
    n = 2000
    path = _write(tmp_path, "accounts.csv", "account_id,name,mrr\n" + "".join(
        f"acc-{i},Account {i},{i}\n" for i in range(n)))
    barrier = threading.Barrier(2, timeout=5)
    real = staging._load_stage

    def staged_then_wait(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the other landing waits for our lock: go on alone

    monkeypatch.setattr(landing, "_load_stage", staged_then_wait)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(land_file(engine, path, now=NOW))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    assert sorted(_counts(r) for r in results) == [(n, 0, 0, n, 0), (n, n, 0, 0, 0)]
    with engine.connect() as conn:
        assert conn.execute(select(IngestRun.status)).scalars().all() == ["ok", "ok"]
