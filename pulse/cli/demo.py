"""`pulse demo`: generate the demo world and run the main job on it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pulse.cli.common import out, parse_day

demo_app = typer.Typer(help="Generate and run the demo world.", no_args_is_help=True)


@demo_app.command("variants")
def demo_variants() -> None:
    """List the structural variants of the demo world (`pulse demo generate --variant NAME`)."""
    from pulse.devkit.demo.variants import VARIANTS

    table = Table(title="Demo world variants", title_justify="left")
    table.add_column("variant")
    table.add_column("engine")
    table.add_column("months", justify="right")
    table.add_column("what makes it different")
    for v in VARIANTS.values():
        table.add_row(v.name, v.engine, str(v.months), v.summary)
    out.print(table)


@demo_app.command("generate")
def demo_generate(
    accounts: Annotated[int | None, typer.Option(
        help="Number of accounts (default 2,000; a variant's own, 1,000, with --variant).",
        min=1)] = None,
    days: Annotated[int | None, typer.Option(
        help="Days of history (default 180; not with --variant, see --months).", min=7)]
    = None,
    variant: Annotated[str | None, typer.Option(
        help="A structural variant (`pulse demo variants`): a world of another shape, with "
        "churn throughout its history.")] = None,
    months: Annotated[int | None, typer.Option(
        help="Months of history of a variant (default: the variant's own).", min=2)] = None,
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
    from pulse.core.errors import InvalidArgumentError
    from pulse.devkit.demo import generate
    from pulse.devkit.demo.variants import generate_variant

    last = parse_day(end) if end else None
    if variant is None:
        if months is not None:
            raise InvalidArgumentError("--months goes with --variant; use --days for the "
                                       "default world")
        summary = generate(out_dir, accounts=accounts or 2000, days=days or 180, seed=seed,
                           end=last, live_incident=live_incident)
        title = f"Demo world in {summary.out_dir}"
    else:
        if days is not None:
            raise InvalidArgumentError(f"--days does not go with --variant {variant}: use "
                                       "--months")
        if live_incident:
            raise InvalidArgumentError("--live-incident is for the default world only")
        summary = generate_variant(out_dir, variant, accounts=accounts, months=months,
                                   seed=seed, end=last)
        title = f"Demo world variant {variant!r} in {summary.out_dir}"
    table = Table(title=title, title_justify="left")
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
    variant: Annotated[str, typer.Option(
        help="The world to run on: a structural variant (`pulse demo variants`; the default, "
        "'reference', is shaped like the outside world, with churn throughout its history, so "
        "the churn model and the bands learn from it), or 'none' for the default world of "
        "`pulse demo generate` (its cancellations all fall in its last 60 days: too few to "
        "learn from).")] = "reference",
    accounts: Annotated[int | None, typer.Option(
        help="Number of accounts (default: the variant's own, 1,000; 2,000 with --variant "
        "none).", min=1)] = None,
    days: Annotated[int | None, typer.Option(
        help="Days of history (default: the variant's own, 274 for 'reference'; 180 with "
        "--variant none).", min=7)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    fresh: Annotated[bool, typer.Option(help="Start from an empty warehouse.")] = True,
    history_days: Annotated[int, typer.Option(
        help="Score the backfilled history daily for this many days before today (at most "
        "--days - 1; 0: today only).", min=0)] = 90,
) -> None:
    """The main job on the embedded default: generate a world, migrate, run the DAGs, train
    the churn model and fit the bands, score the history, add the console's demo user,
    report."""
    from pulse.devkit.mainjob import run_demo

    run_demo(accounts=accounts, days=days, seed=seed, fresh=fresh, console=out,
             history_days=history_days, variant=None if variant == "none" else variant)


@demo_app.command("screenshots")
def demo_screenshots(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the PNG files.")] = Path(
        "docs/img"),
    accounts: Annotated[int, typer.Option(
        help="Accounts in the demo world (the reference variant over 9 months, with a churn "
        "model trained and the bands fitted on it).", min=10)] = 300,
    trend_days: Annotated[int, typer.Option(
        help="Days before the last one scored too (every --every days), for the trend lines.",
        min=0)] = 30,
    every: Annotated[int, typer.Option(help="Days between the scored dates.", min=1)] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    end: Annotated[str | None, typer.Option(
        help="Last day of the world, YYYY-MM-DD (default yesterday).")] = None,
) -> None:
    """Save screenshots of the console (sign-in, risk list, an account, tasks) taken in
    headless Chromium (/usr/bin/chromium) from a small demo world served by `pulse serve`."""
    from pulse.devkit.screenshots import take_screenshots

    shots = take_screenshots(out_dir, accounts=accounts, trend_days=trend_days, every=every,
                             seed=seed, end=parse_day(end) if end else None)
    for name, path in shots.files.items():
        out.print(f"{name}: {path}", soft_wrap=True)
    out.print(f"(signed in as {shots.csm}, a CSM of the demo world)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `demo`."""
    app.add_typer(demo_app, name="demo")
