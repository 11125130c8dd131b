"""Point-in-time features: exact values on a hand-made world, rows that arrive or happen
later never change a date, re-runs replace one date only. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, literal, select

from pulse.listeners.landing import land_file
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.feature_sources import _matches_any, _normalised_sql, matches_terms
from pulse.sql.features import FEATURES, compute_features, load_features
from pulse.sql.schema import AccountFeatures

D = date(2026, 6, 30)
LANDED = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)  # everything below had landed by then
LATER = datetime(2026, 7, 2, 9, 0, tzinfo=UTC)

ACCOUNTS = """account_id,name,mrr,seats,created_at,renewal_date,x_handle
acc-1,Northwind Traders,1000,10,2025-01-01T00:00:00Z,2026-07-30,northwind
acc-2,Initech,50,4,2026-06-20T09:00:00Z,,
acc-3,Hooli,300,5,2026-07-05T00:00:00Z,,
"""
CONTACTS = """contact_id,account_id,email,x_handle
c1,acc-1,ana@northwind.example,ana_nw
c2,acc-1,bo@northwind.example,
c3,acc-1,cy@northwind.example,
c4,acc-2,di@initech.example,
"""
# last 7 days: 06-24..06-30; last 28: 06-03..06-30; the 28 before: 05-06..06-02
USAGE = """event_id,account_id,occurred_at,feature,contact_id,quantity,outcome
u1,acc-1,2026-06-30T10:00:00Z,reports,c1,5,ok
u2,acc-1,2026-06-30T11:00:00Z,reports,c2,3,error
u3,acc-1,2026-06-24T00:00:00Z,api,,10,ok
u4,acc-1,2026-06-23T23:59:59Z,dashboards,c1,2,ok
u5,acc-1,2026-06-03T00:00:00Z,reports,c3,4,error
u6,acc-1,2026-06-02T23:00:00Z,reports,c1,20,ok
u7,acc-1,2026-05-06T00:00:00Z,api,,16,ok
u8,acc-1,2026-05-05T23:59:59Z,api,,100,ok
u9,acc-1,2026-07-01T00:00:00Z,api,,50,ok
u10,acc-2,2026-06-28T15:00:00Z,reports,c4,1,ok
"""
# the last 90 days start 2026-04-02
PURCHASES = """event_id,account_id,occurred_at,kind,amount,mrr_after
p1,acc-1,2026-01-10T00:00:00Z,subscription_started,1000,1000
p2,acc-1,2026-05-01T00:00:00Z,downgraded,0,800
p3,acc-1,2026-06-01T00:00:00Z,payment_failed,800,
p4,acc-1,2026-06-05T00:00:00Z,payment_succeeded,800,
p5,acc-1,2026-06-10T00:00:00Z,payment_failed,800,
p6,acc-1,2026-06-12T00:00:00Z,payment_failed,800,
p7,acc-1,2026-07-01T08:00:00Z,payment_succeeded,1600,
"""
TICKETS = """ticket_id,account_id,opened_at,resolved_at,status,priority
t1,acc-1,2026-06-25T08:00:00Z,2026-06-25T12:00:00Z,solved,normal
t2,acc-1,2026-06-20T00:00:00Z,2026-06-21T00:00:00Z,solved,urgent
t3,acc-1,2026-06-29T10:00:00Z,,open,urgent
t4,acc-1,2026-04-01T00:00:00Z,2026-04-03T00:00:00Z,solved,normal
t5,acc-1,2026-06-28T00:00:00Z,2026-07-01T00:00:00Z,solved,high
t6,acc-1,2026-06-30T09:00:00Z,,closed,low
t7,acc-1,2026-05-10T00:00:00Z,2026-05-10T02:00:00Z,solved,normal
"""
MENTIONS = """\
{"mention_id": "m1", "created_at": "2026-06-29T12:00:00Z", "author_handle": "northwind", \
"text": "Export is BROKEN again!"}
{"mention_id": "m2", "created_at": "2026-06-28T12:00:00Z", "author_handle": "@Ana_NW", \
"text": "Loving the new dashboards"}
{"mention_id": "m3", "created_at": "2026-06-27T12:00:00Z", "author_handle": "someone", \
"account_id": "acc-1", "text": "Why so slow today?"}
{"mention_id": "m4", "created_at": "2026-05-01T12:00:00Z", "author_handle": "northwind", \
"text": "Great support, thanks"}
{"mention_id": "m5", "created_at": "2026-06-30T01:00:00Z", "author_handle": "stranger", \
"text": "what a terrible day"}
"""
INCIDENTS = """\
{"incident_id": "i1", "title": "Exports failing", "started_at": "2026-06-15T10:00:00Z"}
"""

#: What acc-1 must look like as of D, worked out by hand from the rows above.
EXPECTED_ACC1: dict[str, Any] = {
    "account_age_days": 545,
    "seats": 10,
    "active_days_7d": 2,  # 06-30, 06-24 (u3 at midnight opens the window)
    "active_days_28d": 4,  # + 06-23, 06-03
    "events_7d": 18.0,  # 5 + 3 + 10
    "events_28d": 24.0,  # + 2 + 4
    "events_prev_28d": 36.0,  # 20 + 16 (u8 is a second too early)
    "usage_trend_28d_pct": -100 / 3,  # (24 - 36) / 36
    "distinct_features_28d": 3,
    "active_users_28d": 3,  # c1, c2, c3; u3 has no contact
    "seat_utilisation_28d": 0.3,
    "error_rate_28d": 7 / 24,  # (3 + 4) / 24
    "days_since_last_use": 0,
    "mrr": 800.0,
    "mrr_90d_ago": 1000.0,
    "mrr_change_90d_pct": -20.0,
    "open_failed_payments": 2,  # p5, p6; p3 was followed by p4; p7 comes after D
    "downgrades_90d": 1,
    "cancelled": False,
    "days_to_renewal": 30,
    "tickets_30d": 5,  # t1, t2, t3, t5, t6
    "tickets_90d": 6,  # + t7 (t4 opened a day before the window)
    "open_tickets": 2,  # t3, and t5 which is resolved only after D
    "open_urgent_tickets": 1,  # t3
    "resolve_hours_median_90d": 14.0,  # t7 2, t1 4, t6 14 (closed when it landed), t2 24, t4 48
    "resolve_hours_mean_90d": 18.4,
    "days_since_last_ticket": 0,
    "mentions_28d": 3,  # m1 (account handle), m2 (contact handle), m3 (account_id)
    "negative_mentions_28d": 2,  # "broken", "slow"
    "negative_share_28d": 2 / 3,
    "incident_minutes_28d": 0.0,
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def land_world(engine: Engine, folder: Path, *, now: datetime = LANDED) -> None:
    """Land the hand-made world above, every row known by `now`."""
    for name, text in (("accounts.csv", ACCOUNTS), ("contacts.csv", CONTACTS),
                       ("usage.csv", USAGE), ("purchases.csv", PURCHASES),
                       ("tickets.csv", TICKETS), ("mentions.jsonl", MENTIONS),
                       ("incidents.jsonl", INCIDENTS)):
        result = land_file(engine, _write(folder, name, text), now=now)
        assert result.quarantined == 0, (name, result.reasons)


def features_of(engine: Engine, as_of: date) -> dict[str, dict[str, Any]]:
    """Every stored feature row of a date, by account, without the computed_at stamp."""
    t = AccountFeatures.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.as_of == as_of)).mappings().all()
    return {r["account_id"]: {k: v for k, v in r.items() if k != "computed_at"} for r in rows}


def test_features_of_a_hand_made_world_are_exact(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    assert compute_features(engine, D, negative_terms=NEGATIVE_TERMS) == 2  # acc-3 is created after D
    frame = load_features(engine, D).set_index("account_id")
    assert list(frame.index) == ["acc-1", "acc-2"]
    acc1 = frame.loc["acc-1"]
    for name, expected in EXPECTED_ACC1.items():
        assert acc1[name] == pytest.approx(expected), name
    assert acc1["usage_last_at"] == pd.Timestamp("2026-06-30T11:00:00Z")
    assert acc1["usage_source_last_at"] == pd.Timestamp("2026-06-30T11:00:00Z")
    assert acc1["billing_last_at"] == pd.Timestamp("2026-06-12T00:00:00Z")
    assert acc1["support_last_at"] == pd.Timestamp("2026-06-30T09:00:00Z")
    assert acc1["social_last_at"] == pd.Timestamp("2026-06-29T12:00:00Z")
    assert acc1["social_source_last_at"] == pd.Timestamp("2026-06-30T01:00:00Z")
    assert acc1["incidents_source_last_at"] == pd.Timestamp("2026-06-15T10:00:00Z")

    acc2 = frame.loc["acc-2"]  # new, one event, nothing else: counts are 0, ratios missing
    assert acc2["account_age_days"] == 10
    assert (acc2["events_28d"], acc2["active_users_28d"], acc2["seat_utilisation_28d"]) == (
        1.0, 1, 0.25)
    assert acc2["days_since_last_use"] == 2
    assert pd.isna(acc2["usage_trend_28d_pct"])  # nothing to compare with
    assert (acc2["mrr"], acc2["mrr_change_90d_pct"], acc2["open_failed_payments"]) == (
        50.0, 0.0, 0)
    assert acc2["tickets_90d"] == 0 and pd.isna(acc2["days_since_last_ticket"])
    assert pd.isna(acc2["resolve_hours_median_90d"]) and pd.isna(acc2["negative_share_28d"])
    assert pd.isna(acc2["days_to_renewal"]) and pd.isna(acc2["billing_last_at"])
    # every scorecard feature is a column
    assert set(FEATURES) <= set(frame.columns)


def test_rows_that_land_or_happen_later_never_change_a_date(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path)
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    before = features_of(engine, D)
    late = tmp_path / "late"
    late.mkdir()
    # after D: a late usage row about 06-29, a row of 07-01, a payment that clears the
    # failures, a ticket resolved, a negative mention, a new account
    land_file(engine, _write(late, "accounts.csv", "account_id,name,mrr,created_at\n"
                             "acc-4,Umbrella,10,2026-06-01T00:00:00Z\n"
                             "acc-5,Soylent,20,\n"  # no created_at: its first event counts
                             "acc-6,Vandelay,30,\n"), now=LATER)  # no event before D
    land_file(engine, _write(late, "usage.csv", USAGE.splitlines()[0] + "\n"
                             "u11,acc-1,2026-06-29T10:00:00Z,admin,c2,7,error\n"
                             "u12,acc-1,2026-07-01T10:00:00Z,admin,c2,7,ok\n"
                             "u13,acc-4,2026-06-29T10:00:00Z,admin,,7,ok\n"
                             "u14,acc-5,2026-06-10T10:00:00Z,admin,,1,ok\n"
                             "u15,acc-6,2026-07-01T10:00:00Z,admin,,1,ok\n"), now=LATER)
    land_file(engine, _write(late, "purchases.csv", PURCHASES.splitlines()[0] + "\n"
                             "p8,acc-1,2026-06-20T00:00:00Z,payment_succeeded,800,\n"),
              now=LATER)
    land_file(engine, _write(late, "tickets.csv", TICKETS.splitlines()[0] + "\n"
                             "t3,acc-1,2026-06-29T10:00:00Z,2026-07-01T10:00:00Z,solved,urgent\n"),
              now=LATER)
    land_file(engine, _write(late, "mentions.jsonl",
                             '{"mention_id": "m9", "created_at": "2026-06-29T13:00:00Z", '
                             '"author_handle": "northwind", "text": "useless"}\n'), now=LATER)
    assert compute_features(engine, D, negative_terms=NEGATIVE_TERMS) == 2
    assert features_of(engine, D) == before

    # Pulse knew the late rows by 07-02: they count from then on
    compute_features(engine, date(2026, 7, 2), negative_terms=NEGATIVE_TERMS)
    after = load_features(engine, date(2026, 7, 2)).set_index("account_id")
    assert set(after.index) == {"acc-1", "acc-2", "acc-4", "acc-5", "acc-6"}
    assert after.loc["acc-1", "open_failed_payments"] == 0  # p7 (and p8) cleared them
    assert after.loc["acc-1", "open_urgent_tickets"] == 0
    assert after.loc["acc-1", "distinct_features_28d"] == 4  # admin
    # reconstructing history from event times counts the late rows on D
    compute_features(engine, D, basis="occurred", negative_terms=NEGATIVE_TERMS)
    occurred = load_features(engine, D).set_index("account_id")
    # acc-5 has no created_at but used the product on 06-10; acc-6 only after D
    assert set(occurred.index) == {"acc-1", "acc-2", "acc-4", "acc-5"}
    assert occurred.loc["acc-5", "events_28d"] == 1
    assert occurred.loc["acc-1", "events_28d"] == 24 + 7  # u11, not u12
    assert occurred.loc["acc-1", "negative_mentions_28d"] == 3
    assert occurred.loc["acc-1", "open_failed_payments"] == 0  # p8, on 06-20
    assert (occurred["basis"] == "occurred").all()


def test_re_running_a_date_replaces_it_and_nothing_else(engine: Engine, tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    earlier = date(2026, 6, 23)  # every row landed on D: read history by event time
    compute_features(engine, earlier, basis="occurred", negative_terms=NEGATIVE_TERMS)
    compute_features(engine, D, basis="occurred", negative_terms=NEGATIVE_TERMS)
    t = AccountFeatures.__table__
    with engine.connect() as conn:
        stamps = dict(conn.execute(select(t.c.as_of, t.c.computed_at)
                                   .where(t.c.account_id == "acc-1")).all())
        earlier_rows = conn.execute(select(t).where(t.c.as_of == earlier)).all()
    first = features_of(engine, D)
    assert compute_features(engine, D, basis="occurred", negative_terms=NEGATIVE_TERMS) == 2
    assert features_of(engine, D) == first
    with engine.connect() as conn:
        assert conn.execute(select(t).where(t.c.as_of == earlier)).all() == earlier_rows
        new_stamp = conn.execute(select(t.c.computed_at).where(
            t.c.as_of == D, t.c.account_id == "acc-1")).scalar_one()
    assert new_stamp > stamps[D]  # D was written again, the earlier date was not
    # on 06-23, acc-2 (created 06-20) had not used the product yet
    e = load_features(engine, earlier).set_index("account_id")
    assert e.loc["acc-2", "events_28d"] == 0 and pd.isna(e.loc["acc-2", "days_since_last_use"])
    assert e.loc["acc-1", "active_days_7d"] == 1  # 06-23 only


def test_stored_attributes_count_only_from_the_day_before_the_latest_activity(
    engine: Engine, tmp_path: Path
) -> None:
    """Seats, the renewal date and the fallback MRR are the accounts' latest state: on a date
    before the warehouse's latest activity they are unknown for every account alike, and the
    MRR comes from billing events alone (a one-go import must not show a past date what came
    later)."""
    land_world(engine, tmp_path)  # the latest activity: 07-01 (u9, p7)
    earlier = date(2026, 6, 23)
    compute_features(engine, earlier, basis="occurred", negative_terms=NEGATIVE_TERMS)
    e = load_features(engine, earlier).set_index("account_id")
    for name in ("seats", "seat_utilisation_28d", "days_to_renewal"):
        assert e[name].isna().all(), name
    # acc-1's MRR on 06-23 is its billing's (p2 took it to 800), not the stored 1000
    assert (e.loc["acc-1", "mrr"], e.loc["acc-1", "mrr_90d_ago"]) == (800.0, 1000.0)
    # acc-2 has no billing event: its MRR on 06-23 is unknown, not the stored 50
    assert pd.isna(e.loc["acc-2", "mrr"]) and pd.isna(e.loc["acc-2", "mrr_change_90d_pct"])
    # on D (the day before 07-01) they count, for acc-2 too, whose own usage ended 06-28
    d = (compute_features(engine, D, negative_terms=NEGATIVE_TERMS),
         load_features(engine, D).set_index("account_id"))[1]
    assert (d.loc["acc-2", "seats"], d.loc["acc-2", "mrr"]) == (4, 50.0)
    assert d.loc["acc-1", "days_to_renewal"] == 30
    # activity of any account a month later: D is in the past, its attributes unknown
    late = tmp_path / "late"
    late.mkdir()
    result = land_file(engine, _write(late, "tickets.csv", TICKETS.splitlines()[0] + "\n"
                                      "t9,acc-2,2026-08-01T10:00:00Z,,open,low\n"),
                       now=datetime(2026, 8, 2, tzinfo=UTC))
    assert result.quarantined == 0
    compute_features(engine, D, basis="occurred", negative_terms=NEGATIVE_TERMS)
    d = load_features(engine, D).set_index("account_id")
    assert d["seats"].isna().all() and d["days_to_renewal"].isna().all()
    assert pd.isna(d.loc["acc-2", "mrr"]) and d.loc["acc-1", "mrr"] == 800.0


LEXICON_CASES = [
    ("Export is BROKEN again!", True),
    ("the app keeps crashing", True),  # crash*
    ("it doesn't work", True),  # apostrophes dropped
    ("it doesn\u2019t work", True),  # so are typographic ones
    ("Fed up.", True),
    ("error\nline two", True),  # a line break separates words
    ("We debugged it ourselves, all good", False),  # bug* is a word start, not any substring
    ("slowly getting the hang of it", False),  # slow is a whole word
    ("Loving the new dashboards", False),
    ("", False),
]


@pytest.mark.parametrize(("text", "negative"), LEXICON_CASES)
def test_the_negative_lexicon_matches_whole_words(text: str, negative: bool) -> None:
    assert matches_terms(text, NEGATIVE_TERMS) is negative


def test_the_warehouse_matches_the_lexicon_as_python_does(engine: Engine) -> None:
    """The features' SQL (SQLite: the REGEXP function SQLAlchemy installs; PostgreSQL: ~)
    judges each text as `matches_terms` does."""
    with engine.connect() as conn:
        got = [conn.execute(select(_matches_any(_normalised_sql(literal(text)),
                                                NEGATIVE_TERMS))).scalar_one()
               for text, _ in LEXICON_CASES]
    assert [bool(g) for g in got] == [negative for _, negative in LEXICON_CASES]
