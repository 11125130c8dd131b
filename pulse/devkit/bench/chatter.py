"""`pulse bench chatter`: how early outage chatter flags incidents, and how often it cries wolf.

Per world: a demo world (`pulse.devkit.demo.generate`) landed into a fresh SQLite warehouse, then
`detect_chatter` over the whole window in one pass (each bucket is scored only against the
buckets before it, exactly as a run every 15 minutes would see it; the detector runs at the
end of each bucket). Ground truth is the world's incidents table.

* an incident is *detected* when a spike on one of its components starts within 2 hours
  either side of its start; the delay is from `started_at` to the end of the first such
  bucket (0 when the chatter came first);
* a *false alarm* is a spike on a component with no incident on that component within
  2 hours of the bucket (from 2 hours before the start to 2 hours after the resolution);
  consecutive false buckets of one component (less than 2 hours apart) make one episode.

Incidents that started in the first day (no baseline yet) are not counted.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pulse.core.formats import Format

WINDOW = timedelta(hours=2)


@dataclass
class ChatterFigure:
    seed: int
    accounts: int
    days: int
    mentions: int
    incidents: int
    detected: int
    detection_rate: float
    median_delay_minutes: float | None
    max_delay_minutes: float | None
    spikes: int
    false_alarms: int
    false_alarm_episodes: int
    false_alarms_per_week: float
    weeks: float
    seconds: float
    method: str = ""  # how negativity was judged (sentiment model or lexicon)
    by_authors_only: int = 0  # spikes the distinct-authors rule raised that the score did not
    by_impact: dict[str, list[int]] = field(default_factory=dict)  # impact -> [n, detected]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(spikes: Any, incidents: Any, *, scored_from: datetime, end: datetime
             ) -> dict[str, Any]:
    """Detection and false-alarm figures of `spikes` against `incidents` (both DataFrames)."""
    import pandas as pd

    bucket = timedelta(minutes=15)
    inc = incidents.copy()
    inc["started_at"] = pd.to_datetime(inc["started_at"], utc=True)
    inc["resolved_at"] = pd.to_datetime(inc["resolved_at"], utc=True)
    inc["components"] = inc["components"].map(lambda v: [str(x) for x in (v or [])])
    sp = spikes.copy()
    sp["bucket_start"] = pd.to_datetime(sp["bucket_start"], utc=True)
    delays: list[float] = []
    counted = detected = 0
    by_impact: dict[str, list[int]] = {}
    for r in inc.itertuples(index=False):
        if r.started_at < pd.Timestamp(scored_from) or r.started_at >= pd.Timestamp(end):
            continue
        counted += 1
        row = by_impact.setdefault(str(r.impact or "unknown"), [0, 0])
        row[0] += 1
        near = sp[sp["component"].isin(r.components)
                  & (sp["bucket_start"] >= r.started_at - WINDOW)
                  & (sp["bucket_start"] <= r.started_at + WINDOW)]
        if len(near):
            detected += 1
            row[1] += 1
            first = near["bucket_start"].min() + bucket
            delays.append(max(0.0, (first - r.started_at).total_seconds() / 60))
    false_times: dict[str, list[Any]] = {}
    for s in sp.itertuples(index=False):
        covered = False
        for r in inc.itertuples(index=False):
            stop = r.resolved_at if pd.notna(r.resolved_at) else pd.Timestamp(end)
            if (s.component in r.components and s.bucket_start + bucket > r.started_at - WINDOW
                    and s.bucket_start < stop + WINDOW):
                covered = True
                break
        if not covered:
            false_times.setdefault(str(s.component), []).append(s.bucket_start)
    episodes = 0
    for times in false_times.values():
        last = None
        for t in sorted(times):
            if last is None or t - last >= WINDOW:
                episodes += 1
            last = t
    weeks = max((end - scored_from).total_seconds() / (7 * 86400), 1e-9)
    false = sum(len(v) for v in false_times.values())
    return {
        "incidents": counted, "detected": detected,
        "detection_rate": round(detected / counted, 3) if counted else 0.0,
        "median_delay_minutes": round(statistics.median(delays), 1) if delays else None,
        "max_delay_minutes": round(max(delays), 1) if delays else None,
        "spikes": len(sp), "false_alarms": false, "false_alarm_episodes": episodes,
        "false_alarms_per_week": round(false / weeks, 2), "weeks": round(weeks, 2),
        "by_impact": by_impact,
    }


def run_world(*, seed: int, accounts: int, days: int, baseline_days: int = 7,
              min_count: int = 3, z: float = 4.0, end: date | None = None,
              min_authors: int | None = None) -> ChatterFigure:
    """Generate, land and replay one demo world; see the module docstring."""
    import pandas as pd
    from sqlalchemy import func, select

    from pulse.devkit.demo import generate
    from pulse.listeners.landing import land_files
    from pulse.models.chatter import detect_chatter
    from pulse.sql.db import make_engine, upgrade
    from pulse.sql.schema import Incident, Mention

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pulse-bench-chatter-") as tmp:
        folder = Path(tmp)
        end = end or datetime.now(UTC).date() - timedelta(days=1)
        summary = generate(folder / "world", accounts=accounts, days=days, seed=seed, end=end)
        engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
        try:
            upgrade(engine)
            land_files(engine, sorted(summary.files.values()))
            with engine.connect() as conn:
                first, n_mentions = conn.execute(
                    select(func.min(Mention.created_at), func.count())).one()
                i = Incident.__table__
                incidents = pd.DataFrame(conn.execute(select(
                    i.c.incident_id, i.c.started_at, i.c.resolved_at, i.c.components,
                    i.c.impact)).all(), columns=["incident_id", "started_at", "resolved_at",
                                                 "components", "impact"])
            stop = min(datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC),
                       datetime.now(UTC))
            first = (first or stop).replace(tzinfo=UTC) if first and first.tzinfo is None \
                else (first or stop)
            hours = (stop - first).total_seconds() / 3600 + 1
            report = detect_chatter(engine, now=stop, lookback_hours=hours,
                                    baseline_days=baseline_days, min_count=min_count, z=z,
                                    min_authors=min_authors)
        finally:
            engine.dispose()
    scored_from = first + timedelta(days=1)
    figures = evaluate(report.raised, incidents, scored_from=scored_from, end=stop)
    return ChatterFigure(seed=seed, accounts=accounts, days=days, mentions=int(n_mentions),
                         seconds=round(time.perf_counter() - t0, 2), method=report.method,
                         by_authors_only=int((report.raised["rule"] == "authors").sum())
                         if len(report.raised) else 0, **figures)


def _table(figs: list[ChatterFigure], console: Console) -> None:
    table = Table(title="Outage chatter on demo worlds", title_justify="left")
    for col in ("seed", "accounts x days", "mentions", "incidents", "detected",
                "median delay", "max delay", "spikes", "false alarms (episodes)",
                "false / week", "seconds"):
        table.add_column(col, justify="left" if col == "accounts x days" else "right")

    def mins(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} min"

    for f in figs:
        table.add_row(str(f.seed), f"{f.accounts} x {f.days}", f"{f.mentions:,}",
                      str(f.incidents), f"{f.detected} ({f.detection_rate:.0%})",
                      mins(f.median_delay_minutes), mins(f.max_delay_minutes), str(f.spikes),
                      f"{f.false_alarms} ({f.false_alarm_episodes})",
                      f"{f.false_alarms_per_week:.2f}", f"{f.seconds:.1f}")
    console.print(table)
    for f in figs:
        parts = ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(f.by_impact.items()))
        console.print(f"seed {f.seed}: detected by impact: {parts}; negativity: {f.method}; "
                      f"spikes raised by the distinct-authors rule alone: {f.by_authors_only}")


def bench_chatter(
    seeds: Annotated[list[int] | None, typer.Option(
        "--seed", help="Demo world seed (repeat for several; default 1, 2, 3).")] = None,
    accounts: Annotated[int, typer.Option(help="Accounts per world.")] = 500,
    days: Annotated[int, typer.Option(help="Days per world.")] = 60,
    baseline_days: Annotated[int, typer.Option(help="Days of baseline per bucket.")] = 7,
    min_count: Annotated[int, typer.Option(help="Fewest voices in a spike.")] = 3,
    z: Annotated[float, typer.Option(help="Score (tail z) a spike needs.")] = 4.0,
    min_authors: Annotated[int | None, typer.Option(
        help="Distinct people within 15 minutes that raise a spike on a quiet component "
        "(default: PULSE_CHATTER_MIN_AUTHORS, 3; a large number switches the rule off).")]
    = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Detection delay and false alarms of outage chatter on demo worlds."""
    console = Console()
    figs = []
    for seed in seeds or [1, 2, 3]:
        figs.append(run_world(seed=seed, accounts=accounts, days=days,
                              baseline_days=baseline_days, min_count=min_count, z=z,
                              min_authors=min_authors))
    if fmt == Format.json:
        print(json.dumps([f.to_dict() for f in figs], indent=2))
    else:
        _table(figs, console)
