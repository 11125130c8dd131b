"""Readers: turn a CSV or JSON Lines file into chunks of rows of strings.

A reader never decides whether a value is valid (validate.py does); it only splits the file
into records, keeps each record's original text for quarantine, and rejects records that
cannot be records at all (wrong number of CSV fields, a line that is not a JSON object, bytes
that are not UTF-8). A file that cannot be read as a whole raises `InputFileError` before a
single row is yielded.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pulse.core.errors import InputFileError
from pulse.listeners.contract import Source

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Fed to the CSV parser after the last line. It comes back as a record of its own, unless a
#: quoted field is never closed: then the (non-strict) parser reads it into that field.
_EOF = "\x00pulse:end-of-file\x00"


@dataclass(frozen=True)
class Reject:
    """A record rejected before validation (it is not a well-formed record)."""

    row: int
    raw: str
    field: str | None
    code: str
    reason: str


@dataclass(frozen=True)
class _Original:
    """The columns of a CSV chunk as read, to rebuild one record's text on demand."""

    header: list[str]
    columns: list[np.ndarray]
    rows: np.ndarray

    def text(self, row: int) -> str:
        i = int(np.searchsorted(self.rows, row))
        return json.dumps({h: col[i] for h, col in zip(self.header, self.columns)},
                          ensure_ascii=False)


@dataclass
class Chunk:
    """Up to `batch` records: their values as strings (None when empty), indexed by row number."""

    values: pd.DataFrame
    raw: dict[int, str] | None = None  # row -> original text, when already known
    original: _Original | None = None  # values as read, to rebuild the raw text lazily
    rejects: list[Reject] = field(default_factory=list)
    #: the contract columns this chunk supplies; a column a file leaves out keeps its stored
    #: value on update (None: all columns)
    given: frozenset[str] | None = None

    def raw_text(self, row: int) -> str:
        if self.raw is not None and row in self.raw:
            return self.raw[row]
        assert self.original is not None
        return self.original.text(row)


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputFileError(
            f"{path}: unknown file type {''.join(path.suffixes) or '(none)'!r}: "
            "expected .csv or .jsonl (optionally .gz)"
        )
    return fmt


def _open_binary(path: Path) -> gzip.GzipFile | io.BufferedReader:
    try:
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise InputFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open: {exc.strerror or exc}") from None


def scan(path: Path) -> tuple[str, bool, int]:
    """One streaming pass: sha256 of the bytes, whether they are valid UTF-8, and their size."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    valid = True
    size = 0
    with _open_binary(path) as fh:
        try:
            while block := fh.read(1 << 20):
                size += len(block)
                digest.update(block)
                if valid:
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError:
                        valid = False
            if valid:
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputFileError(f"{path}: cannot read: {exc}") from None
    return digest.hexdigest(), valid, size


def _text(path: Path) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        _open_binary(path), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )


def _has_bad_bytes(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _clean_text(s: str) -> str:
    """Replace undecodable bytes (kept as surrogates) so the text can be stored."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def normalise_header(path: Path, header: list[str], source: Source) -> tuple[list[str], list[str]]:
    """Lower-cased, stripped column names; raises on duplicates or missing required columns.

    Returns (names, unknown columns).
    """
    names = [h.strip().lower() for h in header]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InputFileError(f"{path}: the header has an empty column name")
        if name in seen:
            raise InputFileError(f"{path}: the header names column {name!r} twice")
        seen.add(name)
    missing = [c for c in source.required if c not in seen]
    if missing:
        raise InputFileError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} for source {source.name!r} "
            f"(found: {', '.join(names) or 'nothing'})"
        )
    unknown = [n for n in names if n not in source.columns]
    return names, unknown


def _frame(columns: dict[str, Any], index: Any, source: Source) -> pd.DataFrame:
    df = pd.DataFrame(columns, index=pd.Index(index, name="row"), dtype=object)
    for col in source.columns:
        if col not in df.columns:
            df[col] = None
    return df[source.columns]


