"""Scoring a date in shards, and publishing it once every shard is done.

The health DAG scores a date as many shards of accounts (sql/shards.py), each an
independent, idempotent task that may run on any worker and be retried:

1. `begin_date` marks the date `scoring` in `scoring_dates`: from then until it is published
   the risk list, the console and the account pages do not show it (they show the latest
   published date, or one scored in a single process, which has no mark).
2. `score_shard` materialises the shard's features, scores its health and its churn risk,
   replacing only that shard's rows of the date, and records the shard as finished
   (`scoring_shards`).
3. Then, once, over the whole book: the churn drivers of the riskiest accounts
   (`registry.explain_churn`: "riskiest" is a ranking across every account) and the flags
   (`flags.compute_flags`: peers and the risk rank are across every account).
4. `publish_date` checks that every shard finished and every account with features has its
   health, and marks the date `published`.
"""
from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from pulse.core.errors import NothingToScoreError
from pulse.sql.shards import Shard, all_shards

log = logging.getLogger(__name__)

SCORING, PUBLISHED = "scoring", "published"


def begin_date(engine: Engine, as_of: date, *, shards: int, run_id: str | None = None
               ) -> list[Shard]:
    """Mark `as_of` as being scored in `shards` shards (hidden until published), clear what an
    earlier run stored for it (its features, health, churn scores, flags and finished
    shards), and return the shards."""
    from sqlalchemy import delete

    from pulse.sql.db import dialect_insert
    from pulse.sql.schema import (
        AccountFeatures,
        AccountFlag,
        AccountHealth,
        ChurnScore,
        HealthMeasure,
        ScoringDate,
        ScoringShard,
    )

    t = ScoringDate.__table__
    row = {"as_of": as_of, "state": SCORING, "shards": shards, "run_id": run_id,
           "started_at": datetime.now(UTC), "published_at": None, "accounts": None}
    stmt = dialect_insert(engine, t).values(**row)
    stmt = stmt.on_conflict_do_update(index_elements=[t.c.as_of],
                                      set_={k: v for k, v in row.items() if k != "as_of"})
    with engine.begin() as conn:
        conn.execute(stmt)  # hidden first, then cleared: never shown half-cleared
    with engine.begin() as conn:
        for model in (ScoringShard, AccountFlag, ChurnScore, HealthMeasure, AccountHealth,
                      AccountFeatures):
            table = model.__table__
            conn.execute(delete(table).where(table.c.as_of == as_of))
    log.info("scoring %s in %d shard(s)", as_of, shards)
    return all_shards(shards)


def finish_shard(engine: Engine, as_of: date, shard: Shard, *, accounts: int) -> None:
    """Record that `shard` of `as_of` is done (idempotent: a retry records it again)."""
    from pulse.sql.db import dialect_insert
    from pulse.sql.schema import ScoringShard

    t = ScoringShard.__table__
    row = {"as_of": as_of, "shard": shard.index, "shards": shard.count, "accounts": accounts,
           "finished_at": datetime.now(UTC)}
    stmt = dialect_insert(engine, t).values(**row)
    stmt = stmt.on_conflict_do_update(index_elements=[t.c.as_of, t.c.shard],
                                      set_={k: v for k, v in row.items()
                                            if k not in ("as_of", "shard")})
    with engine.begin() as conn:
        conn.execute(stmt)


def score_features_shard(engine: Engine, as_of: date, shard: Shard, *, basis: str,
                         usage_source: str = "rollups") -> int:
    """The shard's features as of `as_of`; returns its accounts. `usage_source="events"`
    reads usage from the raw events instead of the daily rollups (`pulse bench scale`)."""
    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.features import compute_features

    return compute_features(engine, as_of, basis=basis,  # type: ignore[arg-type]
                            negative_terms=NEGATIVE_TERMS, shard=shard,
                            usage_source=usage_source)  # type: ignore[arg-type]


def score_health_shard(engine: Engine, as_of: date, shard: Shard) -> dict[str, Any]:
    """The shard's scorecard health as of `as_of`, from its features."""
    from pulse.models.health import score_accounts

    return score_accounts(engine, as_of, shard=shard).to_dict()


