"""The account page's charts, drawn on the server as SVG (no script, nothing from outside).

* `stacked_health`: the health per scored date as a stack of the scorecard measures' parts
  (each measure's points times its share of the weights used; the parts add up to the
  health), so a drop shows which measure moved. Every layer has a pattern of its own as
  well as a colour, a name in the legend and, where it is thick enough, on the chart.
* `probability_line`: the churn probability per date, the model's where it scored the
  account, else the scorecard's calibration curve (drawn dashed, and said so).
* `what_moved`, `biggest_drop`: the text alternative: each measure's change over the span,
  biggest first; the largest fall from one scored date to the next and the parts behind it.

The template draws the SVG from these numbers; every text goes through its autoescape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

#: layer colours (Okabe-Ito, safe for colour blindness), each with a pattern id of its own
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#7f7f7f", "#332288", "#88CCEE")
PATTERNS = ("solid", "dots", "hatch", "cross", "vlines", "hlines", "dots", "hatch", "cross",
            "vlines")
WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 660, 220, 36, 176, 10, 24
CHURN_WIDTH = 420


@dataclass
class Layer:
    measure: str
    label: str
    colour: str
    pattern: str
    pattern_id: str
    points: str  # the polygon
    first: float
    last: float
    label_y: float | None = None  # where its name goes on the chart, if it fits
    values: list[float] = field(default_factory=list)  # its points on each day


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    layers: list[Layer] = field(default_factory=list)
    line: str = ""  # the total (health or probability) as a polyline
    dots: list[dict[str, Any]] = field(default_factory=list)
    guides: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    first: str = ""
    last: str = ""
    x0: float = PAD_L
    x1: float = WIDTH - PAD_R
    y_base: float = HEIGHT - PAD_B
    dashed: str = ""  # the part drawn from the calibration curve
    days: list[date] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.line and not self.dashed and not self.layers


def _x_scale(days: list[date], right: float = WIDTH - PAD_R) -> Any:
    first, last = days[0], days[-1]
    span = max((last - first).days, 1)

    def x(d: date) -> float:
        return round(PAD_L + (d - first).days * (right - PAD_L) / span, 1)

    return x


def _y(value: float, top: float = 100.0) -> float:
    v = min(max(value, 0.0), top)
    return round(HEIGHT - PAD_B - v * (HEIGHT - PAD_T - PAD_B) / top, 1)


def _ticks(top: float, unit: str) -> list[dict[str, Any]]:
    return [{"y": _y(v, top), "text": f"{v:.0f}{unit}"} for v in (0, top / 2, top)]


def stacked_health(health: pd.DataFrame, parts: pd.DataFrame, labels: dict[str, str], *,
                   green: float = 70.0, amber: float = 40.0, watch: float | None = None
                   ) -> Chart:
    """The stacked chart of the health (see the module docstring)."""
    scored = health[health["score"].notna()]
    chart = Chart()
    if len(scored) < 2:
        return chart
    days = list(scored["as_of"])
    x = _x_scale(days)
    table = (parts.pivot_table(index="as_of", columns="measure", values="part",
                               aggfunc="sum").reindex(days).fillna(0.0)
             if len(parts) else pd.DataFrame(index=days))
    # the largest parts at the bottom, where a change is easiest to read
    order = list(table.mean().sort_values(ascending=False).index) if len(table.columns) else []
    below = np.zeros(len(days))
    xs = [x(d) for d in days]
    for k, measure in enumerate(order):
        values = table[measure].to_numpy(dtype=float)
        above = below + values
        top_edge = [f"{xi},{_y(v)}" for xi, v in zip(xs, above)]
        bottom_edge = [f"{xi},{_y(v)}" for xi, v in zip(reversed(xs), reversed(below))]
        thick = _y(below[-1]) - _y(above[-1])
        chart.layers.append(Layer(
            measure=str(measure), label=labels.get(str(measure), str(measure)),
            colour=PALETTE[k % len(PALETTE)], pattern=PATTERNS[k % len(PATTERNS)],
            pattern_id=f"p-{k}", points=" ".join(top_edge + bottom_edge),
            first=round(float(values[0]), 1), last=round(float(values[-1]), 1),
            values=[float(v) for v in values],
            label_y=round((_y(below[-1]) + _y(above[-1])) / 2 + 4, 1) if thick >= 11
            else None))
        below = above
    scores = scored["score"].to_numpy(dtype=float)
    chart.line = " ".join(f"{xi},{_y(s)}" for xi, s in zip(xs, scores))
    chart.dots = [{"x": xi, "y": _y(s), "label": f"{d.isoformat()}: health {s:.0f}"
                   + (f" ({b})" if isinstance(b, str) else "")}
                  for xi, s, d, b in zip(xs, scores, days, scored["band"])]
    chart.days, chart.totals = days, [float(v) for v in scores]
    chart.guides = [{"y": _y(green), "text": f"green from {green:.0f}"},
                    *([{"y": _y(watch), "text": f"amber below {watch:.0f}"}]
                      if watch is not None and watch < green else []),
                    {"y": _y(amber), "text": f"red below {amber:.0f}"}]
    chart.ticks = [{"y": _y(v), "text": f"{v:.0f}"} for v in (0.0, amber, green, 100.0)]
    chart.first, chart.last = days[0].isoformat(), days[-1].isoformat()
    return chart


def probability_line(days: list[date], model: dict[date, float],
                     curve: dict[date, float]) -> Chart:
    """The churn probability per date (0..100%): the model's where it scored, else the
    calibration curve's."""
    chart = Chart(width=CHURN_WIDTH, x1=CHURN_WIDTH - 16)
    known: list[tuple[date, float, bool]] = []
    for d in days:
        p = model[d] if d in model else curve.get(d)
        if p is not None and not np.isnan(p):
            known.append((d, float(p), d in model))
    if not known:
        return chart
    x = _x_scale([d for d, _p, _m in known], chart.x1)
    top = 100.0
    chart.dots = [{"x": x(d), "y": _y(100 * p, top),
                   "label": f"{d.isoformat()}: {100 * p:.0f}% "
                            f"({'churn model' if m else 'calibration curve'})"}
                  for d, p, m in known]
    if len(known) < 2:  # one date: said in words, nothing to draw
        return chart
    chart.line = " ".join(f"{x(d)},{_y(100 * p, top)}" for d, p, m in known if m)
    chart.dashed = " ".join(f"{x(d)},{_y(100 * p, top)}" for d, p, m in known if not m)
    chart.ticks = _ticks(top, "%")
    chart.first, chart.last = known[0][0].isoformat(), known[-1][0].isoformat()
    return chart


