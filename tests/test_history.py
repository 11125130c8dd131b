"""Scoring a backfilled history (models/history.py), as the demo does: every one of the 90
dates before the end scored oldest first, so the 7- and 30-day changes read the dates
before; a second run resumes (skips what is scored); flags for the latest dates only when
asked. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from pulse.models.history import history_dates, score_history
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.features import compute_features, load_features
from pulse.sql.flags import flag_dates
from pulse.sql.health import health_dates, load_health
from pulse.sql.schema import AccountFeatures
from tests.test_features import land_world
from tests.test_scorecard import expected_change

END = date(2026, 7, 1)  # the hand-made world's rows happened from 2026-04 to 2026-06-30


def test_ninety_days_of_history_scored_daily_with_their_changes(engine: Engine,
                                                                 tmp_path: Path) -> None:
    land_world(engine, tmp_path)
    seen: list[tuple[int, int, date]] = []
    run = score_history(engine, end=END, days=90, flag_days=5,
                        on_progress=lambda i, n, day: seen.append((i, n, day)))
    window = history_dates(END, 90)
    assert window[0] == END - timedelta(days=90) and window[-1] == END - timedelta(days=1)
    assert len(set(window)) == 90 and window == sorted(window)
    assert [s[0] for s in seen] == list(range(1, 91)) and {s[1] for s in seen} == {90}
    assert sorted(run.scored + run.empty) == window and not run.skipped
    assert len(run.scored) == 90, run.describe()
    assert health_dates(engine) == window  # health stored for 90 distinct dates
    with engine.connect() as conn:
        assert conn.execute(select(func.count(func.distinct(AccountFeatures.as_of)))
                            ).scalar_one() == 90
    assert flag_dates(engine) == window[-5:] and run.flagged == 5
    last = load_health(engine, window[-1]).set_index("account_id")
    month = load_health(engine, window[-31]).set_index("account_id")
    both = [a for a in last.index if a in month.index]
    assert both
    for acc in both:  # the changes read the dates scored before them, like for like
        assert last.loc[acc, "change_7d"] == pytest.approx(
            expected_change(engine, acc, window[-1], window[-8]), abs=0.051)
        assert last.loc[acc, "change_30d"] == pytest.approx(
            expected_change(engine, acc, window[-1], window[-31]), abs=0.051)
    # the history was landed in one go: the stored seats count on its last day only (the
    # day before its latest activity), so the last day's changes compare like with like
    assert any(last.loc[a, "change_30d"] != round(
        last.loc[a, "score"] - month.loc[a, "score"], 1) for a in both)
    first = load_health(engine, window[0])
    assert first["change_7d"].isna().all()  # nothing scored before the window

    # resumed, the features read in two worker processes: the same rows as `pulse score`'s
    again = score_history(engine, end=END + timedelta(days=2), days=90, flag_days=0,
                          workers=2)
    assert again.skipped == window[2:] and again.scored == [END, END + timedelta(days=1)]
    assert again.flagged == 0
    for day in (window[-1], END):
        ours = load_features(engine, day).drop(columns="computed_at")
        compute_features(engine, day, negative_terms=NEGATIVE_TERMS)
        theirs = load_features(engine, day).drop(columns="computed_at")
        assert len(ours) >= 2
        pd.testing.assert_frame_equal(ours, theirs)
    wide = score_history(engine, end=END + timedelta(days=3), days=2, flag_days=30)
    assert wide.scored == [END + timedelta(days=2)] and wide.flagged == 1
