"""Issue 15: first responses to an account's own tickets feed its features, its health and the
churn model.

`first_response_hours_median_90d` and `first_response_late_share_90d` are worked out by hand on
a small history, point in time (an answer after the date is no answer yet; a ticket landed
later is not seen with basis "known"), against each channel's expectation
(models/responses.yaml). A warehouse, or a channel, that records no first responses gives no
value, so the scorecard leaves the measure out instead of penalising. On SQLite and PostgreSQL.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from pulse.listeners.landing import land_file
from pulse.models.health import score_features
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.models.scorecard import load_scorecard
from pulse.sql.features import FEATURES, compute_features, load_features

D = date(2026, 6, 30)  # the last 90 days start 2026-04-02; the date ends 2026-07-01 00:00 UTC
LANDED = datetime(2026, 6, 30, 23, 50, tzinfo=UTC)
LATER = datetime(2026, 7, 2, 9, 0, tzinfo=UTC)
MEDIAN, LATE = "first_response_hours_median_90d", "first_response_late_share_90d"

ACCOUNTS = """account_id,name,mrr,created_at
acc-1,Northwind,100,2025-01-01T00:00:00Z
acc-2,Initech,50,2025-01-01T00:00:00Z
acc-3,Hooli,300,2025-01-01T00:00:00Z
acc-4,Umbrella,10,2025-01-01T00:00:00Z
"""
# expectations (models/responses.yaml): email 60 min, chat 0.8, phone 0.3
TICKETS = """ticket_id,account_id,opened_at,channel,first_response_at
t1,acc-1,2026-06-01T10:00:00Z,email,2026-06-01T10:30:00Z
t2,acc-1,2026-06-02T10:00:00Z,email,2026-06-02T12:00:00Z
t3,acc-1,2026-06-03T10:00:00Z,email,
t4,acc-1,2026-06-30T23:30:00Z,email,
t5,acc-1,2026-06-29T10:00:00Z,email,2026-07-01T09:00:00Z
t6,acc-1,2026-06-10T10:00:00Z,chat,2026-06-10T10:00:30Z
t7,acc-1,2026-03-01T09:00:00Z,email,2026-03-01T14:00:00Z
t8,acc-1,2026-06-15T10:00:00Z,phone,
t9,acc-1,2026-06-20T10:00:00Z,email,2026-06-20T11:00:00Z
t11,acc-2,2026-06-16T10:00:00Z,phone,
t12,acc-3,2026-06-05T10:00:00Z,chat,
"""
# acc-1 as of D: t1 on time (30 min), t2 late (2 h), t3 unanswered past its hour, t4 opened
# 30 minutes before the end of the date (pending: not due), t5 answered only after the date
# (late then), t6 on time (30 s of 48), t7 opened before the 90 days, t8 on phone (which never
# records a first response: left out), t9 answered at exactly the hour (on time).
# Due: t1 t2 t3 t5 t6 t9; late: t2 t3 t5. Answered by then: 30 s, 0.5 h, 1 h, 2 h.
ACC1_LATE = 3 / 6
ACC1_MEDIAN = (0.5 + 1.0) / 2
# landed after the date: seen only on the "occurred" basis (20 minutes: on time)
LATE_TICKET = """ticket_id,account_id,opened_at,channel,first_response_at
t10,acc-1,2026-06-25T10:00:00Z,email,2026-06-25T10:20:00Z
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _land(engine: Engine, folder: Path, tickets: str = TICKETS) -> None:
    for name, text in (("accounts.csv", ACCOUNTS), ("tickets.csv", tickets)):
        result = land_file(engine, _write(folder, name, text), now=LANDED)
        assert result.quarantined == 0, (name, result.reasons)


def _features(engine: Engine, basis: str = "known") -> pd.DataFrame:
    compute_features(engine, D, basis=basis,  # type: ignore[arg-type]
                     negative_terms=NEGATIVE_TERMS)
    return load_features(engine, D).set_index("account_id")


def test_first_responses_against_the_channel_expectation_are_exact(
        engine: Engine, tmp_path: Path) -> None:
    _land(engine, tmp_path)
    late = tmp_path / "late"
    late.mkdir()
    land_file(engine, _write(late, "tickets.csv", LATE_TICKET), now=LATER)
    f = _features(engine, "known")
    assert f.loc["acc-1", LATE] == pytest.approx(ACC1_LATE)
    assert f.loc["acc-1", MEDIAN] == pytest.approx(ACC1_MEDIAN)
    # acc-2: phone only, and phone never records a first response: nothing to judge
    assert pd.isna(f.loc["acc-2", LATE]) and pd.isna(f.loc["acc-2", MEDIAN])
    # acc-3: a chat ticket opened before chat's first recorded response (t6): left out
    assert pd.isna(f.loc["acc-3", LATE]) and pd.isna(f.loc["acc-3", MEDIAN])
    assert pd.isna(f.loc["acc-4", LATE])  # no ticket at all
    # the ticket that landed later counts once history is read by when things happened
    occurred = _features(engine, "occurred")
    assert occurred.loc["acc-1", LATE] == pytest.approx(3 / 7)
    assert occurred.loc["acc-1", MEDIAN] == pytest.approx(0.5)  # 30 s, 20 min, 0.5, 1, 2 h


