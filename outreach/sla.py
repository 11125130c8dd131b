"""Service credits a plan's SLA gives after an outage (plans in outreach/sla.yaml).

A month's uptime is 100 × (1 − downtime / minutes in the month), where the downtime is the
time every resolved incident that hit the account spent open within that month (overlapping
incidents counted once). The credit is the share of the month's fee that the lowest threshold
the uptime falls below gives; the amount is rounded half up to the currency's own decimals
(cents for USD and EUR, whole yen for JPY).

The SLA is the account's own (`accounts.sla_uptime_pct`, see `account_sla`) when it has one,
else its plan's.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pulse.core.locales import currency_digits
from pulse.listeners.contract import SLA_UPTIME_RANGE

PLANS = Path(__file__).with_name("sla.yaml")
#: the range of promise an account's own SLA may make (the contract clears others)
OWN_MIN, OWN_MAX = SLA_UPTIME_RANGE


@dataclass(frozen=True)
class Sla:
    uptime: float  # the promised monthly uptime, percent
    credits: tuple[tuple[float, float], ...]  # (uptime below, credit percent), any order


@dataclass(frozen=True)
class Credit:
    month: str  # "July 2026"
    uptime: float  # the month's uptime so far, percent
    promised: float
    percent: float  # of the monthly fee
    amount: Decimal  # in the currency's own decimals (JPY none, BHD three)
    currency: str
    month_start: date | None = None

    def to_context(self) -> dict[str, Any]:
        """What the customer reads (their own contract and their own month only), as raw
        figures: the template writes them in the recipient's locale (pulse/core/locales.py).
        `month` is the month's first day; uptimes keep three decimals; `amount` is text so
        that the decimals of the currency survive JSON."""
        month = self.month_start.isoformat() if self.month_start else self.month
        return {"month": month, "uptime": round(self.uptime, 3),
                "promised": round(self.promised, 3), "percent": self.percent,
                "amount": str(self.amount), "currency": self.currency}


@lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, Sla], Sla]:
    """sla.yaml read once: the plans' SLAs, and the `custom` credit schedule that an account's
    own promise uses when its plan has none."""
    doc = yaml.safe_load(PLANS.read_text(encoding="utf-8")) or {}

    def tiers(spec: dict[str, Any]) -> tuple[tuple[float, float], ...]:
        return tuple((float(below), float(pct)) for below, pct in spec.get("credits") or ())

    plans = {str(name).strip().lower(): Sla(float(spec["uptime"]), tiers(spec))
             for name, spec in (doc.get("plans") or {}).items()}
    return plans, Sla(100.0, tiers(doc.get("custom") or {}))


def _plans() -> dict[str, Sla]:
    return _catalogue()[0]


def _custom() -> Sla:
    return _catalogue()[1]


def plan_sla(plan: str | None) -> Sla | None:
    """The SLA of a plan, or None when the plan promises none."""
    if plan is None or (isinstance(plan, float) and pd.isna(plan)):
        return None
    return _plans().get(str(plan).strip().lower())


def account_sla(plan: str | None, uptime_pct: float | None) -> Sla | None:
    """The SLA an account's contract gives: its own promise (`accounts.sla_uptime_pct`) when
    it has one, else its plan's.

    An account's own promise keeps its plan's credit schedule (sla.yaml `custom` when the
    plan has no SLA) with the first tier, "below the promise", moved to the account's
    promise; deeper tiers at or above the new promise fall away, so every tier lies below it.
    """
    base = plan_sla(plan)
    if uptime_pct is None or pd.isna(uptime_pct):
        return base
    promise = float(uptime_pct)
    if not OWN_MIN <= promise <= OWN_MAX:
        return base  # the contract clears such values; never trust one that slipped by
    base = base or _custom()
    if not base.credits:
        return None
    first, *deeper = sorted(base.credits, reverse=True)
    tiers = ((promise, first[1]), *((b, p) for b, p in deeper if b < promise))
    return Sla(promise, tiers)


def month_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month holding `moment`: [start, end)."""
    m = moment.astimezone(UTC)
    start = datetime(m.year, m.month, 1, tzinfo=UTC)
    end = datetime(m.year + (m.month == 12), m.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def downtime_minutes(windows: list[tuple[datetime, datetime]], start: datetime,
                     end: datetime) -> float:
    """Minutes within [start, end) covered by any of `windows` (overlaps counted once)."""
    spans = sorted((max(a, start), min(b, end)) for a, b in windows if b > start and a < end)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in spans:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += (cur_b - cur_a).total_seconds()  # type: ignore[operator]
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += (cur_b - cur_a).total_seconds()  # type: ignore[operator]
    return total / 60.0


def service_credit(sla: Sla, *, downtime: float, month_start: datetime, fee: Decimal | float,
                   currency: str) -> Credit | None:
    """The credit `sla` gives for `downtime` minutes in the month starting at `month_start`
    on a monthly fee of `fee`; None when the month stays within the promise."""
    days = calendar.monthrange(month_start.year, month_start.month)[1]
    minutes = days * 24 * 60
    uptime = 100.0 * (1.0 - min(max(downtime, 0.0), minutes) / minutes)
    owed = [pct for below, pct in sla.credits if uptime < below]
    if not owed:
        return None
    percent = max(owed)
    currency = currency or "USD"
    digits = currency_digits(currency)  # 2 for a code Babel does not know
    amount = (Decimal(str(fee)) * Decimal(str(percent)) / Decimal(100)).quantize(
        Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return Credit(month_start.strftime("%B %Y"), uptime, sla.uptime, percent, amount,
                  currency, month_start.date())