class CsvReader:
    def __init__(self, path: Path, source: Source, *, batch: int, utf8_valid: bool) -> None:
        self.path, self.source, self.batch, self.utf8_valid = path, source, batch, utf8_valid
        self._fh = _text(path)
        self._reader = csv.reader(chain(self._fh, [_EOF]), strict=False)
        try:
            header = next(self._reader)
        except csv.Error as exc:
            self._fh.close()
            raise InputFileError(f"{path}: cannot parse the header row: {exc}") from None
        if header == [_EOF]:
            self._fh.close()
            raise InputFileError(f"{path}: the file is empty: expected a header row")
        if header and header[-1].endswith(_EOF):
            self._fh.close()
            raise InputFileError(f"{path}: a quoted field in the header row is never closed")
        if not utf8_valid and any(_has_bad_bytes(h) for h in header):
            self._fh.close()
            raise InputFileError(f"{path}: the header row is not valid UTF-8")
        if any("\x00" in h for h in header):
            self._fh.close()
            raise InputFileError(
                f"{path}: the header row holds NUL bytes: the file looks like UTF-16 or "
                "binary; expected UTF-8 text"
            )
        self.header, self.unknown = normalise_header(path, header, source)
        self.wanted = [(i, n) for i, n in enumerate(self.header) if n in source.columns]

    def close(self) -> None:
        """Release the file without reading its rows."""
        self._fh.close()

    def __iter__(self) -> Iterator[Chunk]:
        ncols = len(self.header)
        row_no = 0
        try:
            while True:
                try:
                    records = list(filter(None, islice(self._reader, self.batch)))
                except csv.Error as exc:
                    raise InputFileError(
                        f"{self.path}: cannot parse CSV near line {self._reader.line_num}: {exc}"
                    ) from None
                if records and records[-1][-1].endswith(_EOF):  # the file's last record
                    if records[-1] != [_EOF]:
                        raise InputFileError(
                            f"{self.path}: a quoted field in row {row_no + len(records)} is never "
                            "closed: the file is cut short or a quote is missing"
                        )
                    records.pop()
                if not records:
                    return
                first = row_no + 1
                row_no += len(records)
                rows = np.arange(first, row_no + 1)
                lens = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
                suspect = np.flatnonzero(lens != ncols).tolist()
                if not self.utf8_valid:
                    suspect = sorted(set(suspect) | {
                        i for i, rec in enumerate(records) if any(map(_has_bad_bytes, rec))})
                rejects: list[Reject] = []
                if suspect:
                    for i in suspect:
                        rec = records[i]
                        if len(rec) != ncols:
                            rejects.append(Reject(
                                int(rows[i]), _clean_text(json.dumps(rec, ensure_ascii=False)),
                                None, "wrong_field_count",
                                f"expected {ncols} fields as in the header, found {len(rec)}",
                            ))
                        else:
                            bad = next(h for h, v in zip(self.header, rec) if _has_bad_bytes(v))
                            rejects.append(Reject(
                                int(rows[i]),
                                _clean_text(json.dumps(dict(zip(self.header, rec)),
                                                       ensure_ascii=False)),
                                bad, "bad_encoding", "the value is not valid UTF-8",
                            ))
                    keep = np.ones(len(records), dtype=bool)
                    keep[suspect] = False
                    records = [r for r, k in zip(records, keep) if k]
                    rows = rows[keep]
                grid = np.empty((len(records), ncols), dtype=object)
                if records:
                    grid[:] = records
                # the record lists are the only objects here the cyclic collector tracks:
                # drop them before the chunk is handed on (the landing collects per chunk)
                del records
                cols = [grid[:, i] for i in range(ncols)]
                values = _frame({n: cols[i] for i, n in self.wanted}, rows, self.source)
                yield Chunk(values=values, rejects=rejects,
                            original=_Original(self.header, cols, rows),
                            given=frozenset(n for _, n in self.wanted))
        finally:
            self._fh.close()


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    raise TypeError(type(value).__name__)