def test_an_answer_after_the_date_is_late_only_once_the_expectation_passed(
        engine: Engine, tmp_path: Path) -> None:
    # t4 (opened 23:30, an hour expected) is pending on D; the day after, it is late
    _land(engine, tmp_path)
    compute_features(engine, date(2026, 7, 1), basis="occurred",
                     negative_terms=NEGATIVE_TERMS)
    f = load_features(engine, date(2026, 7, 1)).set_index("account_id")
    # due now: t1 t2 t3 t4 t5 (answered 07-01 09:00, 47 h late) t6 t9; late: t2 t3 t4 t5
    assert f.loc["acc-1", LATE] == pytest.approx(4 / 7)
    assert f.loc["acc-1", MEDIAN] == pytest.approx(1.0)  # 30 s, 0.5 h, 1 h, 2 h, 47 h


def test_without_first_responses_the_measure_is_left_out_not_a_penalty(
        engine: Engine, tmp_path: Path) -> None:
    no_responses = "\n".join(",".join(line.split(",")[:4]) + ","
                             for line in TICKETS.strip().splitlines()[1:])
    _land(engine, tmp_path, TICKETS.splitlines()[0] + "\n" + no_responses + "\n")
    f = _features(engine)
    assert f[LATE].isna().all() and f[MEDIAN].isna().all()
    card = load_scorecard()
    assert "first_response" in {m.name for m in card.standard.measures}
    health, measures = score_features(f.reset_index(), card)
    m = measures.set_index(["account_id", "measure"])
    assert (m.xs("first_response", level="measure")["skipped"] == "no_data").all()
    # the health is what it would be without the measure: its weight went to the others
    others = replace(card, standard=replace(card.standard, measures=tuple(
        x for x in card.standard.measures if x.name != "first_response")))
    without, _ = score_features(f.reset_index(), others)
    pd.testing.assert_series_equal(health.set_index("account_id")["score"],
                                   without.set_index("account_id")["score"])
    assert health["score"].notna().all()


def test_the_scorecard_and_the_churn_model_read_it_in_words(engine: Engine,
                                                            tmp_path: Path) -> None:
    from pulse.models.drivers import Driver, drivers_in_words
    from pulse.models.risklist import format_value
    from pulse.models.training import DRIVER_LABELS, NUMERIC

    assert {MEDIAN, LATE} <= set(NUMERIC) and {MEDIAN, LATE} <= set(FEATURES)
    assert FEATURES[LATE].source == "support"  # a stale ticket feed leaves it out
    words = drivers_in_words([Driver(LATE, 0.6, 0.1, 0.04), Driver(MEDIAN, 0.25, 3.0, -0.01),
                              Driver(MEDIAN, 30.0, 3.0, 0.02), Driver(LATE, None, 0.1, 0.01)],
                             DRIVER_LABELS)
    assert words[0] == ("tickets answered later than customers expect 60% (typical 10%) "
                        "raises risk by 4 points")
    assert words[1] == ("median time to first answer its tickets 15 minutes (typical 3 hours) "
                        "lowers risk by 1 point")
    assert words[2].startswith("median time to first answer its tickets 30 hours")
    assert words[3].startswith("tickets answered later than customers expect: none to measure")
    assert format_value(LATE, 0.5) == "50%" and format_value(MEDIAN, 0.25) == "15 min"
    # the ratios against the account's own past, and a change of shares
    assert format_value("events_28d_vs_180d", 0.1123) == "0.11×"
    assert format_value("seat_use_vs_peak_90d", 0.5) == "50%"
    assert format_value("error_rate_28d_minus_180d", 0.031) == "+3.1 pts"
    # scored from the warehouse: the measure's points follow the line 0.1 -> 100, 0.5 -> 0
    _land(engine, tmp_path)
    health, measures = score_features(_features(engine).reset_index(), load_scorecard())
    row = measures.set_index(["account_id", "measure"]).loc[("acc-1", "first_response")]
    assert row["value"] == pytest.approx(0.5) and row["points"] == pytest.approx(0.0)
