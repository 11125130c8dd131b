"""The billing term when renewals are only payments: a monthly plan that never emits
`renewed` reads its term from the cadence of its successful payments (not "annual" because
no renewal came in two months); an annual plan in its first year stays annual, and so does one whose history begins
mid-term with a single payment; an account without any billing row is due on the anniversary
of its creation; a payment
that lands later never changes a past date. Worked out by hand, on SQLite and PostgreSQL."""
from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pulse.listeners.landing import land_file
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.features import compute_features, load_features

D = date(2026, 6, 30)
LANDED = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
LATER = datetime(2026, 7, 2, 9, 0, tzinfo=UTC)

ACCOUNTS = """account_id,name,mrr,seats,created_at
mon,Monthly Co,100,5,2026-01-10T00:00:00Z
ann,Annual Co,200,5,2026-02-01T00:00:00Z
old,Older Co,100,5,
nob,No Billing Co,300,5,2024-08-10T09:00:00Z
"""
HEADER = "event_id,account_id,occurred_at,kind,amount,mrr_after\n"
PURCHASES = HEADER + """\
m0,mon,2026-01-10T00:00:00Z,subscription_started,0,100
m1,mon,2026-01-10T00:01:00Z,payment_succeeded,100,
m2,mon,2026-02-10T03:00:00Z,payment_succeeded,100,
m3,mon,2026-03-10T03:00:00Z,payment_succeeded,100,
m4,mon,2026-04-10T03:00:00Z,payment_failed,100,
m5,mon,2026-04-12T03:00:00Z,payment_succeeded,100,
m6,mon,2026-05-10T03:00:00Z,payment_succeeded,100,
m7,mon,2026-06-10T03:00:00Z,payment_succeeded,100,
a0,ann,2026-02-01T00:00:00Z,subscription_started,0,200
a1,ann,2026-02-01T00:01:00Z,payment_succeeded,2400,
o1,old,2026-03-05T03:00:00Z,payment_succeeded,1200,
"""


def _land(engine: Engine, folder: Path, name: str, text: str, now: datetime) -> None:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    assert land_file(engine, path, now=now).quarantined == 0


def test_monthly_term_is_read_from_payments_and_annual_stays_annual(
    engine: Engine, tmp_path: Path
) -> None:
    _land(engine, tmp_path, "accounts.csv", ACCOUNTS, LANDED)
    _land(engine, tmp_path, "purchases.csv", PURCHASES, LANDED)
    assert compute_features(engine, D, negative_terms=NEGATIVE_TERMS) == 4
    f = load_features(engine, D).set_index("account_id")
    # mon: the last two successful payments 05-10 and 06-10 are 31 days apart; the next
    # is due 31 days after 06-10 (07-11), 11 days after 06-30; a failed payment (m4) is
    # not part of the cadence
    assert f.loc["mon", "billing_term_days"] == 31.0
    assert f.loc["mon", "is_annual"] == 0.0
    assert f.loc["mon", "days_to_renewal_est"] == 11.0
    # ann: one start and one payment 149 days ago, nothing since: annual, due 2027-02-01
    assert f.loc["ann", "billing_term_days"] == 365.0
    assert f.loc["ann", "is_annual"] == 1.0
    assert f.loc["ann", "days_to_renewal_est"] == pytest.approx(365 - 149)
    # old: history starts mid-term; one payment 117 days ago and nothing since: annual,
    # due 2027-03-05 (248 days after 06-30)
    assert f.loc["old", "billing_term_days"] == 365.0
    assert f.loc["old", "days_to_renewal_est"] == 248.0
    # nob: no billing row at all (an annual contract renewed before the history began): no
    # term is known, and the next renewal is the anniversary of its creation, 2026-08-10
    assert math.isnan(f.loc["nob", "billing_term_days"])
    assert math.isnan(f.loc["nob", "is_annual"])
    assert f.loc["nob", "days_to_renewal_est"] == 41.0

    # a payment that happened before D but lands after it changes D's answer not at all
    late = tmp_path / "late"
    late.mkdir()
    _land(engine, late, "purchases.csv",
          HEADER + "m8,mon,2026-06-20T03:00:00Z,payment_succeeded,100,\n", LATER)
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    again = load_features(engine, D).set_index("account_id")
    assert again.loc["mon", "billing_term_days"] == 31.0
    assert again.loc["mon", "days_to_renewal_est"] == 11.0
    # as of the day it landed it counts: 06-10 to 06-20 is 10 days
    compute_features(engine, LATER.date(), negative_terms=NEGATIVE_TERMS)
    after = load_features(engine, LATER.date()).set_index("account_id")
    assert after.loc["mon", "billing_term_days"] == 10.0
