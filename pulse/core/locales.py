"""Numbers, money and dates in the recipient's locale, through Babel (CLDR data).

Every email formats its figures here (the template filters of outreach/render.py call these
functions, and the flags' evidence writes its money here in the default locale), so "969.7 USD" beside "591.54 USD" cannot happen: money always carries its
currency's own decimals (two for USD and EUR, none for JPY, three for BHD) and the
recipient's symbols, grouping and order ("$969.70", "969,70 $", "969,70 $US").

The locale is the contact's (`contacts.locale`, BCP 47 like `de-DE` or POSIX like `de_DE`),
else `Settings.default_locale` (en_US): CSMs, teams and on-call have no contact row. A value
Babel does not know falls back to the default, never to an error: a bad locale must not stop
an email. Times are shown in the recipient's time zone (an IANA name; UTC when unknown).

The functions take any value a JSON context can hold (numbers, numeric text, ISO dates and
instants); a value that is not a number (or not a date) is shown as it is, so that a context
stored before its figures were raw still renders.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_skeleton, format_time
from babel.numbers import (
    UnknownCurrencyError,
    format_currency,
    get_currency_precision,
    parse_pattern,
)

FALLBACK = "en_US"
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_MONTH = re.compile(r"^\d{4}-\d{2}$")
_OFFSET = re.compile(r"^[+-]\d{4}$")


@lru_cache(maxsize=256)
def _parse(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def resolve(value: Any, default: str | None = None) -> Locale:
    """The Babel locale of `value` (`de-DE`, `de_DE`, `fr`), else of `default`, else en_US."""
    for tag in (value, default, FALLBACK):
        if isinstance(tag, Locale):
            return tag
        if isinstance(tag, str) and tag.strip():
            found = _parse(tag.strip())
            if found is not None:
                return found
    raise AssertionError("en_US is always known")  # pragma: no cover


def zone(name: Any) -> ZoneInfo:
    """The IANA zone `name`, else UTC."""
    try:
        return ZoneInfo(str(name)) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# --------------------------------------------------------------------------- numbers


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):  # numpy ints are not ints: they go through .item() below
        return Decimal(int(value))
    if isinstance(value, float):  # also numpy's float64 (whose repr names the type)
        return Decimal(str(float(value))) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            found = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
        return found if found.is_finite() else None
    if hasattr(value, "item"):  # numpy scalars
        return _decimal(value.item())
    return None


def _apply(kind: str, value: Decimal, locale: Locale, low: int, high: int) -> str:
    pattern = parse_pattern((locale.percent_formats if kind == "percent"
                             else locale.decimal_formats)[None].pattern)
    pattern.frac_prec = (low, high)
    return str(pattern.apply(value, locale))


def number(value: Any, locale: Locale, *, digits: int = 1) -> str:
    """A count or measure: whole numbers without decimals, others with up to `digits`
    (12345.67 -> "12,345.7", "12.345,7", "12 345,7")."""
    num = _decimal(value)
    if num is None:
        return "" if value is None else str(value)
    return _apply("decimal", num, locale, 0, digits)


def percent(value: Any, locale: Locale, *, digits: int = 1, exact: bool = False) -> str:
    """`value` percent (99.5 -> "99.5%", "99,5 %"): `digits` decimals, or up to `digits`
    without trailing zeros when `exact`."""
    num = _decimal(value)
    if num is None:
        return "" if value is None else str(value)
    return _apply("percent", num / 100, locale, 0 if exact else digits, digits)


def share(part: Any, whole: Any, locale: Locale) -> str:
    """`part` of `whole` as a percentage with one decimal; empty when it has no meaning."""
    p, w = _decimal(part), _decimal(whole)
    if p is None or w is None or w == 0:
        return ""
    return percent(100 * p / w, locale)


def money(value: Any, currency: Any, locale: Locale) -> str:
    """An amount in `currency` (ISO 4217) with that currency's decimals and the locale's
    symbol, order and separators; without a known currency, the number with two decimals
    and the code if any."""
    num = _decimal(value)
    if num is None:
        return "" if value is None else str(value)
    code = str(currency).strip().upper() if currency else ""
    if re.fullmatch(r"[A-Z]{3}", code):
        try:
            # currency_digits (the default) gives each currency its own decimals
            return format_currency(num, code, locale=locale)
        except UnknownCurrencyError:
            pass
    text = _apply("decimal", num, locale, 2, 2)
    return f"{text} {code}" if code else text


def currency_digits(currency: str) -> int:
    """How many decimals `currency` is written with (USD 2, JPY 0, BHD 3)."""
    return int(get_currency_precision(currency.strip().upper()))


# --------------------------------------------------------------------------- dates


def instant(value: Any) -> datetime | date | None:
    """A datetime (aware; naive means UTC) or a date from `value` (ISO text accepted);
    None when it is neither."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return instant(value.to_pydatetime())
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_DAY.match(text):
                return date.fromisoformat(text)
            found = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return found if found.tzinfo else found.replace(tzinfo=UTC)
    return None


