"""`pulse chatter detect | list`: spikes of negative posts about a component."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Format, parse_time

out = Console()

chatter_app = typer.Typer(
    help="Outage chatter: negative posts per component and 15 minutes against a baseline.",
    no_args_is_help=True)


_time = parse_time


def _rows(frame: Any) -> list[dict[str, Any]]:
    import pandas as pd

    rows = []
    for rec in frame.to_dict("records"):
        row = {}
        for k, v in rec.items():
            if isinstance(v, pd.Timestamp | datetime):
                row[k] = pd.Timestamp(v).isoformat()
            elif isinstance(v, float):
                row[k] = round(v, 4)
            elif v is not None and not isinstance(v, list | str) and pd.isna(v):
                row[k] = None
            else:
                row[k] = v
        rows.append(row)
    return rows


def _table(frame: Any, title: str) -> None:
    import pandas as pd

    table = Table(title=title, title_justify="left")
    for col, right in (("bucket (UTC)", False), ("component", False), ("voices", True),
                       ("baseline", True), ("score", True), ("status", False),
                       ("rule", False), ("incident", False), ("samples", False)):
        table.add_column(col, justify="right" if right else "left")
    for r in frame.itertuples(index=False):
        samples = getattr(r, "sample_texts", None) or r.sample_mention_ids
        table.add_row(pd.Timestamp(r.bucket_start).strftime("%Y-%m-%d %H:%M"),
                      Text(str(r.component)), str(int(r.negative_mentions)),
                      f"{float(r.baseline):.3f}", f"{float(r.score):.1f}", str(r.status),
                      str(getattr(r, "rule", "")), Text(str(r.incident_id or "")),
                      Text("\n".join(str(s)[:60] for s in samples)))
    out.print(table)


def detect(
    now: Annotated[str | None, typer.Option(
        "--now", help="Detect as of this time, ISO 8601 (default: now).")] = None,
    lookback_hours: Annotated[float, typer.Option(help="Hours of buckets to score.")] = 6,
    baseline_days: Annotated[int, typer.Option(help="Days of baseline per bucket.")] = 7,
    min_count: Annotated[int, typer.Option(help="Fewest voices in a spike.")] = 3,
    z: Annotated[float, typer.Option(help="Score (tail z) a spike needs.")] = 4.0,
    aftermath_hours: Annotated[float, typer.Option(
        help="Attach spikes to an incident resolved at most this many hours before.")] = 2.0,
    min_authors: Annotated[int | None, typer.Option(
        help="Distinct people within --author-window that raise a spike on a quiet component "
        "(default: PULSE_CHATTER_MIN_AUTHORS, 3).")] = None,
    author_window: Annotated[float | None, typer.Option(
        help="The distinct-authors rule's sliding window, minutes (default: "
        "PULSE_CHATTER_AUTHOR_WINDOW_MINUTES, 15).")] = None,
    quiet_baseline: Annotated[float | None, typer.Option(
        help="The rule applies under this baseline, voices per 15 minutes (default: "
        "PULSE_CHATTER_QUIET_BASELINE, 0.1).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Score recent buckets and record spikes (suspected, or attached to an open incident).

    A spike is raised by the score (--z) or by the distinct-authors rule (--min-authors
    people within --author-window minutes on a component under --quiet-baseline).
    """
    from pulse.models.chatter import detect_chatter
    from pulse.sql.db import ensure_schema, make_engine

    engine = make_engine()
    ensure_schema(engine)
    report = detect_chatter(engine, now=_time(now), lookback_hours=lookback_hours,
                            baseline_days=baseline_days, min_count=min_count, z=z,
                            aftermath_hours=aftermath_hours, min_authors=min_authors,
                            author_window_minutes=author_window,
                            quiet_baseline=quiet_baseline)
    if fmt == Format.json:
        print(json.dumps({"now": report.now.isoformat(), "since": report.since.isoformat(),
                          "buckets_scored": report.buckets_scored, "method": report.method,
                          "keywords": report.keywords, "suspected": report.suspected,
                          "attached": report.attached, "raised": _rows(report.raised)},
                         indent=2))
        return
    out.print(f"Scored {report.buckets_scored:,} buckets since {report.since:%Y-%m-%d %H:%M} "
              f"UTC (negativity: {report.method}, keywords: {report.keywords}): "
              f"{report.suspected} suspected, {report.attached} attached.")
    if len(report.raised):
        _table(report.raised, "Spikes raised")


def list_(
    status: Annotated[str | None, typer.Option(
        "--status", help="Only spikes with this status: suspected or attached.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only buckets from this time, ISO 8601.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """List recorded spikes, newest first, with sample posts."""
    from pulse.models.chatter import suspected_incidents
    from pulse.sql.db import ensure_schema, make_engine

    if status is not None and status not in ("suspected", "attached"):
        raise typer.BadParameter(f'expected "suspected" or "attached" (not {status!r})',
                                 param_hint="--status")
    engine = make_engine()
    ensure_schema(engine)
    frame = suspected_incidents(engine, status=status, since=_time(since))
    if fmt == Format.json:
        print(json.dumps(_rows(frame), indent=2))
    elif frame.empty:
        out.print("No spikes recorded.")
    else:
        _table(frame, f"{len(frame):,} spikes")


chatter_app.command("detect")(detect)
chatter_app.command("list")(list_)


def register(app: typer.Typer) -> None:
    """Add `chatter detect` and `chatter list` to the command line."""
    app.add_typer(chatter_app, name="chatter")
