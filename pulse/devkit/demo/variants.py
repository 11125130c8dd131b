"""Structural variants of the demo world: worlds that differ in shape, not just in seed.

`generate_variant(out_dir, "seasonal")` writes the same seven contract files and truth.json as
`generate()`, but from a world whose shape differs: weekly and seasonal cycles, heavy-tailed
account sizes, event volume per seat, gradual or sudden decline before churn and its lead
time, the mix of annual and monthly plans, noisy error rates, the share of silent and loud
accounts, and 6 to 24 months of history.

Unlike the default world (whose cancellations all fall in its last 60 days), churn happens
throughout the history at a steady hazard (about `churn_90d` of the active accounts cancel
within any 90 days), and silent dissatisfaction starts and ends at any time, so a benchmark
can score as of any date: truth.json gives every cancellation date (`churn`) and every spell
of silent dissatisfaction (`silent_periods`, `silent_since`).

Two engines make the behaviour, so that the variants do not share one mechanism:

* `scripted` (every variant but `reference`) decides the outcome first and scripts the
  signals around it: cancellation dates from a hazard (monthly plans any day, annual plans
  near their renewal), then a precursor before each (a gradual slide or a sudden drop,
  2 to 12 weeks ahead, or hardly anything), silent spells that fade usage, raise errors,
  downgrade and sour the account's posts while it opens no tickets, and healthy accounts
  with dips, slow declines and buggy spells that lead nowhere.
* `latent` (`reference`) lets outcomes emerge: each account carries a hidden satisfaction
  that wanders (mean-reverting noise plus shocks that fade or stay); usage, errors, tickets,
  posts and plan changes are read off it, and the daily hazard of cancelling grows as its
  two-month average falls (for annual plans mostly in the month before renewal). An account is silently
  dissatisfied while its satisfaction is low and it is of the kind that does not write in.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from pulse.core.errors import InvalidArgumentError, UnknownNameError
from pulse.devkit.demo.accounts import _make_accounts
from pulse.devkit.demo.contacts import _make_contacts
from pulse.devkit.demo.generator import _assemble, _check_and_clock
from pulse.devkit.demo.world import (
    _WEEKDAY_PEOPLE,
    _WEEKDAY_SERVICE,
    BRAND_HANDLE,
    GROUPS,
    DemoSummary,
    _Accounts,
    _Clock,
    _Groups,
    _local_sec1,
    _rng,
    _Shape,
    _Voice,
)

_HEALTHY, _SILENT, _LOUD, _CHURNER, _PAYMENT = (GROUPS.index(g) for g in (
    "healthy", "silent_fade", "loud_complainer", "churner", "payment_trouble"))
_NONE = -1
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Variant:
    """The shape of one variant world; see `VARIANTS`."""

    name: str
    summary: str
    months: int
    engine: str = "scripted"  # scripted or latent
    accounts: int = 1000
    weekend: float = 0.14  # weekend activity of people relative to weekdays
    month_end: float = 0.0  # extra activity in the last three days of a month
    summer_dip: float = 0.0  # depth of the July and August dip
    holiday_dip: float = 0.0  # depth of the dip from 22 December to 2 January
    sizes: str = "lognormal"  # seats: lognormal or pareto
    size_spread: float = 0.7  # lognormal sigma, or Pareto alpha
    intensity: float = 1.0  # features a person uses on an active day, relative
    people_per_log_seat: float = 0.8  # contacts per log(1 + seats)
    gradual: float = 0.6  # share of precursor declines that are gradual (else sudden)
    lead_weeks: tuple[int, int] = (2, 12)  # lead time of a decline before cancelling
    weak: float = 0.25  # share of churners with weak or no precursors
    annual: float = 0.4  # share of accounts on annual plans
    error_base: float = 0.012  # median error rate
    error_noise: float = 0.3  # sd of the log daily error rate
    error_bursts: float = 0.0  # error bursts per account and year that mean nothing
    silent: float = 0.06  # share of active accounts silently dissatisfied at any time
    loud: float = 0.07  # share of loud complainers
    silent_churn: float = 0.6  # share of silent spells that end in cancelling
    churn_90d: float = 0.12  # share of active accounts cancelling within 90 days
    healthy_noise: float = 0.3  # share of accounts with a dip or spell that leads nowhere
    new_share: float = 0.08  # share of accounts created inside the window
    payment: float = 0.03  # share of accounts whose payments start failing

    @property
    def days(self) -> int:
        return round(self.months * 30.44)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["days"] = self.days
        d["lead_weeks"] = list(self.lead_weeks)
        return d


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant(
        "reference", "like the outside world (1,000 accounts, 9 months, ~1M events, ~12% "
        "churn per 90 days, ~6% silent), but outcomes emerge from a hidden satisfaction", 9,
        engine="latent", weekend=0.3, holiday_dip=0.35, size_spread=0.9, intensity=5.0,
        people_per_log_seat=2.1, annual=0.45, error_base=0.015, error_noise=0.4,
        loud=0.12, payment=0.025),
    Variant(
        "steady", "mostly monthly plans, a mild weekly cycle, gradual declines with long "
        "lead times (4-12 weeks)", 12, weekend=0.55, size_spread=0.6, gradual=0.9,
        lead_weeks=(4, 12), weak=0.2, annual=0.2, new_share=0.12),
    Variant(
        "seasonal", "a strong weekly cycle, month-end spikes, summer and year-end dips", 12,
        weekend=0.07, month_end=0.6, summer_dip=0.45, holiday_dip=0.5, gradual=0.5,
        annual=0.4),
    Variant(
        "whales", "Pareto-sized accounts, many events per seat, annual plans that churn at "
        "renewal after sudden short declines (2-5 weeks); few silent, many loud", 9,
        sizes="pareto", size_spread=1.15, intensity=2.2, people_per_log_seat=1.5,
        gradual=0.2, lead_weeks=(2, 5), annual=0.8, silent=0.03, loud=0.14, payment=0.01),
    Variant(
        "noisy", "high error noise that means nothing, healthy accounts that dip often, "
        "churners that often give little warning", 9, error_base=0.05, error_noise=0.9,
        error_bursts=5.0, healthy_noise=0.6, weak=0.45, weekend=0.2),
    Variant(
        "quiet", "few events per seat, twice the usual silent share, hardly any loud "
        "accounts", 6, intensity=0.6, people_per_log_seat=0.5, silent=0.12, loud=0.02,
        silent_churn=0.7, annual=0.3, lead_weeks=(3, 10)),
    Variant(
        "long", "24 months of small accounts on monthly plans, a steady inflow of new ones, "
        "gradual declines", 24, size_spread=0.5, intensity=0.8, annual=0.1, gradual=0.75,
        lead_weeks=(6, 12), new_share=0.35, weekend=0.3, summer_dip=0.15),
)}


def variant(name: str) -> Variant:
    """The variant called `name`; raises `UnknownNameError` naming the choices."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown demo variant {name!r}: expected one of "
                               f"{', '.join(VARIANTS)}") from None


