"""Render the data contract as Markdown (docs/contract.md) from listeners/contract.py."""
from __future__ import annotations

from pulse.listeners.contract import LANDING_ORDER, SOURCES, Field
from pulse.listeners.validate import CODES

KIND_TEXT = {
    "id": "id (1-64 characters, no spaces)",
    "text": "text",
    "decimal": "decimal (at most 4 decimals, `.` as separator)",
    "number": "number",
    "int": "whole number",
    "bool": "bool (true/false, yes/no, 1/0)",
    "timestamp": "ISO 8601 timestamp (no offset = UTC)",
    "date": "date (YYYY-MM-DD; a timestamp at midnight UTC reads as its date)",
    "enum": "one of",
    "email": "email address",
    "timezone": "IANA time zone",
    "currency": "ISO 4217 code",
    "handle": "X handle (leading @ optional, stored lower-case)",
    "url": "http(s) URL",
    "list": "list (`|`-separated in CSV, an array in JSONL)",
}

HEADER = """# The data contract

<!-- Generated from listeners/contract.py by `python -m listeners.docs`; a test keeps it in sync. -->

Inputs arrive as CSV (UTF-8, a header row) or JSON Lines (one object per line), optionally
gzip-compressed (`.csv.gz`, `.jsonl.gz`). A file's source is named on the command line
(`pulse ingest usage FILE`) or told from its name (`usage.csv`, `usage_2026-11-01.jsonl`) when
dropped into the landing folder. Header names are matched case-insensitively; columns outside
the contract are ignored with a warning; optional columns may be left out.

Values: surrounding spaces are trimmed and an empty value means "missing". Timestamps are ISO
8601 (RFC 3339's lower-case `t` and `z` too); one without an offset is taken as UTC, and all are
stored in UTC. Event times more than
`PULSE_MAX_FUTURE_SKEW_HOURS` (default 24) in the future, or before 1990, are refused.

Ids (keys and references) are clean: an id with a control character (Unicode category Cc:
newline, tab, NUL, ...), a zero-width or bidirectional formatting character, or a leading or
trailing space is refused (`bad_id`), never trimmed; ids are normalised to Unicode NFC, so
`cafe\u0301` and `café` are one key. JSON Lines are strict JSON: `NaN` and `Infinity` are
refused, and so is a line nested too deeply to parse (`bad_json`, that line only). A NUL
character is refused in every value (`bad_encoding`), on every database.

Every row is either landed or quarantined with the field and the reason
(`pulse quarantine list`); `read = inserted + updated + unchanged + quarantined`, always. A row
is quarantined for a bad key, a bad required value, an unknown account or a record that is
not a record (wrong number of CSV fields, not a JSON object, a value of the wrong JSON shape).
A bad **optional** value does not stop its row: the value is cleared, the row lands as if the
value were empty, and the original value and the reason are kept as a
`field_cleared` entry of the quarantine pointing at the landed row (`pulse quarantine list`
shows its kind, key, field and reason; `value` holds what was cleared). The ingest result counts
them as `fields_cleared` (those rows are counted as landed). When a later file lands the row
with that field, or `pulse quarantine retry` finds the kept value now passes, the value is
applied (only that field) and the entry is resolved (`relanded`). A `resolved_at` before its
start is cleared the same way. An optional field whose empty value means a default that states
a fact (`opted_out` false, `outcome` ok, `status` investigating, `currency` USD, `amount` 0,
`quantity` 1, `timezone` UTC) is not cleared: a bad value there quarantines the row, so no row
lands saying something its file did not.

A row whose key was seen before updates the stored row (a later ticket row updates the ticket);
landing the same file twice changes nothing. Rows that name an account not yet known are
quarantined with `unknown_account` and wait: they land by themselves as soon as the account
lands, from a later file, a corrected file or `pulse quarantine retry`
(`pulse quarantine retry --code unknown_account` does the same by hand). A file that cannot
be read as a whole (not found, empty, no header, a required column missing, a duplicate column,
a header with NUL bytes, as in UTF-16 without a BOM, an unknown source or file type) stops with
a one-line error and lands nothing; its run is logged `failed` with the reason. Every run ends
`ok` or `failed`. Each file lands in one transaction; two landings at once wait for each other
(SQLite: the write lock is taken at the start, `BEGIN IMMEDIATE`, with a busy timeout;
PostgreSQL: the count and merge of one source run one landing at a time), so each counts only
what it changed.

Files of any size stream: they are read, validated and loaded `PULSE_BATCH_ROWS` rows at a
time, and memory is set by that batch size (and on SQLite by `PULSE_SQLITE_CACHE_MIB`), not by
the file. The batches are not published one by one: all of them, with their quarantined rows
and cleared values, sit in the file's one transaction, which commits at the end or not at all,
so no reader ever sees half a file. On SQLite, a big file of new events may be read and
validated by a second process while the landing inserts the batches before it (the ingest
worker); it changes nothing of the above. A key repeated anywhere in the file, in one batch or
across batches, is replayed in file order, and a key's last row decides whether a cleared
value stays cleared.

Sources land in this order when several arrive together: {order}.
"""


def _rule(f: Field) -> str:
    parts = [KIND_TEXT[f.kind]]
    if f.kind == "enum":
        parts = ["one of " + ", ".join(f"`{c}`" for c in f.choices)]
    if f.min is not None:
        parts.append(f">= {f.min:g}")
    if f.max is not None:
        parts.append(f"<= {f.max:g}")
    if f.max_len:
        parts.append(f"at most {f.max_len:,} characters")
    if f.references_account:
        parts.append("must name a known account")
    if f.event_time:
        parts.append("not in the future")
    return "; ".join(parts)


def _default(f: Field) -> str:
    if f.default is None:
        return ""
    if f.kind == "list":
        return "empty list"
    if isinstance(f.default, bool):
        return "false" if not f.default else "true"
    return f"`{f.default}`"


def render() -> str:
    lines = [HEADER.format(order=", ".join(f"`{s}`" for s in LANDING_ORDER))]
    for name in LANDING_ORDER:
        src = SOURCES[name]
        example = f"contract/{name}.{'jsonl' if name in ('mentions', 'incidents') else 'csv'}"
        lines.append(f"## `{name}`\n")
        lines.append(f"{src.doc} Key: `{src.key}`. Table: `{src.table}`. "
                     f"Example: [{example}]({example}).\n")
        lines.append("| column | required | type and rules | default |")
        lines.append("|---|---|---|---|")
        for f in src.fields:
            if f.derived:  # Pulse's own key: a file's value is ignored
                lines.append(f"| `{f.name}` | | derived by Pulse from "
                             f"{', '.join(f'`{k}`' for k in src.key_of)} (a file's value is "
                             "ignored) | |")
                continue
            lines.append(f"| `{f.name}` | {'yes' if f.required else ''} | {_rule(f)} | "
                         f"{_default(f)} |")
        for later, earlier in src.ordered:
            lines.append(f"\n`{later}` must not be before `{earlier}`.")
        for part, whole in src.at_most:
            lines.append(f"\n`{part}` must not be more than `{whole}`.")
        lines.append("")
    lines.append("## Quarantine reason codes\n")
    lines.append("| code | meaning |")
    lines.append("|---|---|")
    for code, meaning in CODES.items():
        lines.append(f"| `{code}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).resolve().parent.parent / "docs" / "contract.md"
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
