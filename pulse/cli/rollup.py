"""`pulse rollup`: the daily usage rollups (issue 16)."""
from __future__ import annotations

import json
from typing import Annotated

import typer

from pulse.cli.common import err, out, warehouse
from pulse.core.formats import Format

rollup_app = typer.Typer(help="Daily usage rollups: what the usage features read.",
                         no_args_is_help=True)


@rollup_app.command("rebuild")
def rollup_rebuild(
    batch: Annotated[int, typer.Option(
        "--batch", min=1, help="Accounts rebuilt per transaction.")] = 5_000,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Recompute the daily rollups from every usage event, set-based, a batch of accounts at
    a time, with progress. Landings keep the rollups up to date; this is for events loaded
    around the landing (a bulk load, a change by hand) and the first build."""
    from pulse.sql.rollups import RebuildResult, rebuild

    def progress(done: RebuildResult, total: int) -> None:
        err.print(f"{done.accounts:,}/{total:,} accounts: {done.events:,} events read, "
                  f"{done.daily_rows:,} daily rows, {done.user_rows:,} user rows "
                  f"({done.seconds:.1f} s)")

    result = rebuild(warehouse(), batch_accounts=batch, progress=progress)
    if fmt is Format.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    out.print(f"rebuilt the daily usage rollups of {result.accounts:,} accounts from "
              f"{result.events:,} events: {result.daily_rows:,} daily rows, "
              f"{result.user_rows:,} user rows in {result.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    """Add `rollup`."""
    app.add_typer(rollup_app, name="rollup")
