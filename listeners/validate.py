"""Vectorised validation of rows against the data contract.

`validate` takes a frame of strings (None for empty) and returns the typed, normalised values
of the rows that pass, plus one error per failing row: the first field, in contract order,
that breaks a rule, with a reason a person can act on. Each rule runs over a whole column at
once (pandas), never row by row.
"""
from __future__ import annotations

import dataclasses
import json
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from pulse.listeners.contract import Field, Source
from pulse.listeners.iso4217 import CURRENCIES
from pulse.sql.limits import MONEY_PRECISION, MONEY_SCALE

#: Characters no id may hold: control characters (Unicode category Cc), zero-width and
#: bidirectional formatting characters; white space is refused by the patterns themselves.
_ID_BAD = (
    r"\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u2069\ufeff"
)
ID_RE = rf"[^\s\n{_ID_BAD}]{{1,64}}"
DECIMAL_RE = r"[+-]?(?:\d+(?:\.\d{0,4})?|\.\d{1,4})"
NUMBER_RE = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
INT_RE = r"[+-]?\d+(?:\.0*)?"
DATE_RE = r"\d{4}-\d{2}-\d{2}"
#: A date exported as a timestamp at midnight UTC (as warehouses write a DATE cast to a
#: timestamp): read as its date. Any other time of day, or another offset, is refused.
DATE_MIDNIGHT_RE = DATE_RE + r"[Tt ]00:00(?::00(?:\.0+)?)?(?:[Zz]|[+-]00(?::?00)?)?"
EMAIL_RE = (
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
HANDLE_RE = r"[A-Za-z0-9_]{1,15}"
URL_RE = r"https?://[^\s/$.?#][^\s]*"
BOOL_MAP = {
    "true": True, "t": True, "yes": True, "y": True, "1": True,
    "false": False, "f": False, "no": False, "n": False, "0": False,
}
EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")
#: What the warehouse columns can hold (sql/schema.py): INTEGER and NUMERIC(18, 4).
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
DECIMAL_DIGITS = MONEY_PRECISION - MONEY_SCALE
DECIMAL_FITS_RE = rf"[+-]?0*\d{{0,{DECIMAL_DIGITS}}}(?:\.\d*)?"

#: What each error code means, for the reason breakdown.
CODES = {
    "missing_required": "required value is missing",
    "bad_id": "not a valid id",
    "too_long": "value is too long",
    "bad_decimal": "not a decimal number",
    "bad_number": "not a number",
    "bad_int": "not a whole number",
    "out_of_range": "value out of range",
    "bad_bool": "not true or false",
    "bad_timestamp": "not an ISO 8601 timestamp",
    "implausible_timestamp": "timestamp before 1990",
    "future_timestamp": "timestamp in the future",
    "out_of_order": "timestamps out of order",
    "exceeds_whole": "a part larger than its whole",
    "bad_date": "not a YYYY-MM-DD date",
    "bad_enum": "not one of the allowed values",
    "bad_email": "not a valid email address",
    "bad_timezone": "not an IANA time zone",
    "bad_currency": "not an ISO 4217 currency code",
    "bad_handle": "not a valid handle",
    "bad_url": "not an http(s) URL",
    "unknown_account": "account not known",
    "wrong_field_count": "wrong number of CSV fields",
    "bad_json": "line is not valid JSON",
    "not_an_object": "line is not a JSON object",
    "not_scalar": "value has the wrong JSON shape",
    "bad_encoding": "not valid UTF-8",
}


@lru_cache(maxsize=1)
def timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@dataclass
class Validated:
    """Typed values of the rows that passed, and one error per row that did not."""

    clean: pd.DataFrame
    errors: pd.DataFrame  # index: row; columns field, code, reason
    #: optional values that broke a rule and were cleared (the row lands without them);
    #: index: row (a row may appear once per cleared field); columns field, code, reason, value
    cleared: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=["field", "code", "reason", "value"]))


def _short(value: object, limit: int = 40) -> str:
    s = str(value)
    return repr(s if len(s) <= limit else s[: limit - 1] + "…")


def _quote_choices(choices: tuple[str, ...]) -> str:
    quoted = [f'"{c}"' for c in choices]
    if len(quoted) <= 2:
        return " or ".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


