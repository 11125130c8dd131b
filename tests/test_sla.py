"""Service credits after an outage: the SLA arithmetic (outreach/sla.py) and the credit a
resolved notice tells each hit account, from its plan (outreach/sla.yaml)."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, insert

from pulse.listeners.landing import land_file
from pulse.outreach.notices import _service_credits
from pulse.outreach.sla import (
    Sla,
    downtime_minutes,
    month_bounds,
    plan_sla,
    service_credit,
)
from pulse.sql.schema import Incident, IncidentImpact

JULY = datetime(2026, 7, 1, tzinfo=UTC)  # 31 days: 44,640 minutes
BUSINESS = Sla(99.9, ((99.9, 10.0), (99.0, 25.0)))


def _t(day: int, hour: int, minute: int = 0, month: int = 7) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_the_credit_is_the_lowest_threshold_the_month_falls_below() -> None:
    one_hour = service_credit(BUSINESS, downtime=60, month_start=JULY, fee=Decimal("1200"),
                              currency="EUR")
    assert one_hour is not None
    assert abs(one_hour.uptime - 100 * (1 - 60 / 44_640)) < 1e-9  # 99.8656 %
    assert (one_hour.percent, one_hour.amount) == (10.0, Decimal("120.00"))
    # raw figures: the template writes them in the recipient's locale
    assert one_hour.to_context() == {"month": "2026-07-01", "uptime": 99.866,
                                     "promised": 99.9, "percent": 10.0,
                                     "amount": "120.00", "currency": "EUR"}
    # 500 minutes: 98.88 %, below 99.0 as well: the larger credit, not both
    worse = service_credit(BUSINESS, downtime=500, month_start=JULY, fee=1200, currency="USD")
    assert worse is not None and (worse.percent, worse.amount) == (25.0, Decimal("300.00"))
    # 44 minutes: 99.901 %, within the promise: no credit
    assert service_credit(BUSINESS, downtime=44, month_start=JULY, fee=1200,
                          currency="USD") is None
    # 45 minutes: 99.899 %, just below
    assert service_credit(BUSINESS, downtime=45, month_start=JULY, fee=1200,
                          currency="USD") is not None


def test_the_month_length_and_the_cents_are_exact() -> None:
    feb = datetime(2028, 2, 1, tzinfo=UTC)  # a leap year: 29 days, 41,760 minutes
    credit = service_credit(BUSINESS, downtime=41.76 * 1.5, month_start=feb,
                            fee=Decimal("333.33"), currency="USD")  # 99.85 %
    assert credit is not None and abs(credit.uptime - 99.85) < 1e-9
    assert credit.amount == Decimal("33.33")  # 33.333 rounded to the cent
    tiny = service_credit(BUSINESS, downtime=100, month_start=JULY, fee=Decimal("0.05"),
                          currency="USD")
    assert tiny is not None and tiny.amount == Decimal("0.01")  # 0.005, half up
    # downtime longer than the month caps at 0 % uptime
    down = service_credit(BUSINESS, downtime=10**6, month_start=JULY, fee=100, currency="USD")
    assert down is not None and down.uptime == 0.0 and down.amount == Decimal("25.00")


def test_the_amount_has_the_decimals_of_its_currency() -> None:
    yen = service_credit(BUSINESS, downtime=60, month_start=JULY, fee=Decimal("12345"),
                         currency="JPY")  # 10 % of 12,345 yen: 1,234.5, half up
    assert yen is not None and yen.amount == Decimal("1235")
    dinar = service_credit(BUSINESS, downtime=60, month_start=JULY, fee=Decimal("123.4567"),
                           currency="BHD")  # three decimals: 12.34567
    assert dinar is not None and dinar.amount == Decimal("12.346")


def test_downtime_counts_overlaps_once_and_only_within_the_month() -> None:
    start, end = month_bounds(_t(15, 12))
    assert (start, end) == (JULY, datetime(2026, 8, 1, tzinfo=UTC))
    assert month_bounds(datetime(2026, 12, 31, 23, tzinfo=UTC))[1] == \
        datetime(2027, 1, 1, tzinfo=UTC)
    windows = [(_t(2, 10), _t(2, 11)),            # 60
               (_t(2, 10, 30), _t(2, 11, 30)),    # overlaps: +30
               (_t(9, 8), _t(9, 8, 15)),          # 15
               (_t(30, 23, 0, month=6), _t(1, 0, 10))]  # from June: 10 in July
    assert downtime_minutes(windows, start, end) == 115.0
    assert downtime_minutes([], start, end) == 0.0


def test_plans_without_an_sla_get_no_credit() -> None:
    sla = plan_sla(" Business ")
    assert sla is not None and sla.uptime == 99.9
    assert plan_sla("starter") is None and plan_sla(None) is None


def test_a_resolved_notice_tells_each_hit_account_its_own_credit(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(
        "account_id,name,mrr,currency,plan\n"
        "acc-1,Northwind,1200,EUR,business\n"
        "acc-2,Initech,900,USD,starter\n"
        "acc-3,Globex,500,USD,business\n")
    land_file(engine, tmp_path / "accounts.csv")
    now = datetime(2026, 7, 20, tzinfo=UTC)
    lineage = {"landed_at": now, "updated_at": now}
    incidents = [("inc-1", _t(2, 10), _t(2, 11)), ("inc-2", _t(9, 8), _t(9, 8, 30)),
                 ("inc-0", _t(3, 0, month=6), _t(3, 10, month=6))]  # June: not this month
    impact = {"failed_events": 1, "total_events": 1, "failed_requests": 1.0,
              "total_requests": 1.0, "affected_users": 1, "components": [], "regions": [],
              "window_start": JULY, "window_end": JULY, "computed_at": now}
    with engine.begin() as conn:
        conn.execute(insert(Incident), [
            {"incident_id": i, "title": i, "started_at": a, "resolved_at": b,
             "status": "resolved", "impact": "major", "components": [], "regions": [],
             **lineage} for i, a, b in incidents])
        conn.execute(insert(IncidentImpact), [
            {"incident_id": i, "account_id": acc, "status": status, **impact}
            for i, acc, status in [("inc-1", "acc-1", "hit"), ("inc-2", "acc-1", "hit"),
                                   ("inc-0", "acc-1", "hit"), ("inc-2", "acc-2", "hit"),
                                   ("inc-2", "acc-3", "hit"), ("inc-1", "acc-3", "exposed")]])
    credits = _service_credits(engine, ["acc-1", "acc-2", "acc-3"], _t(9, 8, 30))
    # acc-1: 60 + 30 minutes in July (99.798 %) on 1,200 EUR; acc-3: only inc-2 hit it
    # (30 minutes, 99.933 %: within 99.9); acc-2's plan has no SLA
    assert credits == {"acc-1": {"month": "2026-07-01", "uptime": 99.798,
                                 "promised": 99.9, "percent": 10.0,
                                 "amount": "120.00", "currency": "EUR"}}
