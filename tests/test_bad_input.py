"""The bad-input corpus: one small file per kind of malformed input, with its expected outcome.

Three tables, each case a file under tests/corpus/:

- `QUARANTINED`: a good row then a bad one; the bad row lands in quarantine with its field and
  code, the good row lands.
- `ACCEPTED`: odd but valid input that lands whole; a stored value shows how it was read.
- `WHOLE_FILE`: files that cannot be read as a whole; `pulse ingest` exits 1 with the message,
  nothing of the file lands and the run log records the failure.

Every case runs on SQLite and on PostgreSQL (the `engine` fixture).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from pulse.cli import main
from pulse.listeners.contract import SOURCES
from pulse.listeners.landing import land_file, source_for_path
from pulse.listeners.quarantine import list_rows
from pulse.listeners.validate import clearable
from pulse.sql.schema import (
    ENTITY_TABLES,
    IngestRun,
    QuarantineRow,
    UsageDaily,
    UsageDailyFeed,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
#: The clock of every in-process landing: the corpus's events lie before it.
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Quarantined:
    """The second row of `file` is quarantined for `field`/`code`; the first row lands."""

    file: str
    field: str | None
    code: str
    reason: str  # a substring of the stored reason


@dataclass(frozen=True)
class Accepted:
    """`file` lands whole: `read` rows, and `column` of row `key` is stored as `expected`."""

    file: str
    read: int
    key: str | None = None
    column: str | None = None
    expected: Any = None
    warning: str | None = None


@dataclass(frozen=True)
class WholeFile:
    """`pulse ingest *args` fails with `message`; a failed run is logged when `logged`."""

    args: tuple[str, ...]
    message: str
    logged: bool = True


QUARANTINED = {
    "latin-1 byte in one row": Quarantined(
        "usage_bad_encoding.csv", "feature", "bad_encoding", "not valid UTF-8"),
    "NUL character in a value": Quarantined(
        "usage_nul_character.csv", "feature", "bad_encoding", "NUL character"),
    "missing required value": Quarantined(
        "usage_missing_value.csv", "feature", "missing_required", "required value is missing"),
    "decimal comma": Quarantined(
        "accounts_decimal_comma.csv", "mrr", "bad_decimal", "(not '12,5')"),
    "decimal that is a word": Quarantined(
        "accounts_decimal_word.csv", "mrr", "bad_decimal", "(not 'abc')"),
    "negative mrr": Quarantined(
        "accounts_negative_mrr.csv", "mrr", "out_of_range", "expected a value >= 0"),
    "mrr too large for NUMERIC(18, 4)": Quarantined(
        "accounts_mrr_overflow.csv", "mrr", "out_of_range", "14 digits before the decimal point"),
    "whole number with decimals": Quarantined(
        "accounts_fractional_seats.csv", "seats", "bad_int", "(not '3.5')"),
    "whole number too large for INTEGER": Quarantined(
        "accounts_seats_overflow.csv", "seats", "out_of_range", "(not '99999999999')"),
    "bad email": Quarantined(
        "accounts_bad_email.csv", "csm_email", "bad_email", "expected an email address"),
    "bad currency": Quarantined(
        "accounts_bad_currency.csv", "currency", "bad_currency", "(not 'dollars')"),
    "impossible date": Quarantined(
        "accounts_bad_date.csv", "renewal_date", "bad_date", "(not '2026-02-30')"),
    "date with a time of day": Quarantined(
        "accounts_date_with_time.csv", "renewal_date", "bad_date",
        "(not '2027-01-31T09:30:00Z')"),
    "too-long value": Quarantined(
        "accounts_name_too_long.csv", "name", "too_long", "at most 200 characters (found 201)"),
    "bad bool": Quarantined(
        "contacts_bad_bool.csv", "opted_out", "bad_bool", "(not 'maybe')"),
    "bad IANA time zone": Quarantined(
        "contacts_bad_timezone.csv", "timezone", "bad_timezone", "(not 'Europe/Springfield')"),
    "unknown account": Quarantined(
        "contacts_unknown_account.csv", "account_id", "unknown_account", "no account 'acc-404'"),
    "bad enum": Quarantined(
        "usage_bad_enum.csv", "outcome", "bad_enum", """expected "ok" or "error" (not 'fail')"""),
    "id with a space": Quarantined(
        "usage_bad_id.csv", "event_id", "bad_id", "(not 'ev bad')"),
    "bad number": Quarantined(
        "usage_bad_number.csv", "quantity", "bad_number", "(not 'lots')"),
    "timestamp that is a word": Quarantined(
        "usage_timestamp_word.csv", "occurred_at", "bad_timestamp", "(not 'yesterday')"),
    "timestamp out of every range": Quarantined(
        "usage_timestamp_impossible.csv", "occurred_at", "bad_timestamp",
        "(not '2026-13-45T99:00:00Z')"),
    "timestamp far in the future": Quarantined(
        "usage_timestamp_future.csv", "occurred_at", "future_timestamp", "in the future"),
    "timestamp in 1900": Quarantined(
        "usage_timestamp_1900.csv", "occurred_at", "implausible_timestamp", "after 1990-01-01"),
    "too many CSV fields": Quarantined(
        "usage_too_many_fields.csv", None, "wrong_field_count", "expected 5 fields"),
    "too few CSV fields": Quarantined(
        "usage_too_few_fields.csv", None, "wrong_field_count", "found 3"),
    "resolved before opened": Quarantined(
        "tickets_resolved_before_opened.csv", "resolved_at", "out_of_order",
        "resolved_at is before opened_at"),
    "invalid JSON line": Quarantined(
        "incidents_invalid_json.jsonl", None, "bad_json", "not valid JSON"),
    "JSON array line": Quarantined(
        "incidents_array_line.jsonl", None, "not_an_object", "found a JSON array"),
    "nested object for a scalar": Quarantined(
        "incidents_nested_object.jsonl", "title", "not_scalar", "not a JSON object"),
    "list of numbers for a list field": Quarantined(
        "incidents_list_of_numbers.jsonl", "components", "not_scalar", "a list of strings"),
    "list field as a string in JSON Lines": Quarantined(
        "incidents_list_as_string.jsonl", "components", "not_scalar", "not a string"),
    "bad handle": Quarantined(
        "mentions_bad_handle.jsonl", "author_handle", "bad_handle", "(not 'not a handle!')"),
    "URL that is not http(s)": Quarantined(
        "mentions_bad_url.jsonl", "url", "bad_url", "(not 'ftp://x.example/1')"),
}

ACCEPTED = {
    "header only": Accepted("usage_header_only.csv", 0),
    "empty JSON Lines file": Accepted("usage_empty.jsonl", 0),
    "UTF-8 byte order mark": Accepted("usage_bom.csv", 1, "ev-good", "feature", "report_export"),
    "CRLF lines, header in odd case": Accepted(
        "usage_crlf_header_case.csv", 1, "ev-good", "feature", "report_export"),
    "enum in upper case": Accepted("usage_enum_case.csv", 1, "ev-good", "outcome", "error"),
    "timestamp without offset is UTC": Accepted(
        "usage_timestamp_no_offset.csv", 1, "ev-good", "occurred_at",
        datetime(2026, 5, 20, 10, tzinfo=UTC)),
    "timestamp with +02:00 stored in UTC": Accepted(
        "usage_timestamp_offset.csv", 1, "ev-good", "occurred_at",
        datetime(2026, 5, 20, 8, tzinfo=UTC)),
    "timestamp with a lower-case t and z (RFC 3339)": Accepted(
        "usage_timestamp_lower_case.csv", 1, "ev-good", "occurred_at",
        datetime(2026, 5, 20, 10, tzinfo=UTC)),
    "date as a midnight UTC timestamp": Accepted(
        "accounts_date_midnight.csv", 1, "acc-good", "renewal_date", date(2027, 1, 31)),
    "timestamp 12 h ahead, within the skew": Accepted(
        "usage_timestamp_within_skew.csv", 1, "ev-good", "occurred_at",
        datetime(2026, 6, 1, 12, tzinfo=UTC)),
    "unknown extra column": Accepted(
        "usage_extra_column.csv", 1, "ev-good", "feature", "report_export",
        warning="ignored column(s) not in the contract: browser"),
    "quoted comma and newline": Accepted(
        "tickets_quoted_comma_newline.csv", 1, "t-good", "body",
        "Our weekly export fails.\nIt worked last week, we changed nothing."),
    "JSON list components": Accepted(
        "incidents_components_list.jsonl", 1, "inc-good", "components", ["reports", "api"]),
    "CSV a|b components": Accepted(
        "incidents_components_pipe.csv", 1, "inc-good", "components", ["reports", "api"]),
    "blank lines in JSON Lines": Accepted(
        "incidents_blank_lines.jsonl", 2, "inc-good-2", "title", "Slow dashboards"),
    "handle with @": Accepted("accounts_handle_at.csv", 1, "acc-good", "x_handle", "northwind_hq"),
    "currency in lower case": Accepted(
        "accounts_currency_lower.csv", 1, "acc-good", "currency", "EUR"),
}

WHOLE_FILE = {
    "empty file (0 bytes)": WholeFile(("usage", "usage_empty.csv"), "the file is empty"),
    "missing required column": WholeFile(
        ("usage", "usage_missing_column.csv"), "missing required column occurred_at"),
    "duplicate header column": WholeFile(
        ("usage", "usage_duplicate_column.csv"), "names column 'feature' twice"),
    "empty header column": WholeFile(
        ("usage", "usage_empty_column_name.csv"), "the header has an empty column name"),
    "header not UTF-8": WholeFile(
        ("usage", "usage_header_latin1.csv"), "the header row is not valid UTF-8"),
    "unknown file extension": WholeFile(
        ("usage", "usage_unknown_extension.txt"), "unknown file type '.txt'"),
    "truncated gzip": WholeFile(("usage", "usage_corrupt.csv.gz"), "cannot read"),
    "quote never closed": WholeFile(
        ("usage", "usage_unterminated_quote.csv"), "a quoted field in row 1 is never closed"),
    "quote never closed in the header": WholeFile(
        ("usage", "usage_header_unterminated_quote.csv"),
        "a quoted field in the header row is never closed"),
    "nonexistent path": WholeFile(("usage", "usage_no_such_file.csv"), "no such file"),
    "unknown source name": WholeFile(
        ("telemetry", "usage_bad_enum.csv"), "unknown source 'telemetry'", logged=False),
    "source not told by the file name": WholeFile(
        ("auto", "telemetry.csv"), "cannot tell the source from the file name", logged=False),
}


def _clearable(case: Quarantined) -> bool:
    src = SOURCES[source_for_path(CORPUS / case.file)]
    # a value of the wrong JSON shape is refused by the reader, with its row
    return (case.field is not None and case.code != "not_scalar"
            and clearable(src.field(case.field)))


#: bad required values, keys and account references stop the row
ROW_FATAL = {k: c for k, c in QUARANTINED.items() if not _clearable(c)}
#: bad optional values are cleared and the row lands
CLEARED = {k: c for k, c in QUARANTINED.items() if _clearable(c)}


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _land_base(engine: Engine) -> None:
    assert land_file(engine, CORPUS / "accounts_base.csv", now=NOW).inserted == 1


def test_corpus_is_large_enough() -> None:
    kinds = len(QUARANTINED) + len(ACCEPTED) + len(WHOLE_FILE)
    assert kinds >= 25
    files = {c.file for c in [*QUARANTINED.values(), *ACCEPTED.values()]}
    files |= {c.args[1] for c in WHOLE_FILE.values()}
    missing = {f for f in files if not (CORPUS / f).exists()} - {"usage_no_such_file.csv"}
    assert missing == set()


@pytest.mark.parametrize("case", ROW_FATAL.values(), ids=ROW_FATAL.keys())
def test_bad_row_is_quarantined_and_good_row_lands(engine: Engine, case: Quarantined) -> None:
    _land_base(engine)
    path = CORPUS / case.file
    table = ENTITY_TABLES[source_for_path(path)]
    key = table.primary_key.columns.values()[0]
    before = _count(engine, table)

    result = land_file(engine, path, now=NOW)

    assert (result.read, result.inserted, result.updated, result.unchanged,
            result.quarantined) == (2, 1, 0, 0, 1)
    with engine.connect() as conn:
        keys = conn.execute(select(key).where(key.like("%good"))).scalars().all()
        q = conn.execute(select(QuarantineRow)).mappings().one()
    assert _count(engine, table) == before + 1
    assert len(keys) == 1
    assert (q["file"], q["row_number"], q["field"], q["code"], q["status"]) == (
        case.file, 2, case.field, case.code, "open")
    assert case.reason in q["reason"]
    assert "bad" in q["raw"] and "good" not in q["raw"]
    assert q["kind"] == "row"
    assert q["run_id"] == result.run_id
    assert sum(result.reasons.values()) == 1


def test_daily_errors_above_the_days_events_are_quarantined(engine: Engine) -> None:
    """A part larger than its whole (`Source.at_most`): the daily feed's row whose errors
    exceed its events is quarantined (clearing the errors would land "no errors", a fact the
    file did not state); the good row lands, and only it reaches the rollups."""
    _land_base(engine)
    path = CORPUS / "usage_daily_errors_above_events.csv"
    assert source_for_path(path) == "usage_daily"
    result = land_file(engine, path, now=NOW)
    assert (result.read, result.inserted, result.quarantined) == (2, 1, 1)
    with engine.connect() as conn:
        q = conn.execute(select(QuarantineRow)).mappings().one()
        feed = conn.execute(select(UsageDailyFeed.feature, UsageDailyFeed.errors)).all()
        rolled = conn.execute(select(func.sum(UsageDaily.events), func.sum(UsageDaily.errors))
                              ).one()
    assert (q["row_number"], q["field"], q["code"]) == (2, "errors", "exceeds_whole")
    assert "errors is more than events (9 > 4)" in q["reason"] and "exports" in q["raw"]
    assert [(f, float(e)) for f, e in feed] == [("reports", 3.0)]
    assert (float(rolled[0]), float(rolled[1])) == (12.0, 3.0)


@pytest.mark.parametrize("case", CLEARED.values(), ids=CLEARED.keys())
def test_bad_optional_value_is_cleared_and_the_row_lands(engine: Engine, case: Quarantined) -> None:
    """A bad optional value does not stop its row: the row lands without it, and the value
    and the reason are kept as a `field_cleared` entry pointing at the landed row."""
    _land_base(engine)
    path = CORPUS / case.file
    src = SOURCES[source_for_path(path)]
    table = ENTITY_TABLES[src.name]
    key = table.primary_key.columns.values()[0]

    result = land_file(engine, path, now=NOW)

    assert (result.read, result.inserted, result.updated, result.unchanged,
            result.quarantined, result.fields_cleared) == (2, 2, 0, 0, 0, 1)
    with engine.connect() as conn:
        bad_key, stored = conn.execute(
            select(key, table.c[case.field]).where(key.like("%bad"))).one()
        q = conn.execute(select(QuarantineRow)).mappings().one()
    expected = src.field(case.field).default
    assert stored in ((None, "") if expected is None else (expected, str(expected)))
    assert (q["kind"], q["file"], q["row_number"], q["field"], q["code"], q["status"],
            q["row_key"]) == ("field_cleared", case.file, 2, case.field, case.code, "open",
                              bad_key)
    assert case.reason in q["reason"]
    assert q["value"] and q["value"] in q["raw"]
    rows = list_rows(engine)
    assert [(r["kind"], r["row_key"], r["field"]) for r in rows] == [
        ("field_cleared", bad_key, case.field)]


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_odd_but_valid_file_lands_whole(engine: Engine, case: Accepted) -> None:
    _land_base(engine)
    path = CORPUS / case.file
    table = ENTITY_TABLES[source_for_path(path)]
    before = _count(engine, table)

    result = land_file(engine, path, now=NOW)

    assert (result.read, result.quarantined) == (case.read, 0)
    assert result.inserted + result.updated + result.unchanged == case.read
    assert _count(engine, table) - before == result.inserted
    assert _count(engine, QuarantineRow) == 0
    if case.warning:
        assert any(case.warning in w for w in result.warnings), result.warnings
    else:
        assert result.warnings == []
    if case.key is not None:
        key = table.primary_key.columns.values()[0]
        with engine.connect() as conn:
            stored = conn.execute(
                select(table.c[case.column]).where(key == case.key)).scalar_one()
        assert stored == case.expected


@pytest.mark.parametrize("case", WHOLE_FILE.values(), ids=WHOLE_FILE.keys())
def test_unreadable_file_fails_whole(
    engine: Engine, case: WholeFile, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The `pulse` console script's entry point, in this process to keep the corpus fast;
    # tests/test_cli.py runs the installed executable.
    monkeypatch.chdir(CORPUS)  # relative paths: short messages
    monkeypatch.setattr(sys, "argv", ["pulse", "ingest", *case.args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()

    assert exit_.value.code == 1, err
    assert out == ""
    message = " ".join(err.split())  # undo rich's line wrapping
    assert message.startswith("error: ")
    assert case.message in message
    assert "Traceback" not in err
    for table in [*ENTITY_TABLES.values(), QuarantineRow.__table__]:
        assert _count(engine, table) == 0, table.name
    with engine.connect() as conn:
        runs = conn.execute(select(IngestRun.file, IngestRun.status, IngestRun.error)).all()
    if case.logged:
        assert [(f, s) for f, s, _ in runs] == [(Path(case.args[1]).name, "failed")]
        assert case.message in runs[0].error
    else:
        assert runs == []


def test_quarantined_raw_keeps_the_row_as_read(engine: Engine) -> None:
    """The raw text of a quarantined CSV row maps each header to the value read."""
    _land_base(engine)
    land_file(engine, CORPUS / "usage_bad_enum.csv", now=NOW)
    with engine.connect() as conn:
        raw = conn.execute(select(QuarantineRow.raw)).scalar_one()
    assert json.loads(raw) == {
        "event_id": "ev-bad", "account_id": "acc-1", "occurred_at": "2026-05-20T10:00:00Z",
        "feature": "report_export", "outcome": "fail",
    }