class _Errors:
    """Collects the first error per row (numpy masks: no per-value Python work)."""

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.bad = np.zeros(len(index), dtype=bool)
        self.field = np.full(len(index), None, dtype=object)
        self.code = np.full(len(index), None, dtype=object)
        self.reason = np.full(len(index), None, dtype=object)
        self.value = np.full(len(index), None, dtype=object)

    def add(
        self, mask: pd.Series | np.ndarray, field: str, code: str,
        reason: Callable[[pd.Series], pd.Series] | str, values: pd.Series | None = None,
    ) -> None:
        if isinstance(mask, pd.Series):
            mask = mask.to_numpy(dtype=bool, na_value=False)
        new = mask & ~self.bad
        if not new.any():
            return
        self.bad |= new
        self.field[new] = field
        self.code[new] = code
        if values is not None:
            self.value[new] = values.to_numpy(dtype=object)[new]
        if isinstance(reason, str):
            self.reason[new] = reason
        else:
            assert values is not None
            self.reason[new] = reason(values[new]).to_numpy(dtype=object)

    def frame(self) -> pd.DataFrame:
        bad = self.bad
        return pd.DataFrame(
            {"field": self.field[bad], "code": self.code[bad], "reason": self.reason[bad],
             "value": self.value[bad]},
            index=self.index[bad],
        )


_STR = np.dtypes.StringDType()
_ASCII_SPACE = " \t\r\x0b\x0c\x1c\x1d\x1e\x1f"
#: a value starting or ending with white space (an empty value, two newlines in a row, is not)
_PADDED = re.compile(r"(?:^|\n)[^\S\n]|[^\S\n](?:\n|$)")
#: one scan of a newline-joined id column: any space, control or invisible character
_ID_SCAN = re.compile(rf"[^\S\n]|[{_ID_BAD}]")
#: the ASCII bytes an id may hold, and the newline that joins a column
_ID_OK_ASCII = bytes([10, *range(0x21, 0x7F)])
#: ASCII white space other than the newline, as a lookup table over byte values
_SPACE_BYTE = np.zeros(256, dtype=bool)
_SPACE_BYTE[np.frombuffer(_ASCII_SPACE.encode("ascii"), dtype=np.uint8)] = True


def _id_scan(joined: str) -> bool:
    """Whether a newline-joined id column holds a space, control or invisible character
    anywhere: for ASCII text one C pass deleting every allowed byte (nothing may remain)."""
    if joined.isascii():
        return bool(joined.encode("ascii").translate(None, _ID_OK_ASCII))
    return _ID_SCAN.search(joined) is not None


def _lengths(joined: str, values: list[str]) -> np.ndarray:
    """The length of each value, from the newline positions of the joined column (ASCII)."""
    if joined.isascii():
        ends = np.flatnonzero(np.frombuffer(joined.encode("ascii"), dtype=np.uint8) == 10)
        if len(ends) == len(values) - 1:  # no value holds a newline of its own
            bounds = np.concatenate(([-1], ends, [len(joined)]))
            return np.diff(bounds) - 1
    return np.fromiter(map(len, values), dtype=np.int64, count=len(values))


def _padded(joined: str) -> bool:
    """Whether any value of a newline-joined column starts or ends with white space."""
    if not joined.isascii():
        return _PADDED.search(joined) is not None
    if not any(ch in joined for ch in _ASCII_SPACE):
        return False  # memchr scans: no white space anywhere, so none at the edges
    # look only at each value's first and last byte (empty values have none)
    b = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    nl = np.flatnonzero(b == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(b)])) - 1
    some = starts <= ends
    return bool(_SPACE_BYTE[b[starts[some]]].any() or _SPACE_BYTE[b[ends[some]]].any())


