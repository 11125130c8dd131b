"""The installed `pulse` executable, run as a user runs it.

Each run costs about half a second, so these tests are few; the output formats are checked on
SQLite, and the quarantine round trip runs on PostgreSQL too.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pulse.listeners.landing import land_file
from pulse.sql.schema import Contact, QuarantineRow
from tests.pulse_cli import piped_env

PULSE = Path(sys.executable).with_name("pulse")

ACCOUNTS = "account_id,name,mrr\nacc-1,Northwind Traders,1250.00\n"
USAGE = """event_id,account_id,occurred_at,feature,contact_id,outcome,browser
ev-1,acc-1,2025-05-20T14:03:11Z,report_export,,ok,firefox
ev-2,acc-1,2025-05-20T14:05:40Z,api_call,,fail,firefox
ev-3,acc-1,yesterday,api_call,,ok,firefox
ev-4,acc-1,2025-05-21T08:15:00Z,dashboard_view, con-1,ERROR,firefox
"""
CONTACTS = """contact_id,account_id,email
con-1,acc-1,ana@northwind.example
con-2,acc-2,zoe@zoe-mueller.example
"""


def pulse(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `pulse` with this process's environment (PULSE_HOME, PULSE_DATABASE_URL).

    Output goes to pipes, as from a scheduler: rich uses its default width of 80 columns.
    """
    env = piped_env()
    return subprocess.run([str(PULSE), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, check=False)


def ok(*args: str, cwd: Path | None = None) -> str:
    proc = pulse(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_lists_the_commands() -> None:
    out = ok("--help")
    assert "Pulse: customer health" in out
    for command in ("ingest", "quarantine", "db", "summary"):
        assert re.search(rf"^│ {command}\s+\S", out, re.MULTILINE), command
    assert "PULSE_DATABASE_URL" in out


def test_ingest_prints_json_and_a_table_with_the_reasons(pulse_home: Path, tmp_path: Path) -> None:
    # no PULSE_DATABASE_URL: the default warehouse is SQLite under PULSE_HOME
    assert "at revision" in ok("db", "upgrade")
    assert (pulse_home / "pulse.db").exists()
    (tmp_path / "accounts.csv").write_text(ACCOUNTS, encoding="utf-8")
    (tmp_path / "usage.csv").write_text(USAGE, encoding="utf-8")

    result = json.loads(ok("ingest", "accounts", "accounts.csv", "--format", "json", cwd=tmp_path))
    assert {k: result[k] for k in ("source", "read", "inserted", "updated", "unchanged",
                                   "quarantined", "reasons", "warnings")} == {
        "source": "accounts", "read": 1, "inserted": 1, "updated": 0, "unchanged": 0,
        "quarantined": 0, "reasons": {}, "warnings": []}

    proc = pulse("ingest", "usage", "usage.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    counts = [line for line in lines if "usage.csv" in line]
    # ev-2's outcome 'fail' would land as 'ok' if cleared: quarantined; ev-3 has no time;
    # ev-4's optional contact_id is not a clean id: cleared, and the row lands
    assert len(counts) == 1 and re.findall(r"\d+", counts[0]) == ["4", "2", "0", "0", "2"]
    assert "Quarantine reasons" in proc.stdout
    reasons = {m[0]: int(m[1]) for m in
               re.findall(r"│ (\w+: [^│]+?)\s+│\s+(\d+) │", proc.stdout)}
    assert reasons == {"outcome: not one of the allowed values": 1,  # quarantine reasons
                       "occurred_at: not an ISO 8601 timestamp": 1,
                       "contact_id: not a valid id": 1}  # and the cleared values
    assert "Cleared optional values" in proc.stdout
    assert "warning:" in proc.stderr and "browser" in proc.stderr

    listing = ok("quarantine", "list")
    assert "2 open row(s) stopped, 1 field(s) cleared" in listing
    shown = re.findall(
        r"│ \d+\s+│ (row|field)[^│]*│ usage\s+│ usage\.csv\s+│ (\d+)\s+│ ([\w-]*)\s+│ (\w+)\s+│",
        listing)
    assert sorted(shown) == [("field", "4", "ev-4", "contact_id"), ("row", "2", "", "outcome"),
                             ("row", "3", "", "occurred_at")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_whole_file_error_names_the_file_and_exits_1(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_text("event_id,account_id,feature\nev-1,acc-1,report_export\n", encoding="utf-8")

    proc = pulse("ingest", "usage", str(path))

    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert message.startswith(f"error: {path}: missing required column occurred_at")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_whole_file_error_is_one_line(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_text("event_id,account_id,feature\nev-1,acc-1,report_export\n", encoding="utf-8")

    proc = pulse("ingest", "usage", str(path))

    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_quarantine_show_prints_the_row_verbatim(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("account_id,name,mrr\nacc-1,[bold]Acme[/b],lots\n", encoding="utf-8")
    assert land_file(engine, path).quarantined == 1

    proc = pulse("quarantine", "show", "1")

    assert proc.returncode == 0, proc.stderr
    assert '"name": "[bold]Acme[/b]"' in proc.stdout


def test_quarantine_list_show_and_retry(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    (tmp_path / "accounts.csv").write_text(ACCOUNTS, encoding="utf-8")

    landed = json.loads(ok("ingest", "contacts", "contacts.csv", "--format", "json",
                           cwd=tmp_path))
    assert (landed["read"], landed["quarantined"]) == (2, 2)
    assert landed["reasons"] == {"account_id: account not known": 2}

    listed = json.loads(ok("quarantine", "list", "--format", "json"))
    assert listed["summary"]["total"] == 2
    rows = {r["row_number"]: r for r in listed["rows"]}
    assert {n: (r["source"], r["file"], r["code"]) for n, r in rows.items()} == {
        1: ("contacts", "contacts.csv", "unknown_account"),
        2: ("contacts", "contacts.csv", "unknown_account")}

    shown = ok("quarantine", "show", str(rows[1]["quarantine_id"]))
    assert "no account 'acc-1' is known" in shown
    assert '"contact_id": "con-1"' in shown

    accounts = json.loads(ok("ingest", "accounts", "accounts.csv", "--format", "json",
                             cwd=tmp_path))
    assert (accounts["inserted"], accounts["relanded"]) == (1, 1)  # con-1 waited for acc-1
    retried = json.loads(ok("quarantine", "retry", "--code", "unknown_account",
                            "--format", "json"))
    assert {k: retried[k] for k in ("read", "inserted", "quarantined")} == {
        "read": 1, "inserted": 0, "quarantined": 1}

    with engine.connect() as conn:
        contacts = conn.execute(select(Contact.contact_id, Contact.account_id)).all()
        status = dict(conn.execute(select(QuarantineRow.row_number, QuarantineRow.status)).all())
    assert [tuple(c) for c in contacts] == [("con-1", "acc-1")]
    assert status == {1: "relanded", 2: "open"}
