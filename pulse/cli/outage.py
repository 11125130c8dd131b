"""`pulse outage impact | import | refresh`: which accounts an incident hit, Statuspage imports."""
from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Format, parse_time, warehouse

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine

out = Console()
err = Console(stderr=True)

outage_app = typer.Typer(
    help="Outage impact: the accounts each incident hit or exposed; Statuspage imports.",
    no_args_is_help=True)


class ImpactFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


CSV_COLUMNS = ("incident_id", "account_id", "account_name", "status", "failed_requests",
               "total_requests", "failed_events", "total_events", "affected_users",
               "components", "regions", "first_affected_at", "last_affected_at",
               "window_start", "window_end", "computed_at")


def _engine() -> Engine:
    return cast("Engine", warehouse())  # refuses a warehouse behind the shipped schema


def _now(value: str | None) -> datetime:
    return parse_time(value) or datetime.now(UTC)


def _iso(value: Any) -> str | None:
    import pandas as pd

    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()


def _when(value: Any) -> str:
    import pandas as pd

    if value is None or pd.isna(value):
        return ""
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _num(x: Any) -> int | float:
    f = float(x)
    return int(f) if f == int(f) else round(f, 4)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for rec in frame.to_dict("records"):
        row: dict[str, Any] = {}
        for col in CSV_COLUMNS:
            v = rec.get(col)
            if col.endswith("_at") or col.startswith("window_"):
                row[col] = _iso(v)
            elif col in ("failed_requests", "total_requests", "failed_events", "total_events",
                         "affected_users"):
                row[col] = _num(v)
            elif col in ("components", "regions"):
                row[col] = list(v or [])
            else:
                row[col] = v
        rows.append(row)
    return rows


def impact(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    fmt: Annotated[ImpactFormat, typer.Option("--format", help="Output format.")]
    = ImpactFormat.table,
    recompute: Annotated[bool, typer.Option(
        "--recompute", help="Compute the impact again first (it is computed anyway when the "
        "incident is open, changed or was never computed).")] = False,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only accounts with this status: hit or exposed.")] = None,
    now: Annotated[str | None, typer.Option(
        "--now", help="End of an open incident's window, ISO 8601 (default: now).")] = None,
) -> None:
    """The accounts an incident hit or exposed, with their failed requests and users, and
    the public complaints made while it was open.

    hit: errors on an affected component (in an affected region) inside the incident's
    window; exposed: used it there without errors. See docs/outage.md. Complaints: negative
    posts naming one of its components while it was open (docs/chatter.md).
    """
    from pulse.models.chatter import incident_chatter
    from pulse.models.outage import (
        EXPOSED,
        HIT,
        compute_impact,
        incident_info,
        load_impact,
        stale_incidents,
    )

    if status is not None and status not in (HIT, EXPOSED):
        raise typer.BadParameter(f"expected hit or exposed (not {status!r})",
                                 param_hint="--status")
    engine = _engine()
    info = incident_info(engine, incident_id)  # an unknown incident stops here
    if recompute or incident_id in stale_incidents(engine):
        compute_impact(engine, incident_id, now=_now(now))
    frame = load_impact(engine, incident_id)
    shown = frame if status is None else frame[frame["status"] == status]
    if fmt is ImpactFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in _records(shown):
            writer.writerow([
                "|".join(v) if isinstance(v, list) else ("" if v is None else v)
                for v in row.values()])
        return
    hit = frame[frame["status"] == HIT]
    summary = {
        "hit_accounts": len(hit), "exposed_accounts": int((frame["status"] == EXPOSED).sum()),
        "failed_requests": _num(hit["failed_requests"].sum()) if len(hit) else 0,
        "total_requests": _num(hit["total_requests"].sum()) if len(hit) else 0,
        "affected_users": int(hit["affected_users"].sum()) if len(hit) else 0,
        "window_start": _iso(frame["window_start"].min()) if len(frame) else None,
        "window_end": _iso(frame["window_end"].max()) if len(frame) else None,
        "computed_at": _iso(frame["computed_at"].max()) if len(frame) else None,
    }
    complaints = incident_chatter(engine, incident_id, now=_now(now))
    if fmt is ImpactFormat.json:
        doc = {"incident": {k: _iso(v) if k.endswith("_at") else v for k, v in info.items()},
               "summary": summary, "accounts": _records(shown),
               "complaints": _complaint_records(complaints)}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _impact_table(info, summary, shown)
    _complaints_table(complaints)


