"""The issue-12 features, each worked out by hand on a small history: trends against the
account's own past, seat use against its own peak, payment failures and recovery, the billing
term and next renewal, support tone from text_insights (the lexicon where the model has not
scored a text), the champion and tenure. A row that lands later never changes a past date.
On SQLite and PostgreSQL."""
from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from pulse.listeners.landing import land_file
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.features import FEATURES, compute_features, load_features
from pulse.sql.schema import TextInsight

D = date(2026, 6, 30)  # last 7 days from 06-24, 28 from 06-03, 90 from 04-02, 168 from 01-14
LANDED = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
LATER = datetime(2026, 7, 2, 9, 0, tzinfo=UTC)

ACCOUNTS = """account_id,name,mrr,seats,created_at
acc-1,Northwind,100,10,2025-06-01T00:00:00Z
acc-2,Initech,50,4,
acc-3,Hooli,300,5,2024-07-01T00:00:00Z
"""
CONTACTS = "contact_id,account_id,email\n" + "".join(
    f"c{i},acc-1,c{i}@northwind.example\n" for i in range(1, 8))
USAGE_HEADER = "event_id,account_id,occurred_at,feature,contact_id,quantity,outcome\n"
# (days back from D, 12-week week = back // 7, 28-day block = back // 28)
USAGE = USAGE_HEADER + """\
e1,acc-1,2026-06-30T10:00:00Z,reports,c1,4,ok
e2,acc-1,2026-06-25T10:00:00Z,reports,c2,2,error
e3,acc-1,2026-06-10T10:00:00Z,reports,c1,6,ok
e9,acc-1,2026-05-25T10:00:00Z,reports,c4,1,ok
e4,acc-1,2026-05-20T10:00:00Z,reports,c1,8,ok
e5,acc-1,2026-05-15T10:00:00Z,reports,c3,4,ok
e8,acc-1,2026-05-01T10:00:00Z,reports,c3,1,ok
e6,acc-1,2026-04-15T10:00:00Z,reports,c3,10,error
e7,acc-1,2026-02-01T10:00:00Z,reports,c4,1,ok
e10,acc-1,2026-02-02T10:00:00Z,reports,c5,1,ok
e11,acc-1,2026-02-03T10:00:00Z,reports,c6,1,ok
e12,acc-1,2026-02-04T10:00:00Z,reports,c7,1,ok
e13,acc-3,2026-06-01T10:00:00Z,reports,,3,ok
e14,acc-3,2026-06-29T10:00:00Z,reports,,1,ok
"""
PURCHASES = """event_id,account_id,occurred_at,kind,amount,mrr_after
p1,acc-1,2025-06-01T00:00:00Z,subscription_started,100,100
p3,acc-1,2026-05-01T00:00:00Z,renewed,100,100
p4,acc-1,2026-06-01T00:00:00Z,renewed,100,100
f3,acc-1,2026-03-01T00:00:00Z,payment_failed,100,
f1,acc-1,2026-04-20T00:00:00Z,payment_failed,100,
s1,acc-1,2026-04-22T00:00:00Z,payment_succeeded,100,
f2,acc-1,2026-06-20T00:00:00Z,payment_failed,100,
q1,acc-2,2025-09-15T00:00:00Z,subscription_started,600,50
r1,acc-3,2024-07-10T00:00:00Z,subscription_started,3600,300
r2,acc-3,2025-07-10T00:00:00Z,renewed,3600,300
"""
TICKETS = """ticket_id,account_id,opened_at,resolved_at,status,priority,subject,body
t1,acc-1,2026-06-29T10:00:00Z,,open,normal,Exports,the export fails every time
t2,acc-1,2026-06-01T10:00:00Z,,open,normal,Invoices,a question about invoices
t3,acc-1,2026-05-10T10:00:00Z,,open,normal,App,the app keeps crashing
t4,acc-1,2026-03-01T10:00:00Z,,open,normal,Old,this is broken
"""
MENTIONS = """\
{"mention_id": "m1", "created_at": "2026-06-28T12:00:00Z", "author_handle": "x", \
"account_id": "acc-1", "text": "love it"}
{"mention_id": "m2", "created_at": "2026-05-01T12:00:00Z", "author_handle": "x", \
"account_id": "acc-1", "text": "broken again"}
"""
#: what the sentiment model said (text_insights); t3 and m2 were not scored: the lexicon
INSIGHTS = [("ticket", "t1", "negative"), ("ticket", "t2", "neutral"),
            ("mention", "m1", "negative")]

