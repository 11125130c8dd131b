"""Health: every account scored with the scorecard (models/scorecard.py), as of a date.

`score_features()` scores every account of a features frame at once (numpy over a matrix of
accounts x measures), and `score_accounts()` scores one as-of date of the warehouse: it reads
the materialised features (sql/features.py), leaves out measures of stale sources, compares
with the scores of 7 and 30 days earlier (like for like: `health_change`) and stores each account's health with every
measure's value, points and contribution (sql/health.py).

Health = sum over the measures used of points x weight / (sum of the weights used), rounded to
one decimal; the band follows from the rounded score. A measure is left out for an account
when its feature has no value (`no_data`), its value lies outside every band
(`out_of_bands`), or its source is stale (`stale_source`, unless the file says
`skip_stale_measures: false`); the account's `skipped` list names them. With every measure left out the
account has no score and no band. Accounts younger than the onboarding period (counted from
`created_at`) get the onboarding measures, when the file has them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from pulse.models.scorecard import BANDS, Card, Scorecard, _num, load_scorecard
from pulse.sql.features import FRESHNESS
from pulse.sql.shards import Shard

log = logging.getLogger(__name__)

SKIP_NO_DATA = "no_data"
SKIP_STALE = "stale_source"
SKIP_OUT_OF_BANDS = "out_of_bands"  # a value below the first band or above the last
#: a calibrated card's measure of a feature the warehouse keeps only in its latest state
#: (seats, the fallback MRR): calibration scored history without it, so its scores do too
SKIP_LATEST_ONLY = "latest_only"
#: Why a measure was left out, in words (the account's page and `pulse account`).
SKIP_WORDS: dict[str, str] = {
    SKIP_NO_DATA: "no data",
    SKIP_STALE: "its source is stale",
    SKIP_OUT_OF_BANDS: "outside the card's range",
    SKIP_LATEST_ONLY: "known only in its latest state: the fitted bands leave it out",
}


# --------------------------------------------------------------------------- freshness


@dataclass(frozen=True)
class SourceFreshness:
    source: str
    last_at: datetime | None  # the source's latest row as of the date (any account)
    age_days: float | None
    stale_after_days: float | None
    stale: bool

    def describe(self) -> str:
        if self.last_at is None:
            return f"{self.source}: no rows at all"
        return (f"{self.source}: latest row {self.last_at:%Y-%m-%d %H:%M} UTC, "
                f"{self.age_days:.1f} days old (stale after {_num(self.stale_after_days or 0)})")


def source_freshness(features: pd.DataFrame, as_of: date,
                     scorecard: Scorecard) -> list[SourceFreshness]:
    """The freshness of every source the scorecard gives a staleness limit."""
    end = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=UTC)
    out = []
    for source, limit in scorecard.stale_after_days.items():
        column = FRESHNESS[source][1]
        last = features[column].max() if column in features and len(features) else None
        if last is None or pd.isna(last):
            out.append(SourceFreshness(source, None, None, limit, True))
            continue
        last_dt = pd.Timestamp(last).to_pydatetime()
        age = (end - last_dt).total_seconds() / 86400.0
        out.append(SourceFreshness(source, last_dt, age, limit, age > limit))
    return out


# --------------------------------------------------------------------------- scoring


def score_features(features: pd.DataFrame, scorecard: Scorecard, *,
                   stale_sources: frozenset[str] | set[str] = frozenset(),
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every account of a features frame (see `sql.features.load_features`).

    Returns `(health, measures)`: one row per account (account_id, scorecard, score, band,
    skipped) and one per account and measure (account_id, measure, feature, value, points,
    weight, contribution, skipped). Vectorised: one matrix of accounts x measures per card.

    A calibrated scorecard leaves out, on every date, the measures of features the warehouse
    keeps only in their latest state (`models.training.NOT_POINT_IN_TIME`: seat use, the MRR
    change without billing events; skipped as `latest_only`). Calibration fitted its cut
    points and churn rates on past dates, where those are unknown
    (`models.calibration.blind_latest_state`); read on the latest dates only, they would
    move today's scores off the scale the bands were fitted on, and off the history's.
    """
    n = len(features)
    age = (features["account_age_days"].to_numpy(dtype="float64") if n
           else np.empty(0))
    onboarding = np.zeros(n, dtype=bool)
    if scorecard.onboarding is not None:
        onboarding = ~np.isnan(age) & (age < scorecard.onboarding_days)
    skip_stale = set(stale_sources) if scorecard.skip_stale_measures else set()
    latest_only: set[str] = set()
    if scorecard.calibration is not None:
        from pulse.models.training import NOT_POINT_IN_TIME

        latest_only = set(NOT_POINT_IN_TIME)
    health_parts: list[pd.DataFrame] = []
    measure_parts: list[pd.DataFrame] = []
    for card, rows in ((scorecard.standard, ~onboarding), (scorecard.onboarding, onboarding)):
        if card is None or not rows.any():
            continue
        sub = features.loc[rows]
        ids = sub["account_id"].to_numpy(dtype=object)
        h, m = _score_card(card, sub, ids, skip_stale, latest_only)
        h["scorecard"] = card.name
        health_parts.append(h)
        measure_parts.append(m)
    if not health_parts:
        return (pd.DataFrame(columns=["account_id", "scorecard", "score", "band", "skipped"]),
                pd.DataFrame(columns=["account_id", "measure", "feature", "value", "points",
                                      "weight", "contribution", "skipped"]))
    health = pd.concat(health_parts, ignore_index=True)
    health["band"] = scorecard.band(health["score"].to_numpy(dtype="float64"))
    health = health.sort_values("account_id", kind="stable").reset_index(drop=True)
    measures = pd.concat(measure_parts, ignore_index=True)
    return health[["account_id", "scorecard", "score", "band", "skipped"]], measures


