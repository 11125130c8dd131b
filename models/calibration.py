"""Bands fitted to the customer's own outcomes: what a health score has meant in history.

`fit_calibration()` takes labelled snapshots of every account across the history
(models/training.py: features as of past dates, and whether the account cancelled within the
horizon after each date), scores them with the scorecard, and learns three things from them:

* **the churn rate behind each health score**: an isotonic regression of "cancelled within the
  horizon" on health (never a higher rate for a higher health). It is written into the
  scorecard as its `calibration` curve, and the risk list reads it as the probability of
  churn when no churn model is champion;
* **the band cut points**, from the history's churners and the spread of health, never from
  fixed numbers:
  - *green* starts at the health above which at most 15% of history's churners sat: the
    accounts with the lowest observed churn rate, and the band a CSM may leave alone;
  - *amber and red* (at risk) start at the health below which all but 10% of history's
    churners sat, but hold at most `at_risk_share` of today's accounts (default 30%: the
    accounts a CS team can work in a period; the accounts active on the calibration date,
    since health drifts as a base changes, and in history's snapshots only when today's
    cannot be scored);
  - *red* holds those whose observed rate is at least twice the base rate, at most
    `red_share` of today's accounts (default 10%);
  - *watch* is what lies between (empty when the at-risk share already holds all but 15%
    of the churners): accounts whose health history's churners shared, too many for the
    team's capacity. Three bands cannot say both "green is safe" and "the work list fits the
    team" once a score ranks imperfectly; the watch band lets each band keep its meaning;
* **optionally, the measures' weights** (`fit_weights`): non-negative weights that make health
  separate churners best on the earlier snapshots (a logistic fit of churn on health, with
  health computed exactly as the scorecard does), kept only when they rank a *later*
  validation window better than the current weights.

When the history is too short (no labelled window, or too few churners), or when health does
not rank its churners better than chance (ROC AUC within `CHANCE_MARGIN_SE` standard errors of
0.5, counted in accounts), nothing is fitted: the defaults stay and the result says why. Cut
points fitted to a score that tells nobody apart would be noise dressed up as evidence (on a
history whose cancellations came without warning, "green" fitted that way held 5 of 1,880
accounts). `proposed_yaml()` writes the scorecard with the
fitted values and the evidence as a comment; `write_chart()` draws the evidence.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

from pulse.core.errors import TrainingDataError
from pulse.models.health import score_features
from pulse.models.metrics import roc_auc
from pulse.models.scorecard import (
    BANDS,
    Card,
    Scorecard,
    assign_bands,
    load_scorecard,
    parse_scorecard,
)
from pulse.models.training import NOT_POINT_IN_TIME as _NOT_POINT_IN_TIME

log = logging.getLogger(__name__)

DEFAULT_AT_RISK_SHARE = 0.30
DEFAULT_RED_SHARE = 0.10
#: Amber starts where all but this share of history's churners sat (within the at-risk share).
AT_RISK_CHURNER_SHARE = 0.10
#: Green starts where at most this share of history's churners sat above. Below 20%, so that
#: the share among the next period's churners (a sample of a hundred or so) stays under a
#: fifth.
GREEN_CHURNER_SHARE = 0.15
#: Red means an observed churn rate at least this many times the base rate.
RED_RATE_RATIO = 2.0
#: Below these, history says too little to move the defaults.
MIN_CHURNERS = 20
MIN_ROWS = 200
#: Health must rank history's churners above chance (ROC AUC 0.5) by this many of its standard
#: errors (Hanley and McNeil, churners and retained counted in accounts: an account's
#: snapshots are not independent), else no cut point is fitted. Two, as the registry's ties.
CHANCE_MARGIN_SE = 2.0
#: Fitted weights must beat the current ones by this much ROC AUC on the later window.
MIN_AUC_GAIN = 0.005
#: The smallest weight a fitted measure keeps (a scorecard weight must be above 0).
MIN_WEIGHT = 0.5
#: Candidate pulls towards the current weights (ridge on their shares); the later window picks.
SHRINKS = (0.0, 0.05, 0.5)
#: With fitted weights, linear measures may also take their range from the population:
#: the 10th to 90th percentiles, or wider ones when those hold too few distinct values.
RANGE_PERCENTILES = (10.0, 90.0)
WIDER_PERCENTILES = ((5.0, 95.0), (1.0, 99.0))
#: A fitted range holds at least this many distinct values of its feature; else the measure
#: would split the accounts in two rather than spread them (days since last use, where 90%
#: of a daily-use base read 0 or 1, gave "1 day: 0 points"), and the default range stays.
MIN_RANGE_VALUES = 5


@dataclass
class BandFigure:
    band: str
    accounts: int
    churners: int

    @property
    def rate(self) -> float | None:
        return self.churners / self.accounts if self.accounts else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.rate
        return {"band": self.band, "accounts": self.accounts, "churners": self.churners,
                "churn_rate": None if rate is None else round(rate, 4)}


@dataclass
class CalibrationResult:
    """What a calibration found, and the proposed scorecard."""

    as_of: date | None
    horizon_days: int
    rows: int = 0
    churners: int = 0
    green: float = 70.0
    amber: float = 40.0
    watch: float | None = None  # where the watch band starts (None: no watch band)
    default_green: float = 70.0
    default_amber: float = 40.0
    default_watch: float | None = None
    before: list[BandFigure] = field(default_factory=list)
    after: list[BandFigure] = field(default_factory=list)
    auc_before: float | None = None
    auc_after: float | None = None
    weights: dict[str, float] | None = None  # fitted and kept
    ranges: dict[str, tuple[float, float]] | None = None  # linear measures' fitted ranges
    weights_note: str = ""
    curve: list[tuple[float, float]] = field(default_factory=list)
    fallback: str | None = None  # why nothing was fitted
    notes: list[str] = field(default_factory=list)
    yaml_text: str = ""
    #: (health, churned) of every labelled snapshot, for the chart
    points: pd.DataFrame | None = None
    #: today's active accounts per band with the fitted cut points (green, amber, red), where
    #: they could be scored: the shares the cut points hold
    today: dict[str, int] | None = None

    @property
    def fitted(self) -> bool:
        return self.fallback is None

    @property
    def base_rate(self) -> float | None:
        return self.churners / self.rows if self.rows else None

    def share(self, figures: list[BandFigure], *, churners: bool, bands: tuple[str, ...]
              ) -> float | None:
        total = sum(f.churners if churners else f.accounts for f in figures)
        part = sum(f.churners if churners else f.accounts for f in figures if f.band in bands)
        return part / total if total else None

    def to_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "horizon_days": self.horizon_days, "rows": self.rows, "churners": self.churners,
            "base_rate": r(self.base_rate), "fitted": self.fitted, "fallback": self.fallback,
            "bands": _cut_dict(self.green, self.watch, self.amber),
            "default_bands": _cut_dict(self.default_green, self.default_watch,
                                       self.default_amber),
            "before": [f.to_dict() for f in self.before],
            "after": [f.to_dict() for f in self.after],
            "churners_green_before": r(self.share(self.before, churners=True,
                                                  bands=("green",))),
            "churners_green_after": r(self.share(self.after, churners=True, bands=("green",))),
            "at_risk_share_before": r(self.share(self.before, churners=False,
                                                 bands=("red", "amber"))),
            "at_risk_share_after": r(self.share(self.after, churners=False,
                                                bands=("red", "amber"))),
            "health_roc_auc_before": r(self.auc_before),
            "health_roc_auc_after": r(self.auc_after),
            "weights": self.weights, "weights_note": self.weights_note,
            "ranges": ({k: list(v) for k, v in self.ranges.items()} if self.ranges else None),
            "curve": [[h, p] for h, p in self.curve], "notes": self.notes,
            "today": self.today,
            "today_at_risk_share": r(self.today_share(("red", "amber"))),
        }

    def today_share(self, bands: tuple[str, ...]) -> float | None:
        """The share of today's active accounts in `bands` (None when not scored)."""
        total = sum(self.today.values()) if self.today else 0
        if not self.today or not total:
            return None
        return sum(self.today.get(b, 0) for b in bands) / total