def what_moved(chart: Chart) -> list[dict[str, Any]]:
    """Each measure whose part changed over the chart's span, biggest change first."""
    moved = [{"label": layer.label, "first": layer.first, "last": layer.last,
              "change": round(layer.last - layer.first, 1)} for layer in chart.layers]
    moved = [m for m in moved if m["change"] != 0]
    return sorted(moved, key=lambda m: (-abs(m["change"]), m["label"]))


def biggest_drop(chart: Chart, *, at_least: float = 1.0) -> dict[str, Any] | None:
    """The largest fall of the health from one scored date to the next (at least
    `at_least` points), and the parts that moved with it, most first."""
    if len(chart.totals) < 2:
        return None
    steps = np.diff(np.asarray(chart.totals))
    k = int(np.argmin(steps))
    if steps[k] > -at_least:
        return None
    parts = [{"label": layer.label,
              "change": round(layer.values[k + 1] - layer.values[k], 1)}
             for layer in chart.layers]
    parts = sorted((p for p in parts if p["change"] != 0),
                   key=lambda p: (p["change"], p["label"]))
    return {"from": chart.days[k].isoformat(), "to": chart.days[k + 1].isoformat(),
            "change": round(float(steps[k]), 1), "parts": parts}


def parts_table(health: pd.DataFrame, parts: pd.DataFrame, chart: Chart, *,
                rows: int = 30) -> dict[str, Any]:
    """The chart's numbers as a table (the latest `rows` dates, newest first)."""
    scored = health[health["score"].notna()].tail(rows).iloc[::-1]
    days = list(scored["as_of"])
    table = (parts.pivot_table(index="as_of", columns="measure", values="part",
                               aggfunc="sum").reindex(days).fillna(0.0)
             if len(parts) else pd.DataFrame(index=days))
    columns = [layer.measure for layer in chart.layers]
    body = [{"as_of": d.isoformat(), "score": float(s),
             "band": b if isinstance(b, str) else "",
             "parts": [float(table.at[d, m]) if m in table.columns else 0.0 for m in columns]}
            for d, s, b in zip(days, scored["score"], scored["band"])]
    return {"labels": [layer.label for layer in chart.layers], "rows": body}