def variant_names(names: list[str]) -> list[str]:
    """The variants `names` asks for, in order and once each: 'all' stands for every one;
    an unknown name raises `UnknownNameError`."""
    out: list[str] = []
    for n in names:
        out.extend(VARIANTS if n == "all" else [variant(n).name])
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------
# Accounts and the calendar
# --------------------------------------------------------------------------------------


def _reshape_accounts(v: Variant, rng: np.random.Generator, acc: _Accounts, clock: _Clock
                      ) -> None:
    """Give the accounts the variant's sizes, plan mix and creation dates (in place)."""
    n, days = acc.n, clock.days
    median = np.array([8.0, 45.0, 260.0])[acc.segment]
    if v.sizes == "pareto":
        seats = median * 0.45 * (1.0 + rng.pareto(v.size_spread, n))
    else:
        seats = rng.lognormal(np.log(median), v.size_spread)
    seats = np.maximum(1, np.round(np.minimum(seats, 50_000))).astype(np.int64)
    acc.mrr0 = np.where(acc.mrr0 > 0, np.round(acc.mrr0 * seats / acc.seats0, 2), 0.0)
    acc.seats0 = seats
    tilt = np.array([0.35, 0.8, 1.4, 1.6])[acc.plan0]
    acc.annual = rng.random(n) < np.clip(v.annual * tilt / tilt.mean(), 0.0, 0.97)
    sec = (acc.created_ts - clock.start_ts) % 86400
    new = rng.random(n) < v.new_share if days >= 60 else np.zeros(n, dtype=bool)
    created = np.where(acc.created_day < 0, acc.created_day,
                       -14 - rng.integers(0, 700, n))
    created = np.where(new, rng.integers(0, max(1, days - 30), n), created)
    acc.created_day = created.astype(np.int64)
    acc.created_ts = np.where(new, clock.at(np.maximum(created, 0), sec),
                              clock.start_ts + created * 86400 + sec).astype(np.int64)


