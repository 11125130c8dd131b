"""`pulse quarantine`: inspect and re-land rows that failed the contract."""
from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Format, ListFormat, open_engine, out
from pulse.cli.ingest import print_results

quarantine_app = typer.Typer(help="Inspect and re-land rows that failed the contract.",
                             no_args_is_help=True)



@quarantine_app.command("list")
def quarantine_list(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    code: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    status: Annotated[str, typer.Option(help="open, relanded or all.")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List quarantined rows, newest first, with a count per reason."""
    from pulse.listeners.quarantine import list_rows, summarise

    engine = open_engine()
    rows = list_rows(engine, source=source, code=code, status=status, limit=limit)
    if fmt is ListFormat.json:
        print(json.dumps({"rows": rows, "summary": summarise(engine, status=status)},
                         indent=2, default=str))
        return
    if fmt is ListFormat.csv:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["quarantine_id"])
        w.writeheader()
        w.writerows(rows)
        return
    table = Table(title=f"Quarantine ({status})", title_justify="left")
    for col in ("id", "kind", "source", "file", "row", "key", "field", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        kind = "row stopped" if r["kind"] == "row" else "field cleared"
        table.add_row(*(Text(str(v)) for v in (
            r["quarantine_id"], kind, r["source"], r["file"], r["row_number"],
            r["row_key"] or "", r["field"] or "", r["reason"])))
    out.print(table)
    summary = summarise(engine, status=status)
    out.print(f"{summary['rows']:,} {status} row(s) stopped, {summary['fields_cleared']:,} "
              f"field(s) cleared from rows that landed"
              + (f"; showing {len(rows)}" if summary["total"] > len(rows) else ""))


@quarantine_app.command("show")
def quarantine_show(quarantine_id: Annotated[int, typer.Argument(help="Quarantine id.")]) -> None:
    """Show one quarantined row verbatim, with where it came from and why it was stopped."""
    from pulse.listeners.quarantine import get_row

    row = get_row(open_engine(), quarantine_id)
    for k, v in row.items():
        out.print(Text.assemble((f"{k:>12}", "bold"), ": ", str(v)), soft_wrap=True)


@quarantine_app.command("retry")
def quarantine_retry(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    code: Annotated[str | None, typer.Option(
        help="Only rows stopped for this reason code, e.g. unknown_account.")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these ids.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Validate open quarantined rows again and land the ones that now pass."""
    from pulse.listeners.landing import retry_quarantine

    result = retry_quarantine(open_engine(), source=source, code=code, ids=ids)
    print_results([result], fmt)


def register(app: typer.Typer) -> None:
    """Add `quarantine`."""
    app.add_typer(quarantine_app, name="quarantine")
