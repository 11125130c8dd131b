"""Training data for the churn model, from history: snapshots, labels and time windows.

A *snapshot* is every account's point-in-time features as of one past date (sql/features.py,
one set-based SELECT per date, read straight into pandas: training never rewrites the
`account_features` the health scorecard was computed from). Its *label* says whether the
account cancelled (a `cancelled` purchase event) within the horizon after that date:
on days ``as_of + 1 .. as_of + horizon_days``. Accounts already cancelled at the snapshot are
left out (they are churned, not at risk).

Time, never chance, separates training from validation
------------------------------------------------------
Snapshots are taken every `step_days` days, counting back from the latest date whose label
is observable (``last_data - horizon_days``, where `last_data` is the latest day with usage or
billing rows known at the training date), and no earlier than `warmup_days` after the first
usage row (before that the 28-day and 56-day windows would see a truncated history). Every
one of them is labelled and used:

* validation: the snapshots of the last `valid_days` days whose horizon is complete;
* training (to measure on validation): the earlier snapshots whose whole label window ends
  before validation starts (``as_of + horizon_days < valid_start``,
  `models.timesplit.time_split`), as if the model had been trained on the first validation
  day for real; `TrainingData.folds` gives earlier rolling-origin folds of the same kind;
* the refit (the model that scores): every labelled snapshot, validation included.

When the history is too short for the horizon (no room for both windows, or a window without
churners and retained accounts), `build_training_data(shorten_horizon=True)` takes the
longest horizon that fits and says so (`Windows.note`). Snapshots are computed once per date
and can be shared across calls (`snapshots=`).

Features
--------
The numeric features of the catalogue (`sql.features.FEATURES`), except those the warehouse
cannot give point in time (`NOT_POINT_IN_TIME`: account attributes stored in their latest
state, such as seats, the renewal date and the fallback MRR; a model would learn from history
that a zero MRR means churn, a value no active account has when it is scored), plus measures
derived from them (`DERIVED`: two relative usage measures, and whether the next renewal falls
within 90 days) and the account's plan, segment and region.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select, text, union_all

from pulse.core.errors import TrainingDataError
from pulse.models.drivers import Driver, format_number
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.models.timesplit import time_split
from pulse.sql.db import result_frame
from pulse.sql.features import BASES, FEATURES, features_select
from pulse.sql.schema import Account, AccountFeatures, PurchaseEvent, UsageDaily
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 90
DEFAULT_STEP_DAYS = 7
DEFAULT_VALID_DAYS = 28
DEFAULT_WARMUP_DAYS = 56
LABEL = "churned"
CATEGORICAL: tuple[str, ...] = ("plan", "segment", "region")

#: Catalogue features left out of the model, and why. The accounts' stored attributes are
#: their latest state: sql/features.py reads them only on the day before the warehouse's
#: latest activity and after, so they are empty on every past snapshot a model learns from,
#: and present on the date it scores.
NOT_POINT_IN_TIME: dict[str, str] = {
    "seats": "the account's stored (latest) seats: empty on past snapshots",
    "seat_utilisation_28d": "divides by the stored seats",
    "days_to_renewal": "the stored renewal date (cleared or moved after a cancellation)",
    "mrr": "without billing events that carry mrr_after, the stored MRR (0 once it "
           "cancelled): empty on past snapshots, present on the date scored",
    "mrr_90d_ago": "the same fallback",
    "mrr_change_90d_pct": "the same fallback",
    "cancelled": "the label's own state: cancelled accounts are left out",
}


def _ratio_pct(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (num / den - 1.0) * 100.0, np.nan)


def _usage_trend_7d(f: pd.DataFrame) -> np.ndarray:
    e7 = f["events_7d"].to_numpy(dtype="float64")
    e28 = f["events_28d"].to_numpy(dtype="float64")
    return _ratio_pct(e7, (e28 - e7) / 3.0)


def _active_days_trend_7d(f: pd.DataFrame) -> np.ndarray:
    a7 = f["active_days_7d"].to_numpy(dtype="float64")
    a28 = f["active_days_28d"].to_numpy(dtype="float64")
    return _ratio_pct(a7, (a28 - a7) / 3.0)


#: A quarter: the renewals a CS team prepares for now.
RENEWAL_WINDOW_DAYS = 90


def _renews_within_90d(f: pd.DataFrame) -> np.ndarray:
    days = f["days_to_renewal_est"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(days), np.nan, (days <= RENEWAL_WINDOW_DAYS).astype(float))


@dataclass(frozen=True)
class Derived:
    name: str
    description: str
    compute: Callable[[pd.DataFrame], np.ndarray]


#: Measures derived from catalogue features (the same function at training and scoring time).
DERIVED: dict[str, Derived] = {d.name: d for d in (
    Derived("usage_trend_7d_pct",
            "change of events, last 7 days against the weekly average of the 21 days before, "
            "in percent", _usage_trend_7d),
    Derived("active_days_trend_7d_pct",
            "change of active days, last 7 days against the weekly average of the 21 days "
            "before, in percent", _active_days_trend_7d),
    # An annual contract can only be cancelled at its renewal: one renewing within the
    # quarter is open to leave, one renewing later is not (a monthly plan always is).
    Derived("renews_within_90d",
            "1 when the next renewal (days_to_renewal_est) falls within 90 days, else 0",
            _renews_within_90d),
)}

#: The model's numeric inputs by default, in catalogue order, then the derived ones.
NUMERIC: tuple[str, ...] = tuple(
    [f for f in FEATURES if f not in NOT_POINT_IN_TIME] + list(DERIVED))


def add_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the `DERIVED` measures added (a copy)."""
    out = frame.copy()
    for d in DERIVED.values():
        out[d.name] = d.compute(frame)
    return out


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Windows:
    """The dates of a training run (all inclusive)."""

    as_of: date  # the training date: nothing after it is read
    first_data: date  # the first usage day known then
    last_data: date  # the last usage or billing day known then (at most as_of)
    horizon_days: int
    step_days: int
    train: tuple[date, ...]  # training snapshot dates (label windows end before validation)
    valid: tuple[date, ...]  # validation snapshot dates
    labelled: tuple[date, ...] = ()  # every snapshot whose horizon is complete (the refit)
    requested_horizon_days: int | None = None  # when the history forced a shorter horizon
    note: str = ""  # why the horizon was shortened, in words

    @property
    def train_start(self) -> date:
        return self.train[0]

    @property
    def train_end(self) -> date:
        return self.train[-1]

    @property
    def valid_start(self) -> date:
        return self.valid[0]

    @property
    def valid_end(self) -> date:
        return self.valid[-1]

    @property
    def dates(self) -> tuple[date, ...]:
        """Every snapshot date, oldest first: training, the gap, validation."""
        return self.labelled or self.train + self.valid

    @property
    def shortened(self) -> bool:
        return (self.requested_horizon_days is not None
                and self.requested_horizon_days != self.horizon_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(), "first_data": self.first_data.isoformat(),
            "last_data": self.last_data.isoformat(), "horizon_days": self.horizon_days,
            "requested_horizon_days": self.requested_horizon_days or self.horizon_days,
            "step_days": self.step_days,
            "train": [self.train_start.isoformat(), self.train_end.isoformat()],
            "valid": [self.valid_start.isoformat(), self.valid_end.isoformat()],
            "train_snapshots": len(self.train), "valid_snapshots": len(self.valid),
            "snapshots": len(self.dates), "horizon_note": self.note,
        }


