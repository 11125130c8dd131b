"""Daily usage rollups (issue 16): kept up to date by every landing without double counting,
equal to a rebuild from the events, and the usage features read from them equal the features
read from the raw events (the SQL before the rollups, pulse/sql/usage_event_features.py), on every
basis. The aggregated daily feeds land row by row like any source and score like the events
they sum. On SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select, text
from typer.testing import CliRunner

import pulse.sql.flags as flag_sql
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_file, source_for_path
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.features import features_select
from pulse.sql.rollups import rebuild
from pulse.sql.schema import IngestRun, QuarantineRow, UsageDaily, UsageDailyUser, UsageEvent
from tests import raw_usage_features as raw

END = date(2026, 6, 30)
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # the world lands (a backfill: the first)
T1 = datetime(2026, 7, 3, 2, 0, tzinfo=UTC)  # a daily landing: new rows and a few late ones
T2 = datetime(2026, 7, 5, 2, 0, tzinfo=UTC)  # corrections, moves and rows sent again
BASES = ("auto", "known", "occurred")


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _table(engine: Engine, table: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(select(table))
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return frame.sort_values(list(table.primary_key.columns.keys())).reset_index(drop=True)


def _features(engine: Engine, as_of: date, basis: str, *, from_raw: bool) -> pd.DataFrame:
    query = features_select(as_of, basis=basis,  # type: ignore[arg-type]
                            negative_terms=NEGATIVE_TERMS,
                            usage_source="events" if from_raw else "rollups")
    with engine.connect() as conn:
        result = conn.execute(query)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame = frame.drop(columns=["computed_at"]).sort_values("account_id")
    return frame.reset_index(drop=True)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, label: str) -> None:
    assert list(a["account_id"]) == list(b["account_id"]), label
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xs, ys = x.astype("float64"), y.astype("float64")
            same = ((xs - ys).abs() <= 1e-9 * ys.abs().clip(lower=1.0)) | (xs.isna() & ys.isna())
        else:
            same = (x.astype(str) == y.astype(str)) | (x.isna() & y.isna())
        assert same.all(), f"{label}: {col} differs: {list(zip(x[~same], y[~same]))[:5]}"


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Iterator[Path]:
    """A demo world landed at T0, a daily landing at T1 (direct: new keys only) and a file of
    corrections at T2 (staged: keys already there, one repeated in the file)."""
    summary = generate(tmp_path / "world", accounts=60, days=200, seed=3, end=END,
                       malformed_rate=0.0)
    for name in ("accounts", "contacts", "usage", "purchases", "tickets"):
        land_file(engine, summary.files[name], now=T0)
    events = pd.read_csv(summary.files["usage"], dtype=str, keep_default_na=False)
    header = list(events.columns)
    accounts = sorted(events["account_id"].unique())
    fresh = [[f"t1-{i}", accounts[i % 20], f"2026-07-0{1 + i % 2}T0{i % 10}:30:00Z",
              "reports", f"x-{i % 3}" if i % 4 else "", "api" if i % 2 else "", "eu-west",
              str(1 + i % 5), "error" if i % 7 == 0 else "ok"] for i in range(40)]
    late = [[f"t1-late-{i}", accounts[i], "2026-06-20T12:00:00Z", "exports", "late-user", "",
             "", "3", "ok"] for i in range(5)]
    land_file(engine, _write_csv(tmp_path / "usage_t1.csv", header, fresh + late), now=T1)
    old = events.iloc[::97].head(60)
    fixes = []
    for n, (_i, row) in enumerate(old.iterrows()):
        r = [row[c] for c in header]
        if n % 4 == 0:
            r[header.index("quantity")] = str(float(r[header.index("quantity")]) + 0.25)
        elif n % 4 == 1:  # moved to another day
            r[header.index("occurred_at")] = "2026-06-29T23:59:59Z"
        elif n % 4 == 2:  # another account, another contact, an error now
            r[header.index("account_id")] = accounts[(n + 7) % len(accounts)]
            r[header.index("contact_id")] = "moved-user"
            r[header.index("outcome")] = "error"
        fixes.append(r)  # n % 4 == 3: sent again unchanged
    fixes.append([*fixes[0][:7], "0.5", "ok"])  # the same key twice: the last row wins
    land_file(engine, _write_csv(tmp_path / "usage_t2.csv", header, fixes), now=T2)
    yield tmp_path


@pytest.mark.slow  # about 15 s: three landings of a 60-account world, 14 feature queries
def test_rollups_follow_every_landing_and_features_equal_the_raw_events(
        engine: Engine, world: Path) -> None:
    u, d, du = UsageEvent.__table__, UsageDaily.__table__, UsageDailyUser.__table__
    with engine.connect() as conn:
        runs = conn.execute(select(IngestRun.source, IngestRun.inserted, IngestRun.updated,
                                   IngestRun.backfill).where(IngestRun.source == "usage")
                            .order_by(IngestRun.run_id)).all()
        raw_total = conn.execute(select(func.sum(u.c.quantity), func.count())).one()
        rolled = conn.execute(select(func.sum(d.c.events), func.sum(d.c.event_rows))).one()
        landings = conn.execute(select(func.count(func.distinct(d.c.landed_at)))).scalar_one()
    # three landings: the world (a backfill), new rows, then corrections that updated rows
    assert [(r.inserted > 0, r.updated > 0, r.backfill) for r in runs] == [
        (True, False, True), (True, False, False), (False, True, False)]
    assert landings == 2  # the corrections keep the landing of the rows they correct
    # nothing counted twice: the rollups sum every event once, as they stand now
    assert rolled[1] == raw_total[1] and rolled[0] == pytest.approx(raw_total[0], rel=1e-12)
    # incremental = rebuilt from scratch
    before = (_table(engine, d), _table(engine, du))
    result = rebuild(engine, batch_accounts=25)
    assert result.events == raw_total[1] and result.accounts == 60
    pd.testing.assert_frame_equal(before[0], _table(engine, d))
    pd.testing.assert_frame_equal(before[1], _table(engine, du))
    # the features from the rollups are those from the raw events, on every basis
    compared = 0
    for as_of, bases in ((date(2026, 6, 30), ("auto", "occurred")),
                         (date(2026, 7, 2), ("auto", "known")), (date(2026, 7, 5), BASES)):
        for basis in bases:
            rolled_f = _features(engine, as_of, basis, from_raw=False)
            raw_f = _features(engine, as_of, basis, from_raw=True)
            _assert_same(rolled_f, raw_f, f"{as_of} {basis}")
            compared += len(raw_f)
            if as_of == date(2026, 7, 5) and basis == "auto":
                assert (raw_f["active_users_28d"] > 0).sum() > 20
                assert raw_f["champion_gone"].notna().sum() > 10
                assert (raw_f["events_7d"] > 0).sum() > 20
    assert compared > 300
    # and so are the flags' usage readers (the champion, weekly usage)
    for as_of, basis in ((date(2026, 7, 5), "auto"), (date(2026, 7, 2), "known")):
        champs = flag_sql.champions(engine, as_of, basis=basis)
        weekly = flag_sql.weekly_usage(engine, as_of, basis=basis)
        assert len(champs) > 10 and len(weekly) > 200
        pd.testing.assert_frame_equal(champs, raw.champions(engine, as_of, basis=basis))
        pd.testing.assert_frame_equal(weekly, raw.weekly_usage(engine, as_of, basis=basis))


def test_a_direct_change_to_the_events_needs_a_rebuild_and_the_cli_does_it(
        engine: Engine, tmp_path: Path) -> None:
    """Events written around the landing are not in the rollups until `pulse rollup
    rebuild`, which prints its progress and counts."""
    _write_csv(tmp_path / "accounts.csv", ["account_id", "name", "mrr"], [["a1", "A", "10"]])
    land_file(engine, tmp_path / "accounts.csv", now=T0)
    _write_csv(tmp_path / "usage.csv", ["event_id", "account_id", "occurred_at", "feature",
                                        "contact_id", "quantity"],
               [["e1", "a1", "2026-06-01T10:00:00Z", "reports", "c1", "2"],
                ["e2", "a1", "2026-06-01T11:00:00Z", "reports", "c2", "3"]])
    land_file(engine, tmp_path / "usage.csv", now=T0)
    with engine.begin() as conn:
        conn.execute(UsageEvent.__table__.insert(), [{
            "event_id": "e3", "account_id": "a1", "occurred_at": datetime(2026, 6, 2, tzinfo=UTC),
            "feature": "api", "quantity": 7.0, "outcome": "error", "landed_at": T0,
            "updated_at": T0}])
    d = UsageDaily.__table__
    with engine.connect() as conn:
        assert conn.execute(select(func.sum(d.c.events))).scalar_one() == 5.0
    from pulse.cli import app

    res = CliRunner().invoke(app, ["rollup", "rebuild", "--batch", "1", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "1/1 accounts: 3 events read, 2 daily rows, 2 user rows" in res.stderr
    assert json.loads(res.stdout)["events"] == 3
    with engine.connect() as conn:
        rows = conn.execute(select(d.c.day, d.c.feature, d.c.component, d.c.events,
                                   d.c.errors, d.c.active_users).order_by(d.c.day)).all()
    assert [tuple(r) for r in rows] == [(date(2026, 6, 1), "reports", "", 5.0, 0.0, 2),
                                        (date(2026, 6, 2), "api", "", 7.0, 7.0, 0)]


# --------------------------------------------------------------------------- the feeds


#: the SQL of docs/usage-rollups.md, run here on the events of account `src` (the UTC day
#: spelled as each database spells it), its rows given to account `dst`
_DAY_SQL = {"sqlite": "substr(occurred_at, 1, 10)",
            "postgresql": "CAST(occurred_at AT TIME ZONE 'UTC' AS DATE)"}


def _feed_rows(engine: Engine, src: str, dst: str) -> tuple[list[list[Any]], list[list[Any]]]:
    day = _DAY_SQL[engine.dialect.name]
    with engine.connect() as conn:
        daily = conn.execute(text(f"""
            SELECT :dst, {day} AS day, feature, COALESCE(component, ''),
                   SUM(quantity), SUM(CASE WHEN outcome = 'error' THEN quantity ELSE 0 END),
                   COUNT(DISTINCT contact_id)
            FROM usage_events WHERE account_id = :src
            GROUP BY {day}, feature, COALESCE(component, '')"""),
            {"src": src, "dst": dst}).all()
        users = conn.execute(text(f"""
            SELECT :dst, {day} AS day, contact_id, SUM(quantity)
            FROM usage_events WHERE account_id = :src AND contact_id IS NOT NULL
            GROUP BY {day}, contact_id"""), {"src": src, "dst": dst}).all()
    return [[str(v) for v in r] for r in daily], [[str(v) for v in r] for r in users]


def _fed(engine: Engine) -> float:
    d = UsageDaily.__table__
    with engine.connect() as conn:
        return float(conn.execute(select(func.sum(d.c.events)).where(
            d.c.account_id == "TWIN", d.c.origin == "feed")).scalar_one())


def _real(engine: Engine, account_id: str) -> float:
    with engine.connect() as conn:
        return float(conn.execute(select(func.sum(UsageEvent.quantity)).where(
            UsageEvent.account_id == account_id)).scalar_one())


def test_daily_feeds_land_row_by_row_and_score_like_the_events_they_sum(
        engine: Engine, tmp_path: Path) -> None:
    summary = generate(tmp_path / "world", accounts=12, days=120, seed=5, end=END,
                       malformed_rate=0.0)
    for name in ("accounts", "contacts", "usage"):
        land_file(engine, summary.files[name], now=T0)
    with engine.connect() as conn:
        src = conn.execute(select(UsageEvent.account_id).group_by(UsageEvent.account_id)
                           .order_by(func.count().desc()).limit(1)).scalar_one()
    # a twin of the busiest account, whose usage comes only as daily aggregates
    _write_csv(tmp_path / "accounts_twin.csv", ["account_id", "name", "mrr", "seats",
                                                "created_at"],
               [["TWIN", "Twin", "100", "10", "2025-01-01T00:00:00Z"],
                ["SOLO", "Solo", "100", "10", "2025-01-01T00:00:00Z"]])
    land_file(engine, tmp_path / "accounts_twin.csv", now=T0)
    daily, users = _feed_rows(engine, src, "TWIN")
    header = ["account_id", "day", "feature", "component", "events", "errors", "active_users"]
    bad = [["NOPE", "2026-06-01", "reports", "", "1", "0", "1"],
           ["TWIN", "2026-13-01", "reports", "", "1", "0", "1"],
           ["TWIN", "2026-06-01", "", "", "1", "0", "1"],
           ["TWIN", "2026-06-01", "reports", "", "-4", "0", "1"]]
    # the first half now, then the whole file again with one group corrected: no double count
    half = daily[: len(daily) // 2]
    first = land_file(engine, _write_csv(tmp_path / "usage_daily_1.csv", header, half + bad),
                      now=T0)
    assert source_for_path(tmp_path / "usage_daily_1.csv") == "usage_daily"
    assert (first.read, first.inserted, first.quarantined) == (len(half) + 4, len(half), 4)
    assert first.reasons == {"account_id: account not known": 1,
                             "day: not a YYYY-MM-DD date": 1,
                             "feature: required value is missing": 1,
                             "events: value out of range": 1}
    wrong = [*daily[0][:4], str(float(daily[0][4]) + 1000), *daily[0][5:]]
    land_file(engine, _write_csv(tmp_path / "usage_daily_2.csv", header, daily + [wrong]),
              now=T0)  # the same group twice in a file: its last row wins
    assert _fed(engine) == pytest.approx(_real(engine, src) + 1000)
    again = land_file(engine, _write_csv(tmp_path / "usage_daily_3.csv", header, daily),
                      now=T0)
    assert (again.read, again.updated, again.unchanged) == (len(daily), 1, len(daily) - 1)
    # another twin sends no users file: its active users are the largest daily count
    solo = [["SOLO", *r[1:]] for r in daily]
    land_file(engine, _write_csv(tmp_path / "usage_daily_solo.csv", header, solo), now=T0)
    users_res = land_file(engine, _write_csv(
        tmp_path / "usage_daily_users.csv", ["account_id", "day", "contact_id", "events"],
        users), now=T0)
    assert users_res.inserted == len(users) > 0
    with engine.connect() as conn:
        q = QuarantineRow.__table__
        assert conn.execute(select(func.count()).select_from(q).where(
            q.c.source == "usage_daily")).scalar_one() == 4
    assert _fed(engine) == pytest.approx(_real(engine, src))
    as_of = END
    frame = _features(engine, as_of, "auto", from_raw=False).set_index("account_id")
    twin, orig = frame.loc["TWIN"], frame.loc[src]
    same = ["active_days_7d", "active_days_28d", "events_7d", "events_28d", "events_prev_28d",
            "distinct_features_28d", "active_users_28d", "error_rate_28d",
            "days_since_last_use", "events_28d_vs_90d", "events_slope_12w",
            "active_users_peak_90d", "active_users_28d_vs_prev", "events_28d_vs_180d",
            "error_rate_28d_minus_180d", "champion_gone"]
    assert orig["events_28d"] > 0 and orig["active_users_28d"] > 0
    first_day = (pd.Timestamp(as_of) - pd.Timedelta(days=27)).date().isoformat()
    daily_max = max(int(r[6]) for r in daily if first_day <= r[1] <= as_of.isoformat())
    assert 0 < frame.loc["SOLO", "active_users_28d"] == daily_max
    assert frame.loc["SOLO", "events_28d"] == pytest.approx(orig["events_28d"])
    for col in same:
        assert twin[col] == pytest.approx(orig[col], nan_ok=True), col
    # check-ins read the rollups too: the twin's lapsed features are the original's, at
    # every date of its last month (whole UTC days either way)
    from pulse.outreach.checkins import lapsed_features

    named = 0
    for back in range(0, 35, 5):
        day = as_of - timedelta(days=back)
        lapsed = lapsed_features(engine, [src, "TWIN"], day)
        assert lapsed.get("TWIN") == lapsed.get(src), (day, lapsed)
        named += bool(lapsed.get(src))
    assert named >= 3  # (seed 5: a feature dropped at six of the seven dates)


def test_migration_0021_rolls_up_the_events_already_there(db_url: str) -> None:
    """A warehouse upgraded from 0020 gets the rollups of its events, as a rebuild makes."""
    from pulse.sql.db import make_engine, upgrade
    from pulse.sql.schema import Account

    engine = make_engine(db_url)
    upgrade(engine, "0020")
    with engine.begin() as conn:
        conn.execute(Account.__table__.insert(), [
            {"account_id": a, "name": a, "mrr": 10, "currency": "USD", "landed_at": T0,
             "updated_at": T0} for a in ("a1", "a2")])
        conn.execute(UsageEvent.__table__.insert(), [
            {"event_id": f"e{i}", "account_id": f"a{1 + i % 2}",
             "occurred_at": datetime(2026, 6, 1 + i % 3, 23, 59, tzinfo=UTC),
             "feature": "reports" if i % 4 else "api", "component": "x" if i % 5 else None,
             "contact_id": f"c{i % 3}" if i % 6 else None, "quantity": 0.5 + i,
             "outcome": "error" if i % 7 == 0 else "ok", "landed_at": T0 if i % 2 else T1,
             "updated_at": T1} for i in range(40)])
    upgrade(engine)
    migrated = (_table(engine, UsageDaily.__table__), _table(engine, UsageDailyUser.__table__))
    assert len(migrated[0]) > 10 and len(migrated[1]) > 3
    rebuild(engine)
    pd.testing.assert_frame_equal(migrated[0], _table(engine, UsageDaily.__table__))
    pd.testing.assert_frame_equal(migrated[1], _table(engine, UsageDailyUser.__table__))
    engine.dispose()