def score_churn_shard(engine: Engine, as_of: date, shard: Shard, *, basis: str) -> int:
    """The shard's churn risk (no drivers yet: `finish_churn`), the shard's last step: it is
    then recorded as finished. Returns the rows written."""
    from pulse.models.registry import score_churn_summary
    from pulse.sql.features import load_features

    written = score_churn_summary(engine, as_of, basis=basis, shard=shard).scored
    finish_shard(engine, as_of, shard, accounts=len(load_features(engine, as_of, shard=shard)))
    return written


def score_shard(engine: Engine, as_of: date, shard: Shard, *, basis: str) -> dict[str, Any]:
    """Features, health and churn risk of one shard, in that order (what the DAG's mapped
    tasks do one by one)."""
    features = score_features_shard(engine, as_of, shard, basis=basis)
    health = score_health_shard(engine, as_of, shard)
    churn = score_churn_shard(engine, as_of, shard, basis=basis)
    return {"shard": str(shard), "features": features, "health": health["accounts"],
            "churn": churn}


def finish_churn(engine: Engine, as_of: date) -> int:
    """The riskiest accounts' drivers, across every shard; returns how many."""
    from pulse.models.registry import explain_churn

    return explain_churn(engine, as_of)


def check_complete(engine: Engine, as_of: date, *, basis: str = "auto") -> int:
    """The accounts scored as of `as_of`, once every shard of the date has finished and every
    account with features has its health; `NothingToScoreError` (with the reason) when none
    was scored, when the accounts read no row of any source, or when a shard is missing."""
    from pulse.sql.features import FEATURES_TABLE, no_source_rows, nothing_to_score, resolve_basis
    from pulse.sql.health import HEALTH
    from pulse.sql.schema import ScoringDate, ScoringShard

    f, d, sh = FEATURES_TABLE, ScoringDate.__table__, ScoringShard.__table__
    with engine.connect() as conn:
        shards = conn.execute(select(d.c.shards).where(d.c.as_of == as_of)).scalar()
        finished = set(conn.execute(select(sh.c.shard).where(
            sh.c.as_of == as_of, sh.c.shards == shards)).scalars()) if shards else set()
        featured = conn.execute(select(func.count()).select_from(f)
                                .where(f.c.as_of == as_of)).scalar_one()
        unscored = conn.execute(
            select(func.count()).select_from(f).where(
                f.c.as_of == as_of,
                ~select(HEALTH.c.account_id).where(HEALTH.c.as_of == as_of,
                                                   HEALTH.c.account_id == f.c.account_id)
                .exists())).scalar_one()
        empty = bool(featured) and no_source_rows(conn, f.c.as_of == as_of)
    missing = sorted(set(range(shards or 0)) - finished)
    if missing:
        raise NothingToScoreError(
            f"shard(s) {', '.join(str(i + 1) for i in missing)} of {shards} did not finish "
            f"as of {as_of}: not publishing")
    if not featured or empty:
        raise NothingToScoreError(nothing_to_score(engine, as_of, resolve_basis(basis),
                                                   accounts=int(featured) if empty else 0))
    if unscored:
        raise NothingToScoreError(f"{unscored:,} account(s) have features but no health as of "
                                  f"{as_of}: not publishing")
    return int(featured)


def publish_date(engine: Engine, as_of: date, *, basis: str = "auto") -> int:
    """Mark `as_of` published once `check_complete` holds; returns the accounts scored."""
    from sqlalchemy import update

    from pulse.sql.schema import ScoringDate

    t = ScoringDate.__table__
    accounts = check_complete(engine, as_of, basis=basis)
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.as_of == as_of).values(
            state=PUBLISHED, published_at=datetime.now(UTC), accounts=accounts))
    log.info("published %s: %d accounts", as_of, accounts)
    return accounts


def date_state(engine: Engine, as_of: date) -> str | None:
    """`scoring`, `published`, or None (never scored in shards)."""
    from pulse.sql.schema import ScoringDate

    t = ScoringDate.__table__
    with engine.connect() as conn:
        state: str | None = conn.execute(select(t.c.state).where(t.c.as_of == as_of)).scalar()
    return state
