"""`pulse demo`: generate the demo world and run the main job on it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pulse.cli.common import out

demo_app = typer.Typer(help="Generate and run the demo world.", no_args_is_help=True)



@demo_app.command("generate")
def demo_generate(
    accounts: Annotated[int, typer.Option(help="Number of accounts.", min=1)] = 2000,
    days: Annotated[int, typer.Option(help="Days of history.", min=7)] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path(
        "var/demo"),
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default today).")]
    = None,
    live_incident: Annotated[bool, typer.Option(
        "--live-incident/--no-live-incident",
        help="End the window with an open major incident (started 50 minutes earlier).")]
    = False,
) -> None:
    """Write all seven sources of a believable B2B SaaS company, plus the hidden truth."""
    from datetime import date

    from pulse.devkit.demo import generate

    summary = generate(out_dir, accounts=accounts, days=days, seed=seed,
                       end=date.fromisoformat(end) if end else None,
                       live_incident=live_incident)
    table = Table(title=f"Demo world in {summary.out_dir}", title_justify="left")
    table.add_column("source")
    table.add_column("file")
    table.add_column("rows", justify="right")
    table.add_column("malformed", justify="right")
    for name, path in summary.files.items():
        table.add_row(name, path.name, f"{summary.rows[name]:,}",
                      f"{summary.malformed.get(name, 0):,}")
    out.print(table)
    out.print(f"hidden truth (never read by the engine): {summary.truth_path}")


@demo_app.command("run")
def demo_run(
    accounts: Annotated[int, typer.Option(help="Number of accounts.", min=1)] = 2000,
    days: Annotated[int, typer.Option(help="Days of history.", min=7)] = 180,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    fresh: Annotated[bool, typer.Option(help="Start from an empty warehouse.")] = True,
) -> None:
    """The main job on the embedded default: generate a world, migrate, run the DAGs, report."""
    from pulse.devkit.mainjob import run_demo

    run_demo(accounts=accounts, days=days, seed=seed, fresh=fresh, console=out)


def register(app: typer.Typer) -> None:
    """Add `demo`."""
    app.add_typer(demo_app, name="demo")