def _check_window_args(**values: int) -> None:
    least = {"warmup_days": 0}
    for name, value in values.items():
        floor = least.get(name, 1)
        if value < floor:
            raise TrainingDataError(f"invalid value for {name}: expected {floor} or more "
                                    f"(not {value})")


def plan_windows(first_data: date, last_data: date, *, as_of: date | None = None,
                 horizon_days: int = DEFAULT_HORIZON_DAYS, step_days: int = DEFAULT_STEP_DAYS,
                 valid_days: int = DEFAULT_VALID_DAYS,
                 warmup_days: int = DEFAULT_WARMUP_DAYS, anchor: date | None = None
                 ) -> Windows:
    """Snapshot dates for training and validation from the span of the history.

    Snapshots are taken every `step_days` days, back from ``last_data - horizon_days`` (the
    latest date whose label is observable) to `warmup_days` after the first usage day: all of
    them are labelled, and the final model is refitted on all of them. Validation is the
    latest `valid_days` of them; training (for validation) the earlier ones whose label
    window ends before validation starts. With an `anchor`, the dates keep to its grid
    (``anchor - k * step_days``), so that plans for several horizons share snapshots.

    Raises `TrainingDataError`, saying how much history is needed, when the span is too short.
    """
    _check_window_args(horizon_days=horizon_days, step_days=step_days,
                       valid_days=valid_days, warmup_days=warmup_days)
    first_snapshot = first_data + timedelta(days=warmup_days)
    last_complete = last_data - timedelta(days=horizon_days)
    span = (last_data - first_data).days + 1
    why = (f"the history runs from {first_data} to {last_data} ({span} days); with a "
           f"{horizon_days}-day horizon, {valid_days} days of validation snapshots and "
           f"{warmup_days} days of warm-up it needs about "
           f"{needed_days(horizon_days, step_days, valid_days, warmup_days)} days: use a "
           "shorter horizon or more history")
    dates = _snapshot_dates(first_snapshot, last_complete, step_days, anchor)
    if not dates:
        raise TrainingDataError(f"no snapshot has a complete label window: {why}")
    valid_start_min = dates[-1] - timedelta(days=valid_days - 1)
    valid = tuple(d for d in dates if d >= valid_start_min)
    train = tuple(d for d in dates if d + timedelta(days=horizon_days) < valid[0])
    if not train:
        raise TrainingDataError(
            f"no training snapshot's label window ends before validation starts on "
            f"{valid[0]}: {why}")
    return Windows(as_of or last_data, first_data, last_data, horizon_days, step_days,
                   train, valid, tuple(dates))


