"""`pulse surveys run|list` and `pulse csat report`: CSAT surveys and their figures."""
from __future__ import annotations

import json
import sys
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from pulse.cli.outreach import ListFormat, _emit, _engine, _records
from pulse.core.times import as_utc

out = Console()

surveys_app = typer.Typer(help="CSAT surveys: queue the due ones, list what was sent or "
                          "skipped and why.", no_args_is_help=True)
csat_app = typer.Typer(help="CSAT figures: response rate, share of 4 and 5, weekly trend.",
                       no_args_is_help=True)


class By(str, Enum):
    account = "account"
    csm = "csm"
    trigger = "trigger"
    channel = "channel"
    week = "week"


def _instant(value: str | None, what: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"expected an ISO date or instant like 2026-07-10T12:00Z "
                                 f"(not {value!r})", param_hint=what) from None
    return as_utc(parsed)


def _bound(value: str | None, what: str) -> date | datetime | None:
    """A date (a whole day) or an instant."""
    if value and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    return _instant(value, what)


@surveys_app.command("run")
def surveys_run(
    now: Annotated[str | None, typer.Option(
        help="Plan as of this instant (ISO; default: now).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Plan and report; record and queue nothing.")] = False,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json.")]
    = ListFormat.table,
) -> None:
    """Queue the CSAT surveys due now (solved tickets, resolved incidents, the periodic
    relationship survey) after the fatigue rules; every skipped survey is recorded with its
    reason. Send them with `pulse outreach send` (or the pulse_surveys DAG)."""
    from pulse.outreach.surveys import queue_due_surveys

    report = queue_due_surveys(_engine(), now=_instant(now, "--now"), dry_run=dry_run)
    if fmt is not ListFormat.table:
        print(json.dumps(report.to_dict(), indent=2))
        return
    head = "Dry run: nothing recorded or queued" if dry_run else "Surveys"
    out.print(Text(head, style="bold"))
    out.print(Text(str(report)))
    if report.skipped:
        out.print("skipped by reason: " + ", ".join(
            f"{why} {n:,}" for why, n in sorted(report.skipped.items())))


LIST_COLUMNS = ["survey_id", "status", "skip_reason", "trigger", "account_id", "contact_id",
                "ticket_id", "incident_id", "due_at", "created_at", "outbox_status", "rating"]


@surveys_app.command("list")
def surveys_list(
    status: Annotated[str | None, typer.Option(help="queued or skipped.")] = None,
    reason: Annotated[str | None, typer.Option(
        help="Only skips for this reason (recontact, opted_out, ...).")] = None,
    trigger: Annotated[str | None, typer.Option(
        help="ticket, incident or relationship.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).", min=0)] = 50,
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List surveys, newest first: queued (with the outbox status and any rating) or skipped
    (with the rule that stopped it)."""
    from pulse.outreach.surveys import SKIP_REASONS, TRIGGERS, list_surveys

    if status and status not in ("queued", "skipped"):
        raise typer.BadParameter(f"expected queued or skipped (not {status!r})",
                                 param_hint="--status")
    if reason and reason not in SKIP_REASONS:
        raise typer.BadParameter(f"expected one of {', '.join(SKIP_REASONS)} (not {reason!r})",
                                 param_hint="--reason")
    if trigger and trigger not in TRIGGERS:
        raise typer.BadParameter(f"expected one of {', '.join(TRIGGERS)} (not {trigger!r})",
                                 param_hint="--trigger")
    rows = _records(list_surveys(_engine(), status=status, reason=reason, trigger=trigger,
                                 limit=limit or None))
    columns = LIST_COLUMNS if fmt is ListFormat.table else (
        list(rows[0]) if rows else LIST_COLUMNS)
    _emit(rows, columns, fmt, "Surveys" + (f" ({status})" if status else ""))


def _pct(value: Any) -> str:
    return "" if value is None else f"{100.0 * float(value):.1f}%"


@csat_app.command("report")
def csat_report_cmd(
    by: Annotated[By, typer.Option(help="Group by account, csm, trigger, channel or week.")]
    = By.account,
    since: Annotated[str | None, typer.Option(help="Surveys sent on or after (ISO).")] = None,
    until: Annotated[str | None, typer.Option(
        help="Surveys sent until (ISO; a date includes the whole day).")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
    chart: Annotated[Path | None, typer.Option(
        help="Where to write the weekly trend chart (PNG; default "
        "$PULSE_HOME/reports/csat-weekly.png).")] = None,
    no_chart: Annotated[bool, typer.Option("--no-chart", help="Do not write the chart.")]
    = False,
) -> None:
    """CSAT (share of 4 and 5 among responses), response rate (responses / surveys sent) and
    mean rating, by group, with the totals; writes the weekly trend chart."""
    from pulse.core.settings import get_settings
    from pulse.models.csat import csat_report, csat_totals, weekly_trend_chart

    lo, hi = _bound(since, "--since"), _bound(until, "--until")
    engine = _engine()
    frame = csat_report(engine, by=by.value, since=lo, until=hi)
    totals = csat_totals(engine, since=lo, until=hi)
    written: Path | None = None
    if not no_chart:
        weekly = frame if by is By.week else csat_report(engine, by="week", since=lo, until=hi)
        if not weekly.empty:
            path = chart or get_settings().resolved_home() / "reports" / "csat-weekly.png"
            written = weekly_trend_chart(weekly, path)
    rows = _records(frame)
    if fmt is ListFormat.json:
        print(json.dumps({"by": by.value, "groups": rows, "totals": totals,
                          "chart": str(written) if written else None}, indent=2, default=str))
        return
    if fmt is ListFormat.csv:
        _emit(rows, list(frame.columns), fmt, "")
        return
    shown = [{**r, "response_rate": _pct(r.get("response_rate")), "csat": _pct(r.get("csat")),
              "mean_rating": "" if r.get("mean_rating") is None else f"{r['mean_rating']:.2f}"}
             for r in rows]
    columns = [c for c in frame.columns if c not in ("happy", "unhappy")]
    _emit(shown, columns, fmt, f"CSAT by {by.value}")
    out.print(f"all: {totals['surveys_sent']:,} surveys sent, {totals['responses']:,} "
              f"responses ({_pct(totals['response_rate']) or '-'}), CSAT "
              f"{_pct(totals['csat']) or '-'}, mean rating "
              + ("-" if totals["mean_rating"] is None else f"{totals['mean_rating']:.2f}"))
    if written:
        out.print(f"weekly trend: {written}")
    elif not no_chart:
        print("no survey sent in the period: no chart written", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add `surveys` and `csat` to the `pulse` app."""
    app.add_typer(surveys_app, name="surveys")
    app.add_typer(csat_app, name="csat")
