"""The shared model of the demo world: the vocabulary, time, accounts and their behaviour.

The low module of `pulse.devkit.demo`: the contract's names and columns, the feature and time
zone tables, the small RNG and formatting helpers, the clock of the window, the account,
contact, group and incident records, and the behaviour model (groups and trajectories) that the
per-source modules read. It imports none of them.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

GENERATOR_VERSION = 1
VENDOR_DOMAIN = "pulse-demo.example"
BRAND = "Pulse"
BRAND_HANDLE = "PulseDemoHQ"

SOURCES: tuple[str, ...] = (
    "accounts", "contacts", "usage", "purchases", "tickets", "mentions", "incidents",
)
FILE_NAMES: dict[str, str] = {
    "accounts": "accounts.csv",
    "contacts": "contacts.csv",
    "usage": "usage.csv",
    "purchases": "purchases.csv",
    "tickets": "tickets.csv",
    "mentions": "mentions.jsonl",
    "incidents": "incidents.jsonl",
}
TRUTH_FILE = "truth.json"

#: Column order of the CSV sources.
HEADERS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id", "name", "mrr", "currency", "plan", "segment", "region",
                 "csm_email", "domain", "x_handle", "seats", "created_at", "renewal_date"),
    "contacts": ("contact_id", "account_id", "email", "name", "role", "timezone", "locale",
                 "x_handle", "opted_out"),
    "usage": ("event_id", "account_id", "occurred_at", "feature", "contact_id", "component",
              "region", "quantity", "outcome"),
    "purchases": ("event_id", "account_id", "occurred_at", "kind", "amount", "currency",
                  "plan", "mrr_after"),
    "tickets": ("ticket_id", "account_id", "opened_at", "contact_id", "resolved_at", "status",
                "channel", "priority", "subject", "body"),
}

PURCHASE_KINDS: tuple[str, ...] = (
    "subscription_started", "renewed", "upgraded", "downgraded", "cancelled",
    "payment_failed", "payment_succeeded", "refunded",
)
TICKET_STATUSES: tuple[str, ...] = ("open", "pending", "solved", "closed")
TICKET_CHANNELS: tuple[str, ...] = ("email", "chat", "phone", "web", "social")
TICKET_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
INCIDENT_STATUSES: tuple[str, ...] = ("investigating", "identified", "monitoring", "resolved")
INCIDENT_IMPACTS: tuple[str, ...] = ("none", "minor", "major", "critical")

#: Feature -> component. Usage rows name the feature; incidents name components.
FEATURES: dict[str, str] = {
    "api_calls": "api",
    "webhooks": "api",
    "dashboards": "dashboard",
    "alerts": "dashboard",
    "reports": "reports",
    "exports": "reports",
    "scheduled_reports": "reports",
    "slack_integration": "integrations",
    "salesforce_sync": "integrations",
    "sso_login": "auth",
    "invoices": "billing-portal",
    "seat_management": "billing-portal",
}
COMPONENTS: tuple[str, ...] = ("api", "dashboard", "reports", "integrations", "auth",
                               "billing-portal")
REGIONS: tuple[str, ...] = ("us-east", "us-west", "eu-west", "ap-southeast")
PLANS: tuple[str, ...] = ("starter", "growth", "business", "enterprise")
SEGMENTS: tuple[str, ...] = ("smb", "mid-market", "enterprise")
GROUPS: tuple[str, ...] = ("healthy", "silent_fade", "loud_complainer", "churner",
                           "payment_trouble")

_FEATURE_LIST: tuple[str, ...] = tuple(FEATURES)
_NF = len(_FEATURE_LIST)
_F_API, _F_WEBHOOKS, _F_DASHBOARDS = 0, 1, 2
_FEATURE_COMPONENT_IDX = np.array([COMPONENTS.index(FEATURES[f]) for f in _FEATURE_LIST])
_FEATURE_LABEL: dict[str, str] = {
    "api_calls": "the API",
    "webhooks": "webhooks",
    "dashboards": "dashboards",
    "alerts": "alerts",
    "reports": "reports",
    "exports": "CSV exports",
    "scheduled_reports": "scheduled reports",
    "slack_integration": "the Slack integration",
    "salesforce_sync": "the Salesforce sync",
    "sso_login": "SSO login",
    "invoices": "invoices",
    "seat_management": "seat management",
}
_COMPONENT_LABEL: dict[str, str] = {
    "api": "API",
    "dashboard": "Dashboards",
    "reports": "Reports",
    "integrations": "Integrations",
    "auth": "Login/SSO",
    "billing-portal": "Billing portal",
}
_REGION_LABEL: dict[str, str] = {
    "us-east": "US East", "us-west": "US West", "eu-west": "EU West",
    "ap-southeast": "AP Southeast",
}
#: Probability that an account of each plan adopts each feature (rows: PLANS).
_ADOPTION = np.array([
    # api  webh  dash alert  rep   exp  sched slack  sf    sso   inv  seats
    [0.15, 0.08, 1.0, 0.50, 0.70, 0.50, 0.20, 0.35, 0.05, 0.02, 0.60, 0.50],
    [0.35, 0.20, 1.0, 0.70, 0.85, 0.60, 0.45, 0.50, 0.20, 0.15, 0.70, 0.60],
    [0.60, 0.40, 1.0, 0.85, 0.95, 0.70, 0.65, 0.65, 0.45, 0.60, 0.75, 0.70],
    [0.85, 0.60, 1.0, 0.90, 1.00, 0.80, 0.80, 0.70, 0.65, 0.95, 0.80, 0.80],
])
#: How much a person uses each feature, relative to the others.
_PERSON_WEIGHT = np.array([0.3, 0.2, 5.0, 1.5, 2.5, 1.2, 0.8, 1.0, 0.7, 0.9, 0.25, 0.2])
#: Mean extra quantity of a person's (day, feature) row.
_PERSON_QTY = np.array([25.0, 6.0, 8.0, 3.0, 4.0, 2.0, 2.0, 5.0, 3.0, 1.0, 0.5, 0.5])
#: Service traffic (no contact) per seat and day for the API features.
_SERVICE_PER_SEAT = {_F_API: 30.0, _F_WEBHOOKS: 5.0}

#: Relative weekday volume, Monday first.
_WEEKDAY_PEOPLE = np.array([1.02, 1.03, 1.02, 0.98, 0.88, 0.16, 0.11])
_WEEKDAY_SERVICE = np.array([1.0, 1.0, 1.0, 1.0, 0.97, 0.6, 0.55])
_WEEKDAY_TICKETS = np.array([1.1, 1.05, 1.0, 1.0, 0.9, 0.3, 0.25])
_WEEKDAY_SOCIAL = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 0.7, 0.65])


class _Tz(NamedTuple):
    name: str
    region: int
    weight: float
    locale: str
    pool: str
    currency: str
    country: str
    std_offset_min: int


_TZ: tuple[_Tz, ...] = (
    _Tz("America/New_York", 0, 0.55, "en-US", "en", "USD", "US", -300),
    _Tz("America/Chicago", 0, 0.25, "en-US", "en", "USD", "US", -360),
    _Tz("America/Toronto", 0, 0.20, "en-CA", "en", "CAD", "CA", -300),
    _Tz("America/Los_Angeles", 1, 0.60, "en-US", "en", "USD", "US", -480),
    _Tz("America/Denver", 1, 0.20, "en-US", "en", "USD", "US", -420),
    _Tz("America/Phoenix", 1, 0.08, "en-US", "en", "USD", "US", -420),
    _Tz("America/Vancouver", 1, 0.12, "en-CA", "en", "CAD", "CA", -480),
    _Tz("Europe/London", 2, 0.30, "en-GB", "en", "GBP", "GB", 0),
    _Tz("Europe/Dublin", 2, 0.07, "en-IE", "en", "EUR", "IE", 0),
    _Tz("Europe/Berlin", 2, 0.20, "de-DE", "de", "EUR", "DE", 60),
    _Tz("Europe/Paris", 2, 0.15, "fr-FR", "fr", "EUR", "FR", 60),
    _Tz("Europe/Madrid", 2, 0.10, "es-ES", "es", "EUR", "ES", 60),
    _Tz("Europe/Amsterdam", 2, 0.10, "nl-NL", "nl", "EUR", "NL", 60),
    _Tz("Europe/Stockholm", 2, 0.08, "sv-SE", "nordic", "SEK", "SE", 60),
    _Tz("Asia/Singapore", 3, 0.35, "en-SG", "sea", "SGD", "SG", 480),
    _Tz("Australia/Sydney", 3, 0.28, "en-AU", "en", "AUD", "AU", 600),
    _Tz("Asia/Jakarta", 3, 0.10, "id-ID", "sea", "USD", "ID", 420),
    _Tz("Asia/Manila", 3, 0.10, "en-PH", "sea", "USD", "PH", 480),
    _Tz("Pacific/Auckland", 3, 0.08, "en-NZ", "en", "NZD", "NZ", 720),
    _Tz("Asia/Kolkata", 3, 0.09, "en-IN", "in", "USD", "IN", 330),
)
_REGION_WEIGHT = np.array([0.38, 0.22, 0.28, 0.12])
_FX: dict[str, float] = {"USD": 1.0, "CAD": 1.36, "GBP": 0.79, "EUR": 0.92, "SEK": 10.4,
                         "SGD": 1.34, "AUD": 1.52, "NZD": 1.66}


@dataclass(frozen=True)
class DemoSummary:
    """What `generate()` wrote."""

    out_dir: Path
    files: dict[str, Path]
    rows: dict[str, int]
    malformed: dict[str, int]
    truth_path: Path


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

_TRANSLIT = str.maketrans({
    "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss",
    "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ł": "l", "Ł": "L",
})


def _ascii(text: str) -> str:
    """Transliterate to ASCII (Müller -> Mueller, Zoë -> Zoe)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _slug(text: str) -> str:
    return "".join(ch for ch in _ascii(text).lower() if ch.isalnum())


