"""Charts of a churn model's validation window, as PNG files (matplotlib, Agg backend).

* `calibration_chart`: predicted against observed churn rate per bin of risk, with the
  diagonal of perfect calibration and the number of accounts in each bin.
* `lift_chart`: cumulative gains (the share of churners found among the riskiest x% of
  accounts, against random targeting) beside the lift of each decile of risk.
* `band_chart`: churners by health band: how the validation snapshots and their churners
  fall into the scorecard's green, watch, amber and red bands, and the churn rate in each.

Both draw from the curves the registry stores with each model (`calibration` bins and `gains`
points in its metrics), or from raw outcomes and probabilities via `curves_from_predictions`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pulse.core.errors import NothingToShowError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def curves_from_predictions(y_true: Any, p: Any) -> dict[str, Any]:
    """The `calibration` and `gains` curves (as stored in the registry) of predictions."""
    from pulse.models.registry import window_metrics

    metrics = window_metrics(y_true, p)
    return {"calibration": metrics["calibration"], "gains": metrics["gains"],
            "base_rate": metrics["base_rate"]}


def calibration_chart(calibration: list[dict[str, Any]] | pd.DataFrame, path: Path | str, *,
                      title: str = "Calibration") -> Path:
    """Write the calibration chart: mean predicted against observed churn rate per bin."""
    table = pd.DataFrame(calibration)
    if table.empty:
        raise NothingToShowError("no calibration bins to draw")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    try:
        top = float(max(table["mean_predicted"].max(), table["observed"].max(), 0.01)) * 1.08
        top = min(1.0, top)
        ax.plot([0, top], [0, top], linestyle="--", color="#888888", linewidth=1,
                label="perfectly calibrated")
        sizes = table["n"].astype(int)
        each = (f"{sizes.iloc[0]:,} snapshots each" if sizes.nunique() == 1
                else f"{sizes.min():,} to {sizes.max():,} snapshots")
        ax.plot(table["mean_predicted"], table["observed"], marker="o", color="#1f5fa8",
                linewidth=1.6, label=f"this model: {len(table)} bins of risk, {each}")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("predicted churn probability (mean of the bin)")
        ax.set_ylabel("observed churn rate")
        ax.set_title(title, fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        return _save(fig, path)
    finally:
        plt.close(fig)


def lift_chart(gains: list[list[float]] | pd.DataFrame, path: Path | str, *,
               title: str = "Gains and lift") -> Path:
    """Write the cumulative gains curve and the lift of each decile of risk."""
    table = (gains if isinstance(gains, pd.DataFrame)
             else pd.DataFrame(gains, columns=["share_targeted", "share_captured"]))
    if len(table) < 2:
        raise NothingToShowError("no gains curve to draw")
    x = table["share_targeted"].to_numpy(dtype=float)
    y = table["share_captured"].to_numpy(dtype=float)
    deciles = np.linspace(0.0, 1.0, 11)
    captured = np.interp(deciles, x, y)
    lift = np.diff(captured) / 0.1
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    try:
        left.plot(100 * x, 100 * y, color="#1f5fa8", linewidth=1.8, label="by churn risk")
        left.plot([0, 100], [0, 100], linestyle="--", color="#888888", linewidth=1,
                  label="random")
        left.set_xlabel("accounts contacted, riskiest first (%)")
        left.set_ylabel("churners among them (% of all churners)")
        left.set_xlim(0, 100)
        left.set_ylim(0, 100)
        left.grid(True, alpha=0.3)
        left.legend(loc="lower right", fontsize=8)
        left.set_title("Cumulative gains", fontsize=10)
        bars = right.bar(np.arange(1, 11), lift, color="#1f5fa8")
        right.axhline(1.0, linestyle="--", color="#888888", linewidth=1)
        for b, v in zip(bars, lift):
            right.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                           va="bottom", fontsize=8)
        right.set_xticks(np.arange(1, 11))
        right.set_xlabel("decile of churn risk (1 = riskiest 10%)")
        right.set_ylabel("lift (churn rate in the decile / overall)")
        right.set_title("Lift by decile", fontsize=10)
        right.grid(True, axis="y", alpha=0.3)
        fig.suptitle(title, fontsize=11)
        return _save(fig, path)
    finally:
        plt.close(fig)


_BAND_COLOURS = {"green": "#2e8b57", "watch": "#4682b4", "amber": "#e0a020", "red": "#c0392b",
                 "unscored": "#999999"}


def band_chart(by_band: list[dict[str, Any]] | pd.DataFrame, path: Path | str, *,
               title: str = "Churners by health band") -> Path:
    """Write the churners-by-band chart: the share of snapshots and of churners in each
    health band, beside the churn rate observed in each band."""
    table = pd.DataFrame(by_band)
    if table.empty or int(table["snapshots"].sum()) == 0:
        raise NothingToShowError("no banded snapshots to draw")
    names = table["band"].astype(str).tolist()
    colours = [_BAND_COLOURS.get(n, "#1f5fa8") for n in names]
    x = np.arange(len(names))
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    try:
        width = 0.38
        snaps = 100 * table["share_of_snapshots"].to_numpy(dtype=float)
        churn = 100 * table["share_of_churners"].to_numpy(dtype=float)
        left.bar(x - width / 2, snaps, width, color=colours, alpha=0.45,
                 label="share of snapshots")
        left.bar(x + width / 2, churn, width, color=colours, edgecolor="black",
                 label="share of churners")
        for i, (a, b) in enumerate(zip(snaps, churn)):
            left.annotate(f"{a:.0f}%", (i - width / 2, a), ha="center", va="bottom", fontsize=8)
            left.annotate(f"{b:.0f}%", (i + width / 2, b), ha="center", va="bottom", fontsize=8)
        left.set_ylim(0, max(float(snaps.max()), float(churn.max()), 1.0) * 1.15)
        left.set_xticks(x, names)
        left.set_ylabel("% of the validation window")
        left.set_title("Where snapshots and churners fall", fontsize=10)
        left.legend(loc="upper right", fontsize=8)
        left.grid(True, axis="y", alpha=0.3)
        rate = 100 * pd.to_numeric(table["churn_rate"], errors="coerce").fillna(0.0).to_numpy()
        bars = right.bar(x, rate, color=colours)
        for b, v, n, k in zip(bars, rate, table["snapshots"], table["churners"]):
            right.annotate(f"{v:.1f}%\n{int(k)} of {int(n):,}",
                           (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                           fontsize=8)
        right.set_ylim(0, max(float(rate.max()), 1.0) * 1.2)
        right.set_xticks(x, names)
        right.set_ylabel("churn rate within the horizon (%)")
        right.set_title("Observed churn rate by band", fontsize=10)
        right.grid(True, axis="y", alpha=0.3)
        fig.suptitle(title, fontsize=11)
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig: Any, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def model_charts(record: Any, folder: Path | str) -> dict[str, Path]:
    """The charts of a registered model (`models.registry.ModelRecord`) into `folder`:
    calibration, lift, and churners by band when the model stored them."""
    folder = Path(folder)
    m = record.metrics
    if not m.get("calibration") or not m.get("gains"):
        raise NothingToShowError(f"churn model v{record.version} has no stored validation curves")
    window = f"validation {record.valid_start} to {record.valid_end}"
    auc = m.get("roc_auc")
    head = (f"churn model v{record.version}, {record.horizon_days}-day horizon\n{window}"
            + (f" (ROC AUC {auc:.3f})" if isinstance(auc, int | float) else ""))
    charts = {
        "calibration": calibration_chart(
            m["calibration"], folder / f"churn-v{record.version}-calibration.png",
            title=f"Calibration: {head}"),
        "lift": lift_chart(m["gains"], folder / f"churn-v{record.version}-lift.png",
                           title=f"Gains and lift: {head}"),
    }
    if m.get("by_band"):
        charts["bands"] = band_chart(
            m["by_band"], folder / f"churn-v{record.version}-bands.png",
            title=f"Churners by health band: {head}")
    return charts
