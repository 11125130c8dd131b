"""Score a backfilled history: features, health and flags for each day of a past window.

`score_history(engine, end=..., days=90)` scores every date from `end - days` to `end - 1`,
oldest first, so each date's 7- and 30-day health changes read the scores stored for the
dates before it (what `pulse score --as-of DATE` would do, day after day). It is what the
demo runs after landing its world, so that trends, the 7/30-day changes, the risk list's
sparklines and the churn model's history have something to show on the first day.

Each date is one set-based features statement (`sql.features.compute_features`, basis
`auto`: rows landed by a backfill count from when they happened) and vectorised health and
flags (`models.health`, `models.flags`); nothing loops over accounts. Dates already scored
are skipped unless `rescore`, so an interrupted run resumes where it stopped. Flags are
decided for the most recent `flag_days` dates only (default all): the risk list and the
playbooks compare flags with the recent days, the trends need health alone.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Engine

from pulse.core.errors import NothingToScoreError
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


def score_history(engine: Engine, *, end: date, days: int = 90,
                  scorecard: Scorecard | None = None, basis: str = "auto",
                  flag_days: int | None = None, rescore: bool = False,
                  on_progress: Callable[[int, int, date], None] | None = None) -> HistoryRun:
    """Score each of the `days` dates before `end`, oldest first (see the module's doc).

    `on_progress(done, total, day)` is called after each date. `flag_days`: flags only for
    that many of the latest dates (None: every date)."""
    from pulse.models.flags import compute_flags
    from pulse.models.health import score_date
    from pulse.sql.features import ensure_features_schema
    from pulse.sql.health import health_dates

    card = scorecard or load_scorecard()
    ensure_features_schema(engine)
    run = HistoryRun(dates=history_dates(end, days))
    done_before = set() if rescore else set(health_dates(engine))
    flag_from = run.dates[-flag_days] if flag_days and run.dates else None
    t0 = time.perf_counter()
    for i, day in enumerate(run.dates, start=1):
        if day in done_before:
            run.skipped.append(day)
        else:
            try:
                summary = score_date(engine, day, scorecard=card, basis=basis)
            except NothingToScoreError:
                run.empty.append(day)
            else:
                run.scored.append(day)
                if summary.accounts and (flag_days is None or
                                         (flag_days > 0 and flag_from and day >= flag_from)):
                    compute_flags(engine, day, scorecard=card)
                    run.flagged += 1
        if on_progress:
            on_progress(i, len(run.dates), day)
    run.seconds = time.perf_counter() - t0
    log.info("history before %s: %s", end, run.describe())
    return run


__all__ = ["HistoryRun", "history_dates", "score_history"]
