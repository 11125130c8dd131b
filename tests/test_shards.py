"""Sharded scoring (models/sharded.py, sql/shards.py): the same answer as one process, and a
date that shows only once every shard is done."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from pulse.core.errors import InvalidArgumentError, NothingToScoreError, NotScoredError
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.models.risklist import build_risk_list, latest_scored_date
from pulse.models.sharded import (
    begin_date,
    date_state,
    finish_churn,
    publish_date,
    score_shard,
)
from pulse.sql.schema import Account, AccountFeatures, AccountHealth
from pulse.sql.shards import Shard, all_shards, shard_key, shard_key_sql

END = date(2026, 5, 31)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    generate(folder, accounts=80, days=120, seed=11, end=END)
    return folder


def _land(engine: Engine, folder: Path) -> None:
    land_files(engine, [p for p in folder.iterdir() if p.name != "truth.json"])


def _table(engine: Engine, table: object, day: date) -> pd.DataFrame:
    t = table.__table__  # type: ignore[attr-defined]
    query = (select(t).where(t.c.as_of == day).order_by(t.c.account_id))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all())
    return frame.drop(columns=["computed_at"])


def test_the_shard_of_an_account_is_the_same_in_sql_and_python(engine: Engine,
                                                                world: Path) -> None:
    _land(engine, world)
    a = Account.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(a.c.account_id, shard_key_sql(a.c.account_id))).all()
    assert len(rows) >= 70
    assert all(key == shard_key(account) for account, key in rows)
    counts = pd.Series([key % 4 for _, key in rows]).value_counts()
    assert len(counts) == 4 and counts.min() >= len(rows) / 8  # every shard has its share
    with pytest.raises(InvalidArgumentError, match="shard 4 of 4"):
        Shard(4, 4)


def test_sharded_scoring_equals_one_process_and_shows_only_when_published(
        engine: Engine, world: Path) -> None:
    _land(engine, world)
    earlier = END - timedelta(days=7)
    # one process: the reference (and an earlier date, published, for the risk list)
    score_date(engine, earlier, basis="occurred")
    score_date(engine, END, basis="occurred")
    compute_flags(engine, END)
    reference = {t: _table(engine, t, END) for t in (AccountFeatures, AccountHealth)}
    risk = build_risk_list(engine, END)
    assert latest_scored_date(engine) == END

    # the same date again, in 3 shards: hidden from the start until published
    shards = begin_date(engine, END, shards=3, run_id="test")
    assert latest_scored_date(engine) == earlier and date_state(engine, END) == "scoring"
    with pytest.raises(NotScoredError):  # cleared: nothing half-scored to read
        build_risk_list(engine, END)
    done = [score_shard(engine, END, s, basis="occurred") for s in shards[:2]]
    assert all(d["features"] > 0 and d["features"] == d["health"] for d in done)
    finish_churn(engine, END)  # no champion: nothing to explain
    with pytest.raises(NothingToScoreError, match="shard.s. 3 of 3 did not finish"):
        publish_date(engine, END)
    assert latest_scored_date(engine) == earlier
    score_shard(engine, END, shards[2], basis="occurred")
    score_shard(engine, END, shards[0], basis="occurred")  # a retried shard: nothing twice
    compute_flags(engine, END)
    assert publish_date(engine, END) == len(reference[AccountFeatures])
    assert latest_scored_date(engine) == END and date_state(engine, END) == "published"

    for t, frame in reference.items():
        pd.testing.assert_frame_equal(_table(engine, t, END), frame, obj=t.__name__)
    assert build_risk_list(engine, END) == risk


def test_a_date_with_nothing_to_score_is_not_published(engine: Engine) -> None:
    begin_date(engine, END, shards=2)
    for s in all_shards(2):
        assert score_shard(engine, END, s, basis="occurred")["features"] == 0
    with pytest.raises(NothingToScoreError, match="has no accounts"):
        publish_date(engine, END)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AccountHealth)).scalar_one() == 0


def test_accounts_without_any_source_rows_are_not_published(engine: Engine,
                                                              world: Path) -> None:
    """Accounts alone (no usage, billing, support, social or incident row yet): each shard
    scores its accounts, but there is nothing to score them on, and the date is not
    published."""
    land_files(engine, [world / "accounts.csv"])
    begin_date(engine, END, shards=2)
    scored = [score_shard(engine, END, s, basis="occurred")["features"] for s in all_shards(2)]
    assert sum(scored) >= 70
    with pytest.raises(NothingToScoreError, match=f"{sum(scored)} accounts existed, but no "
                       "usage, billing, support, social or incident row had happened by then"):
        publish_date(engine, END, basis="occurred")
    assert date_state(engine, END) == "scoring"


@pytest.mark.parametrize("usage_source", ["rollups", "events"])
def test_each_source_aggregates_only_its_shard_and_the_shards_add_up(
        engine: Engine, world: Path, usage_source: str) -> None:
    """The union of 3 shards' feature rows equals the unsharded rows, from the rollups and
    from the raw events alike; and the shard condition sits inside every source's aggregate
    (before its GROUP BY), not only on the final account join."""
    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.features import features_select

    _land(engine, world)

    def rows(shard: Shard | None) -> tuple[pd.DataFrame, str]:
        query = features_select(END, basis="occurred", negative_terms=NEGATIVE_TERMS,
                                shard=shard, usage_source=usage_source)  # type: ignore[arg-type]
        with engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        sql = str(query.compile(dialect=engine.dialect))
        return frame.drop(columns=["computed_at"]), sql

    whole, whole_sql = rows(None)
    assert len(whole) >= 70 and "shard_key" not in whole_sql and "md5" not in whole_sql
    parts = [rows(s) for s in all_shards(3)]
    union = (pd.concat([frame for frame, _ in parts], ignore_index=True)
             .sort_values("account_id").reset_index(drop=True))
    assert all(len(frame) > 0 for frame, _ in parts)
    pd.testing.assert_frame_equal(union, whole.sort_values("account_id").reset_index(drop=True),
                                  check_dtype=False)
    key = "FROM shard_accounts"  # the shard's accounts, hashed once (a CTE)
    sql = parts[0][1]
    assert sql.count("pulse_shard_key(" if engine.dialect.name == "sqlite" else "md5(") == 2
    # usage (rollups: days, users, last, trends, user blocks, champion; events: the same
    # without a users table), billing (agg, failed, mrr now and then, payments, terms),
    # support (agg, median, tone, first responses), social (3 links), surveys, incidents,
    # (the final filter on accounts hashes its own)
    usage = 6 if usage_source == "rollups" else 5
    assert sql.count(key) == usage + 6 + 4 + 3 + 1 + 1
