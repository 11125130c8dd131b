"""Money in many currencies, compared and summed in one reporting currency.

Accounts bill in their own currency (the contract's `currency`). Ranking accounts by revenue
at risk, or adding up the MRR behind a feedback theme, needs one unit: `to_reporting(amounts,
currencies)` converts with `PULSE_FX_RATES` (JSON: the value of one unit in the reporting
currency, `PULSE_REPORTING_CURRENCY`, default USD) over approximate built-in rates. The built-in
rates only order and weigh accounts; set your own for figures you report. A currency with no
rate is left as it is (rate 1) and logged once.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Approximate value of one unit in US dollars (late 2026 orders of magnitude, not quotes).
USD_PER_UNIT: dict[str, float] = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CHF": 1.12, "CAD": 0.73, "AUD": 0.66,
    "NZD": 0.60, "SEK": 0.095, "NOK": 0.093, "DKK": 0.145, "SGD": 0.74, "JPY": 0.0067,
    "CNY": 0.14, "INR": 0.012, "BRL": 0.18, "MXN": 0.055, "ZAR": 0.054, "HKD": 0.128,
    "KRW": 0.00073, "PLN": 0.25,
}
_warned: set[str] = set()


def rates() -> tuple[str, dict[str, float]]:
    """(reporting currency, value of one unit of each currency in it)."""
    from pulse.core.settings import get_settings

    settings = get_settings()
    target = settings.reporting_currency.strip().upper() or "USD"
    base = USD_PER_UNIT.get(target)
    table = ({c: v / base for c, v in USD_PER_UNIT.items()} if base else {target: 1.0})
    table.update({c.strip().upper(): float(v) for c, v in settings.fx_rates.items()})
    table[target] = 1.0
    return target, table


def reporting_currency() -> str:
    return rates()[0]


def to_reporting(amounts: Iterable[Any], currencies: Iterable[Any]) -> np.ndarray:
    """The amounts in the reporting currency (NaN stays NaN)."""
    target, table = rates()
    cur = pd.Series(list(currencies), dtype=object).fillna(target).astype(str).str.upper()
    factor = cur.map(table)
    for missing in sorted(set(cur[factor.isna()]) - _warned):
        log.warning("no exchange rate for %s: counted 1:1 with %s (set PULSE_FX_RATES)",
                    missing, target)
        _warned.add(missing)
    values = pd.to_numeric(pd.Series(list(amounts), dtype=object), errors="coerce")
    converted: np.ndarray = (values.to_numpy(dtype="float64")
                             * factor.fillna(1.0).to_numpy(dtype="float64"))
    return converted