# acc-1, worked out by hand. Events: 7d 6 (e1, e2), 28d 12 (+ e3), 90d 36 (e1-e6, e8, e9).
# Weeks back (x = 11 - week): e1, e2 w0 (x 11), e3 w2 (9), e9 w5 (6), e4 w5 (6), e5 w6 (5),
# e8 w8 (3), e6 w10 (1): sum((x - 5.5) * events) = 22 + 11 + 21 + 0.5 + 4 - 2 - 2.5 - 45 = 9.
# Active days: 7d 2, 28d 3, 90d 8. Users per 28-day block: 0 {c1, c2}, 1 {c1, c3, c4},
# 2 {c3}, 5 {c4, c5, c6, c7}. Errors: 28d 2 of 12, 90d 12 (e2, e6) of 36.
EXPECTED_ACC1: dict[str, Any] = {
    "events_7d_vs_28d": 6 / (12 / 4),
    "events_28d_vs_90d": 12 / (36 * 28 / 90),
    "events_slope_12w": (9 / 143) / (36 / 12),
    "active_days_7d_vs_28d": 2 / (3 / 4),
    "active_days_28d_vs_90d": 3 / (8 * 28 / 90),
    "active_users_28d_vs_prev": 2 / 3,
    "error_rate_28d_vs_90d": (2 / 12) / (12 / 36),
    "active_users_peak_90d": 3.0,
    "active_users_peak_180d": 4.0,
    "seat_use_vs_peak_90d": 2 / 3,
    "seat_use_vs_peak_180d": 2 / 4,
    "failed_payments_90d": 2.0,  # f1, f2 (f3 is before 04-02)
    "recovered_payments_90d": 1.0,  # f1, by s1
    "days_since_failed_payment": 10.0,  # f2 on 06-20
    "billing_term_days": 31.0,  # p3 05-01 to p4 06-01
    "is_annual": 0.0,
    "days_to_renewal_est": 2.0,  # 06-01 + 31 days = 07-02
    "tickets_negative_share_90d": 2 / 3,  # t1 (model), t3 (lexicon: crash*); t2 neutral
    "mentions_negative_share_90d": 1.0,  # m1 (the model wins over the words), m2 (lexicon)
    "negative_texts_28d": 2.0,  # t1, m1
    "negative_texts_90d": 4.0,
    "tone_scored_share_90d": 3 / 5,
    "tone_source": "mixed",
    "champion_gone": 1.0,  # c3: 15 events on 3 days in 04-03..06-02, none since 06-03
    "tenure_days": 394.0,  # created 2025-06-01
    # own long baseline, days 28 to 179 back: e9, e4, e5, e8, e6 (10 errors), e7, e10-e12
    # (02-01 is 149 back): 28 events on 9 days, from 149 back: 149 - 27 = 122 baseline days
    "events_28d_vs_180d": (12 / 28) / (28 / 122),
    "active_days_28d_vs_180d": (3 / 28) / (9 / 122),
    "error_rate_28d_minus_180d": 2 / 12 - 10 / 28,
}
EXPECTED_ACC2: dict[str, Any] = {  # one start, no created_at, no usage
    "billing_term_days": 365.0,  # no renewal in 288 days: annual
    "is_annual": 1.0,
    "days_to_renewal_est": 77.0,  # 2025-09-15 + 365 = 2026-09-15
    "tenure_days": 288.0,  # its first purchase
    "events_7d_vs_28d": None,
    "events_slope_12w": None,
    "seat_use_vs_peak_90d": None,
    "champion_gone": None,
    "failed_payments_90d": 0.0,
    "days_since_failed_payment": None,
    "tone_source": None,
    "events_28d_vs_180d": None,
    "error_rate_28d_minus_180d": None,
}
EXPECTED_ACC3: dict[str, Any] = {
    "billing_term_days": 365.0, "is_annual": 1.0,
    "days_to_renewal_est": 10.0,  # 2025-07-10 + 365 = 2026-07-10
    "tenure_days": 729.0,  # created 2024-07-01
    # usage from 29 days back only: 2 baseline days, too few to compare with
    "events_28d_vs_180d": None,
    "active_days_28d_vs_180d": None,
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def land_world(engine: Engine, folder: Path) -> None:
    for name, text in (("accounts.csv", ACCOUNTS), ("contacts.csv", CONTACTS),
                       ("usage.csv", USAGE), ("purchases.csv", PURCHASES),
                       ("tickets.csv", TICKETS), ("mentions.jsonl", MENTIONS)):
        result = land_file(engine, _write(folder, name, text), now=LANDED)
        assert result.quarantined == 0, (name, result.reasons)
    with engine.begin() as conn:
        conn.execute(insert(TextInsight), [{
            "item_type": kind, "item_id": item, "account_id": "acc-1",
            "created_at": LANDED, "text": "-", "sentiment": sentiment,
            "sentiment_score": 0.9, "sentiment_method": "seed-model", "kind": "complaint",
            "kind_confidence": 0.9, "team": "triage", "component": None,
            "route_confidence": 0.5, "route_method": "keywords", "theme_key": None,
            "computed_at": LANDED} for kind, item, sentiment in INSIGHTS])


def _check(row: Any, expected: dict[str, Any]) -> None:
    for name, want in expected.items():
        got = row[name]
        if want is None:
            assert got is None or (isinstance(got, float) and math.isnan(got)), (name, got)
        elif isinstance(want, str):
            assert got == want, (name, got)
        else:
            assert got == pytest.approx(want, rel=1e-9), (name, got, want)


def test_issue_12_features_of_a_hand_made_history_are_exact(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path)
    assert compute_features(engine, D, negative_terms=NEGATIVE_TERMS) == 3
    f = load_features(engine, D).set_index("account_id")
    _check(f.loc["acc-1"], EXPECTED_ACC1)
    _check(f.loc["acc-2"], EXPECTED_ACC2)
    _check(f.loc["acc-3"], EXPECTED_ACC3)
    assert set(EXPECTED_ACC1) <= set(FEATURES) | {"tone_source"}
    # the slope is numpy's least-squares line through the 12 weekly totals
    weeks = np.zeros(12)
    for back, qty in ((0, 4), (5, 2), (20, 6), (35, 1), (40, 8), (45, 4), (59, 1), (75, 10)):
        weeks[11 - back // 7] += qty
    slope = np.polyfit(np.arange(12), weeks, 1)[0] / weeks.mean()
    assert f.loc["acc-1", "events_slope_12w"] == pytest.approx(slope)


def test_issue_12_features_of_a_past_date_ignore_rows_that_land_later(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path)
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    before = load_features(engine, D).set_index("account_id")
    late = tmp_path / "late"
    late.mkdir()
    # each late row lands in a daily file of its own, after D: c3 back (the champion), a
    # payment that recovers f2, acc-2 renewing, a negative ticket
    for i, (name, source, text) in enumerate((
        ("u.csv", "usage", USAGE_HEADER + "l1,acc-1,2026-06-29T10:00:00Z,reports,c3,50,error\n"),
        ("p.csv", "purchases", PURCHASES.splitlines()[0] + "\n"
         "l2,acc-1,2026-06-25T00:00:00Z,payment_succeeded,100,\n"),
        ("q.csv", "purchases", PURCHASES.splitlines()[0] + "\n"
         "l3,acc-2,2026-06-29T00:00:00Z,renewed,600,50\n"),
        ("t.csv", "tickets", TICKETS.splitlines()[0] + "\n"
         "l4,acc-1,2026-06-29T11:00:00Z,,open,urgent,Down,everything is broken\n"),
    )):
        land_file(engine, _write(late, name, text), source=source,
                  now=LATER + timedelta(minutes=i))
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    again = load_features(engine, D).set_index("account_id")
    cols = list(EXPECTED_ACC1)
    assert again[cols].astype(object).fillna("-").equals(before[cols].astype(object).fillna("-"))
    # as of the day they landed, they count
    later = LATER.date()
    compute_features(engine, later, negative_terms=NEGATIVE_TERMS)
    f = load_features(engine, later).set_index("account_id")
    assert f.loc["acc-1", "champion_gone"] == 0.0
    assert f.loc["acc-1", "recovered_payments_90d"] == 2.0
    assert f.loc["acc-2", "billing_term_days"] == 287.0  # 2025-09-15 to 2026-06-29
    assert f.loc["acc-1", "negative_texts_28d"] == 3.0


def test_every_model_input_reads_in_words() -> None:
    """A CSM reads the churn model's drivers as sentences: every input the model can read
    has its wording, for a value and for none, and never shows its column name."""
    from pulse.models.drivers import Driver, drivers_in_words
    from pulse.models.training import CATEGORICAL, DRIVER_LABELS, NUMERIC

    assert set(NUMERIC) | set(CATEGORICAL) <= set(DRIVER_LABELS)
    for name in (*NUMERIC, *CATEGORICAL):
        value: object = "starter" if name in CATEGORICAL else 0.25
        words = drivers_in_words([Driver(name, value, 1.0, 0.05), Driver(name, None, 1.0, -0.01)],
                                 DRIVER_LABELS)
        for sentence in words:
            assert "_" not in sentence and "::" not in sentence, sentence
        assert words[0].endswith("raises risk by 5 points") and "lowers risk" in words[1]
    slope = drivers_in_words([Driver("events_slope_12w", -0.05, 0.0, 0.03)], DRIVER_LABELS)
    assert slope == ["weekly usage over 12 weeks down 5% a week (typical flat) raises risk by "
                     "3 points"]
    days = drivers_in_words([Driver("active_days_28d", 15.0, 24.0, 0.15)], DRIVER_LABELS)
    assert days == ["active days in the last 28: 15 (typical 24) raises risk by 15 points"]
    tenure = drivers_in_words([Driver("tenure_days", 16.0, 456.0, 0.06)], DRIVER_LABELS)
    assert tenure == ["days as a customer 16 (typical 456) raises risk by 6 points"]
    # a yes/no input reads as a phrase either way, not "...: no"
    renewal = drivers_in_words([Driver("renews_within_90d", 0.0, 1.0, -0.04),
                                Driver("renews_within_90d", 1.0, 0.0, 0.04)], DRIVER_LABELS)
    assert renewal == ["no renewal due within 90 days lowers risk by 4 points",
                       "renewal due within 90 days raises risk by 4 points"]


def test_the_long_baseline_features_read_in_words() -> None:
    from pulse.models.drivers import Driver, drivers_in_words
    from pulse.models.training import DRIVER_LABELS, NUMERIC

    names = ("events_28d_vs_180d", "active_days_28d_vs_180d", "error_rate_28d_minus_180d")
    assert set(names) <= set(NUMERIC)  # the churn model reads them
    words = drivers_in_words([Driver(names[0], 0.42, 1.0, 0.08),
                              Driver(names[1], None, 1.0, 0.02),
                              Driver(names[2], 0.03, 0.0, 0.01),
                              Driver(names[2], -0.12, 0.0, -0.01),
                              Driver(names[2], None, 0.0, 0.01)], DRIVER_LABELS)
    assert words[0] == ("usage in the last 28 days 0.42× its own baseline (typical 1.00×) "
                        "raises risk by 8 points")
    assert words[1].startswith("active days in the last 28: too little history")
    assert words[2].startswith("error share in the last 28 days against its own baseline: "
                               "up 3.0% (typical flat)")
    assert words[3].startswith("error share in the last 28 days against its own baseline: "
                               "down 12% (typical flat)")
    assert words[4].startswith("error share in the last 28 days against its own baseline: "
                               "too little history")