def _score_card(card: Card, sub: pd.DataFrame, ids: np.ndarray, skip_stale: set[str],
                latest_only: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    n, k = len(sub), len(card.measures)
    values = np.column_stack([sub[m.feature].to_numpy(dtype="float64") for m in card.measures])
    points = np.column_stack([m.points(values[:, j]) for j, m in enumerate(card.measures)])
    reason = np.full((n, k), None, dtype=object)
    reason[np.isnan(points)] = SKIP_OUT_OF_BANDS
    reason[np.isnan(values)] = SKIP_NO_DATA
    for j, m in enumerate(card.measures):
        if m.feature in latest_only:
            reason[:, j] = SKIP_LATEST_ONLY
            points[:, j] = np.nan
        if m.source in skip_stale:
            reason[:, j] = SKIP_STALE
            points[:, j] = np.nan
    weights = np.array([m.weight for m in card.measures], dtype="float64")
    used = np.where(np.isnan(points), 0.0, weights[None, :])
    total = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        contribution = np.where(used > 0, points * used / total[:, None], np.nan)
    score = np.where(total > 0, np.round(np.nansum(np.nan_to_num(contribution), axis=1), 1),
                     np.nan)
    names = np.array([m.name for m in card.measures], dtype=object)
    left_out = reason != None  # noqa: E711 (elementwise over an object array)
    skipped = [names[row].tolist() for row in left_out]
    health = pd.DataFrame({"account_id": ids, "score": score, "skipped": skipped})
    measures = pd.DataFrame({
        "account_id": np.repeat(ids, k),
        "measure": np.tile(names, n),
        "feature": np.tile(np.array([m.feature for m in card.measures], dtype=object), n),
        "value": values.ravel(),
        "points": points.ravel(),
        "weight": np.tile(weights, n),
        "contribution": contribution.ravel(),
        "skipped": reason.ravel(),
    })
    return health, measures


# --------------------------------------------------------------------------- one date


@dataclass
class ScoreSummary:
    as_of: date
    accounts: int
    scorecard: str
    by_scorecard: dict[str, int]
    bands: dict[str, int]  # green, watch, amber, red, unscored: every account scored
    freshness: list[SourceFreshness]
    seconds: dict[str, float] = field(default_factory=dict)
    #: the accounts whose subscription was cancelled by `as_of` (scored all the same, so
    #: that their history is whole; the risk list and the console leave them out)
    cancelled: int = 0
    #: the bands among the other accounts: the ones a CS team works, as the risk list has them
    active_bands: dict[str, int] = field(default_factory=dict)

    @property
    def stale(self) -> list[SourceFreshness]:
        return [f for f in self.freshness if f.stale]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "accounts": self.accounts,
            "scorecard": self.scorecard,
            "by_scorecard": self.by_scorecard,
            "bands": self.bands,
            "cancelled": self.cancelled,
            "active_bands": self.active_bands,
            "stale_sources": [
                {"source": f.source, "last_at": f.last_at.isoformat() if f.last_at else None,
                 "age_days": None if f.age_days is None else round(f.age_days, 2),
                 "stale_after_days": f.stale_after_days}
                for f in self.stale],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def score_accounts(engine: Engine, as_of: date, *, scorecard: Scorecard | None = None,
                   shard: Shard | None = None) -> ScoreSummary:
    """Score the materialised features of `as_of` and store health and measures.

    Re-scoring a date replaces that date's health rows (of one `shard`'s accounts when given)
    and nothing else. The change against 7 and 30 days earlier reads the scores stored for
    those dates (none when not scored then). A source's freshness is the whole book's (the
    features carry it), so a shard decides staleness as the whole date would.
    """
    from pulse.sql.features import load_features
    from pulse.sql.health import load_measures, load_scores, write_health

    card = scorecard or load_scorecard()
    features = load_features(engine, as_of, shard=shard)
    if features.empty and shard is None:
        log.warning("no features as of %s: run compute_features first", as_of)
    freshness = source_freshness(features, as_of, card)
    stale = {f.source for f in freshness if f.stale}
    health, measures = score_features(features, card, stale_sources=stale)
    for days in (7, 30):
        then = as_of - timedelta(days=days)
        health[f"change_{days}d"] = health_change(
            health, measures, load_scores(engine, then), partial(load_measures, engine, then))
    health["scorecard_version"] = card.label
    write_health(engine, as_of, health, measures, shard=shard)
    gone = (features.loc[features["cancelled"].fillna(False).astype(bool), "account_id"]
            if "cancelled" in features else [])
    cancelled = health["account_id"].isin(gone)
    bands, active_bands = _band_counts(health["band"]), _band_counts(health["band"][~cancelled])
    by_card = {str(k): int(v) for k, v in health["scorecard"].value_counts().items()}
    log.info("health as of %s: %d accounts (%s; %d cancelled)", as_of, len(health), bands,
             int(cancelled.sum()))
    return ScoreSummary(as_of=as_of, accounts=len(health), scorecard=card.label,
                        by_scorecard=by_card, bands=bands, freshness=freshness,
                        cancelled=int(cancelled.sum()), active_bands=active_bands)


def _band_counts(band: pd.Series) -> dict[str, int]:
    """Accounts per band, and `unscored` (no band)."""
    counts = {b: int((band == b).sum()) for b in BANDS}
    counts["unscored"] = int(band.isna().sum())
    return counts


def health_change(health: pd.DataFrame, measures: pd.DataFrame, before: pd.DataFrame,
                  before_points: Callable[[], pd.DataFrame]) -> np.ndarray:
    """Each account's health now minus its health then, like for like (one decimal; none
    where it was not scored then).

    `health` and `measures` are `score_features`'s of now; `before` is `load_scores` of then
    and `before_points` loads its measures (`load_measures`, read only when needed).
    Where an account was scored on the same measures on both dates, the change is the
    difference of the two scores. Where a measure counted on one date only (no value, or its
    source stale, on the other: the stored attributes a history imported in one go has only
    on its last days, say), it is the difference over the measures both dates scored, each
    date with its own weights, so that the change is the account's and not a measure
    appearing. Without any measure in common, or scored with another card then (onboarding,
    then standard: measures of one name may map to points differently), the difference of
    the scores.
    """
    merged = health[["account_id", "scorecard", "score", "skipped"]].merge(
        before.rename(columns={"scorecard": "card_before", "score": "before",
                               "skipped": "skipped_before"}),
        on="account_id", how="left")
    change = np.round(merged["score"].to_numpy(dtype="float64")
                      - merged["before"].to_numpy(dtype="float64"), 1)
    # the lists name the measures left out in the card's order: equal lists, equal sets
    differ = ((merged["skipped"].astype(str) != merged["skipped_before"].astype(str))
              & (merged["scorecard"] == merged["card_before"])).to_numpy() & ~np.isnan(change)
    if not differ.any():
        return change
    used = measures.loc[measures["points"].notna(), ["account_id", "measure", "points",
                                                      "weight"]]
    then = before_points()
    then = then.loc[then["points"].notna(), ["account_id", "measure", "points", "weight"]]
    shared = used.merge(then.astype({"points": "float64", "weight": "float64"}),
                        on=["account_id", "measure"], suffixes=("", "_then"))
    shared = shared.assign(pw=shared["points"] * shared["weight"],
                           pw_then=shared["points_then"] * shared["weight_then"])
    sums = shared.groupby("account_id")[["pw", "weight", "pw_then", "weight_then"]].sum()
    like = (sums["pw"] / sums["weight"] - sums["pw_then"] / sums["weight_then"]).round(1)
    alike = merged["account_id"].map(like).to_numpy(dtype="float64")
    return np.where(differ & ~np.isnan(alike), alike, change)


def score_date(engine: Engine, as_of: date, *, scorecard: Scorecard | None = None,
               basis: str = "known", on_stage: Callable[[str], None] | None = None,
               ) -> ScoreSummary:
    """Features then health for one date: what `pulse score` and the health DAG run."""
    import time as _time

    from pulse.models.negative_words import NEGATIVE_TERMS
    from pulse.sql.features import compute_features

    card = scorecard or load_scorecard()
    t0 = _time.perf_counter()
    if on_stage:
        on_stage(f"computing features as of {as_of}")
    compute_features(engine, as_of, basis=basis,  # type: ignore[arg-type]
                     negative_terms=NEGATIVE_TERMS)
    t1 = _time.perf_counter()
    if on_stage:
        on_stage(f"scoring health as of {as_of}")
    summary = score_accounts(engine, as_of, scorecard=card)
    summary.seconds = {"features": t1 - t0, "health": _time.perf_counter() - t1}
    return summary