# --------------------------------------------------------------------------- health


def _health(frame: pd.DataFrame, card: Scorecard) -> np.ndarray:
    """Health of every snapshot row (rows may repeat an account: scored by position)."""
    f = frame.reset_index(drop=True).copy()
    width = len(str(len(f)))
    f["account_id"] = [f"{i:0{width}d}" for i in range(len(f))]
    health, _m = score_features(f, card)
    return health.set_index("account_id")["score"].reindex(f["account_id"]).to_numpy(
        dtype="float64")


def blind_latest_state(frame: pd.DataFrame, card: Scorecard) -> tuple[pd.DataFrame, list[str]]:
    """(a copy of the snapshots without the features the card reads that the warehouse keeps
    only in their latest state, those features). A cancelled account's MRR is 0 now, its
    seats and renewal date may be cleared: read on a past date they would leak the outcome,
    so past snapshots are scored without them (a measure without a value is left out and
    the others' weights rescaled, as for any account). sql/features.py already leaves the
    stored attributes out of dates before the latest activity's eve; this also drops what is
    left of them (an MRR change from billing events for some accounts only), so that a
    measure is either read for every snapshot or for none."""
    blind = sorted({m.feature for c in card.cards() for m in c.measures}
                   & set(_NOT_POINT_IN_TIME) & set(frame.columns))
    out = frame.copy()
    if blind:
        out[blind] = np.nan
    return out, blind