def _complaint_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The public complaints attached to an incident, as JSON-ready rows."""
    return [{"mention_id": str(r["mention_id"]), "created_at": _iso(r["created_at"]),
             "component": r["component"], "author_handle": r["author_handle"],
             "text": r["text"], "account_id": _text_or_none(r["account_id"]),
             "account_name": _text_or_none(r["account_name"])}
            for r in frame.to_dict("records")]


def _text_or_none(value: Any) -> str | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else str(value)


def _complaints_table(frame: pd.DataFrame) -> None:
    if frame.empty:
        out.print("No public complaints attached to this incident.")
        return
    table = Table(title=f"{len(frame):,} public complaints while it was open "
                  f"({frame['account_id'].notna().sum():,} from known accounts)",
                  title_justify="left")
    for col in ("posted (UTC)", "component", "author", "account", "text"):
        table.add_column(col)
    for r in frame.to_dict("records"):
        account = _text_or_none(r["account_name"]) or _text_or_none(r["account_id"]) or ""
        table.add_row(_when(r["created_at"]), Text(str(r["component"])),
                      Text(f"@{r['author_handle']}" if r["author_handle"] else ""),
                      Text(account), Text(str(r["text"])))
    out.print(table)


def _impact_table(info: dict[str, Any], summary: dict[str, Any], frame: pd.DataFrame) -> None:
    where = ", ".join(info["components"]) or "no components"
    regions = ", ".join(info["regions"]) or "all regions"
    ended = (f"resolved {_when(info['resolved_at'])}" if info["resolved_at"] is not None
             else info["status"])
    out.print(Text.assemble((f"{info['incident_id']} {info['title']}", "bold"),
                            f" ({info['impact'] or 'impact not given'}; started "
                            f"{_when(info['started_at'])} UTC, {ended}); {where} in {regions}"),
              soft_wrap=True)
    out.print(Text.assemble(
        ("hit ", "red"), f"{summary['hit_accounts']:,}  ", ("exposed ", "yellow"),
        f"{summary['exposed_accounts']:,}  ",
        f"{summary['failed_requests']:,} of {summary['total_requests']:,} requests failed for "
        f"{summary['affected_users']:,} users" if summary["hit_accounts"] else
        "no account had errors"))
    if frame.empty:
        out.print("No account used the affected components in the window.")
        return
    table = Table(title_justify="left")
    for col, right in (("account", False), ("name", False), ("status", False),
                       ("failed / total requests", True), ("events", True), ("users", True),
                       ("components", False), ("regions", False), ("first", False),
                       ("last", False)):
        table.add_column(col, justify="right" if right else "left")
    for rec in frame.to_dict("records"):
        table.add_row(
            Text(str(rec["account_id"])), Text(str(rec.get("account_name") or "")),
            Text(rec["status"], style="red" if rec["status"] == "hit" else "yellow"),
            f"{_num(rec['failed_requests']):,} / {_num(rec['total_requests']):,}",
            f"{int(rec['failed_events']):,} / {int(rec['total_events']):,}",
            f"{int(rec['affected_users']):,}", Text(", ".join(rec["components"] or [])),
            Text(", ".join(rec["regions"] or [])), _when(rec["first_affected_at"]),
            _when(rec["last_affected_at"]))
    out.print(table)
    out.print(f"Window {_when(summary['window_start'])} to {_when(summary['window_end'])} UTC; "
              f"computed {_when(summary['computed_at'])} UTC.")


def import_(
    source: Annotated[str, typer.Argument(
        metavar="FILE_OR_URL", help="A Statuspage incidents.json file or http(s) URL.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    refresh: Annotated[bool, typer.Option(
        "--refresh/--no-refresh", help="Recompute the impact of changed incidents after.")]
    = True,
) -> None:
    """Import a Statuspage incidents.json document from a file or an http(s) URL.

    Its incidents land through the data contract (bad ones are quarantined with the reason)
    and their updates are stored; importing the same document again changes nothing.
    """
    from pulse.listeners.statuspage import import_statuspage
    from pulse.models.outage import refresh_impacts

    engine = _engine()
    result = import_statuspage(engine, source)
    summaries = refresh_impacts(engine) if refresh else []
    if fmt is Format.json:
        print(json.dumps({**result.to_dict(), "impacts": [s.to_dict() for s in summaries]},
                         indent=2, ensure_ascii=False))
        return
    out.print(Text(str(result)), soft_wrap=True)
    land = result.landing
    if land is not None and land.reasons:
        for reason, n in land.reasons.items():
            out.print(Text.assemble(("quarantined ", "yellow"), f"{n:,}: {reason}"))
    if summaries:
        _summaries_table(summaries)


def refresh(
    now: Annotated[str | None, typer.Option(
        "--now", help="End of open incidents' windows, ISO 8601 (default: now).")] = None,
    all_: Annotated[bool, typer.Option(
        "--all", help="Recompute every incident, not only those that may have changed.")]
    = False,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Recompute the impact of every incident that is open, changed, or never computed."""
    from sqlalchemy import select

    from pulse.models.outage import refresh_impacts
    from pulse.sql.schema import Incident

    engine = _engine()
    ids = None
    if all_:
        with engine.connect() as conn:
            ids = list(conn.execute(select(Incident.incident_id)
                                    .order_by(Incident.started_at)).scalars())
    summaries = refresh_impacts(engine, now=_now(now), incident_ids=ids)
    if fmt is Format.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2, ensure_ascii=False))
        return
    if not summaries:
        out.print("Every incident's impact is up to date.")
        return
    _summaries_table(summaries)


def _summaries_table(summaries: list[Any]) -> None:
    table = Table(title=f"Impact of {len(summaries):,} incidents", title_justify="left")
    for col, right in (("incident", False), ("title", False), ("status", False),
                       ("hit", True), ("exposed", True), ("failed / total requests", True),
                       ("users", True)):
        table.add_column(col, justify="right" if right else "left")
    for s in summaries:
        table.add_row(Text(s.incident_id), Text(s.title), s.status + (" (open)" if s.open
                                                                       else ""),
                      f"{s.hit_accounts:,}", f"{s.exposed_accounts:,}",
                      f"{_num(s.failed_requests):,} / {_num(s.total_requests):,}",
                      f"{s.affected_users:,}")
    out.print(table)


outage_app.command("impact")(impact)
outage_app.command("import")(import_)
outage_app.command("refresh")(refresh)


def register(app: typer.Typer) -> None:
    """Add `outage impact`, `outage import` and `outage refresh` to the command line."""
    app.add_typer(outage_app, name="outage")