def _day_shape(v: Variant, clock: _Clock) -> _Shape:
    """Per-day activity: the weekly cycle, month-end spikes, summer and year-end dips."""
    days = clock.days
    dates = [clock.start + timedelta(days=d) for d in range(days)]
    week = _WEEKDAY_PEOPLE.copy()
    week[5:] = v.weekend * np.array([1.15, 0.85])
    people = week[clock.dow].astype(float)
    service = (1.0 - (1.0 - _WEEKDAY_SERVICE) * (1.0 - v.weekend) / 0.86)[clock.dow]
    season = np.ones(days)
    for d, day in enumerate(dates):
        nxt = day + timedelta(days=3)
        if v.month_end and nxt.month != day.month:
            season[d] *= 1.0 + v.month_end
        if v.summer_dip:
            mid = date(day.year, 8, 1)
            season[d] *= 1.0 - v.summer_dip * math.exp(-(((day - mid).days / 22.0) ** 2))
        if v.holiday_dip and ((day.month == 12 and day.day >= 22) or
                              (day.month == 1 and day.day <= 2)):
            season[d] *= 1.0 - v.holiday_dip
    return _Shape(people * season, np.maximum(service * np.sqrt(season), 0.05), v.intensity)


def _anniversaries(acc: _Accounts, clock: _Clock) -> list[list[int]]:
    """Per account: the window days of its annual renewals (empty for monthly plans)."""
    out: list[list[int]] = []
    for i in range(acc.n):
        if not acc.annual[i]:
            out.append([])
            continue
        created = date(1970, 1, 1) + timedelta(seconds=int(acc.created_ts[i]))
        days = []
        for y in range(clock.start.year - 1, clock.end.year + 2):
            try:
                anniv = created.replace(year=y)
            except ValueError:
                anniv = date(y, 2, 28)
            d = (anniv - clock.start).days
            if anniv > created and 0 <= d < clock.days:
                days.append(d)
        out.append(days)
    return out


def _smooth_walk(rng: np.random.Generator, n: int, days: int, sd: float) -> np.ndarray:
    eps = rng.normal(0.0, sd, (n, days + 6))
    csum = np.cumsum(np.pad(eps, ((0, 0), (1, 0))), axis=1)
    return np.asarray((csum[:, 7:] - csum[:, :-7]) / 7.0)


def _cancel_ts(rng: np.random.Generator, acc: _Accounts, clock: _Clock, cancel_day: np.ndarray
               ) -> np.ndarray:
    ts = np.full(acc.n, _NEVER, dtype=np.int64)
    for i in np.flatnonzero(cancel_day >= 0).tolist():
        c = int(cancel_day[i])
        ts[i] = clock.at1(c, _local_sec1(rng, int(clock.tz_off[acc.tz[i], c])))
    return ts


def _new_account_ramp(acc: _Accounts, level: np.ndarray) -> None:
    days = level.shape[1]
    for i in np.flatnonzero(acc.created_day >= 0).tolist():
        c = int(acc.created_day[i])
        level[i, :c] = 0.0
        ramp = min(21, days - c)
        level[i, c: c + ramp] *= np.linspace(0.35, 1.0, 21)[:ramp]