def measure_points(frame: pd.DataFrame, card: Card) -> np.ndarray:
    """The points (0..100, NaN when left out) of every measure of `card`, rows x measures."""
    values = np.column_stack([frame[m.feature].to_numpy(dtype="float64")
                              for m in card.measures])
    return np.column_stack([m.points(values[:, j]) for j, m in enumerate(card.measures)])


def _weighted(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    used = np.where(np.isnan(points), 0.0, weights[None, :])
    total = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.nansum(np.nan_to_num(points) * used, axis=1) / total,
                        np.nan)


def _auc(y: np.ndarray, health: np.ndarray) -> float | None:
    """ROC AUC of health as a ranking of churn (lower health = riskier)."""
    return roc_auc(y, -np.asarray(health, dtype="float64"))


def no_better_than_chance(y: np.ndarray, health: np.ndarray, accounts: np.ndarray) -> str | None:
    """Why health's ranking of history's churners is no evidence to fit cut points on (its
    ROC AUC within `CHANCE_MARGIN_SE` standard errors of 0.5, or below), else None. The
    standard error counts churners and retained in accounts."""
    from pulse.models.selection import auc_se_in_groups

    auc = _auc(y, health)
    if auc is None:
        return "health does not rank history's churners: one class only"
    se = auc_se_in_groups(auc, y, accounts)
    if not np.isfinite(se) or auc - CHANCE_MARGIN_SE * se > 0.5:
        return None
    churned = len(np.unique(np.asarray(accounts)[y]))
    return (f"health does not rank history's churners better than chance (ROC AUC {auc:.3f} "
            f"± {se:.3f}, {churned:,} accounts churned): cut points fitted to it would tell "
            "nobody apart")


def fit_weights(points: np.ndarray, y: np.ndarray, start: np.ndarray, *,
                shrink: float = 0.0, fixed: np.ndarray | None = None) -> np.ndarray:
    """Non-negative weights (summing to the same total as `start`) that make the scorecard's
    weighted mean of points separate `y` best: a logistic fit of y on health, optimised over
    the weights with health computed as the scorecard computes it (a measure without a value
    is left out and the other weights rescale)."""
    from scipy.optimize import minimize

    k = points.shape[1]
    yv = y.astype("float64")
    prior = float(yv.mean())
    share0 = start / start.sum()
    keep = np.zeros(k, dtype=bool) if fixed is None else fixed

    def loss(theta: np.ndarray) -> float:
        w = np.where(keep, share0, np.maximum(theta[:k], 0.0)) + 1e-9
        a, b = theta[k], theta[k + 1]
        h = _weighted(points, w) / 100.0
        h = np.where(np.isnan(h), 0.5, h)
        z = a + b * h
        penalty = shrink * float(np.sum((w / w.sum() - share0) ** 2)) * k
        return float(np.mean(np.logaddexp(0.0, z) - yv * z)) + penalty

    base_logit = float(np.log(prior / (1 - prior))) if 0 < prior < 1 else 0.0
    x0 = np.concatenate([start / start.sum(), [base_logit + 2.0, -4.0]])
    bounds = [(0.0, None)] * k + [(None, None), (None, None)]
    res = minimize(loss, x0, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 300})
    free = np.maximum(res.x[:k], 0.0)
    if not np.isfinite(free).all() or free[~keep].sum() <= 0:
        return start.copy()
    # the measures held fixed keep their weight; the others share the rest of the total
    w = np.where(keep, start, free / free[~keep].sum() * (start.sum() - start[keep].sum()))
    return np.maximum(np.round(w, 1), MIN_WEIGHT)


def _with_weights(card: Scorecard, weights: np.ndarray) -> Scorecard:
    from dataclasses import replace

    measures = tuple(replace(m, weight=float(w)) for m, w in zip(card.standard.measures, weights))
    return replace(card, standard=Card(card.standard.name, measures))