def _normalise(col: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Trimmed values (None when missing or empty), whether present, lengths, NUL flags.

    The common case (every value present, none padded, none empty, no NUL) is recognised with
    a few scans of the whole column joined into one string, which run in C; only a column
    that fails them is trimmed value by value (on numpy's native string arrays).
    """
    vals = col.to_numpy(dtype=object)
    values = vals.tolist()
    n = len(values)
    try:
        joined = "\n".join(values)  # raises TypeError when a value is missing (None/NaN)
    except TypeError:
        joined = None
    # a value holding a newline (more newlines than separators) takes the slow path
    if (n and joined is not None and "\x00" not in joined and joined.count("\n") == n - 1
            and not _padded(joined)):
        lens = _lengths(joined, values)
        present = lens > 0
        if present.all():
            return (pd.Series(vals, index=col.index, dtype=object), present, lens,
                    np.zeros(n, dtype=bool))
        out = vals.copy()  # empty values are missing; nothing else to trim
        out[~present] = None
        return pd.Series(out, index=col.index, dtype=object), present, lens, \
            np.zeros(n, dtype=bool)
    present = ~pd.isna(vals)
    some = vals[present]
    raw = np.array(some, dtype=_STR)
    trimmed = np.strings.strip(raw)
    lengths = np.strings.str_len(trimmed)
    changed = lengths != np.strings.str_len(raw)
    empty = lengths == 0
    some = some.copy()
    some[changed] = trimmed[changed].astype(object)
    some[empty] = None
    out = np.full(n, None, dtype=object)
    out[present] = some
    lens = np.zeros(n, dtype=np.int64)
    lens[present] = lengths
    present[present] = ~empty
    # numpy treats "\x00" as an empty needle: test the Python strings instead
    if joined is not None and "\x00" not in joined:
        has_nul = np.zeros(n, dtype=bool)
    else:
        has_nul = np.array([v is not None and "\x00" in v for v in out.tolist()], dtype=bool)
    return pd.Series(out, index=col.index, dtype=object), present, lens, has_nul


def _fm(s: pd.Series, pattern: str) -> pd.Series:
    """Whether each value fully matches `pattern` (False for missing values)."""
    return s.str.fullmatch(pattern).eq(True)


def _not(expected: str) -> Callable[[pd.Series], pd.Series]:
    return lambda v: f"expected {expected} (not " + v.map(_short) + ")"


def clearable(f: Field) -> bool:
    """Whether a bad value of `f` is cleared (the row lands without it) rather than fatal:
    optional fields, except references to an account (such a row waits for the account) and
    fields whose empty value means a default that states a fact (`opted_out` false, `outcome`
    ok, `status` investigating, `currency` USD, `amount` 0, ...): clearing those would land a
    row that says something the file did not, so such a row is quarantined instead."""
    if f.required or f.references_account:
        return False
    return f.default is None or f.default == ()


def _check_id(f: Field, raw: pd.Series, s: pd.Series, present: pd.Series, lens: np.ndarray,
              errs: _Errors) -> pd.Series:
    """Ids are clean: no surrounding space, control, zero-width or bidi characters; NFC."""
    errs.add(present & raw.ne(s), f.name, "bad_id",
             _not("an id without leading or trailing spaces"), raw)
    vals = s[present].tolist()
    joined = "\n".join(vals)
    if not joined.isascii():
        s = s.copy()
        s[present] = s[present].str.normalize("NFC")
        vals = s[present].tolist()
        joined = "\n".join(vals)
        lens = np.zeros(len(s), dtype=np.int64)
        lens[present.to_numpy()] = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
    # one scan of the whole column; the per-value pattern runs only when it finds something
    if (joined.count("\n") != max(len(vals) - 1, 0) or (lens > 64).any()
            or _id_scan(joined)):
        errs.add(present & ~_fm(s, ID_RE), f.name, "bad_id",
                 _not("an id of 1 to 64 characters without spaces, control or invisible "
                      "characters"), s)
    return s


def _cleared_frame(errs: _Errors, values: pd.Series) -> pd.DataFrame:
    frame = errs.frame()
    frame["value"] = values.to_numpy(dtype=object)[errs.bad]
    return frame


def validate(
    source: Source,
    values: pd.DataFrame,
    *,
    known_accounts: Callable[[pd.Series], pd.Series] | None = None,
    now: datetime | None = None,
    max_future: timedelta = timedelta(hours=24),
) -> Validated:
    """Check every row of `values` (strings or None) against `source`'s contract.

    A row with a bad required field, key or account reference is an error; a bad optional
    value is cleared (listed in `cleared`) and the row passes as if the value were empty.
    """
    now = now or datetime.now(UTC)
    latest = pd.Timestamp(now + max_future)
    errs = _Errors(values.index)
    clean: dict[str, pd.Series] = {}
    cleared: list[pd.DataFrame] = []
    for f in source.fields:
        s, present_, lens, has_nul = _normalise(values[f.name])
        present = pd.Series(present_, index=s.index)
        ferrs = _Errors(values.index) if clearable(f) else errs
        if f.required:
            errs.add(~present, f.name, "missing_required", "required value is missing")
        # PostgreSQL cannot store NUL in text: refuse it on every database alike
        ferrs.add(has_nul, f.name, "bad_encoding",
                  "the value contains a NUL character (\\x00), which cannot be stored")
        if f.kind == "id":
            s = _check_id(f, values[f.name], s, present, lens, ferrs)
        clean[f.name] = _check(f, s, present, ferrs, latest, lens)
        if ferrs is not errs and ferrs.bad.any():
            cleared.append(_cleared_frame(ferrs, s))
            keep = ~ferrs.bad
            # the row lands as if the value were empty: its default applies
            clean[f.name] = _check(f, s.where(keep, None), present & keep,
                                   _Errors(values.index), latest, np.where(keep, lens, 0))
        if f.references_account and known_accounts is not None:
            ok = known_accounts(clean[f.name].where(present, ""))
            errs.add(
                present & ~ok, f.name, "unknown_account",
                lambda v: "no account " + v.map(_short) + " is known: land the account first",
                s,
            )
    for later, earlier in source.ordered:
        a, b = clean[later], clean[earlier]
        wrong = a.notna() & b.notna() & (a < b)
        later_field = source.field(later)
        oerrs = _Errors(values.index) if clearable(later_field) else errs

        def out_of_order(v: pd.Series, a_: str = later, b_: str = earlier) -> pd.Series:
            return f"{a_} is before {b_} (" + v.map(str) + ")"

        oerrs.add(
            wrong, later, "out_of_order", out_of_order,
            values[later],
        )
        if oerrs is not errs and oerrs.bad.any():
            cleared.append(_cleared_frame(oerrs, values[later]))
            clean[later] = clean[later].mask(wrong)
    for part, whole in source.at_most:
        # never clearable: an empty part would land its default (no errors), a fact the
        # file did not state
        a, b = clean[part], clean[whole]

        def exceeds(v: pd.Series, p_: str = part, w_: str = whole,
                    totals: pd.Series = values[whole]) -> pd.Series:
            return (f"{p_} is more than {w_} (" + v.map(str) + " > "
                    + totals.loc[v.index].map(str) + ")")

        errs.add(a.notna() & b.notna() & (a > b), part, "exceeds_whole", exceeds, values[part])
    errors = errs.frame()
    out = pd.DataFrame(clean, index=values.index)
    result = Validated(clean=out.loc[~errs.bad], errors=errors)
    if cleared:
        frame = pd.concat(cleared)
        result.cleared = frame[~frame.index.isin(errors.index)]
    return result


def _check(f: Field, s: pd.Series, present: pd.Series, errs: _Errors, latest: pd.Timestamp,
           lens: np.ndarray) -> pd.Series:
    name = f.name
    if f.kind in ("id", "text"):  # ids are checked by _check_id
        if f.max_len:
            errs.add(lens > f.max_len, name, "too_long",
                     lambda v: f"expected at most {f.max_len} characters (found "
                     + v.str.len().map(str) + ")", s)
        return s.where(present, f.default)

    if f.kind in ("decimal", "number", "int"):
        pattern, code, what = {
            "decimal": (DECIMAL_RE, "bad_decimal", "a decimal number with at most 4 decimals"),
            "number": (NUMBER_RE, "bad_number", "a number"),
            "int": (INT_RE, "bad_int", "a whole number"),
        }[f.kind]
        if f.kind == "number":  # the numeric parser is the check: no per-value regex
            num = pd.to_numeric(s, errors="coerce")
            ok = num.notna() | ~present
        else:
            ok = _fm(s, pattern)
            num = pd.to_numeric(s.where(ok), errors="coerce")
        errs.add(present & ~ok, name, code, _not(what), s)
        errs.add(present & ok & ~np.isfinite(num), name, code, _not(what), s)
        fits = pd.Series(True, index=s.index)
        if f.kind == "decimal":
            fits = _fm(s, DECIMAL_FITS_RE)
            errs.add(present & ok & ~fits, name, "out_of_range",
                     _not(f"at most {DECIMAL_DIGITS} digits before the decimal point"), s)
        elif f.kind == "int":
            fits = num.between(INT_MIN, INT_MAX)
            errs.add(present & ok & ~fits, name, "out_of_range",
                     _not(f"a whole number from {INT_MIN} to {INT_MAX}"), s)
        if f.min is not None:
            errs.add(present & ok & (num < f.min), name, "out_of_range",
                     _not(f"a value >= {f.min:g}"), s)
        if f.max is not None:
            errs.add(present & ok & (num > f.max), name, "out_of_range",
                     _not(f"a value <= {f.max:g}"), s)
        if f.kind == "decimal":
            # keep the exact text; the database converts it to NUMERIC
            text = s.where(~ok, s.str.lstrip("+"))
            return text.where(present, None if f.default is None else str(f.default))
        if f.kind == "int":
            return num.where(present & fits).round().astype("Int64")
        return num.where(present, f.default if f.default is not None else np.nan)

    if f.kind == "bool":
        b = s.str.lower().map(BOOL_MAP)
        errs.add(present & b.isna(), name, "bad_bool", _not('"true" or "false"'), s)
        return b.where(present, f.default).astype("boolean")

    if f.kind == "timestamp":
        # pandas' ISO 8601 parser is strict about the form; a value it cannot read is refused
        ts = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
        # RFC 3339 allows a lower-case t and z; only the values that failed are read again
        failed = present & ts.isna()
        if failed.any():
            retry = s[failed]
            retry = retry[retry.str.contains("[tz]", regex=True).eq(True)]
            ts[retry.index] = pd.to_datetime(retry.str.upper(), format="ISO8601", utc=True,
                                             errors="coerce")
        errs.add(present & ts.isna(), name, "bad_timestamp",
                 _not("an ISO 8601 timestamp such as 2026-05-01T09:30:00Z"), s)
        errs.add(present & (ts < EARLIEST), name, "implausible_timestamp",
                 _not("a timestamp after 1990-01-01"), s)
        if f.event_time:
            errs.add(present & (ts > latest), name, "future_timestamp",
                     lambda v: "the time lies in the future (" + v.map(_short) + ")", s)
        return ts

    if f.kind == "date":
        ok = _fm(s, DATE_RE)
        midnight = present & ~ok
        if midnight.any():  # only the values that are not plain dates are read again
            midnight &= _fm(s, DATE_MIDNIGHT_RE)
            s = s.where(~midnight, s.str[:10])
            ok |= midnight
        d = pd.to_datetime(s.where(ok), format="%Y-%m-%d", errors="coerce")
        errs.add(present & d.isna(), name, "bad_date", _not("a date as YYYY-MM-DD"), s)
        return d.dt.date.where(d.notna(), None)

    if f.kind == "enum":
        low = s.copy()
        odd = present & ~s.isin(f.choices)  # lower-case only what is not already a choice
        if odd.any():
            low[odd] = s[odd].str.lower()
        errs.add(present & ~low.isin(f.choices), name, "bad_enum",
                 _not(_quote_choices(f.choices)), s)
        return low.where(present, f.default)

    if f.kind == "email":
        ok = _fm(s, EMAIL_RE) & (s.str.len() <= 254)
        errs.add(present & ~ok, name, "bad_email", _not("an email address"), s)
        return s

    if f.kind == "timezone":
        errs.add(present & ~s.isin(timezones()), name, "bad_timezone",
                 _not("an IANA time zone such as Europe/Paris"), s)
        return s.where(present, f.default)

    if f.kind == "currency":
        up = s.str.upper()
        errs.add(present & ~up.isin(CURRENCIES), name, "bad_currency",
                 _not("an ISO 4217 code such as USD"), s)
        return up.where(present, f.default)

    if f.kind == "handle":
        h = s.str.removeprefix("@")
        errs.add(present & ~_fm(h, HANDLE_RE), name, "bad_handle",
                 _not("a handle of 1 to 15 letters, digits or _"), s)
        return h.str.lower()

    if f.kind == "url":
        errs.add(present & ~_fm(s, URL_RE), name, "bad_url",
                 _not("an http(s) URL"), s)
        return s

    if f.kind == "list":
        def to_json(v: object) -> str:
            if v is None:
                return "[]"
            items = [p.strip() for p in str(v).split("|")]
            return json.dumps(list(dict.fromkeys(p for p in items if p)))

        return s.map(to_json, na_action=None)

    raise AssertionError(f"unhandled kind {f.kind}")