def _rng(seed: int, stage: int) -> np.random.Generator:
    """An independent random stream per stage, so stages do not shift each other."""
    return np.random.default_rng([stage, seed & 0xFFFF_FFFF_FFFF_FFFF])


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _choice(rng: np.random.Generator, p: Sequence[float]) -> int:
    return int(rng.choice(len(p), p=np.asarray(p, dtype=float) / float(np.sum(p))))


def _epoch(day: date) -> int:
    return (day - date(1970, 1, 1)).days * 86400


def _offset_label(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _fmt_ts(ts: np.ndarray, off_min: np.ndarray, style: np.ndarray,
            millis: bool = False) -> list[str]:
    """ISO 8601 strings: style 0 as `...Z`, 1 in the given UTC offset, 2 without offset."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return []
    style = np.asarray(style)
    off = np.where(style == 1, np.asarray(off_min, dtype=np.int64), 0)
    body = np.datetime_as_string((ts + off * 60).astype("datetime64[s]"), unit="s").tolist()
    uniq, inv = np.unique(off, return_inverse=True)
    labels = [_offset_label(int(o)) for o in uniq]
    frac = ".000" if millis else ""
    out: list[str] = []
    for b, s, i in zip(body, style.tolist(), inv.tolist()):
        if s == 0:
            out.append(f"{b}{frac}Z")
        elif s == 1:
            out.append(b + labels[i])
        else:
            out.append(b)
    return out


def _fmt1(ts: int, off_min: int = 0, style: int = 0) -> str:
    return _fmt_ts(np.array([ts]), np.array([off_min]), np.array([style]))[0]


def _styles(rng: np.random.Generator, n: int, p_offset: float, p_naive: float) -> np.ndarray:
    return rng.choice(3, size=n, p=[1.0 - p_offset - p_naive, p_offset, p_naive])


def _money(x: float) -> str:
    return f"{x:.2f}"


class _Fill(dict[str, str]):
    """A format_map mapping that leaves unknown placeholders visible instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    """The window: `days` days ending on `end`; nothing after `limit_ts` (<= now)."""

    start: date
    end: date
    days: int
    start_ts: int
    limit_ts: int
    dow: np.ndarray
    tz_off: np.ndarray  # (len(_TZ), days) UTC offset in minutes at noon UTC of each day

    @classmethod
    def make(cls, end: date, days: int, now: datetime) -> _Clock:
        start = end - timedelta(days=days - 1)
        start_ts = _epoch(start)
        limit_ts = min(_epoch(end) + 86399, int(now.timestamp()))
        dow = (np.arange(days) + start.weekday()) % 7
        tz_off = np.zeros((len(_TZ), days), dtype=np.int64)
        for t, spec in enumerate(_TZ):
            try:
                zone = ZoneInfo(spec.name)
            except (ZoneInfoNotFoundError, ValueError):
                tz_off[t, :] = spec.std_offset_min
                continue
            last = None
            for d in range(days):
                noon = datetime.fromtimestamp(start_ts + d * 86400 + 43200, tz=UTC)
                off = noon.astimezone(zone).utcoffset()
                last = int(off.total_seconds() // 60) if off is not None else spec.std_offset_min
                tz_off[t, d] = last
        return cls(start, end, days, start_ts, limit_ts, dow, tz_off)

    def at(self, day: np.ndarray, sec: np.ndarray, squeeze: bool = True) -> np.ndarray:
        """Epoch seconds of (day index, second of UTC day).

        While the last day is still running, `squeeze` maps its whole day into the part that
        has passed; otherwise callers drop what lies after `limit_ts` themselves.
        """
        day = np.asarray(day, dtype=np.int64)
        sec = np.asarray(sec, dtype=np.int64)
        ts = self.start_ts + day * 86400 + sec
        last_start = self.start_ts + (self.days - 1) * 86400
        span = self.limit_ts - last_start + 1
        if squeeze and span < 86400:
            ts = np.where(day == self.days - 1, last_start + (sec * span) // 86400, ts)
        return ts

    def at1(self, day: int, sec: int) -> int:
        return int(self.at(np.array([day]), np.array([sec]))[0])

    def day_of(self, ts: int) -> int:
        return (ts - self.start_ts) // 86400


def _local_secs(rng: np.random.Generator, off_min: np.ndarray, mean_h: float = 13.5,
                sd_h: float = 2.8, lo_h: float = 6.5, hi_h: float = 22.5) -> np.ndarray:
    """Seconds of the UTC day for local business-hours activity in the given offsets."""
    off_min = np.asarray(off_min, dtype=np.int64)
    local = np.clip(rng.normal(mean_h, sd_h, off_min.shape), lo_h, hi_h) * 3600.0
    return (local.astype(np.int64) - off_min * 60) % 86400


def _local_sec1(rng: np.random.Generator, off_min: int, mean_h: float = 13.5,
                sd_h: float = 2.8) -> int:
    return int(_local_secs(rng, np.array([off_min]), mean_h, sd_h)[0])


# --------------------------------------------------------------------------------------
# Accounts, contacts, behaviour
# --------------------------------------------------------------------------------------


@dataclass
class _Accounts:
    n: int
    ids: list[str]
    names: list[str]
    domains: list[str]
    handles: list[str]
    csm: list[str]
    region: np.ndarray
    tz: np.ndarray
    segment: np.ndarray
    plan0: np.ndarray
    seats0: np.ndarray
    mrr0: np.ndarray
    currency: list[str]
    created_day: np.ndarray
    created_ts: np.ndarray
    annual: np.ndarray
    engagement: np.ndarray
    adopt: np.ndarray


@dataclass
class _Contacts:
    n: int
    ids: list[str]
    acc: np.ndarray
    tz: np.ndarray
    engagement: np.ndarray
    first: list[str]
    names: list[str]
    emails: list[str]
    roles: list[str]
    locales: list[str]
    handles: list[str]
    by_acc: list[list[int]]


@dataclass
class _Groups:
    group: np.ndarray  # index into GROUPS
    cancel_day: np.ndarray  # -1: none
    cancel_ts: np.ndarray  # int64 max: none
    fade_start: np.ndarray  # -1: none
    # Set by the structural variants (pulse.devkit.demo.variants) only; None keeps the
    # default world's behaviour exactly.
    trouble_day: np.ndarray | None = None  # first failed bill on or after this day; -1: none
    moves: list[list[tuple[int, str]]] | None = None  # per account: (day, upgrade|downgrade)
    silent_periods: list[list[tuple[int, int]]] | None = None  # (first day, day after last)

    def name(self, i: int) -> str:
        return GROUPS[int(self.group[i])]


@dataclass
class _Voice:
    """Per-(account, day) voice of a variant world: what tickets and mentions follow.

    `ticket_mult` replaces the group factor of the ticket rate (0: the account opens nothing
    that day, incident and cancellation tickets included); `mention_mult` the group factor
    of the mention rate; `sour` marks the days whose mentions are mostly complaints.
    """

    ticket_mult: np.ndarray
    mention_mult: np.ndarray
    sour: np.ndarray
    cancel_ticket_p: float = 0.5


@dataclass
class _Shape:
    """Per-day activity of a variant world (weekly and seasonal cycles) and its intensity."""

    day_people: np.ndarray
    day_service: np.ndarray
    intensity: float = 1.0


def _assign_groups(rng: np.random.Generator, acc: _Accounts, con: _Contacts, clock: _Clock
                   ) -> _Groups:
    n, days = acc.n, clock.days
    group = np.zeros(n, dtype=np.int64)
    old = np.flatnonzero(acc.created_day < 0)

    def count(frac: float) -> int:
        k = round(frac * n)
        return max(k, 1) if n >= 20 else k

    monthly_old = old[~acc.annual[old] & (acc.mrr0[old] > 0)]
    pay = rng.permutation(monthly_old)[: count(0.04)]
    group[pay] = GROUPS.index("payment_trouble")
    # Fading needs something to fade from: busier accounts are likelier to fade or churn.
    people = np.array([len(c) for c in con.by_acc], dtype=float)
    for name, frac, busy in (("silent_fade", 0.08, True), ("loud_complainer", 0.07, False),
                             ("churner", 0.06, True)):
        pool = old[group[old] == 0]
        k = min(count(frac), pool.size)
        if k == 0:
            continue
        w = np.sqrt(people[pool]) if busy else np.ones(pool.size)
        group[rng.choice(pool, size=k, replace=False, p=w / w.sum())] = GROUPS.index(name)
    cancel_day = np.full(n, -1, dtype=np.int64)
    cancel_ts = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    fade_start = np.full(n, -1, dtype=np.int64)
    churners = np.flatnonzero(group == GROUPS.index("churner"))
    lo = max(int(days * 0.45), days - 60, 1)
    hi = max(lo + 1, days - 3)
    for i in churners:
        c = int(rng.integers(lo, hi)) if days > 3 else days - 1
        cancel_day[i] = c
        off = int(clock.tz_off[acc.tz[i], c])
        cancel_ts[i] = clock.at1(c, _local_sec1(rng, off))
    for i in np.flatnonzero(group == GROUPS.index("silent_fade")):
        length = int(rng.integers(30, 61))
        fade_start[i] = max(0, days - length)
    return _Groups(group, cancel_day, cancel_ts, fade_start)


def _trajectories(rng: np.random.Generator, acc: _Accounts, grp: _Groups, clock: _Clock
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-(account, day) usage level and error rate."""
    n, days = acc.n, clock.days
    d = np.arange(days, dtype=float)
    eps = rng.normal(0.0, 0.25, (n, days + 6))
    csum = np.cumsum(np.pad(eps, ((0, 0), (1, 0))), axis=1)
    smooth = (csum[:, 7:] - csum[:, :-7]) / 7.0
    trend = np.clip(rng.normal(0.04, 0.12, n), -0.25, 0.5)
    level = acc.engagement[:, None] * np.exp(smooth) * (1.0 + trend[:, None] * d / days)
    base_err = np.clip(rng.lognormal(np.log(0.012), 0.6, n), 0.002, 0.08)
    err = base_err[:, None] * np.exp(rng.normal(0.0, 0.3, (n, days)))

    g = grp.group
    healthy = np.flatnonzero(g == 0)
    for i in healthy:
        u = rng.random()
        if u < 0.12 and days >= 14:  # a temporary dip (holidays, a re-org)
            a = int(rng.integers(0, days - 7))
            length = int(rng.integers(5, 22))
            level[i, a: a + length] *= rng.uniform(0.35, 0.75)
        elif u < 0.18 and days >= 50 and acc.created_day[i] < 0:  # faded, then recovered
            room = days - 30
            ld, lr = int(rng.integers(14, 30)), int(rng.integers(7, 20))
            a = int(rng.integers(0, max(1, room - ld - lr)))
            trough = rng.uniform(0.3, 0.6)
            shape = np.ones(days)
            shape[a: a + ld] = np.linspace(1.0, trough, ld)[: max(0, min(ld, days - a))]
            b = a + ld
            shape[b: b + lr] = np.linspace(trough, 0.95, lr)[: max(0, min(lr, days - b))]
            level[i] *= shape
            err[i, a: a + ld] += rng.uniform(0.02, 0.06)
        elif u < 0.23:  # a slow decline, milder than a silent fade
            level[i] *= np.linspace(1.0, rng.uniform(0.7, 0.85), days)
        elif u < 0.28 and days >= 14:  # a buggy spell: errors up, usage fine
            a = int(rng.integers(0, days - 7))
            err[i, a: a + int(rng.integers(5, 15))] += rng.uniform(0.03, 0.1)

    for i in np.flatnonzero(grp.fade_start >= 0):
        s = int(grp.fade_start[i])
        length = days - s
        floor = rng.uniform(0.08, 0.3)
        ramp = np.linspace(0.0, 1.0, length)
        level[i, s:] *= 1.0 - (1.0 - floor) * ramp ** rng.uniform(0.6, 1.0)
        err[i, s:] += ramp * rng.uniform(0.08, 0.22)
    for i in np.flatnonzero(grp.cancel_day >= 0):
        c = int(grp.cancel_day[i])
        length = int(rng.integers(1, 7)) if rng.random() < 0.25 else int(rng.integers(20, 51))
        s = max(0, c - length)
        if c > s:
            ramp = np.linspace(0.0, 1.0, c - s)
            level[i, s:c] *= 1.0 - (1.0 - rng.uniform(0.2, 0.5)) * ramp
            err[i, s:c] += ramp * rng.uniform(0.02, 0.08)
        level[i, c:] = 0.0
    loud = g == GROUPS.index("loud_complainer")
    err[loud] *= 1.3
    for i in np.flatnonzero(acc.created_day >= 0):
        c = int(acc.created_day[i])
        level[i, :c] = 0.0
        ramp_len = min(21, days - c)
        level[i, c: c + ramp_len] *= np.linspace(0.35, 1.0, 21)[:ramp_len]
    return level, np.clip(err, 0.0, 0.6)


# --------------------------------------------------------------------------------------
# Incidents
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Incident:
    id: str
    title: str
    start_ts: int
    end_ts: int  # resolved_at, or the window limit while ongoing
    resolved: bool
    status: str
    impact: str
    components: tuple[str, ...]
    regions: tuple[str, ...]

    @property
    def impact_factor(self) -> float:
        return {"none": 0.15, "minor": 0.6, "major": 1.0, "critical": 1.6}[self.impact]


# --------------------------------------------------------------------------------------
# Row ids
# --------------------------------------------------------------------------------------


def _hex_ids(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    while True:
        raw = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64)
        if np.unique(raw).size == n:
            return [f"{prefix}{x:016x}" for x in raw.tolist()]