def fit_ranges(card: Scorecard, frame: pd.DataFrame, *, skip: set[str]) -> Scorecard:
    """The standard card with each linear measure's range (0 and 100 points) set to the 10th
    and 90th percentiles of its feature in `frame`, the direction kept: the measure then
    spreads this customer base's accounts, whatever the scale of their usage.

    A range must hold at least `MIN_RANGE_VALUES` distinct values of the feature: where the
    10th to 90th percentiles hold fewer (a count most accounts share, such as days since
    last use in a base that uses the product daily), the wider `WIDER_PERCENTILES` are tried,
    and failing those the measure keeps its range."""
    from dataclasses import replace

    measures = []
    for m in card.standard.measures:
        if m.kind == "linear" and m.feature not in skip:
            values = frame[m.feature].to_numpy(dtype="float64")
            values = values[~np.isnan(values)]
            if len(values) >= MIN_ROWS:
                fitted = _spread_range(values)
                if fitted is not None:
                    m = replace(m, low=fitted[0], high=fitted[1])
        measures.append(m)
    return replace(card, standard=Card(card.standard.name, tuple(measures)))


def _spread_range(values: np.ndarray) -> tuple[float, float] | None:
    """The narrowest of `RANGE_PERCENTILES` and `WIDER_PERCENTILES` whose range holds at
    least `MIN_RANGE_VALUES` distinct values, rounded; None when none does."""
    for q in (RANGE_PERCENTILES, *WIDER_PERCENTILES):
        lo, hi = (float(x) for x in np.percentile(values, q))
        inside = np.unique(values[(values >= lo) & (values <= hi)])
        lo, hi = _round_sig(lo), _round_sig(hi)
        if hi > lo and len(inside) >= MIN_RANGE_VALUES:
            return lo, hi
    return None


def _round_sig(x: float, digits: int = 3) -> float:
    if x == 0 or not np.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


# --------------------------------------------------------------------------- cut points


