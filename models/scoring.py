"""Score a date: the one sequence every caller runs, so the product behaves the same everywhere.

`score_day(engine, as_of)` runs, for one as-of date:

1. **features** (`sql.features.compute_features`, on the given basis; skipped with
   `features=False` when the caller has stored them already, as the history backfill's worker
   processes do);
2. **health** with the scorecard (`models.health.score_accounts`);
3. **churn scores** from the champion churn model (`models.registry.score_churn_summary`),
   when there is a champion; without one nothing is scored and the summary says so;
4. **flags** (`models.flags.compute_flags`), after the churn scores, because the silent flag
   weighs the date's modelled risk.

`pulse score`, the history backfill (models/history.py) and `pulse bench models` call it; the
health DAG (dags/pulse_health.py) runs the same steps in the same order as separate tasks, so
that each retries on its own.

Before them, `refresh_inputs(engine, first_day)` refreshes what every date reads across the
whole book: the incidents' impacts (incident minutes, `outage_affected`) and the sentiment
model's reading of the texts (support tone). `pulse score`, the health DAG and the training of
a churn model (`models.training.build_training_data`) call it first, so a model never learns
from inputs its scoring will see otherwise.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from pulse.models.health import ScoreSummary, score_accounts
from pulse.models.scorecard import Scorecard, load_scorecard

if TYPE_CHECKING:
    from pulse.models.feedback import ToneRefresh
    from pulse.models.registry import ChurnScoreSummary

log = logging.getLogger(__name__)


@dataclass
class DayScore:
    """What `score_day` did for one date."""

    health: ScoreSummary
    churn: ChurnScoreSummary | None = None  # None: churn not scored (no champion)
    flags: dict[str, int] | None = None  # accounts per flag; None: flags not decided
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def churn_message(self) -> str:
        if self.churn is None:
            return ("no champion churn model: nothing scored, so the silent flag reads no "
                    "modelled risk")
        return self.churn.message

    def to_dict(self) -> dict[str, Any]:
        return {**self.health.to_dict(),
                "churn": None if self.churn is None else self.churn.to_dict(),
                "churn_message": self.churn_message,
                "flags": self.flags,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def refresh_inputs(engine: Engine, first_day: date, *, tone: bool = True) -> ToneRefresh | None:
    """Refresh the whole-book inputs of the dates from `first_day` on: the impact of every
    incident that may have changed, then (unless `tone` is False) the sentiment model's
    reading of the texts from `TONE_WINDOW_DAYS` before `first_day` that it has not read yet.
    Returns what the tone refresh did (None without it)."""
    from datetime import timedelta

    from pulse.models.feedback import TONE_WINDOW_DAYS, refresh_tone
    from pulse.models.outage import refresh_impacts

    refresh_impacts(engine)
    if not tone:
        return None
    return refresh_tone(engine, since=first_day - timedelta(days=TONE_WINDOW_DAYS))


def score_day(engine: Engine, as_of: date, *, scorecard: Scorecard | None = None,
              basis: str = "known", features: bool = True, flags: bool = True,
              on_stage: Callable[[str], None] | None = None) -> DayScore:
    """Features, health, churn scores (with a champion) and flags for `as_of`; see the module.

    Each step replaces the date's rows of its own table and nothing else, so a re-run gives
    the same answer. `flags=False` stops after health: no churn scores and no flags (the
    history backfill keeps those for its latest dates). A date with no account to score
    stops after health too.
    """
    from pulse.models.flags import compute_flags
    from pulse.models.health import score_date
    from pulse.models.registry import champion, score_churn_summary
    from pulse.sql.flags import flag_counts

    card = scorecard or load_scorecard()
    if features:  # features then health, as the health DAG's first task
        health = score_date(engine, as_of, scorecard=card, basis=basis, on_stage=on_stage)
    else:
        if on_stage:
            on_stage(f"scoring health as of {as_of}")
        t0 = time.perf_counter()
        health = score_accounts(engine, as_of, scorecard=card)
        health.seconds = {"health": time.perf_counter() - t0}
    seconds = dict(health.seconds)
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[name] = now - t
        t = now

    out = DayScore(health=health, seconds=seconds)
    if not flags or not health.accounts:
        return out
    if champion(engine) is not None:
        if on_stage:
            on_stage(f"scoring churn risk as of {as_of}")
        out.churn = score_churn_summary(engine, as_of, basis=basis, on_stage=on_stage)
        lap("churn")
    else:
        log.info("no champion churn model: the flags of %s read no modelled risk", as_of)
    compute_flags(engine, as_of, scorecard=card, on_stage=on_stage)
    out.flags = flag_counts(engine, as_of)
    lap("flags")
    return out


__all__ = ["DayScore", "score_day"]
