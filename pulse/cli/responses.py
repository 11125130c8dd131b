"""`pulse responses report`: first-response times per channel against what customers expect."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pulse.cli.common import Format, parse_time, warehouse
from pulse.core.expectations import REPORT_PERIODS

out = Console()

responses_app = typer.Typer(
    help="Response times: how fast customers hear back, per channel, against what they expect.",
    no_args_is_help=True)


def _minutes(v: Any) -> str:
    import pandas as pd

    if v is None or pd.isna(v):
        return "-"
    v = float(v)
    return f"{v:.1f} min" if v < 120 else f"{v / 60:.1f} h"


def _share(v: Any) -> str:
    import pandas as pd

    return "-" if v is None or pd.isna(v) else f"{float(v):.0%}"


def _change(v: Any, fmt: str) -> str:
    import pandas as pd

    if v is None or pd.isna(v):
        return ""
    return f"{float(v):+.1f} min" if fmt == "min" else f"{float(v) * 100:+.0f} pts"


def _records(frame: Any) -> list[dict[str, Any]]:
    import pandas as pd

    rows = []
    for rec in frame.to_dict("records"):
        row: dict[str, Any] = {}
        for k, v in rec.items():
            if isinstance(v, pd.Timestamp):
                row[k] = v.date().isoformat()
            elif v is None or (not isinstance(v, str) and pd.isna(v)):
                row[k] = None
            elif isinstance(v, float):
                row[k] = round(v, 4)
            elif hasattr(v, "item"):
                row[k] = v.item()
            else:
                row[k] = v
        rows.append(row)
    return rows


def report(
    period: Annotated[str, typer.Option(
        "--period", help="Trend per week or month.")] = "week",
    now: Annotated[str | None, typer.Option(
        "--now", help="As of this time, ISO 8601 (default: now).")] = None,
    chart: Annotated[Path | None, typer.Option(
        "--chart", help="Write a PNG chart of the trend here.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    periods: Annotated[int, typer.Option(
        "--periods", min=1, help="Read the asks of the last N periods, the current one "
        "included.")] = REPORT_PERIODS,
) -> None:
    """Per channel, over the last --periods weeks or months: median and p90 first-response
    time, the share answered within the expectation (models/responses.yaml or
    PULSE_RESPONSES_EXPECTATIONS), unanswered complaints, and the trend of the last period
    against the one before."""
    from pulse.models.responses import report as build
    from pulse.models.responses import response_chart

    if period not in ("week", "month"):
        raise typer.BadParameter(f'expected "week" or "month" (not {period!r})',
                                 param_hint="--period")
    engine = warehouse()
    result = build(engine, period=period, now=parse_time(now), periods=periods)
    since = result["since"].date().isoformat()
    overall, trend = result["overall"], result["trend"]
    if chart is not None and len(result["per_period"]):
        response_chart(result["per_period"], chart)
    if fmt == Format.json:
        print(json.dumps({"period": period, "since": since, "periods": periods,
                          "expectations": result["expectations"],
                          "channels": _records(overall), "per_period": _records(
                              result["per_period"]), "trend": _records(trend)}, indent=2))
        return
    if overall.empty:
        out.print(f"No tickets or customer posts to measure since {since}.")
        return
    by = trend.set_index("channel") if len(trend) else None
    table = Table(title=f"First response per channel since {since} (the last {periods} "
                  f"{period}s; trend: last {period} against the one before)",
                  title_justify="left")
    for col in ("channel", "asks", "answered", "median", "p90", "expected", "within",
                "unanswered complaints", f"last {period}: median", "within"):
        table.add_column(col, justify="left" if col == "channel" else "right")
    for r in overall.itertuples(index=False):
        t = by.loc[r.channel] if by is not None and r.channel in by.index else None
        table.add_row(
            str(r.channel), f"{int(r.asks):,}", f"{int(r.answered):,}", _minutes(r.median_min),
            _minutes(r.p90_min), _minutes(r.expected_min), _share(r.within_share),
            f"{int(r.complaints_unanswered):,}",
            "" if t is None else f"{_minutes(t.median_min)} {_change(t.median_change, 'min')}",
            "" if t is None else f"{_share(t.within_share)} {_change(t.within_change, 'pts')}")
    out.print(table)
    if chart is not None and len(result["per_period"]):
        out.print(f"Chart: {chart}")


def alerts(
    now: Annotated[str | None, typer.Option(
        "--now", help="As of this time, ISO 8601 (default: now).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only posts from this time, ISO 8601 (default: 2 days before).")
    ] = None,
) -> None:
    """Queue one alert to the social team (PULSE_SOCIAL_TEAM_EMAIL) per negative public post
    left without a brand reply past its channel's expectation; `pulse outreach send` sends."""
    from pulse.outreach.response_alerts import queue_unanswered_alerts

    engine = warehouse()
    queued = queue_unanswered_alerts(engine, now=parse_time(now), since=parse_time(since))
    out.print(f"{queued} unanswered-complaint alerts queued.")


def accounts(
    days: Annotated[int, typer.Option("--days", min=1, help="Tickets opened in this many "
                                      "days before --now.")] = 90,
    now: Annotated[str | None, typer.Option(
        "--now", help="As of this time, ISO 8601 (default: now).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Per account: how fast its own tickets were first answered, and how many late (after
    the channel's expectation, or unanswered past it); the most late first."""
    from pulse.models.responses import account_responses

    engine = warehouse()
    table = account_responses(engine, now=parse_time(now), days=days)
    if fmt == Format.json:
        print(json.dumps(_records(table), indent=2))
        return
    if table.empty:
        out.print(f"No tickets opened in the last {days} days.")
        return
    t = Table(title=f"First response to each account's tickets, last {days} days",
              title_justify="left")
    for col in ("account", "tickets", "answered", "median", "p90", "late", "within"):
        t.add_column(col, justify="left" if col == "account" else "right")
    for r in table.itertuples(index=False):
        t.add_row(str(r.account_id), f"{int(r.asks):,}", f"{int(r.answered):,}",
                  _minutes(r.median_min), _minutes(r.p90_min), f"{int(r.late):,}",
                  _share(r.within_share))
    out.print(t)


responses_app.command("report")(report)
responses_app.command("accounts")(accounts)
responses_app.command("alerts")(alerts)


def register(app: typer.Typer) -> None:
    """Add `responses report`, `accounts` and `alerts` to the command line."""
    app.add_typer(responses_app, name="responses")