def _isotonic(health: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(health, y.astype("float64"))
    return iso


def _curve(iso: Any, health: np.ndarray) -> list[tuple[float, float]]:
    """The fitted rate at health's quantiles (where the data is), plus 0 and 100: a short
    curve a person can read, rising in health and never rising in rate."""
    grid = np.unique(np.round(np.concatenate(
        [[0.0, 100.0], np.quantile(health, np.linspace(0, 1, 41))]), 1))
    grid = grid[(grid >= 0) & (grid <= 100)]
    rate = np.minimum.accumulate(np.round(iso.predict(grid), 4))
    return [(float(h), float(r)) for h, r in zip(grid, rate)]


def _cut_below(health: np.ndarray, share: float) -> float:
    """The highest cut c (one decimal) such that at most `share` of rows have health < c."""
    h = np.sort(health)
    k = int(np.floor(share * len(h)))
    if k <= 0:
        return float(np.round(h[0], 1)) if len(h) else 0.0
    c = float(np.round(h[min(k, len(h) - 1)], 1))
    while c > 0 and np.mean(health < c) > share:
        c = round(c - 0.1, 1)
    return c


def _cut_above(values: np.ndarray, share: float) -> float:
    """The lowest cut c (one decimal) such that at most `share` of `values` are >= c."""
    h = np.sort(values)[::-1]
    k = int(np.floor(share * len(h)))
    if k >= len(h):
        return 0.0
    return round(float(np.floor(h[k] * 10.0 + 1e-9)) / 10.0 + 0.1, 1)


#: Fewer of today's scored accounts than this, and the shares are held in history instead.
MIN_TODAY = 20


class Cuts(NamedTuple):
    """The fitted cut points (health where each band starts), the isotonic fit and the notes
    that say why. `watch` is None when the watch band is empty (it would start at green)."""

    green: float
    watch: float | None
    amber: float
    iso: Any
    notes: list[str]

    @property
    def at_risk(self) -> float:
        return self.green if self.watch is None else self.watch


def _cut_dict(green: float, watch: float | None, amber: float) -> dict[str, float]:
    """The scorecard's `bands` mapping (no `watch` key when there is no watch band)."""
    return {"green": green, **({} if watch is None else {"watch": watch}), "amber": amber}


def choose_cuts(health: np.ndarray, y: np.ndarray, *, today: np.ndarray | None = None,
                at_risk_share: float = DEFAULT_AT_RISK_SHARE,
                red_share: float = DEFAULT_RED_SHARE) -> Cuts:
    """The cut points from labelled health scores.

    The rates and the churners' reach come from history (`health`, `y`). The shares (the
    at-risk share, a CS team's capacity, and the red share) are held among `today`'s
    accounts, the health of the accounts active on the calibration date (no labels needed),
    where there are at least MIN_TODAY of them: the capacity is about the accounts a team
    works now, and health drifts as a customer base changes, so history's lowest 30% may be
    more or fewer of today's accounts. Without them, the shares are held in history.
    Green is about outcomes only: it starts where at most GREEN_CHURNER_SHARE of history's
    churners sat above, never below the at-risk line."""
    iso = _isotonic(health, y)
    base = float(y.mean())
    grid = np.round(np.arange(0.0, 100.05, 0.1), 1)
    rate = iso.predict(grid)
    notes: list[str] = []
    now = today is not None and len(today) >= MIN_TODAY
    shares = today if now and today is not None else health
    whose = f"today's {len(shares):,} active accounts" if now else "history's snapshots"
    # at risk: the lowest health that held all but AT_RISK_CHURNER_SHARE of history's
    # churners, within the at-risk share of accounts (a CS team's capacity)
    catch = float(np.round(np.quantile(health[y], 1.0 - AT_RISK_CHURNER_SHARE), 1) + 0.1)
    capacity = _cut_below(shares, at_risk_share)
    at_risk = min(capacity, catch)
    if at_risk == catch:
        notes.append(f"amber and red hold the health that held {1 - AT_RISK_CHURNER_SHARE:.0%} "
                     f"of history's churners (below {at_risk:g}): {np.mean(shares < at_risk):.0%}"
                     f" of {whose}")
    else:
        notes.append(f"amber and red hold the lowest {at_risk_share:.0%} of {whose} (health "
                     f"below {at_risk:g}); that health held {np.mean(health[y] < at_risk):.0%} "
                     "of history's churners")
    high = grid[rate >= RED_RATE_RATIO * base]
    red_cross = float(high.max() + 0.1) if len(high) else 0.1
    amber = min(_cut_below(shares, red_share), red_cross, at_risk - 0.1)
    notes.append(f"red: an observed churn rate of at least {RED_RATE_RATIO:g}x the base rate, "
                 f"at most {red_share:.0%} of {whose} (health below {amber:g})")
    at_risk = round(max(at_risk, 0.2), 1)
    amber = round(min(max(amber, 0.1), at_risk - 0.1), 1)
    # green: the health above which at most GREEN_CHURNER_SHARE of history's churners sat
    reach = _cut_above(health[y], GREEN_CHURNER_SHARE)
    green = round(min(max(reach, at_risk), 100.0), 1)
    watch: float | None = at_risk if green > at_risk else None
    above = health >= green
    rate_words = (f"churn rate {float(y[above].mean()):.1%} against the base rate {base:.1%}"
                  if above.any() else "no snapshot scored that high")
    if watch is None:
        notes.append(f"green from {green:g}: the at-risk bands already hold all but "
                     f"{np.mean(health[y] >= green):.0%} of history's churners; no watch band")
    else:
        notes.append(f"green from {green:g}: at most {GREEN_CHURNER_SHARE:.0%} of history's "
                     f"churners scored there ({rate_words}), {np.mean(shares >= green):.0%} of "
                     f"{whose}; watch from "
                     f"{watch:g}: health history's churners shared, beyond the team's capacity")
    return Cuts(green, watch, amber, iso, notes)


def _band_figures(health: np.ndarray, y: np.ndarray, green: float, watch: float | None,
                  amber: float) -> list[BandFigure]:
    band = assign_bands(health, green, watch, amber)
    ok = ~np.isnan(health)
    return [BandFigure(b, int(((band == b) & ok).sum()), int(((band == b) & ok & y).sum()))
            for b in BANDS]


# --------------------------------------------------------------------------- fitting


def fit_calibration(engine: Any, *, as_of: date | None = None, horizon_days: int = 90,
                    basis: str = "occurred", scorecard: Scorecard | None = None,
                    fit_weights_: bool = False, at_risk_share: float = DEFAULT_AT_RISK_SHARE,
                    red_share: float = DEFAULT_RED_SHARE,
                    snapshots: dict[Any, pd.DataFrame] | None = None) -> CalibrationResult:
    """Fit the scorecard's bands (and optionally weights) to the history's outcomes."""
    from pulse.models.training import LABEL, build_training_data

    card = scorecard or load_scorecard()
    result = CalibrationResult(as_of=as_of, horizon_days=horizon_days, green=card.green,
                               amber=card.amber, watch=card.watch, default_green=card.green,
                               default_amber=card.amber, default_watch=card.watch)
    try:
        data = build_training_data(engine, as_of=as_of, horizon_days=horizon_days, basis=basis,
                                   shorten_horizon=True, snapshots=snapshots)
    except TrainingDataError as exc:
        result.fallback = f"history too short to calibrate: {exc}"
        result.yaml_text = proposed_yaml(card, result)
        return result
    # the weights are chosen on a time split (`frame`, the horizon that fits it); the cut
    # points and churn rates on every snapshot labelled with the requested horizon when the
    # history is too short for both (`labelled`): a band's rate is about that horizon
    frame, blind = blind_latest_state(data.frame, card)
    labelled = frame if data.refit is None else blind_latest_state(data.refit, card)[0]
    if blind:
        result.notes.append("left out of past dates (the warehouse keeps only their latest "
                            f"value): {', '.join(blind)}")
    result.as_of = data.windows.as_of
    result.horizon_days = data.refit_horizon_days
    if data.windows.horizon_days != horizon_days:
        result.notes.append(
            f"horizon shortened from {horizon_days} to {data.windows.horizon_days} days to fit "
            "the history" + (
                f" for the weights' time split; the cut points and churn rates are fitted on "
                f"the {len(labelled):,} snapshots labelled with the {horizon_days}-day horizon"
                if data.refit is not None else ""))
    y = labelled[LABEL].to_numpy(dtype=bool)
    health = _health(labelled, card)
    ok = ~np.isnan(health)
    result.rows, result.churners = int(ok.sum()), int(y[ok].sum())
    result.before = _band_figures(health, y, card.green, card.watch, card.amber)
    result.auc_before = _auc(y, health)
    if result.churners < MIN_CHURNERS or result.rows < MIN_ROWS \
            or result.rows - result.churners < MIN_CHURNERS:
        result.fallback = (f"history too short to calibrate: {result.rows:,} labelled "
                           f"snapshots with {result.churners} churned within "
                           f"{result.horizon_days} days (need {MIN_ROWS} and {MIN_CHURNERS})")
        result.after = result.before
        result.yaml_text = proposed_yaml(card, result)
        return result
    fitted_card = card
    if fit_weights_:
        fitted_card = _maybe_fit_weights(frame, frame[LABEL].to_numpy(dtype=bool), card, data,
                                         result)
        health = _health(labelled, fitted_card)
        ok = ~np.isnan(health)
    chance = no_better_than_chance(y[ok], health[ok],
                                   labelled["account_id"].to_numpy()[ok])
    if chance is not None:  # nothing is proposed: not the weights either
        if result.weights:
            result.weights_note = (f"{result.weights_note}; not proposed: with them too, "
                                   "health ranks no better than chance")
        result.fallback, result.weights, result.ranges = chance, None, None
        result.after = result.before
        result.yaml_text = proposed_yaml(card, result)
        return result
    today = _today_health(engine, data, basis, fitted_card, result.notes)
    cuts = choose_cuts(health[ok], y[ok], today=today, at_risk_share=at_risk_share,
                       red_share=red_share)
    result.notes.extend(cuts.notes)
    if today is not None and len(today):
        result.today = {f.band: f.accounts for f in _band_figures(
            today, np.zeros(len(today), dtype=bool), cuts.green, cuts.watch, cuts.amber)
            if f.band != "watch" or cuts.watch is not None}
    result.green, result.watch, result.amber = cuts.green, cuts.watch, cuts.amber
    result.curve = _curve(cuts.iso, health[ok])
    result.after = _band_figures(health, y, cuts.green, cuts.watch, cuts.amber)
    result.auc_after = _auc(y, health)
    result.points = pd.DataFrame({"health": health[ok], "churned": y[ok]})
    result.yaml_text = proposed_yaml(fitted_card, result)
    return result


def _today_health(engine: Any, data: Any, basis: str, card: Scorecard, notes: list[str]
                  ) -> np.ndarray | None:
    """The health of the accounts active on the calibration date (no labels needed), on
    which `choose_cuts` holds the shares; None when they cannot be scored."""
    from pulse.models.training import snapshot_features

    try:
        today = snapshot_features(engine, data.windows.as_of, basis=basis)
    except Exception as exc:  # the shares are held in history; say why
        notes.append(f"today's accounts could not be scored to hold the shares: {exc}")
        return None
    if "cancelled" in today:
        today = today[~today["cancelled"].fillna(False).astype(bool)]
    # as the calibrated card will score them: without what only the latest state holds
    health = _health(blind_latest_state(today, card)[0], card)
    return health[~np.isnan(health)]


def _maybe_fit_weights(frame: pd.DataFrame, y: np.ndarray, card: Scorecard, data: Any,
                       result: CalibrationResult) -> Scorecard:
    """Fit weights (and linear measures' ranges) on the earlier snapshots; keep them when
    they rank the later ones better than the current card, then refit on every snapshot."""
    age = frame["account_age_days"].to_numpy(dtype="float64")
    standard = ~(~np.isnan(age) & (age < card.onboarding_days)) if card.onboarding else \
        np.ones(len(frame), dtype=bool)
    when = frame["as_of"].dt.date.to_numpy()
    valid = when >= data.windows.valid_start
    train = when < data.windows.valid_start - pd.Timedelta(days=data.windows.horizon_days)
    start = np.array([m.weight for m in card.standard.measures], dtype="float64")
    t, v = train & standard, valid & standard
    if y[t].sum() < MIN_CHURNERS or (~y[t]).sum() < MIN_CHURNERS:
        result.weights_note = "too few churners before the validation window to fit weights"
        return card
    fixed = np.array([m.feature in _NOT_POINT_IN_TIME for m in card.standard.measures])
    old_auc = _auc(y[v], _weighted(measure_points(frame.loc[v], card.standard), start))
    best: tuple[float, float, bool, np.ndarray] | None = None
    for ranged in (False, True):
        c = fit_ranges(card, frame.loc[t], skip=set(_NOT_POINT_IN_TIME)) if ranged else card
        pts = measure_points(frame, c.standard)
        for shrink in SHRINKS:  # how far from the current weights: the later window picks
            cand = fit_weights(pts[t], y[t], start, shrink=shrink, fixed=fixed)
            auc = _auc(y[v], _weighted(pts[v], cand))
            if auc is not None and (best is None or auc > best[0] + 1e-4):
                best = (auc, shrink, ranged, cand)
    if old_auc is None or best is None or best[0] < old_auc + MIN_AUC_GAIN:
        result.weights_note = (f"fitted weights kept out: ROC AUC on the later window "
                               f"{_fmt(best[0] if best else None)} against {_fmt(old_auc)} "
                               "with the current ones")
        return card
    new_auc, shrink, ranged, _w = best
    # good on later data: refit on every labelled snapshot
    c = fit_ranges(card, frame.loc[standard], skip=set(_NOT_POINT_IN_TIME)) if ranged else card
    w = fit_weights(measure_points(frame, c.standard)[standard], y[standard], start, shrink=shrink,
                    fixed=fixed)
    result.weights = {m.name: float(x) for m, x in zip(card.standard.measures, w)}
    if ranged:
        result.ranges = {m.name: (m.low, m.high) for m in c.standard.measures
                         if m.kind == "linear"}
    result.weights_note = (
        f"fitted weights{' and measure ranges' if ranged else ''} kept: ROC AUC on the later "
        f"window {_fmt(new_auc)} against {_fmt(old_auc)} with the current card (shrinkage "
        f"{shrink:g}); refitted on every labelled snapshot")
    return _with_weights(c, w)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# --------------------------------------------------------------------------- output


def proposed_yaml(card: Scorecard, result: CalibrationResult) -> str:
    """The scorecard's YAML with the fitted cut points, weights and curve, and the evidence
    as a comment at the top. It passes `pulse scorecard check`."""
    source = Path(card.source)
    doc: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8")) \
        if source.is_file() else {}
    doc.pop("calibration", None)
    lines = ["# Pulse health scorecard, calibrated on this warehouse's own history",
             f"# (pulse scorecard calibrate, from {source.name})."]
    d = result.to_dict()
    if result.fitted:
        doc["bands"] = _cut_dict(result.green, result.watch, result.amber)
        for m in doc.get("standard", {}).get("measures", []):
            name = m.get("name")
            if result.weights and name in result.weights:
                m["weight"] = result.weights[name]
            if result.ranges and name in result.ranges and isinstance(m.get("linear"), dict):
                m["linear"]["low"], m["linear"]["high"] = result.ranges[name]
        doc["calibration"] = {
            "fitted_on": str(d["as_of"]), "horizon_days": result.horizon_days,
            "base_rate": d["base_rate"], "rows": result.rows,
            "curve": [[h, p] for h, p in result.curve],
        }
        lines.append(f"# {result.rows:,} labelled snapshots up to {d['as_of']}, "
                     f"{result.churners:,} cancelled within {result.horizon_days} days "
                     f"(base rate {result.base_rate:.1%}).")
        for label, figs in (("before", result.before), ("after", result.after)):
            cells = ", ".join(f"{f.band} {f.accounts:,} ({'-' if f.rate is None else f'{f.rate:.1%}'}"
                              " churned)" for f in figs if f.band != "watch" or f.accounts)
            lines.append(f"# {label}: {cells}")
        for note in [*result.notes, result.weights_note]:
            if note:
                lines.append(f"# {note}")
    else:
        lines.append(f"# NOT calibrated: {result.fallback}; the default cut points stay.")
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100,
                          allow_unicode=True)
    text = "\n".join(lines) + "\n\n" + body
    parse_scorecard(text, source="<calibrated scorecard>")  # never propose a broken file
    return text