def records_frame(
    records: list[tuple[int, dict[str, Any]]], source: Source, *, strict_lists: bool = False
) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Rows from JSON objects: scalars become strings, lists of list fields are `|`-joined.

    With `strict_lists` (JSON Lines input) a list field must be a JSON array; without it (rows
    re-read from quarantine, which may come from CSV) a `|`-separated string is accepted too.

    Returns the frame and (row, field, reason) for records that hold a value of the wrong shape.
    """
    list_fields = {f.name for f in source.fields if f.kind == "list"}
    known = set(source.columns)
    out: dict[str, list[str | None]] = {c: [] for c in source.columns}
    index: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for row, obj in records:
        norm: dict[str, str | None] = {}
        problem = None
        for key, value in obj.items():
            k = str(key).strip().lower()
            if k not in known:
                continue
            if k in list_fields and strict_lists and isinstance(value, str):
                problem = (k, "expected a JSON array of strings, not a string")
                break
            if k in list_fields and isinstance(value, list):
                if not all(isinstance(v, str) for v in value):
                    problem = (k, "expected a list of strings")
                    break
                norm[k] = "|".join(value)
                continue
            try:
                norm[k] = _scalar(value)
            except TypeError as exc:
                problem = (k, f"expected a single value, not a JSON {_json_kind(value)} ({exc})")
                break
        if problem:
            bad.append((row, *problem))
            continue
        index.append(row)
        for c in source.columns:
            out[c].append(norm.get(c))
    return pd.DataFrame(out, index=pd.Index(index, name="row"), dtype=object), bad


def given_columns(records: list[tuple[int, dict[str, Any]]], source: Source) -> frozenset[str]:
    """The contract columns that at least one of these JSON objects names."""
    keys: set[str] = set()
    for _, obj in records:
        keys.update(str(k).strip().lower() for k in obj)
    return frozenset(keys & set(source.columns))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str) -> tuple[Any, str | None]:
    """(the value, None) or (None, why the line is not JSON).

    Strict JSON: NaN and Infinity are refused; a value nested too deeply for the parser (a
    nesting bomb) is refused as one bad line rather than stopping the whole file.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at column {exc.colno}"
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    except RecursionError:
        return None, "not valid JSON here: nested too deeply"


def _json_kind(value: Any) -> str:
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "value"


class JsonlReader:
    def __init__(self, path: Path, source: Source, *, batch: int, utf8_valid: bool) -> None:
        self.path, self.source, self.batch, self.utf8_valid = path, source, batch, utf8_valid
        self.unknown: list[str] = []
        self._seen_keys: set[str] = set()

    def close(self) -> None:
        """Nothing to release: the file is opened when the rows are read."""

    def __iter__(self) -> Iterator[Chunk]:
        with _text(self.path) as fh:
            line_no = 0
            while True:
                lines = list(islice(fh, self.batch))
                if not lines:
                    break
                raw: dict[int, str] = {}
                objs: list[tuple[int, dict[str, Any]]] = []
                rejects: list[Reject] = []
                for line in lines:
                    line_no += 1
                    text = line.rstrip("\r\n")
                    if not text.strip():
                        continue
                    if not self.utf8_valid and _has_bad_bytes(text):
                        rejects.append(Reject(line_no, _clean_text(text), None, "bad_encoding",
                                              "the line is not valid UTF-8"))
                        continue
                    raw[line_no] = text
                    obj, why = parse_json(text)
                    if why is not None:
                        rejects.append(Reject(line_no, text, None, "bad_json", why))
                        continue
                    if not isinstance(obj, dict):
                        rejects.append(Reject(line_no, text, None, "not_an_object",
                                              f"expected a JSON object, found a JSON "
                                              f"{_json_kind(obj)}"))
                        continue
                    self._seen_keys.update(str(k).strip().lower() for k in obj)
                    objs.append((line_no, obj))
                values, bad = records_frame(objs, self.source, strict_lists=True)
                for row, fld, reason in bad:
                    rejects.append(Reject(row, raw[row], fld, "not_scalar", reason))
                yield Chunk(values=values, raw=raw, rejects=rejects,
                            given=given_columns(objs, self.source))
        self.unknown = sorted(self._seen_keys - set(self.source.columns))


def open_reader(
    path: Path, source: Source, *, batch: int, utf8_valid: bool = True
) -> CsvReader | JsonlReader:
    fmt = file_format(path)
    if fmt == "csv":
        return CsvReader(path, source, batch=batch, utf8_valid=utf8_valid)
    return JsonlReader(path, source, batch=batch, utf8_valid=utf8_valid)
