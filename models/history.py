"""Score a backfilled history: features, health, churn risk and flags for each day of a past
window.

`score_history(engine, end=..., days=90)` scores every date from `end - days` to `end - 1`,
oldest first, so each date's 7- and 30-day health changes read the scores stored for the
dates before it (what `pulse score --as-of DATE` would do, day after day). It is what the
demo runs after landing its world, so that trends, the 7/30-day changes, the risk list's
sparklines and the churn model's history have something to show on the first day.

Each date is one set-based features statement (`sql.features.features_select`, basis
`auto`: rows landed by a backfill count from when they happened), then the rest of the
shared "score a date" step (`models.scoring.score_day`, as `pulse score` and the health DAG
run it): vectorised health, the champion's churn scores when there is a champion, and the
flags, which weigh them; nothing loops over accounts. The features
statements, which cost most (about 7 s of CPU per date for 2,000 accounts and 575,000 usage
rows on SQLite), only read: with `workers` > 1 they run in that many processes at once, a few
dates ahead, while this process writes each date's features, health and flags in date order.
Dates already scored are skipped unless `rescore`, so an interrupted run resumes where it
stopped. Churn scores and flags are
decided for the most recent `flag_days` dates only (default all): the risk list and the
playbooks compare flags with the recent days, the trends need health alone.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, text

from pulse.models.scorecard import Scorecard, load_scorecard

log = logging.getLogger(__name__)


@dataclass
class HistoryRun:
    """What `score_history` did."""

    dates: list[date] = field(default_factory=list)  # the window, oldest first
    scored: list[date] = field(default_factory=list)
    skipped: list[date] = field(default_factory=list)  # scored already
    empty: list[date] = field(default_factory=list)  # nothing to score yet on that day
    flagged: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        per = self.seconds / len(self.scored) if self.scored else 0.0
        return (f"{len(self.scored)} dates scored ({per:.1f} s each), {len(self.skipped)} "
                f"scored already, {len(self.empty)} with nothing to score, flags on "
                f"{self.flagged}; {self.seconds:.1f} s")


def history_dates(end: date, days: int) -> list[date]:
    """The `days` dates before `end`, oldest first."""
    return [end - timedelta(days=k) for k in range(days, 0, -1)]


def _read(conn: Any, day: date, basis: str, computed_at: datetime) -> list[dict[str, Any]]:
    """The features rows of `day`, read into this process (for a worker: the parent writes
    them in date order)."""
    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.features import features_select

    if conn.dialect.name == "postgresql":  # as sql.features.compute_features does
        conn.execute(text("SET LOCAL jit = off"))
        conn.execute(text("SET LOCAL work_mem = '64MB'"))
    query = features_select(day, basis=basis,  # type: ignore[arg-type]
                            negative_terms=NEGATIVE_TERMS, computed_at=computed_at)
    return [dict(m) for m in conn.execute(query).mappings()]


_worker_engine: list[Engine] = []


def _features_of(url: str, day: date, basis: str, computed_at: datetime
                 ) -> list[dict[str, Any]]:
    """In a worker process: the features rows of `day`, read on the worker's own engine."""
    if not _worker_engine:
        from pulse.sql.db import make_engine

        _worker_engine.append(make_engine(url))
    with _worker_engine[0].begin() as conn:
        return _read(conn, day, basis, computed_at)


def _write_features(engine: Engine, day: date, rows: list[dict[str, Any]]) -> None:
    from pulse.sql.features import FEATURES_TABLE as t

    with engine.begin() as conn:
        conn.execute(delete(t).where(t.c.as_of == day))
        if rows:
            conn.execute(insert(t), rows)


def score_history(engine: Engine, *, end: date, days: int = 90,
                  scorecard: Scorecard | None = None, basis: str = "auto",
                  flag_days: int | None = None, rescore: bool = False, workers: int = 1,
                  on_progress: Callable[[int, int, date], None] | None = None) -> HistoryRun:
    """Score each of the `days` dates before `end`, oldest first (see the module's doc).

    `on_progress(done, total, day)` is called after each date. `flag_days`: churn scores
    (with a champion) and flags only for that many of the latest dates (None: every date).
    `workers`: processes reading the features statements (1: this process alone)."""
    import multiprocessing

    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.models.scoring import score_day
    from pulse.sql.features import (
        compute_features,
        ensure_features_schema,
        reads_no_source,
        resolve_basis,
    )
    from pulse.sql.health import health_dates

    card = scorecard or load_scorecard()
    basis = resolve_basis(basis)
    ensure_features_schema(engine)
    run = HistoryRun(dates=history_dates(end, days))
    done_before = set() if rescore else set(health_dates(engine))
    todo = [d for d in run.dates if d not in done_before]
    flagged = set(run.dates if flag_days is None else
                  run.dates[max(0, len(run.dates) - flag_days):] if flag_days > 0 else [])
    computed_at = datetime.now(UTC)
    t0 = time.perf_counter()
    pool = (ProcessPoolExecutor(max_workers=workers,
                                mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 and len(todo) > 1 else None)
    url = engine.url.render_as_string(hide_password=False)
    ahead: deque[tuple[date, Future[list[dict[str, Any]]]]] = deque()
    queue = deque(todo)
    try:
        for i, day in enumerate(run.dates, start=1):
            if day in done_before:
                run.skipped.append(day)
            else:
                if pool is not None:
                    while queue and len(ahead) < 2 * workers:  # a few dates ahead, no more
                        nxt = queue.popleft()
                        ahead.append((nxt, pool.submit(_features_of, url, nxt, basis,
                                                       computed_at)))
                    got, future = ahead.popleft()
                    assert got == day
                    rows = future.result()
                    if rows and reads_no_source(rows[0]):  # nothing to score them on
                        rows = []
                    _write_features(engine, day, rows)
                    written = len(rows)
                else:  # in this process: `pulse score`'s own insert-from-select
                    written = compute_features(engine, day, basis=basis,  # type: ignore[arg-type]
                                               negative_terms=NEGATIVE_TERMS, allow_empty=True)
                if not written:
                    run.empty.append(day)
                else:  # the features are stored: health, churn scores, flags
                    score_day(engine, day, scorecard=card, basis=basis, features=False,
                              flags=day in flagged)
                    run.scored.append(day)
                    run.flagged += day in flagged
            if on_progress:
                on_progress(i, len(run.dates), day)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    run.seconds = time.perf_counter() - t0
    log.info("history before %s: %s", end, run.describe())
    return run


__all__ = ["HistoryRun", "history_dates", "score_history"]