def _snapshot_dates(first_snapshot: date, last_complete: date, step_days: int,
                    anchor: date | None = None) -> list[date]:
    """Every `step_days` days back from `last_complete` (on `anchor`'s grid, when given:
    ``anchor - k * step_days``) down to `first_snapshot`, oldest first."""
    day = last_complete
    if anchor is not None:
        day = anchor + timedelta(days=step_days * ((last_complete - anchor).days // step_days))
    dates: list[date] = []
    while day >= first_snapshot:
        dates.append(day)
        day -= timedelta(days=step_days)
    return dates[::-1]


def needed_days(horizon_days: int, step_days: int = DEFAULT_STEP_DAYS,
                valid_days: int = DEFAULT_VALID_DAYS,
                warmup_days: int = DEFAULT_WARMUP_DAYS) -> int:
    """About how many days of history an honest split needs with this horizon."""
    return warmup_days + 2 * horizon_days + valid_days + step_days


def longest_horizon(first_data: date, last_data: date, *, horizon_days: int,
                    step_days: int = DEFAULT_STEP_DAYS, valid_days: int = DEFAULT_VALID_DAYS,
                    warmup_days: int = DEFAULT_WARMUP_DAYS,
                    min_horizon_days: int = 1, anchor: date | None = None) -> int | None:
    """The longest horizon, at most `horizon_days`, for which `plan_windows` finds both a
    training and a validation window in the span; None when even `min_horizon_days` fails."""
    for h in range(horizon_days, max(min_horizon_days, 1) - 1, -1):
        try:
            plan_windows(first_data, last_data, horizon_days=h, step_days=step_days,
                         valid_days=valid_days, warmup_days=warmup_days, anchor=anchor)
        except TrainingDataError:
            continue
        return h
    return None


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def _known(table: Any, basis: str, end: datetime) -> Any:
    """Rows known by `end` under `basis`, as features read them (sql.feature_sources)."""
    from pulse.sql.feature_sources import known_by

    return known_by(table, end, basis)


def data_span(engine: Engine, as_of: date, *, basis: str = "occurred") -> tuple[date, date]:
    """(first usage day, last usage or billing day) known by the end of `as_of`."""
    end = _end_of(as_of)
    # usage from the daily rollups (sql/rollups.py): days, not events, and the aggregated feeds
    u, p = UsageDaily.__table__, PurchaseEvent.__table__
    with engine.connect() as conn:
        first, landed = conn.execute(select(func.min(u.c.first_at), func.min(u.c.landed_at))
                                     .where(u.c.day <= as_of, _known(u, basis, end))).one()
        lasts = union_all(
            select(func.max(u.c.last_at).label("t")).where(
                u.c.day <= as_of, _known(u, basis, end)),
            select(func.max(p.c.occurred_at).label("t")).where(
                p.c.occurred_at < end, _known(p, basis, end)),
        ).subquery()
        last = conn.execute(select(func.max(lasts.c.t).label("t")).select_from(lasts)
                            ).scalar()
    if first is None or last is None:
        raise TrainingDataError(
            f"no usage rows {'known' if basis == 'known' else 'that happened'} by {as_of}: "
            "nothing to learn from (land history first"
            + (", or train with basis 'occurred' for history loaded after the fact)"
               if basis == "known" else ")"))
    if basis == "known":  # a snapshot sees nothing before the first rows landed
        first = max(_day_of(first), _day_of(landed))
    return _day_of(first), min(_day_of(last), as_of)


def _day_of(value: Any) -> date:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.date()
    return value  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- snapshots


def snapshot_features(engine: Engine, as_of: date, *, basis: str = "occurred") -> pd.DataFrame:
    """Every account's features as of `as_of` (one SELECT, nothing written)."""
    if basis not in BASES:
        raise TrainingDataError(f"invalid value for basis: expected one of {BASES} "
                                f"(not {basis!r})")
    query = features_select(as_of, basis=basis,  # type: ignore[arg-type]
                            negative_terms=NEGATIVE_TERMS)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL jit = off"))
            conn.execute(text("SET LOCAL work_mem = '64MB'"))
        result = conn.execute(query)
        frame = result_frame(result)
    return _typed(frame, as_of)


def _typed(frame: pd.DataFrame, as_of: date) -> pd.DataFrame:
    table = AccountFeatures.__table__
    frame["as_of"] = as_of
    for col in table.columns:
        if col.name not in frame or col.name in ("as_of", "account_id", "basis"):
            continue
        if isinstance(col.type, UTCDateTime):
            frame[col.name] = pd.to_datetime(frame[col.name], utc=True)
        elif col.name == "cancelled":
            frame[col.name] = frame[col.name].fillna(False).astype(bool)
        elif col.name in FEATURES:
            frame[col.name] = pd.to_numeric(frame[col.name]).astype("float64")
    return frame


def account_attributes(engine: Engine, account_ids: Sequence[str] | None = None
                       ) -> pd.DataFrame:
    """account_id with the categorical attributes (plan, segment, region)."""
    a = Account.__table__
    query = select(a.c.account_id, *(a.c[c] for c in CATEGORICAL))
    if account_ids is not None:
        query = query.where(a.c.account_id.in_(list(account_ids)))
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def model_frame(features: pd.DataFrame, attributes: pd.DataFrame) -> pd.DataFrame:
    """Features with the derived measures and the categorical attributes, ready to score."""
    frame = add_derived(features)
    cats = attributes.set_index("account_id")
    for c in CATEGORICAL:
        frame[c] = frame["account_id"].map(cats[c]) if len(cats) else None
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame


def cancellations(engine: Engine, as_of: date, *, basis: str = "occurred") -> pd.DataFrame:
    """account_id and day of every `cancelled` event known by the end of `as_of`."""
    p = PurchaseEvent.__table__
    end = _end_of(as_of)
    query = select(p.c.account_id, p.c.occurred_at).where(
        p.c.kind == "cancelled", p.c.occurred_at < end, _known(p, basis, end))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["account_id", "occurred_at"])
    frame["day"] = [_day_of(v) for v in frame["occurred_at"]]
    return frame[["account_id", "day"]]


def label_snapshots(snapshots: pd.DataFrame, cancels: pd.DataFrame, horizon_days: int
                    ) -> pd.Series:
    """True where the account cancelled on days as_of+1 .. as_of+horizon_days."""
    hit = np.zeros(len(snapshots), dtype=bool)
    if len(cancels) and len(snapshots):
        keys = pd.DataFrame({"_row": np.arange(len(snapshots)),
                             "account_id": snapshots["account_id"].to_numpy(),
                             "as_of": pd.to_datetime(snapshots["as_of"]).to_numpy()})
        pairs = keys.merge(cancels, on="account_id", how="inner")
        lag = (pd.to_datetime(pairs["day"]) - pairs["as_of"]).dt.days
        hit[pairs.loc[(lag >= 1) & (lag <= horizon_days), "_row"].to_numpy()] = True
    return pd.Series(hit, index=snapshots.index, name=LABEL)


# --------------------------------------------------------------------------- the data


#: Least churned and retained snapshots in the training (validation) window.
MIN_TRAIN_CLASS = 3
MIN_VALID_CLASS = 1
#: The shortest horizon training falls back to when the history is too short (days).
MIN_HORIZON_DAYS = 7
#: The shortest warm-up it falls back to when even that does not fit: the 28-day windows.
MIN_WARMUP_DAYS = 28


@dataclass
class TrainingData:
    """Labelled snapshots and the windows that split them."""

    frame: pd.DataFrame  # as_of, account_id, churned, every catalogue input, categoricals
    windows: Windows
    basis: str
    numeric: list[str]
    categorical: list[str] = field(default_factory=lambda: list(CATEGORICAL))
    seconds: dict[str, float] = field(default_factory=dict)
    #: When the horizon had to be shortened for the time split: every snapshot labelled
    #: with the requested horizon (its window complete), from the shortest warm-up. The
    #: configuration is chosen and measured on the shortened horizon, then refitted on these,
    #: so that the model scores the horizon that was asked for.
    refit: pd.DataFrame | None = None
    #: what the sentiment model read first (`models.feedback.ToneRefresh`)
    tone: Any = None

    @property
    def refit_frame(self) -> pd.DataFrame:
        """The rows the chosen configuration is refitted on (the artifact's training data)."""
        return self.frame if self.refit is None else self.refit

    @property
    def refit_horizon_days(self) -> int:
        """The horizon the refitted model predicts."""
        w = self.windows
        if self.refit is None:
            return w.horizon_days
        return w.requested_horizon_days or w.horizon_days

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training rows, validation rows), by `models.timesplit.time_split`."""
        w = self.windows
        return time_split(self.frame, "as_of", pd.Timestamp(w.valid_start),
                          pd.Timestamp(w.valid_end + timedelta(days=1)),
                          horizon=w.horizon_days)

    def folds(self, n_folds: int = 3, *, min_train: int = MIN_TRAIN_CLASS,
              min_valid: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
        """Rolling-origin time-series folds over the labelled snapshots, latest first.

        Fold 0 is `split()`; each earlier fold moves the validation block back by the
        length of the validation window, with an expanding training window whose labels all
        end before its validation block starts. Folds whose training or validation rows lack
        either class (at least `min_train` / `min_valid` of each) are left out.
        """
        w = self.windows
        when = self.frame["as_of"].dt.date.to_numpy()
        y = self.frame[LABEL].to_numpy(dtype=bool)
        block = max(len(w.valid), 1)
        dates = list(w.dates)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        end = len(dates)
        while end > 0 and len(out) < n_folds:
            start = max(end - block, 0)
            valid_dates = dates[start:end]
            cutoff = valid_dates[0] - timedelta(days=w.horizon_days)
            valid_idx = np.flatnonzero(np.isin(when, np.asarray(valid_dates, dtype=object)))
            train_idx = np.flatnonzero(when < cutoff)
            end = start
            if not len(train_idx):
                break
            counts = [(int(y[i].sum()), int((~y[i]).sum())) for i in (train_idx, valid_idx)]
            if min(counts[0]) < min_train or min(counts[1]) < min_valid:
                continue
            out.append((train_idx, valid_idx))
        return out


def _class_counts(frame: pd.DataFrame, windows: Windows) -> tuple[tuple[int, int], ...]:
    when = frame["as_of"].dt.date
    y = frame[LABEL]
    out = []
    for part in (windows.train, windows.valid):
        rows = when.isin(part)
        out.append((int(y[rows].sum()), int((~y[rows]).sum())))
    return tuple(out)


def _horizon_fits(frame: pd.DataFrame, windows: Windows) -> str | None:
    """None when both windows hold both classes, else why not (in words)."""
    (tc, tr), (vc, vr) = _class_counts(frame, windows)
    w = windows
    for name, span, churned, kept, least in (
            ("training", f"{w.train_start} to {w.train_end}", tc, tr, MIN_TRAIN_CLASS),
            ("validation", f"{w.valid_start} to {w.valid_end}", vc, vr, MIN_VALID_CLASS)):
        if churned < least or kept < least:
            return (f"the {name} snapshots ({span}) hold {churned} churned and {kept:,} "
                    f"retained within {w.horizon_days} days: need at least {least} of each")
    return None


def build_training_data(engine: Engine, *, as_of: date | None = None,
                        horizon_days: int = DEFAULT_HORIZON_DAYS, basis: str = "occurred",
                        step_days: int = DEFAULT_STEP_DAYS, valid_days: int = DEFAULT_VALID_DAYS,
                        warmup_days: int = DEFAULT_WARMUP_DAYS,
                        numeric: Sequence[str] | None = None,
                        shorten_horizon: bool = False,
                        min_horizon_days: int = MIN_HORIZON_DAYS,
                        snapshots: dict[tuple[date, str], pd.DataFrame] | None = None,
                        on_stage: Callable[[str], None] | None = None) -> TrainingData:
    """Labelled snapshots of every account at the planned dates, as known on `as_of`.

    `as_of` (default: today, UTC) is the training date: no row that happened (or, with
    basis "known", landed) after it is read, for features or labels.

    With `shorten_horizon`, a history too short for `horizon_days` (no room for both
    windows, or a window without churners and retained accounts) falls back to the longest
    horizon, down to `min_horizon_days`, that leaves both windows with both classes; the
    windows then record the requested horizon and why (`Windows.note`). Without it, such a
    history raises `TrainingDataError` saying how much is needed.

    `snapshots` is a cache of feature snapshots keyed by (date, basis), filled as they are
    computed: pass the same dict to reuse them across calls on an unchanged warehouse.
    """
    import time as _time

    if basis not in BASES:
        raise TrainingDataError(f"invalid value for basis: expected one of {BASES} "
                                f"(not {basis!r})")
    as_of = as_of or datetime.now(UTC).date()
    numeric = list(numeric) if numeric is not None else list(NUMERIC)
    unknown = [f for f in numeric if f not in FEATURES and f not in DERIVED]
    if unknown:
        raise TrainingDataError(f"unknown feature(s) {unknown}: expected names from the "
                                "feature catalogue (`pulse scorecard features`) or "
                                f"{sorted(DERIVED)}")
    _check_window_args(horizon_days=horizon_days, step_days=step_days,
                       valid_days=valid_days, warmup_days=warmup_days)
    t0 = _time.perf_counter()
    first, last = data_span(engine, as_of, basis=basis)
    # Every snapshot reads its support tone from the sentiment model, as the scoring of a
    # date does (`pulse score` refreshes the 90 days before it): texts older than that, in
    # a history imported in one go, would otherwise be counted by the word list in training
    # and by the model in scoring. No snapshot reads further back than the window before
    # the history's first day.
    # Incident minutes read the stored impacts, refreshed by the same step too: a model
    # trained before any scoring would otherwise learn from snapshots that never saw an
    # incident, and be scored on dates that do.
    from pulse.models.scoring import refresh_inputs

    tone = refresh_inputs(engine, first)
    assert tone is not None  # refreshed: tone=True
    cache = snapshots if snapshots is not None else {}
    horizon = horizon_days
    # Shorter horizons keep to the grid of the requested one: their snapshots are shared.
    anchor = last - timedelta(days=horizon_days)
    shortened_warmup = ""
    requested_warmup = warmup_days
    if shorten_horizon:
        fits = longest_horizon(first, last, horizon_days=horizon_days, step_days=step_days,
                               valid_days=valid_days, warmup_days=warmup_days,
                               min_horizon_days=min(min_horizon_days, horizon_days),
                               anchor=anchor)
        if fits is None and warmup_days > MIN_WARMUP_DAYS:
            fits = longest_horizon(first, last, horizon_days=horizon_days,
                                   step_days=step_days, valid_days=valid_days,
                                   warmup_days=MIN_WARMUP_DAYS,
                                   min_horizon_days=min(min_horizon_days, horizon_days),
                                   anchor=anchor)
            if fits is not None:
                shortened_warmup = (f"warm-up shortened from {warmup_days} to "
                                    f"{MIN_WARMUP_DAYS} days")
                warmup_days = MIN_WARMUP_DAYS
        horizon = fits if fits is not None else horizon_days
    try:
        windows = plan_windows(first, last, as_of=as_of, horizon_days=horizon,
                               step_days=step_days, valid_days=valid_days,
                               warmup_days=warmup_days, anchor=anchor)
    except TrainingDataError as exc:
        if basis != "known":
            raise
        raise TrainingDataError(
            f"{exc} (with basis 'known' a snapshot sees only rows that had landed by its "
            f"date, and the first usage rows landed on {first}; for history loaded after "
            "the fact, train with basis 'occurred')") from None
    cancels = cancellations(engine, as_of, basis=basis)
    attributes = account_attributes(engine)
    reasons: list[str] = []
    if horizon != horizon_days:
        reasons.append(f"the history ({first} to {last}) is too short for a "
                       f"{horizon_days}-day horizon (it needs about "
                       f"{needed_days(horizon_days, step_days, valid_days, requested_warmup)} days)")
    if shortened_warmup:
        reasons.append(shortened_warmup)
    while True:
        frame, before = _labelled(engine, windows, basis, cancels, attributes, cache,
                                  on_stage)
        problem = _horizon_fits(frame, windows)
        if problem is None or not shorten_horizon:
            break
        shorter = windows.horizon_days - max(1, min(step_days, windows.horizon_days // 4))
        fits = (longest_horizon(first, last, horizon_days=shorter, step_days=step_days,
                                valid_days=valid_days, warmup_days=warmup_days,
                                min_horizon_days=min(min_horizon_days, horizon_days),
                                anchor=anchor)
                if shorter >= min(min_horizon_days, horizon_days) else None)
        if fits is None:
            break
        reasons.append(problem)
        windows = plan_windows(first, last, as_of=as_of, horizon_days=fits,
                               step_days=step_days, valid_days=valid_days,
                               warmup_days=warmup_days, anchor=anchor)
    if windows.horizon_days != horizon_days:
        note = (f"horizon shortened from {horizon_days} to {windows.horizon_days} days: "
                + "; ".join(reasons))
        windows = replace(windows, requested_horizon_days=horizon_days, note=note)
        log.warning("%s", note)
    # Every input any model might use (not just this one's), so that a champion fitted on
    # other features can be scored on the same rows.
    inputs = [f for f in FEATURES if f != "cancelled"] + list(DERIVED)
    keep = ["as_of", "account_id", LABEL, *dict.fromkeys([*numeric, *inputs]), *CATEGORICAL]
    refit = None
    if windows.horizon_days != horizon_days:
        refit = _full_horizon_refit(engine, windows, first, last, horizon_days, step_days,
                                    anchor, basis, cancels, attributes, cache, on_stage)
        if refit is not None:
            refit = refit[keep]
            windows = replace(windows, note=(
                f"{windows.note}; the chosen configuration is refitted on the "
                f"{len(refit):,} snapshots labelled with the {horizon_days}-day horizon "
                f"({refit['as_of'].dt.date.nunique()} dates from {MIN_WARMUP_DAYS} days of "
                "warm-up)"))
    t1 = _time.perf_counter()
    frame = frame[keep]
    log.info("training data as of %s: %d snapshots of %d dates (%d cancelled accounts left "
             "out), %d churned, %d-day horizon", as_of, len(frame), len(windows.dates),
             before - len(frame), int(frame[LABEL].sum()), windows.horizon_days)
    return TrainingData(frame, windows, basis, numeric, list(CATEGORICAL),
                        {"features": t1 - t0, "assemble": _time.perf_counter() - t1},
                        refit=refit, tone=tone)


def _full_horizon_refit(engine: Engine, windows: Windows, first: date, last: date,
                        horizon_days: int, step_days: int, anchor: date, basis: str,
                        cancels: pd.DataFrame, attributes: pd.DataFrame,
                        cache: dict[tuple[date, str], pd.DataFrame],
                        on_stage: Callable[[str], None] | None) -> pd.DataFrame | None:
    """Every snapshot whose `horizon_days` label window is complete, on the same date grid,
    from the shortest warm-up (a short history needs every labelled snapshot it has); None
    when they lack either class. Measured on the demo variants' 9-month worlds scored 90 days
    before their end, a model refitted on these ranked the next 90 days better than the same
    configuration refitted on the shortened horizon's labels (ROC AUC 0.847 -> 0.882 on
    `reference`, 0.586 -> 0.683 on `whales`, seed 1)."""
    dates = _snapshot_dates(first + timedelta(days=MIN_WARMUP_DAYS),
                            last - timedelta(days=horizon_days), step_days, anchor)
    if not dates:
        return None
    plan = replace(windows, horizon_days=horizon_days, labelled=tuple(dates))
    frame, _ = _labelled(engine, plan, basis, cancels, attributes, cache, on_stage)
    churned = int(frame[LABEL].sum())
    if min(churned, len(frame) - churned) < MIN_TRAIN_CLASS:
        return None
    return frame


def _labelled(engine: Engine, windows: Windows, basis: str, cancels: pd.DataFrame,
              attributes: pd.DataFrame, cache: dict[tuple[date, str], pd.DataFrame],
              on_stage: Callable[[str], None] | None) -> tuple[pd.DataFrame, int]:
    """The labelled model frame of every snapshot date (computing the ones not cached) and
    the number of rows before cancelled accounts were left out."""
    frames = []
    todo = [d for d in windows.dates if (d, basis) not in cache]
    for i, day in enumerate(todo, 1):
        if on_stage:
            on_stage(f"features as of {day} ({i}/{len(todo)})")
        cache[(day, basis)] = snapshot_features(engine, day, basis=basis)
    frames = [cache[(d, basis)] for d in windows.dates]
    snaps = pd.concat(frames, ignore_index=True)
    if snaps.empty:
        raise TrainingDataError(
            f"no account existed at any snapshot date ({windows.dates[0]} to "
            f"{windows.dates[-1]}, basis {basis!r})")
    before = len(snaps)
    # One order on every database, so that a fit is the same on SQLite and PostgreSQL.
    snaps = (snaps[~snaps["cancelled"]].sort_values(["as_of", "account_id"], kind="stable")
             .reset_index(drop=True))
    snaps[LABEL] = label_snapshots(snaps, cancels, windows.horizon_days)
    frame = model_frame(snaps, attributes)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame, before


# --------------------------------------------------------------------------- drivers in words


_fmt = format_number


def _typical(d: Driver, show: Callable[[float], str]) -> str:
    ref = d.reference
    if isinstance(ref, int | float) and not (isinstance(ref, float) and math.isnan(ref)):
        return f" (typical {show(float(ref))})"
    return ""


def _count_label(noun: str, none: str | None = None) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return none or f"{noun.rstrip(':')}: unknown"
        return f"{noun} {_fmt(float(d.value))}{_typical(d, _fmt)}"
    return label


def _pct_change_label(noun: str) -> Callable[[Driver], str]:
    def show(v: float) -> str:
        return "flat" if round(v) == 0 else f"{'up' if v > 0 else 'down'} {abs(v):.0f}%"

    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: no earlier activity to compare with"
        return f"{noun} {show(float(d.value))}{_typical(d, show)}"
    return label


def _share(v: float) -> str:
    return f"{100 * v:.1f}%" if v < 0.1 else f"{100 * v:.0f}%"


def _share_label(noun: str, none: str | None = None) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return none or f"{noun}: none to measure"
        return f"{noun} {_share(float(d.value))}{_typical(d, _share)}"
    return label


def _share_change_label(noun: str) -> Callable[[Driver], str]:
    """A difference of two shares, signed: "up 3.0%", "down 12%", "flat"."""
    def show(v: float) -> str:
        if round(1000 * v) == 0:
            return "flat"
        return f"{'up' if v > 0 else 'down'} {_share(abs(v))}"

    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: too little history to compare with"
        return f"{noun}: {show(float(d.value))}{_typical(d, show)}"
    return label


def _times_label(noun: str, against: str) -> Callable[[Driver], str]:
    def show(v: float) -> str:
        return f"{v:.2f}×"

    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: too little history to compare with"
        return f"{noun} {show(float(d.value))} {against}{_typical(d, show)}"
    return label


def _slope_label(noun: str) -> Callable[[Driver], str]:
    """A weekly slope per mean week: "down 5% a week", "flat"."""
    def show(v: float) -> str:
        return "flat" if round(100 * v) == 0 else (
            f"{'up' if v > 0 else 'down'} {abs(100 * v):.0f}% a week")

    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: too little history to compare with"
        return f"{noun} {show(float(d.value))}{_typical(d, show)}"
    return label


def _days_since_label(noun: str, never: str) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return never
        return f"{noun} {_fmt(float(d.value))} days ago{_typical(d, _fmt)}"
    return label


def _hours(v: float) -> str:
    return f"{v * 60:.0f} minutes" if abs(v) < 1 else f"{_fmt(v)} hours"


def _hours_label(noun: str, none: str = "no ticket resolved in 90 days"
                 ) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: {none}"
        return f"{noun} {_hours(float(d.value))}{_typical(d, _hours)}"
    return label


def _yes_no_label(yes: str, no: str, unknown: str) -> Callable[[Driver], str]:
    """A 0/1 input in words: "no renewal due within 90 days lowers risk", not "...: no"."""
    def label(d: Driver) -> str:
        if d.value is None:
            return unknown
        return yes if float(d.value) >= 0.5 else no
    return label


def _category_label(noun: str) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        return f"{noun} {d.value}" if d.value is not None else f"{noun} unknown"
    return label


#: How each model input reads in a driver sentence ("... raises risk by 12 points").
DRIVER_LABELS: dict[str, Callable[[Driver], str]] = {
    "account_age_days": _count_label("account age (days)"),
    "seats": _count_label("seats"),
    "active_days_7d": _count_label("active days in the last 7:"),
    "active_days_28d": _count_label("active days in the last 28:"),
    "events_7d": _count_label("usage events in the last 7 days"),
    "events_28d": _count_label("usage events in the last 28 days"),
    "events_prev_28d": _count_label("usage events in the 28 days before"),
    "usage_trend_28d_pct": _pct_change_label("usage over 28 days"),
    "usage_trend_7d_pct": _pct_change_label("usage in the last week"),
    "active_days_trend_7d_pct": _pct_change_label("active days in the last week"),
    "distinct_features_28d": _count_label("product features used in 28 days"),
    "active_users_28d": _count_label("active users in 28 days"),
    "seat_utilisation_28d": _share_label("seats in use"),
    "error_rate_28d": _share_label("error rate over 28 days"),
    "days_since_last_use": _days_since_label("last used", "never used"),
    "mrr": _count_label("MRR"),
    "mrr_90d_ago": _count_label("MRR 90 days ago"),
    "mrr_change_90d_pct": _pct_change_label("MRR over 90 days"),
    "open_failed_payments": _count_label("failed payments not recovered:"),
    "downgrades_90d": _count_label("downgrades in 90 days:"),
    "days_to_renewal": _count_label("days to renewal"),
    "days_to_renewal_est": _count_label("days to the next renewal"),
    "renews_within_90d": _yes_no_label("renewal due within 90 days",
                                       "no renewal due within 90 days",
                                       "next renewal unknown"),
    "tickets_30d": _count_label("tickets in 30 days:"),
    "tickets_90d": _count_label("tickets in 90 days:"),
    "open_tickets": _count_label("open tickets:"),
    "open_urgent_tickets": _count_label("open urgent tickets:"),
    "resolve_hours_median_90d": _hours_label("median time to resolve"),
    "resolve_hours_mean_90d": _hours_label("mean time to resolve"),
    "days_since_last_ticket": _days_since_label("last ticket", "no ticket on record"),
    "mentions_28d": _count_label("social mentions in 28 days:"),
    "negative_mentions_28d": _count_label("negative mentions in 28 days:"),
    "negative_share_28d": _share_label("negative share of mentions"),
    "incident_minutes_28d": _count_label("minutes hit by incidents in 28 days:"),
    "events_28d_vs_180d": _times_label("usage in the last 28 days", "its own baseline"),
    "active_days_28d_vs_180d": _times_label("active days in the last 28",
                                            "its own baseline"),
    "error_rate_28d_minus_180d": _share_change_label(
        "error share in the last 28 days against its own baseline"),
    "first_response_hours_median_90d": _hours_label(
        "median time to first answer its tickets", "none answered in 90 days"),
    "first_response_late_share_90d": _share_label(
        "tickets answered later than customers expect"),
    "csat_last": _count_label("latest CSAT rating (1 to 5)", "no CSAT rating on record"),
    "csat_90d": _share_label("CSAT ratings of 4 or 5 in 90 days", "no CSAT rating in 90 days"),
    "csat_responses_90d": _count_label("CSAT answers in 90 days:"),
    "events_7d_vs_28d": _times_label("usage in the last 7 days", "its weekly mean of 28 days"),
    "events_28d_vs_90d": _times_label("usage in the last 28 days", "its mean of 90 days"),
    "events_slope_12w": _slope_label("weekly usage over 12 weeks"),
    "active_days_7d_vs_28d": _times_label("active days in the last 7",
                                          "its weekly mean of 28 days"),
    "active_days_28d_vs_90d": _times_label("active days in the last 28", "its mean of 90 days"),
    "active_users_28d_vs_prev": _times_label("active users in the last 28 days",
                                             "those of the 28 days before"),
    "error_rate_28d_vs_90d": _times_label("error rate in the last 28 days",
                                          "its rate over 90 days"),
    "active_users_peak_90d": _count_label("most active users in a 28-day block of 84 days"),
    "active_users_peak_180d": _count_label("most active users in a 28-day block of 168 days"),
    "seat_use_vs_peak_90d": _share_label("active users against their peak of 84 days",
                                         "no active users to compare with"),
    "seat_use_vs_peak_180d": _share_label("active users against their peak of 168 days",
                                          "no active users to compare with"),
    "failed_payments_90d": _count_label("failed payments in 90 days:"),
    "recovered_payments_90d": _count_label("failed payments recovered in 90 days:"),
    "days_since_failed_payment": _days_since_label("last failed payment",
                                                   "no failed payment on record"),
    "billing_term_days": _count_label("billing term (days)", "billing term unknown"),
    "is_annual": _yes_no_label("on an annual plan", "not on an annual plan",
                               "billing term unknown"),
    "tickets_negative_share_90d": _share_label("negative tickets in 90 days",
                                               "no ticket in 90 days"),
    "mentions_negative_share_90d": _share_label("negative social mentions in 90 days",
                                                "no social mention in 90 days"),
    "negative_texts_28d": _count_label("negative tickets and mentions in 28 days:"),
    "negative_texts_90d": _count_label("negative tickets and mentions in 90 days:"),
    "tone_scored_share_90d": _share_label("texts read by the sentiment model",
                                          "no ticket or mention in 90 days"),
    "champion_gone": _yes_no_label("most active user gone quiet",
                                   "most active user still active",
                                   "no regular user to follow"),
    "tenure_days": _count_label("days as a customer"),
    "plan": _category_label("plan"),
    "segment": _category_label("segment"),
    "region": _category_label("region"),
}
