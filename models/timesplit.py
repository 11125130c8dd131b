"""Time-based splits for snapshots taken at many as-of dates.

`time_split` keeps the earlier snapshots for training and the later ones for validation, with
a gap of the label horizon between them: never a random split across time.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from pulse.core.errors import ModelInputError

__all__ = ["time_split"]


def time_split(frame: pd.DataFrame, time_col: str, train_end: Any, valid_end: Any, *,
               horizon: Any = None, train_start: Any = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split snapshots taken at many as-of dates into earlier training and later validation.

    Never a random split across time: validation rows are the snapshots dated
    ``train_end <= t < valid_end``; training rows are dated before ``train_end - horizon``,
    so that no training label (churn within `horizon` after its snapshot) was observed on or
    after the first validation date, just as when the model is trained on `train_end` for real.

    Parameters
    ----------
    frame : DataFrame
        Snapshots, one row per (as-of date, account).
    time_col : str
        Column with the as-of date of each snapshot.
    train_end : date-like
        First validation date; training snapshots are strictly earlier.
    valid_end : date-like
        End of the validation window (exclusive).
    horizon : int (days), Timedelta or None, default=None
        Label horizon: training snapshots also satisfy ``t + horizon < train_end``.
    train_start : date-like, default=None
        Earliest training snapshot (inclusive); None keeps everything older.

    Returns
    -------
    train, valid : DataFrame
        Row subsets of `frame`, in its order.
    """
    if time_col not in frame.columns:
        raise ModelInputError(f"time column {time_col!r} not in frame")
    when = pd.to_datetime(frame[time_col])
    if when.isna().any():
        raise ModelInputError(f"time column {time_col!r} has {int(when.isna().sum())} missing dates")
    start, end = pd.Timestamp(train_end), pd.Timestamp(valid_end)
    if when.dt.tz is not None:
        start, end = (t.tz_localize(when.dt.tz) if t.tz is None else t for t in (start, end))
    if not start < end:
        raise ModelInputError(f"train_end {train_end} must be before valid_end {valid_end}")
    gap = pd.Timedelta(days=horizon) if isinstance(horizon, int | float) else pd.Timedelta(
        horizon or 0)
    train_mask = when < start - gap
    if train_start is not None:
        lower = pd.Timestamp(train_start)
        if when.dt.tz is not None and lower.tz is None:
            lower = lower.tz_localize(when.dt.tz)
        train_mask &= when >= lower
    valid_mask = (when >= start) & (when < end)
    if not train_mask.any():
        raise ModelInputError(
            f"no training snapshots before {start - gap} in {time_col!r} "
            f"(earliest is {when.min()})")
    if not valid_mask.any():
        raise ModelInputError(
            f"no validation snapshots in [{start}, {end}) in {time_col!r} "
            f"(dates run {when.min()} to {when.max()})")
    return frame[train_mask.to_numpy()], frame[valid_mask.to_numpy()]