def _zone_label(moment: datetime, tz: ZoneInfo, locale: Locale) -> str:
    """The locale's short name of the zone ("EST", "MEZ"), else the zone's own abbreviation
    ("CEST", "JST"), else the offset as the locale writes it ("GMT+08:00")."""
    label = format_datetime(moment, "z", tzinfo=tz, locale=locale)
    if not _OFFSET.match(label):
        return label
    abbreviation = moment.astimezone(tz).tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    return format_datetime(moment, "ZZZZ", tzinfo=tz, locale=locale)


def when(value: Any, locale: Locale, tz: Any = None, *, style: str = "datetime") -> str:
    """An instant in time zone `tz`, written the locale's way.

    Styles: `datetime` (the default: weekday, date, time and zone: "Fri, Dec 4, 2026,
    9:30 AM EST", "Fr., 4. Dez. 2026, 15:30 MEZ"), `time` ("9:30 AM EST"), `date` ("Dec 4,
    2026", "04.12.2026"), `long` ("December 4, 2026", "4. Dezember 2026"), `month`
    ("December 2026"). A date without a time is never shifted between zones."""
    month = _ISO_MONTH.match(value.strip()) if isinstance(value, str) else None
    moment = date.fromisoformat(month.group(0) + "-01") if month else instant(value)
    if moment is None:
        return "" if value in (None, "") else str(value)
    if style == "month" or month:
        day = moment.astimezone(zone(tz)).date() if isinstance(moment, datetime) else moment
        return format_skeleton("yMMMM", day, locale=locale)
    if not isinstance(moment, datetime):
        return format_date(moment, "long" if style == "long" else "medium", locale=locale)
    where = zone(tz)
    if style in ("date", "long"):
        return format_date(moment.astimezone(where).date(),
                           "long" if style == "long" else "medium", locale=locale)
    clock = format_time(moment, "short", tzinfo=where, locale=locale)
    clock = f"{clock} {_zone_label(moment, where, locale)}"
    if style == "time":
        return clock
    dated = format_skeleton("yMMMEd", moment, tzinfo=where, locale=locale)
    pattern = str(locale.datetime_formats.get("medium") or "{1}, {0}")
    return pattern.replace("{1}", dated).replace("{0}", clock).replace("'", "")


def style_of(fmt: str | None) -> str:
    """The style closest to a strftime format a template may still pass ("%d %B %Y" ->
    long, "%d %b %Y" -> date, anything with an hour -> datetime): the locale decides the
    order and the words, never the format string."""
    if not fmt:
        return "datetime"
    if "%" not in fmt:
        return fmt
    if "%H" in fmt or "%I" in fmt:
        return "datetime"
    if "%d" not in fmt and "%B" in fmt:
        return "month"
    return "long" if "%B" in fmt else "date"


__all__ = ["FALLBACK", "currency_digits", "instant", "money", "number", "percent", "resolve",
           "share", "style_of", "when", "zone"]