def write_chart(result: CalibrationResult, path: Path) -> Path:
    """Observed churn rate against health (binned, with the isotonic curve and the cut points)
    and churners by band before and after, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if result.points is not None and len(result.points):
        pts = result.points
        bins = np.unique(np.quantile(pts["health"], np.linspace(0, 1, 21)))
        cut = pd.cut(pts["health"], bins, include_lowest=True, duplicates="drop")
        grouped = pts.groupby(cut, observed=True).agg(h=("health", "mean"),
                                                      rate=("churned", "mean"),
                                                      n=("churned", "size"))
        left.scatter(grouped["h"], grouped["rate"], s=np.clip(grouped["n"] / 10, 10, 200),
                     alpha=0.6, label="observed (20 bins of accounts)")
        if result.curve:
            left.step([h for h, _ in result.curve], [p for _, p in result.curve], where="post",
                      color="black", label="fitted (isotonic)")
        if result.base_rate is not None:
            left.axhline(result.base_rate, color="grey", linestyle=":", label="base rate")
        for value, color, name in ((result.green, "green", "green from"),
                                   (result.watch, "steelblue", "watch from"),
                                   (result.amber, "orange", "amber from")):
            if value is not None:
                left.axvline(value, color=color, linestyle="--", label=f"{name} {value:g}")
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, result.fallback or "no data", ha="center", va="center", wrap=True,
                  fontsize=9)
    left.set_xlabel("health")
    left.set_ylabel(f"share cancelled within {result.horizon_days} days")
    left.set_title("What health has meant in this history")
    x = np.arange(len(BANDS))
    for offset, label, figs in ((-0.2, "default cut points", result.before),
                                (0.2, "calibrated", result.after)):
        if not figs:
            continue
        total = sum(f.churners for f in figs) or 1
        right.bar(x + offset, [f.churners / total for f in figs], width=0.4, label=label)
    right.set_xticks(x, list(BANDS))
    right.set_ylabel("share of churners")
    right.set_title("Where the churners were banded")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def apply_calibration(result: CalibrationResult, path: Path | None = None) -> Path:
    """Make the calibrated scorecard the active one (`$PULSE_HOME/scorecard.yaml`, read when
    PULSE_SCORECARD is not set). Written atomically."""
    from pulse.models.scorecard import applied_scorecard_path

    target = path or applied_scorecard_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(result.yaml_text, encoding="utf-8")
    tmp.replace(target)
    return target



def calibrate_and_apply(engine: Any, *, as_of: date | None = None, horizon_days: int = 90,
                        basis: str = "occurred", fit_weights_: bool = True,
                        scorecard: Scorecard | None = None, out: Path | None = None,
                        apply: bool = True,
                        snapshots: dict[Any, pd.DataFrame] | None = None,
                        home: Path | None = None
                        ) -> tuple[CalibrationResult, Path, Path | None]:
    """Calibrate the active scorecard on history and make the result active, as `pulse
    model train` and the weekly training DAG do after training.

    The proposal goes to `out` (default `<home>/calibration/scorecard-proposed.yaml`), its
    chart beside it. With `apply`, it becomes active (`<home>/scorecard.yaml`) only when it
    was fitted and no PULSE_SCORECARD names the team's own file (that file is never
    overwritten). `home` is $PULSE_HOME unless given (another process's, as the screenshots'
    console). Returns (result, proposal, applied).
    """
    from pulse.core.settings import get_settings
    from pulse.models.scorecard import APPLIED_NAME

    settings = get_settings()
    home = home or settings.resolved_home()
    result = fit_calibration(engine, as_of=as_of, horizon_days=horizon_days, basis=basis,
                             scorecard=scorecard, fit_weights_=fit_weights_,
                             snapshots=snapshots)
    proposal = out or home / "calibration" / "scorecard-proposed.yaml"
    proposal.parent.mkdir(parents=True, exist_ok=True)
    proposal.write_text(result.yaml_text, encoding="utf-8")
    write_chart(result, proposal.with_suffix(".png"))
    applied = None
    if apply and result.fitted and not settings.scorecard:
        applied = apply_calibration(result, home / APPLIED_NAME)
    elif apply and result.fitted:
        result.notes.append("PULSE_SCORECARD names the team's own scorecard: the proposal was "
                            "written, not applied")
    log.info("scorecard calibration: %s", "applied" if applied else
             result.fallback or "proposed only")
    return result, proposal, applied