def _errors(v: Variant, rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    """Baseline error rates: per-account level, daily noise and bursts that mean nothing."""
    base = np.clip(rng.lognormal(np.log(v.error_base), 0.6, n), 0.001, 0.25)
    err = base[:, None] * np.exp(rng.normal(0.0, v.error_noise, (n, days))
                                 - v.error_noise ** 2 / 2)
    if v.error_bursts > 0:
        k = rng.poisson(v.error_bursts * days / 365.0, n)
        for i in np.flatnonzero(k).tolist():
            for _ in range(int(k[i])):
                a = int(rng.integers(0, days))
                err[i, a: a + int(rng.integers(1, 6))] += rng.uniform(0.05, 0.3)
    return err


@dataclass
class _Behaviour:
    grp: _Groups
    level: np.ndarray
    err: np.ndarray
    voice: _Voice
    notes: dict[str, Any] = field(default_factory=dict)
    state: np.ndarray | None = None  # the latent engine's hidden satisfaction (not written)


# --------------------------------------------------------------------------------------
# The scripted engine
# --------------------------------------------------------------------------------------


def _scripted(v: Variant, rng: np.random.Generator, rng2: np.random.Generator, acc: _Accounts,
              clock: _Clock) -> _Behaviour:
    n, days = acc.n, clock.days
    born = np.maximum(acc.created_day, 0)
    earliest = np.where(acc.created_day >= 0, acc.created_day + 30, 1)
    # Who is frail shows, in part: less engaged, younger and smaller-plan accounts leave more.
    eng = np.log(acc.engagement)
    young = acc.created_day > -180
    log_frailty = (-0.9 * (eng - eng.mean()) / max(float(eng.std()), 1e-9) + 0.5 * young
                   + 0.35 * (acc.plan0 == 0) - 0.25 * (acc.plan0 == 3)
                   + rng.normal(0.0, 0.4, n))
    frailty = np.exp(log_frailty)
    frailty /= frailty.mean()
    loud = rng.random(n) < v.loud
    frailty = np.where(loud, frailty * 1.4, frailty)
    h = -math.log(1.0 - v.churn_90d) / 90.0

    # Cancellations from the hazard: monthly plans any day, annual ones before renewal.
    cancel = np.full(n, _NONE, dtype=np.int64)
    cause = np.zeros(n, dtype=np.int64)  # 0 hazard, 1 silent, 2 payment
    wait = rng.exponential(1.0, n) / (h * frailty)
    t_month = np.where(acc.created_day >= 0, earliest, 0) + wait.astype(np.int64)
    monthly_hit = ~acc.annual & (t_month < days)
    cancel[monthly_hit] = np.maximum(t_month[monthly_hit], earliest[monthly_hit])
    p_year = 1.0 - (1.0 - v.churn_90d) ** (365.0 / 90.0)
    for i, ann in enumerate(_anniversaries(acc, clock)):
        for a in ann:
            if a >= earliest[i] + 14 and rng.random() < min(0.95, p_year * frailty[i]):
                cancel[i] = max(int(earliest[i]), a - int(rng.integers(0, 15)))
                break

    # Silent spells: they start at a steady rate; most end in cancelling, some recover.
    mean_len = v.silent_churn * 70.0 + (1.0 - v.silent_churn) * 100.0
    onset = np.where(acc.created_day >= 0, acc.created_day + 20, -120) + rng.exponential(
        mean_len / max(v.silent, 1e-6), n).astype(np.int64)
    spell_churns = rng.random(n) < v.silent_churn
    spell_end = np.where(spell_churns, onset + rng.integers(21, 121, n),
                         onset + rng.integers(45, 151, n))
    has_spell = (onset < days) & (spell_end > 1) & ~loud
    silent_cancel = has_spell & spell_churns
    first_cancel = np.where(cancel >= 0, cancel, _NEVER)
    take = silent_cancel & (spell_end < first_cancel) & (spell_end < days) & (spell_end >= 1)
    cancel[take], cause[take] = spell_end[take], 1
    # A spell cut short by an earlier cancellation, or one that began after it, is moot.
    has_spell &= (cancel < 0) | (onset < cancel)
    spell_end = np.where(has_spell & (cancel >= 0), np.minimum(spell_end, cancel), spell_end)
    # A silent spell that churns stays silent until the end of the window when it lies past it.
    spell_end = np.where(has_spell & spell_churns & (spell_end >= days), days, spell_end)

    # Payment trouble: failed bills, and often an involuntary cancellation weeks later.
    trouble = np.full(n, _NONE, dtype=np.int64)
    pay = (rng.random(n) < v.payment) & ~acc.annual & ~has_spell
    t_day = born + (rng.random(n) * np.maximum(days - born - 10, 1)).astype(np.int64)
    trouble[pay] = t_day[pay]
    p_cancel = pay & (rng.random(n) < 0.6)
    t_cancel = t_day + rng.integers(20, 46, n)
    take = p_cancel & (t_cancel < days) & ((cancel < 0) | (t_cancel < cancel))
    cancel[take], cause[take] = t_cancel[take], 2

    # Levels: a wandering base, then the story of each account.
    level = acc.engagement[:, None] * np.exp(_smooth_walk(rng2, n, days, 0.25))
    trend = np.clip(rng2.normal(0.03, 0.1, n), -0.2, 0.4)
    level *= 1.0 + trend[:, None] * np.arange(days)[None, :] / days
    err = _errors(v, rng2, n, days)
    _healthy_noise(v, rng2, level, err, acc)
    lead_lo, lead_hi = 7 * v.lead_weeks[0], 7 * v.lead_weeks[1]
    weak = rng2.random(n) < v.weak
    gradual = rng2.random(n) < v.gradual
    moves: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    precursor_from = np.full(n, _NONE, dtype=np.int64)
    for i in np.flatnonzero((cancel >= 0) & (cause == 0)).tolist():
        c = int(cancel[i])
        lead = int(rng2.integers(lead_lo, lead_hi + 1))
        s = c - lead
        precursor_from[i] = s
        lo = max(0, s)
        if c <= lo:
            continue
        if rng2.random() < (0.3 if weak[i] else 0.7):  # a slow erosion months ahead
            e0 = c - int(rng2.integers(60, 151))
            ramp = np.linspace(1.0, rng2.uniform(0.65, 0.9), c - e0)
            level[i, max(0, e0):c] *= ramp[max(0, e0) - e0:]
        if weak[i]:
            floor = rng2.uniform(0.75, 0.97)
            level[i, lo:c] *= np.linspace(1.0, floor, c - s)[lo - s:]
            continue
        floor = rng2.uniform(0.1, 0.5)
        if gradual[i]:
            shape = np.linspace(1.0, floor, c - s) ** rng2.uniform(0.7, 1.6)
        else:
            drop = int(rng2.integers(1, 6))
            shape = np.full(c - s, floor)
            shape[:drop] = np.linspace(1.0, floor, drop)
        level[i, lo:c] *= shape[lo - s:]
        if rng2.random() < 0.5:
            err[i, lo:c] += np.linspace(0.0, rng2.uniform(0.01, 0.08), c - s)[lo - s:]
        if rng2.random() < 0.3:
            moves[i].append((int(rng2.integers(lo, c)), "downgrade"))
    periods: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i in np.flatnonzero(has_spell).tolist():
        a, b = int(onset[i]), int(spell_end[i])
        periods[i].append((a, b))
        lo, hi = max(0, a), min(days, b)
        length = max(b - a, 1)
        ramp = np.clip((np.arange(lo, days) - a) / min(length, 60), 0.0, 1.0)
        floor = rng2.uniform(0.1, 0.45)
        fade = 1.0 - (1.0 - floor) * ramp ** rng2.uniform(0.6, 1.0)
        if b < days and not spell_churns[i]:  # recovering: back up over a few weeks
            back = np.clip((np.arange(lo, days) - b) / 21.0, 0.0, 1.0)
            fade = fade + (1.0 - fade) * back * rng2.uniform(0.7, 1.0)
        level[i, lo:] *= fade
        err[i, lo:hi] += ramp[: hi - lo] * rng2.uniform(0.03, 0.15)
        if rng2.random() < 0.4 and hi - lo > 12:
            moves[i].append((int(rng2.integers(lo + 10, hi)), "downgrade"))
    for i in range(n):
        u = rng2.random()
        span = (int(born[i]) + 1, days if cancel[i] < 0 else int(cancel[i]))
        if span[1] - span[0] > 2 and not has_spell[i]:
            if u < (0.04 if loud[i] else 0.08):
                moves[i].append((int(rng2.integers(*span)), "upgrade"))
            elif u < 0.12:
                moves[i].append((int(rng2.integers(*span)), "downgrade"))
    _new_account_ramp(acc, level)
    alive = np.ones((n, days), dtype=bool)
    for i in np.flatnonzero(cancel >= 0).tolist():
        level[i, int(cancel[i]):] = 0.0
        alive[i, int(cancel[i]):] = False

    group = np.full(n, _HEALTHY, dtype=np.int64)
    group[cancel >= 0] = _CHURNER
    group[trouble >= 0] = _PAYMENT
    group[loud] = _LOUD
    group[has_spell] = _SILENT
    fade_start = np.where(has_spell, np.maximum(onset, 0), _NONE).astype(np.int64)
    grp = _Groups(group, cancel, _cancel_ts(rng, acc, clock, cancel), fade_start,
                  trouble_day=trouble, moves=moves, silent_periods=periods)

    ticket = np.array([1.0, 0.8, 8.0, 1.0, 1.2])[group][:, None] * np.ones((1, days))
    mention = np.array([1.0, 0.8, 14.0, 1.3, 1.2])[group][:, None] * np.ones((1, days))
    sour = np.zeros((n, days), dtype=bool)
    d_idx = np.arange(days)[None, :]
    pre = (precursor_from[:, None] <= d_idx) & (d_idx < cancel[:, None]) & ~weak[:, None]
    ticket = np.where(pre, ticket * 1.8, ticket)
    mention = np.where(pre, mention * 1.5, mention)
    in_spell = has_spell[:, None] & (onset[:, None] <= d_idx) & (d_idx < spell_end[:, None])
    ticket = np.where(in_spell, 0.0, ticket)
    mention = np.where(in_spell, mention * 4.0, mention)
    sour |= in_spell
    voice = _Voice(ticket * alive, mention * alive, sour, cancel_ticket_p=0.45)
    return _Behaviour(grp, level, np.clip(err, 0.0, 0.6), voice)


def _healthy_noise(v: Variant, rng: np.random.Generator, level: np.ndarray, err: np.ndarray,
                   acc: _Accounts) -> None:
    """Dips, fades that recover, slow declines and buggy spells that lead nowhere."""
    n, days = level.shape
    kind = np.asarray(rng.random(n))
    share = v.healthy_noise
    for i in np.flatnonzero(kind < share).tolist():
        u = kind[i] / share
        if u < 0.35 and days >= 14:  # a temporary dip (holidays, a re-org)
            a = int(rng.integers(0, days - 7))
            level[i, a: a + int(rng.integers(5, 30))] *= rng.uniform(0.3, 0.75)
        elif u < 0.6 and days >= 60:  # faded, then recovered
            ld, lr = int(rng.integers(14, 40)), int(rng.integers(7, 30))
            a = int(rng.integers(0, max(1, days - ld - lr)))
            trough = rng.uniform(0.3, 0.65)
            shape = np.ones(days)
            seg = np.concatenate([np.linspace(1.0, trough, ld), np.linspace(trough, 0.95, lr)])
            seg = seg[: days - a]
            shape[a: a + seg.size] = seg
            level[i] *= shape
            err[i, a: a + ld] += rng.uniform(0.01, 0.06)
        elif u < 0.8:  # a slow decline that stops short of leaving
            level[i] *= np.linspace(1.0, rng.uniform(0.6, 0.85), days)
        elif days >= 14:  # a buggy spell: errors up, usage fine
            a = int(rng.integers(0, days - 7))
            err[i, a: a + int(rng.integers(5, 20))] += rng.uniform(0.03, 0.12)


# --------------------------------------------------------------------------------------
# The latent engine
# --------------------------------------------------------------------------------------


def _runs(mask: np.ndarray, min_len: int, gap: int) -> list[tuple[int, int]]:
    """Runs of True at least `min_len` long, merging gaps shorter than `gap`."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    spans = [(int(a), int(b)) for a, b in zip(idx[::2], idx[1::2])]
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return [(a, b) for a, b in merged if b - a >= min_len]


def _latent(v: Variant, rng: np.random.Generator, rng2: np.random.Generator, acc: _Accounts,
            clock: _Clock) -> _Behaviour:
    from scipy.signal import lfilter

    n, days = acc.n, clock.days
    warm = 120  # the hidden state starts before the window, so day 0 is not special
    span = days + warm
    phi = math.exp(-1.0 / 90.0)
    ar = lfilter([1.0], [1.0, -phi], rng.normal(0.0, 0.5 * math.sqrt(1 - phi ** 2),
                                                (n, span)), axis=1)
    s = rng.normal(0.0, 0.4, n)[:, None] + ar
    k = rng.poisson(span / 400.0, n)
    t = np.arange(span)
    for i in np.flatnonzero(k).tolist():
        for _ in range(int(k[i])):
            t0 = int(rng.integers(0, span))
            size = rng.uniform(0.6, 2.2)
            tau = np.inf if rng.random() < 0.4 else rng.uniform(30.0, 250.0)
            after = t[t0:] - t0
            onset = np.minimum(after / rng.uniform(3.0, 45.0), 1.0)  # sudden or gradual
            s[i, t0:] -= size * onset * (np.exp(-after / tau) if np.isfinite(tau) else 1.0)
    k7 = np.ones(7) / 7.0
    low = np.apply_along_axis(lambda r: np.convolve(r, k7, mode="full")[: r.size], 1,
                              -s)[:, warm:]
    # Patience runs out: the hazard follows satisfaction averaged over about two months.
    a = math.exp(-1.0 / 60.0)
    slow = lfilter([1.0 - a], [1.0, -a], s, axis=1)[:, warm:]
    s = s[:, warm:]
    dis = np.maximum(0.0, -s)
    trait = rng.choice(3, size=n, p=[0.35, 1.0 - 0.35 - v.loud, v.loud])  # quiet/normal/loud

    level = acc.engagement[:, None] * np.exp(np.clip(0.55 * s, -3.0, 1.2))
    err = _errors(v, rng2, n, days) * np.exp(0.5 * dis)
    _new_account_ramp(acc, level)
    exists = level > 0

    # Hazard: rises as satisfaction falls; annual plans mostly in the month before renewal.
    mult = np.ones((n, days))
    for i, ann in enumerate(_anniversaries(acc, clock)):
        if acc.annual[i]:
            mult[i] = 0.15
            for a in ann:
                mult[i, max(0, a - 30): a + 1] = 6.0
    trouble = np.full(n, _NONE, dtype=np.int64)
    pay = (rng.random(n) < v.payment) & ~acc.annual & (acc.mrr0 > 0)
    born = np.maximum(acc.created_day, 0)
    trouble[pay] = (born[pay] + rng.random(int(pay.sum())) * np.maximum(
        days - born[pay] - 10, 1)).astype(np.int64)
    d_idx = np.arange(days)[None, :]
    mult = np.where((trouble[:, None] >= 0) & (d_idx >= trouble[:, None]), mult * 8.0, mult)
    mult = np.where(d_idx < (acc.created_day + 30)[:, None], 0.0, mult)
    raw = np.exp(3.0 * -slow) * mult
    e = rng.exponential(1.0, n)
    h0 = -math.log(1.0 - v.churn_90d) / 90.0 / float(raw.mean())
    # Calibrate the scale so that about `churn_90d` of the accounts there on a day cancel
    # within the next 90 (or what is left of the window), averaged over the days.
    window = min(90, max(days // 3, 1))
    checks = np.arange(0, max(days - window, 1), 7)
    born = np.maximum(acc.created_day, 0)
    want = 1.0 - (1.0 - v.churn_90d) ** (window / 90.0)
    for _ in range(8):
        cum = np.cumsum(h0 * raw, axis=1)
        gone = cum >= e[:, None]
        cancel = np.where(gone.any(axis=1), gone.argmax(axis=1), _NONE)
        there = (born[:, None] <= checks[None, :]) & (
            (cancel[:, None] < 0) | (cancel[:, None] > checks[None, :]))
        leave = there & (cancel[:, None] > checks[None, :]) & (
            cancel[:, None] <= checks[None, :] + window)
        got = float(leave.sum()) / max(float(there.sum()), 1.0)
        h0 *= (want / max(got, 1e-6)) ** 1.3
    cum = np.cumsum(h0 * raw, axis=1)
    gone = cum >= e[:, None]
    cancel = np.where(gone.any(axis=1), gone.argmax(axis=1), _NONE).astype(np.int64)
    cancel = np.where(cancel == 0, _NONE, cancel)
    alive = exists & ~((cancel[:, None] >= 0) & (d_idx >= cancel[:, None]))
    level = np.where(alive, level, 0.0)

    # Silent dissatisfaction: the quiet kind, while its smoothed satisfaction is low.
    quiet = trait == 0
    pool = low[quiet[:, None] & alive]
    share = min(0.9, v.silent / 0.35)
    thr = float(np.quantile(pool, 1.0 - share)) if pool.size else np.inf
    periods: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    silent_now = np.zeros((n, days), dtype=bool)
    for i in np.flatnonzero(quiet).tolist():
        for a, b in _runs((low[i] > thr) & alive[i], 10, 7):
            end = b if b < days and alive[i, b - 1] and (cancel[i] < 0 or b < cancel[i]) \
                else days
            if cancel[i] >= 0 and b >= cancel[i]:
                end = days  # silent until it left
            periods[i].append((a, end))
            silent_now[i, a: min(b, days)] = True

    # Voice and plan changes, read off the same hidden state.
    tick = np.select([trait == 0, trait == 1, trait == 2], [0.6, 1.0, 4.0])[:, None]
    tick = tick * (1.0 + np.where(trait == 2, 2.5, 1.5)[:, None] * dis)
    tick = np.where(silent_now, 0.0, tick)
    ment = np.select([trait == 0, trait == 1, trait == 2], [0.8, 1.0, 12.0])[:, None]
    ment = ment * (1.0 + 2.0 * dis)
    ment = np.where(silent_now, ment * 3.0, ment)
    sour = silent_now | (dis > 0.9)
    moves: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    for i in range(n):
        below = np.flatnonzero((s[i] < -1.3) & alive[i])
        if below.size and rng2.random() < 0.4:
            moves[i].append((int(below[0]) + int(rng2.integers(0, 10)), "downgrade"))
        above = np.flatnonzero((s[i] > 1.0) & alive[i])
        if above.size and rng2.random() < 0.35:
            moves[i].append((int(above[0]), "upgrade"))

    has = np.array([bool(p) for p in periods])
    group = np.full(n, _HEALTHY, dtype=np.int64)
    group[cancel >= 0] = _CHURNER
    group[trouble >= 0] = _PAYMENT
    group[trait == 2] = _LOUD
    group[has] = _SILENT
    fade_start = np.array([p[0][0] if p else _NONE for p in periods], dtype=np.int64)
    grp = _Groups(group, cancel, _cancel_ts(rng, acc, clock, cancel), fade_start,
                  trouble_day=trouble, moves=moves, silent_periods=periods)
    voice = _Voice(tick * alive, ment * alive, sour, cancel_ticket_p=0.35)
    return _Behaviour(grp, level, np.clip(err, 0.0, 0.6), voice,
                      {"hazard_scale": h0, "silent_threshold": thr}, state=s)


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------


def generate_variant(out_dir: Path, name: str, *, accounts: int | None = None,
                     months: int | None = None, seed: int = 7, end: date | None = None,
                     malformed_rate: float = 0.01, days: int | None = None,
                     live_incident: bool = False,
                     progress: Callable[[str, int], None] | None = None) -> DemoSummary:
    """Write the variant world `name` (see `VARIANTS`) into `out_dir`.

    `accounts` and `months` override the variant's own (1,000 accounts; 6 to 24 months);
    `days`, when given, sets the history in days instead of months. `live_incident` ends the
    window with an open major incident, as `generate()` does (the main job's outage step).
    The files and truth.json follow the same contract as `generate()`; truth.json adds the
    variant's description under `variant`. The same arguments with a past `end` give
    byte-identical files.
    """
    v = variant(name)
    n = int(accounts if accounts is not None else v.accounts)
    if days is not None and months is not None:
        raise InvalidArgumentError("give a variant's history in months or in days, not both")
    if days is None:
        days = round((months if months is not None else v.months) * 30.44)
    clock, end = _check_and_clock(n, days, malformed_rate, end)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    used_handles: set[str] = {BRAND_HANDLE}
    acc = _make_accounts(_rng(seed, 1), n, clock, used_handles)
    _reshape_accounts(v, _rng(seed, 21), acc, clock)
    con = _make_contacts(_rng(seed, 2), acc, used_handles, per_log_seat=v.people_per_log_seat)
    engine = _latent if v.engine == "latent" else _scripted
    b = engine(v, _rng(seed, 3), _rng(seed, 4), acc, clock)
    described = v.describe()
    described.update({"accounts": n, "days": days, **b.notes})
    return _assemble(out_dir, seed=seed, clock=clock, acc=acc, con=con, grp=b.grp,
                     level=b.level, err_rate=b.err, used_handles=used_handles, accounts=n,
                     days=days, malformed_rate=malformed_rate, live_incident=live_incident,
                     progress=progress, t0=t0, shape=_day_shape(v, clock), voice=b.voice,
                     truth_extra={"variant": described})
