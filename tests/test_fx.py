"""Money in one reporting currency: conversion, overrides, and the risk list's ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pulse.core.fx import to_reporting
from pulse.core.settings import get_settings
from pulse.models.risklist import rank_rows


def test_amounts_convert_to_the_reporting_currency(monkeypatch: pytest.MonkeyPatch) -> None:
    got = to_reporting([100, 100, None, 5], ["USD", "JPY", "EUR", "XXX"])
    assert got[0] == 100 and got[1] == pytest.approx(0.67) and np.isnan(got[2])
    assert got[3] == 5  # no rate: counted 1:1, and logged
    monkeypatch.setenv("PULSE_REPORTING_CURRENCY", "EUR")
    monkeypatch.setenv("PULSE_FX_RATES", '{"USD": 0.5}')
    get_settings(fresh=True)
    assert list(to_reporting([10, 10], ["USD", "eur"])) == [5.0, 10.0]


def test_a_big_number_in_a_small_currency_does_not_outrank_real_money() -> None:
    frame = pd.DataFrame({
        "account_id": ["yen", "dollar"], "risk_basis": ["churn_model v1"] * 2,
        "band": ["red", "red"], "probability": [0.5, 0.5], "currency": ["JPY", "USD"],
        "mrr": [100_000.0, 2_000.0], "revenue_at_risk": [50_000.0, 1_000.0]})
    assert list(rank_rows(frame)["account_id"]) == ["dollar", "yen"]  # 335 USD < 1,000 USD
