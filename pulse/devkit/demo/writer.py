"""Writing the sources: broken copies of real rows (malformed rows) and the CSV / JSONL files."""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pulse.devkit.demo.world import HEADERS, _pick

#: Values a malformed row may carry.
_BAD_TIMESTAMPS: tuple[str, ...] = (
    "yesterday", "2026-13-45T99:00", "not a timestamp", "2026-02-30T10:00:00Z",
    "31/12/2026 25:61", "TBD",
)
_BAD_DATES: tuple[str, ...] = ("2026-02-30", "31/12/2026", "next year", "2026-13-01", "TBD")
_BAD_DECIMALS: tuple[str, ...] = ("abc", "N/A", "12.5.1", "--", "1O0")
_BAD_EMAILS: tuple[str, ...] = (
    "bob@", "no-at-sign", "@acme.example", "jane doe@acme.example", "anna@@acme.example",
)
_BAD_TIMEZONES: tuple[str, ...] = ("Mars/Olympus", "Europe/Atlantis", "GMT+25",
                                   "Pacific/Nowhere")


_CsvBreaker = Callable[[list[str], np.random.Generator], list[str]]
_JsonBreaker = Callable[[dict[str, Any], np.random.Generator], str]


class _Breakers:
    """Ways to break a row of each source, all of them invalid under the data contract.

    Each breaks a key, a required field or the record itself, so the row is quarantined: a
    bad optional value would only be cleared, and the broken copy would land.
    """

    def __init__(self, n_accounts: int) -> None:
        self.width = max(5, len(str(n_accounts)))
        self.unknown_base = 2 * n_accounts + 1000

    def unknown_account(self, rng: np.random.Generator) -> str:
        return f"ACC-{self.unknown_base + int(rng.integers(0, 9000)):0{self.width}d}"

    def csv(self, source: str) -> list[_CsvBreaker]:
        cols = {c: j for j, c in enumerate(HEADERS[source])}

        def blank(col: str) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                row[cols[col]] = ""
                return row
            return f

        def setv(col: str, values: Sequence[str]) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                row[cols[col]] = str(_pick(rng, values))
                return row
            return f

        def bad_decimal(col: str) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                v = row[cols[col]] or "12.50"
                if "." in v and rng.random() < 0.5:
                    row[cols[col]] = v.replace(".", ",")  # a European decimal comma
                elif rng.random() < 0.5:
                    row[cols[col]] = f"{v.split('.')[0]},5"
                else:
                    row[cols[col]] = str(_pick(rng, _BAD_DECIMALS))
                return row
            return f

        def negative(col: str) -> _CsvBreaker:
            def f(row: list[str], rng: np.random.Generator) -> list[str]:
                v = row[cols[col]].lstrip("-")
                row[cols[col]] = "-" + (v if v not in ("", "0", "0.00") else "12.00")
                return row
            return f

        def unknown_account(row: list[str], rng: np.random.Generator) -> list[str]:
            row[cols["account_id"]] = self.unknown_account(rng)
            return row

        def extra_field(row: list[str], rng: np.random.Generator) -> list[str]:
            # An unquoted comma: "Acme, Inc" or "1,200" spills into the next column.
            texty = [j for j, v in enumerate(row) if " " in v and "\n" not in v]
            if texty and rng.random() < 0.7:
                j = int(_pick(rng, texty))
                head, tail = row[j].split(" ", 1)
                return row[:j] + [head.rstrip(","), tail] + row[j + 1:]
            j = int(rng.integers(1, len(row) + 1))
            return row[:j] + [""] + row[j:]

        def missing_field(row: list[str], rng: np.random.Generator) -> list[str]:
            j = int(rng.integers(1, len(row)))
            return row[:j] + row[j + 1:]

        common = [extra_field, missing_field]
        if source == "accounts":
            return common + [
                blank("name"), blank("mrr"), bad_decimal("mrr"), bad_decimal("mrr"),
                negative("mrr"), blank("account_id"),
            ]
        if source == "contacts":
            return common + [
                blank("email"), setv("email", _BAD_EMAILS), setv("email", _BAD_EMAILS),
                unknown_account, blank("contact_id"),
                blank("account_id"),
            ]
        if source == "usage":
            return common + [
                blank("event_id"), blank("account_id"), blank("occurred_at"), blank("feature"),
                setv("occurred_at", _BAD_TIMESTAMPS), unknown_account,
            ]
        if source == "purchases":
            return common + [
                blank("event_id"), blank("kind"),
                setv("kind", ("charge", "Renewal!!", "paid", "cancel")),
                setv("occurred_at", _BAD_TIMESTAMPS), unknown_account,
            ]
        if source == "tickets":
            return common + [
                setv("opened_at", _BAD_TIMESTAMPS),
                blank("ticket_id"), blank("opened_at"), blank("account_id"), unknown_account,
            ]
        raise ValueError(source)

    def jsonl(self, source: str) -> list[_JsonBreaker]:
        def dumps(rec: dict[str, Any]) -> str:
            return json.dumps(rec, ensure_ascii=False)

        def invalid_json(rec: dict[str, Any], rng: np.random.Generator) -> str:
            text = dumps(rec)
            how = int(rng.integers(4))
            if how == 0:
                return text[: max(1, len(text) // 2)]  # truncated write
            if how == 1:
                return repr(rec)  # Python repr, single quotes
            if how == 2:
                return text[:-1] + ",}"  # trailing comma
            return "{" + text[2:]  # a key lost its opening quote

        def as_array(rec: dict[str, Any], rng: np.random.Generator) -> str:
            return json.dumps(list(rec.values()), ensure_ascii=False)

        def drop(key: str) -> _JsonBreaker:
            def f(rec: dict[str, Any], rng: np.random.Generator) -> str:
                if rng.random() < 0.5:
                    rec.pop(key, None)
                else:
                    rec[key] = None if rng.random() < 0.5 else ""
                return dumps(rec)
            return f

        def setv(key: str, values: Sequence[Any]) -> _JsonBreaker:
            def f(rec: dict[str, Any], rng: np.random.Generator) -> str:
                rec[key] = _pick(rng, values)
                return dumps(rec)
            return f

        if source == "mentions":
            def unknown_account(rec: dict[str, Any], rng: np.random.Generator) -> str:
                rec["account_id"] = self.unknown_account(rng)
                return dumps(rec)
            return [invalid_json, invalid_json, as_array, drop("text"), drop("author_handle"),
                    drop("mention_id"), drop("created_at"), setv("created_at", _BAD_TIMESTAMPS),
                    unknown_account]
        if source == "incidents":
            return [invalid_json, as_array,
                    setv("components", ("api, auth", "dashboard")),
                    setv("regions", ("us-east", "everywhere")), drop("title"),
                    setv("started_at", _BAD_TIMESTAMPS)]
        raise ValueError(source)


def _n_malformed(rate: float, n: int) -> int:
    if rate <= 0 or n == 0:
        return 0
    return max(1, round(rate * n))


def _inject_csv(rng: np.random.Generator, rows: Sequence[Sequence[str]],
                breakers: list[_CsvBreaker], k: int,
                fresh_id: Callable[[int, list[str]], None]) -> list[Sequence[str]]:
    """Insert k broken copies of random rows, each right after its original."""
    if k == 0 or not rows:
        return list(rows)
    src = np.sort(rng.choice(len(rows), size=k, replace=k > len(rows)))
    out: list[Sequence[str]] = []
    start = 0
    for j, idx in enumerate(src.tolist()):
        out.extend(rows[start: idx + 1])  # empty when several copies follow one row
        start = idx + 1
        bad = list(rows[idx])
        fresh_id(j, bad)
        out.append(_pick(rng, breakers)(bad, rng))
    out.extend(rows[start:])
    return out


def _inject_jsonl(rng: np.random.Generator, records: list[dict[str, Any]],
                  breakers: list[_JsonBreaker], k: int,
                  fresh_id: Callable[[int, dict[str, Any]], None]) -> list[str]:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if k == 0 or not records:
        return lines
    src = np.sort(rng.choice(len(records), size=k, replace=k > len(records)))
    out: list[str] = []
    start = 0
    for j, idx in enumerate(src.tolist()):
        out.extend(lines[start: idx + 1])
        start = idx + 1
        bad = dict(records[idx])
        fresh_id(j, bad)
        out.append(_pick(rng, breakers)(bad, rng))
    out.extend(lines[start:])
    return out


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_lines(path: Path, lines: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")
