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
usage row (before that the 28-day and 56-day windows would see a truncated history).

* validation: the snapshots of the last `valid_days` days whose horizon is complete;
* training: the earlier snapshots whose whole label window ends before validation starts
  (``as_of + horizon_days < valid_start``, `models.timesplit.time_split`), as if the model had
  been trained on the first validation day for real. Snapshots in between are not computed.

Features
--------
The numeric features of the catalogue (`sql.features.FEATURES`), except those the warehouse
cannot give point in time (`NOT_POINT_IN_TIME`: account attributes stored in their latest
state, such as seats, the renewal date and the fallback MRR; a model would learn from history
that a zero MRR means churn, a value no active account has when it is scored), plus two
relative usage measures derived from them (`DERIVED`) and the account's plan, segment and
region.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select, text, true, union_all

from pulse.core.errors import TrainingDataError
from pulse.models.drivers import Driver, format_number
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.models.timesplit import time_split
from pulse.sql.features import BASES, FEATURES, features_select
from pulse.sql.schema import Account, AccountFeatures, PurchaseEvent, UsageEvent
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 90
DEFAULT_STEP_DAYS = 7
DEFAULT_VALID_DAYS = 28
DEFAULT_WARMUP_DAYS = 56
LABEL = "churned"
CATEGORICAL: tuple[str, ...] = ("plan", "segment", "region")

#: Catalogue features left out of the model, and why.
NOT_POINT_IN_TIME: dict[str, str] = {
    "seats": "the account's current seats, not those of the snapshot date",
    "seat_utilisation_28d": "divides by the current seats",
    "days_to_renewal": "the current renewal date (cleared or moved after a cancellation)",
    "mrr": "falls back to the account's current MRR (0 once it cancelled) without billing "
           "events that carry mrr_after",
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
    train: tuple[date, ...]  # training snapshot dates
    valid: tuple[date, ...]  # validation snapshot dates

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
        return self.train + self.valid

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(), "first_data": self.first_data.isoformat(),
            "last_data": self.last_data.isoformat(), "horizon_days": self.horizon_days,
            "step_days": self.step_days,
            "train": [self.train_start.isoformat(), self.train_end.isoformat()],
            "valid": [self.valid_start.isoformat(), self.valid_end.isoformat()],
            "train_snapshots": len(self.train), "valid_snapshots": len(self.valid),
        }


def plan_windows(first_data: date, last_data: date, *, as_of: date | None = None,
                 horizon_days: int = DEFAULT_HORIZON_DAYS, step_days: int = DEFAULT_STEP_DAYS,
                 valid_days: int = DEFAULT_VALID_DAYS,
                 warmup_days: int = DEFAULT_WARMUP_DAYS) -> Windows:
    """Snapshot dates for training and validation from the span of the history.

    Raises `TrainingDataError`, saying how much history is needed, when the span is too short.
    """
    for name, value, least in (("horizon_days", horizon_days, 1), ("step_days", step_days, 1),
                               ("valid_days", valid_days, 1), ("warmup_days", warmup_days, 0)):
        if value < least:
            raise TrainingDataError(f"invalid value for {name}: expected {least} or more "
                                    f"(not {value})")
    first_snapshot = first_data + timedelta(days=warmup_days)
    last_complete = last_data - timedelta(days=horizon_days)
    span = (last_data - first_data).days + 1
    needed = warmup_days + 2 * horizon_days + valid_days + step_days
    why = (f"the history runs from {first_data} to {last_data} ({span} days); with a "
           f"{horizon_days}-day horizon, {valid_days} days of validation snapshots and "
           f"{warmup_days} days of warm-up it needs about {needed} days: use a shorter "
           "horizon or more history")
    dates: list[date] = []
    day = last_complete
    while day >= first_snapshot:
        dates.append(day)
        day -= timedelta(days=step_days)
    dates.reverse()
    if not dates:
        raise TrainingDataError(f"no snapshot has a complete label window: {why}")
    valid_start_min = last_complete - timedelta(days=valid_days - 1)
    valid = tuple(d for d in dates if d >= valid_start_min)
    train = tuple(d for d in dates if d + timedelta(days=horizon_days) < valid[0])
    if not train:
        raise TrainingDataError(
            f"no training snapshot's label window ends before validation starts on "
            f"{valid[0]}: {why}")
    return Windows(as_of or last_data, first_data, last_data, horizon_days, step_days,
                   train, valid)


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def _known(table: Any, basis: str, end: datetime) -> Any:
    return table.c.landed_at < end if basis == "known" else true()


