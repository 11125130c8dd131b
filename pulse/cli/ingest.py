"""`pulse ingest` and `pulse summary`: land files through the contract, count what landed."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Format, err, open_engine, out


def print_results(results: list[Any], fmt: Format) -> None:
    if fmt is Format.json:
        payload = [r.to_dict() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, default=str))
        return
    table = Table(title="Ingest", title_justify="left")
    for col in ("file", "source", "read", "inserted", "updated", "unchanged", "quarantined"):
        table.add_column(col, justify="left" if col in ("file", "source") else "right")
    for r in results:
        table.add_row(Text(Path(r.file).name), r.source, *(f"{getattr(r, c):,}" for c in
                      ("read", "inserted", "updated", "unchanged", "quarantined")))
    out.print(table)
    reasons: dict[str, int] = {}
    for r in results:
        for k, v in r.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    if reasons:
        rt = Table(title="Quarantine reasons", title_justify="left")
        rt.add_column("reason")
        rt.add_column("rows", justify="right")
        for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]):
            rt.add_row(Text(k), f"{v:,}")
        out.print(rt)
    cleared: dict[str, int] = {}
    for r in results:
        for k, v in getattr(r, "cleared", {}).items():
            cleared[k] = cleared.get(k, 0) + v
    if cleared:
        ct = Table(title="Cleared optional values (the rows landed without them)",
                   title_justify="left")
        ct.add_column("reason")
        ct.add_column("values", justify="right")
        for k, v in sorted(cleared.items(), key=lambda kv: -kv[1]):
            ct.add_row(Text(k), f"{v:,}")
        out.print(ct)
    relanded = sum(getattr(r, "relanded", 0) for r in results)
    if relanded:
        out.print(f"{relanded:,} row(s) waiting for their account landed with it.")
    if reasons or cleared:
        out.print("See the rows with `pulse quarantine list`.")
    for r in results:
        for w in r.warnings:
            err.print(Text.assemble(("warning: ", "yellow"), w), soft_wrap=True)


def ingest(
    source: Annotated[str, typer.Argument(
        help="accounts, contacts, usage, usage_daily, usage_daily_users, purchases, tickets, "
        "mentions or incidents "
        "(or 'auto' to tell each file's source from its name)")],
    paths: Annotated[list[Path], typer.Argument(help="CSV or JSON Lines files (.gz too).")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    backfill: Annotated[bool, typer.Option(
        "--backfill", help="History loaded after the fact: its rows count from when they "
        "happened (basis auto). Without it, a source's first landing, or rows that happened a "
        "median of more than PULSE_BACKFILL_LAG_DAYS before they landed, count as a backfill "
        "too.")] = False,
) -> None:
    """Validate files against the data contract and land them; bad rows go to quarantine.

    Each file lands in one transaction: all of its accepted rows and quarantined rows, or
    nothing. Landing the same file twice changes nothing the second time.
    """
    from pulse.listeners.landing import get_source, land_file, source_for_path

    src = None if source == "auto" else get_source(source).name
    engine = open_engine()
    results = []
    show = fmt is Format.table and sys.stderr.isatty()
    for path in paths:
        name = src or source_for_path(path)
        if show:
            from rich.progress import Progress, TaskID

            with Progress(console=err, transient=True) as bar:
                task = bar.add_task(f"{path.name}", total=None)

                def advance(n: int, t: TaskID = task) -> None:
                    bar.advance(t, n)

                results.append(land_file(engine, path, source=name, progress=advance,
                                           backfill=backfill))
        else:
            results.append(land_file(engine, path, source=name, backfill=backfill))
    print_results(results, fmt)




def summary(fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Rows per warehouse table and open quarantine reasons."""
    from pulse.devkit.mainjob import print_summary, warehouse_summary

    data = warehouse_summary(open_engine())
    if fmt is Format.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print_summary(data, out)


def register(app: typer.Typer) -> None:
    """Add `ingest` and `summary`."""
    app.command("ingest")(ingest)
    app.command("summary")(summary)
