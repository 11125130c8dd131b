"""The basis that chooses itself (issue 12): history imported in one go scores a past date
from when its rows happened, a later daily landing never changes a past date, and a date with
nothing to score is an error. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Date, Engine, insert, literal, select

from pulse.core.errors import NothingToScoreError
from pulse.listeners.landing import land_file
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.features import basis_report, compute_features, load_features, resolve_basis
from pulse.sql.schema import AccountFeatures, IngestRun
from tests.pulse_cli import piped_env, run_pulse
from tests.test_features import USAGE, D, _write, features_of, land_world

TODAY = datetime(2026, 7, 10, 6, 0, tzinfo=UTC)  # the whole history was imported on 07-10
NEXT_DAY = datetime(2026, 7, 11, 6, 0, tzinfo=UTC)
HEADER = USAGE.splitlines()[0] + "\n"


def _runs(engine: Engine) -> dict[str, tuple[bool, str | None]]:
    r = IngestRun.__table__
    with engine.connect() as conn:
        return {f: (b, why) for f, b, why in conn.execute(
            select(r.c.file, r.c.backfill, r.c.backfill_reason).where(r.c.status == "ok"))}


def test_history_imported_today_scores_a_past_date_from_when_rows_happened(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path, now=TODAY)
    assert all(b and why == "first" for b, why in _runs(engine).values())
    assert resolve_basis(None) == "auto"
    assert compute_features(engine, D, negative_terms=NEGATIVE_TERMS) == 2
    f = load_features(engine, D).set_index("account_id")
    assert (f["basis"] == "auto").all()
    # the same values as when every row had landed on D (tests/test_features.py)
    assert f.loc["acc-1", "events_28d"] == 24.0
    assert f.loc["acc-1", "open_failed_payments"] == 2
    assert f.loc["acc-1", "negative_mentions_28d"] == 2
    # usage u1-u8 and u10, purchases p1-p6, tickets t1-t7, mentions m1-m5, incident i1
    report = basis_report(engine, D)
    assert (report.backfill_rows, report.backfill_runs) == (28, 7)
    assert "28 rows" in report.describe()
    # the leak-free rule on its own sees nothing: every row landed after D
    with pytest.raises(NothingToScoreError, match="first usage row happened on 2026-05-05"):
        compute_features(engine, D, basis="known", negative_terms=NEGATIVE_TERMS)


def test_an_imported_account_without_created_at_counts_from_its_first_event(
    engine: Engine, tmp_path: Path
) -> None:
    """created_at is optional: an account imported in one go without it exists, on a past
    date, once it had used the product or been billed, not before (before, every such account
    was scored on every past date, with nothing to score it on)."""
    import tests.test_features as world

    accounts = "account_id,name,mrr\nacc-1,Northwind Traders,1000\nacc-2,Initech,50\n" \
        "acc-3,Hooli,300\n"
    land_file(engine, _write(tmp_path, "accounts.csv", accounts), now=TODAY)
    for name, text in (("contacts.csv", world.CONTACTS), ("usage.csv", world.USAGE),
                       ("purchases.csv", world.PURCHASES)):
        assert land_file(engine, _write(tmp_path, name, text), now=TODAY).quarantined == 0
    # acc-2's first usage is on 06-28; acc-3 has no event at all
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    assert sorted(load_features(engine, D)["account_id"]) == ["acc-1", "acc-2"]
    before = D - timedelta(days=3)  # 06-27
    compute_features(engine, before, negative_terms=NEGATIVE_TERMS)
    assert sorted(load_features(engine, before)["account_id"]) == ["acc-1"]


def test_a_late_row_in_a_daily_landing_never_changes_a_past_date(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path, now=TODAY)
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    before = features_of(engine, D)
    daily = tmp_path / "daily"
    daily.mkdir()
    # a daily file: yesterday's and today's rows, and one late row about 06-29 (before D)
    land_file(engine, _write(daily, "usage_daily.csv", HEADER
                             + "d1,acc-1,2026-07-10T08:00:00Z,admin,c2,3,ok\n"
                             "d2,acc-1,2026-07-10T09:00:00Z,admin,c2,3,ok\n"
                             "d3,acc-1,2026-07-11T01:00:00Z,admin,c2,3,ok\n"
                             "late,acc-1,2026-06-29T10:00:00Z,admin,c2,7,error\n"),
              source="usage", now=NEXT_DAY)
    assert _runs(engine)["usage.csv"] == (True, "first")  # the import, still a backfill
    assert _runs(engine)["usage_daily.csv"] == (False, None)
    r = IngestRun.__table__
    with engine.connect() as conn:
        lag = conn.execute(select(r.c.median_lag_days).order_by(r.c.run_id.desc())
                           .limit(1)).scalar_one()
    assert 0.9 < lag < 0.95  # d1: 07-10 08:00 to 07-11 06:00
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    assert features_of(engine, D) == before
    # as of the day it landed, the late row counts
    compute_features(engine, date(2026, 7, 11), negative_terms=NEGATIVE_TERMS)
    assert load_features(engine, date(2026, 7, 11)).set_index(
        "account_id").loc["acc-1", "distinct_features_28d"] == 4  # admin

    # history that lands long after it happened, over weeks, is a backfill by its lag...
    land_file(engine, _write(daily, "usage_history.csv", HEADER
                             + "h1,acc-1,2026-06-01T10:00:00Z,exports,c2,1,ok\n"
                             "h2,acc-1,2026-06-15T10:00:00Z,exports,c2,1,ok\n"
                             "h3,acc-1,2026-06-29T10:00:00Z,exports,c2,1,ok\n"),
              source="usage", now=NEXT_DAY + timedelta(minutes=1))
    assert _runs(engine)["usage_history.csv"] == (True, "lag")
    # ...and a file can be declared one (pulse ingest --backfill)
    land_file(engine, _write(daily, "usage_more.csv", HEADER
                             + "x1,acc-1,2026-06-30T10:00:00Z,exports,c2,10,ok\n"),
              source="usage", now=NEXT_DAY + timedelta(minutes=2), backfill=True)
    assert _runs(engine)["usage_more.csv"] == (True, "explicit")
    compute_features(engine, D, negative_terms=NEGATIVE_TERMS)
    after = load_features(engine, D).set_index("account_id")
    assert after.loc["acc-1", "events_28d"] == 24.0 + 1 + 1 + 10  # h2, h3, x1; not "late"


def _pulse(*args: str) -> subprocess.CompletedProcess[str]:
    env = piped_env()
    return run_pulse(*args, env=env, timeout=180)


def test_pulse_score_says_its_basis_and_fails_when_there_is_nothing_to_score(
    engine: Engine, tmp_path: Path
) -> None:
    land_world(engine, tmp_path, now=TODAY)
    done = _pulse("score", "--as-of", D.isoformat(), "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["basis"] == {"basis": "auto", "backfill_rows": 28, "backfill_runs": 7}
    assert doc["accounts"] == 2
    # the stored attributes describe the latest activity (07-01): they count the day before
    assert doc["stored_attributes"] == {"describe": "2026-07-01", "counted": True}
    # ...and earlier they were unknown, which the table says
    earlier = _pulse("score", "--as-of", "2026-06-20", "--no-text")
    assert earlier.returncode == 0, earlier.stderr
    assert ("seats, renewal dates and stored MRR describe 2026-07-01, not 2026-06-20"
            in " ".join(earlier.stdout.split()))
    # before any account existed: an error with the reason, not a quiet success
    empty = _pulse("score", "--as-of", "2024-12-01")
    assert empty.returncode != 0
    assert "nothing to score as of 2024-12-01" in empty.stderr
    assert "first usage row happened on 2026-05-05" in empty.stderr
    known = _pulse("score", "--as-of", D.isoformat(), "--basis", "known")
    assert known.returncode != 0 and "--basis auto" in known.stderr
    # an account that existed, but before any source had a row: nothing to score it on
    bare = _pulse("score", "--as-of", "2025-10-01")
    assert bare.returncode != 0
    assert ("nothing to score as of 2025-10-01 on the auto basis: 1 account existed, but no "
            "usage, billing, support, social or incident row had landed (or, for a backfill, "
            "happened) by then" in " ".join(bare.stderr.split()))


def test_accounts_without_a_row_of_any_source_are_nothing_to_score(
    engine: Engine, tmp_path: Path
) -> None:
    """acc-1 existed from 2025-01-01, its first row (a purchase) is from 2026-01-10: a date
    between has accounts but nothing to score them on, an error that leaves the date's
    earlier rows as they were; the history backfill (`allow_empty`) finds the date empty."""
    land_world(engine, tmp_path, now=TODAY)
    bare = date(2025, 10, 1)
    # the day the first purchase happened there is something to score
    assert compute_features(engine, date(2026, 1, 10), negative_terms=NEGATIVE_TERMS) == 1
    t = AccountFeatures.__table__
    with engine.begin() as conn:  # a row the date had before (a copy of 01-10's)
        conn.execute(insert(t).from_select([c.name for c in t.columns], select(
            *(literal(bare, Date).label("as_of") if c.name == "as_of" else c for c in t.c)
        ).where(t.c.as_of == date(2026, 1, 10))))
    before = features_of(engine, bare)
    assert list(before) == ["acc-1"]
    with pytest.raises(NothingToScoreError, match="1 account existed, but no usage, billing, "
                       "support, social or incident row"):
        compute_features(engine, bare, negative_terms=NEGATIVE_TERMS)
    assert features_of(engine, bare) == before
    assert compute_features(engine, bare, negative_terms=NEGATIVE_TERMS, allow_empty=True) == 0
    assert features_of(engine, bare) == {}