def data_span(engine: Engine, as_of: date, *, basis: str = "occurred") -> tuple[date, date]:
    """(first usage day, last usage or billing day) known by the end of `as_of`."""
    end = _end_of(as_of)
    u, p = UsageEvent.__table__, PurchaseEvent.__table__
    with engine.connect() as conn:
        first, landed = conn.execute(select(func.min(u.c.occurred_at), func.min(u.c.landed_at))
                                     .where(u.c.occurred_at < end, _known(u, basis, end))).one()
        lasts = union_all(
            select(func.max(u.c.occurred_at).label("t")).where(
                u.c.occurred_at < end, _known(u, basis, end)),
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
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
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
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


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


@dataclass
class TrainingData:
    """Labelled snapshots and the windows that split them."""

    frame: pd.DataFrame  # as_of, account_id, churned, every catalogue input, categoricals
    windows: Windows
    basis: str
    numeric: list[str]
    categorical: list[str] = field(default_factory=lambda: list(CATEGORICAL))
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training rows, validation rows), by `models.timesplit.time_split`."""
        w = self.windows
        return time_split(self.frame, "as_of", pd.Timestamp(w.valid_start),
                          pd.Timestamp(w.valid_end + timedelta(days=1)),
                          horizon=w.horizon_days)


def build_training_data(engine: Engine, *, as_of: date | None = None,
                        horizon_days: int = DEFAULT_HORIZON_DAYS, basis: str = "occurred",
                        step_days: int = DEFAULT_STEP_DAYS, valid_days: int = DEFAULT_VALID_DAYS,
                        warmup_days: int = DEFAULT_WARMUP_DAYS,
                        numeric: Sequence[str] | None = None,
                        on_stage: Callable[[str], None] | None = None) -> TrainingData:
    """Labelled snapshots of every account at the planned dates, as known on `as_of`.

    `as_of` (default: today, UTC) is the training date: no row that happened (or, with
    basis "known", landed) after it is read, for features or labels.
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
    t0 = _time.perf_counter()
    first, last = data_span(engine, as_of, basis=basis)
    try:
        windows = plan_windows(first, last, as_of=as_of, horizon_days=horizon_days,
                               step_days=step_days, valid_days=valid_days,
                               warmup_days=warmup_days)
    except TrainingDataError as exc:
        if basis != "known":
            raise
        raise TrainingDataError(
            f"{exc} (with basis 'known' a snapshot sees only rows that had landed by its "
            f"date, and the first usage rows landed on {first}; for history loaded after "
            "the fact, train with basis 'occurred')") from None
    frames = []
    for i, day in enumerate(windows.dates, 1):
        if on_stage:
            on_stage(f"features as of {day} ({i}/{len(windows.dates)})")
        frames.append(snapshot_features(engine, day, basis=basis))
    t1 = _time.perf_counter()
    snaps = pd.concat(frames, ignore_index=True)
    if snaps.empty:
        raise TrainingDataError(
            f"no account existed at any snapshot date ({windows.dates[0]} to "
            f"{windows.dates[-1]}, basis {basis!r})")
    before = len(snaps)
    # One order on every database, so that a fit is the same on SQLite and PostgreSQL.
    snaps = (snaps[~snaps["cancelled"]].sort_values(["as_of", "account_id"], kind="stable")
             .reset_index(drop=True))
    cancels = cancellations(engine, as_of, basis=basis)
    snaps[LABEL] = label_snapshots(snaps, cancels, horizon_days)
    frame = model_frame(snaps, account_attributes(engine))
    # Every input any model might use (not just this one's), so that a champion fitted on
    # other features can be scored on the same rows.
    inputs = [f for f in FEATURES if f != "cancelled"] + list(DERIVED)
    keep = ["as_of", "account_id", LABEL, *dict.fromkeys([*numeric, *inputs]), *CATEGORICAL]
    frame = frame[keep]
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    log.info("training data as of %s: %d snapshots of %d dates (%d cancelled accounts left "
             "out), %d churned", as_of, len(frame), len(windows.dates), before - len(frame),
             int(frame[LABEL].sum()))
    return TrainingData(frame, windows, basis, numeric, list(CATEGORICAL),
                        {"features": t1 - t0, "assemble": _time.perf_counter() - t1})


# --------------------------------------------------------------------------- drivers in words


_fmt = format_number


def _typical(d: Driver, show: Callable[[float], str]) -> str:
    ref = d.reference
    if isinstance(ref, int | float) and not (isinstance(ref, float) and math.isnan(ref)):
        return f" (typical {show(float(ref))})"
    return ""


def _count_label(noun: str) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: unknown"
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


def _share_label(noun: str) -> Callable[[Driver], str]:
    def show(v: float) -> str:
        return f"{100 * v:.1f}%" if v < 0.1 else f"{100 * v:.0f}%"

    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: none to measure"
        return f"{noun} {show(float(d.value))}{_typical(d, show)}"
    return label


def _days_since_label(noun: str, never: str) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return never
        return f"{noun} {_fmt(float(d.value))} days ago{_typical(d, _fmt)}"
    return label


def _hours_label(noun: str) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        if d.value is None:
            return f"{noun}: no ticket resolved in 90 days"
        return f"{noun} {_fmt(float(d.value))} hours{_typical(d, _fmt)}"
    return label


def _category_label(noun: str) -> Callable[[Driver], str]:
    def label(d: Driver) -> str:
        return f"{noun} {d.value}" if d.value is not None else f"{noun} unknown"
    return label


#: How each model input reads in a driver sentence ("... raises risk by 12 points").
DRIVER_LABELS: dict[str, Callable[[Driver], str]] = {
    "account_age_days": _count_label("account age (days)"),
    "seats": _count_label("seats"),
    "active_days_7d": _count_label("active days in the last 7"),
    "active_days_28d": _count_label("active days in the last 28"),
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
    "plan": _category_label("plan"),
    "segment": _category_label("segment"),
    "region": _category_label("region"),
}
