"""The `pulse` command line."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli_common import Format, ListFormat
from pulse.errors import PulseError

app = typer.Typer(
    name="pulse",
    help="Pulse: customer health, proactive outreach and feedback routing.\n\n"
    "Settings come from the environment (or .env): PULSE_DATABASE_URL (default "
    "sqlite:///var/pulse.db) and PULSE_HOME (default ./var).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Create or upgrade the warehouse schema.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Inspect and re-land rows that failed the contract.",
                             no_args_is_help=True)
demo_app = typer.Typer(help="Generate and run the demo world.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(demo_app, name="demo")
app.add_typer(bench_app, name="bench")

out = Console()
err = Console(stderr=True)


def _engine():  # type: ignore[no-untyped-def]
    from sql.db import make_engine

    return make_engine()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# --------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create the schema, or upgrade it to the latest migration (SQLite or PostgreSQL)."""
    from sql.db import upgrade

    engine = _engine()
    rev = upgrade(engine, revision)
    out.print(f"warehouse {engine.url.render_as_string(hide_password=True)} at revision {rev}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the warehouse."""
    from sql.db import current_revision

    out.print(current_revision(_engine()) or "(no schema: run `pulse db upgrade`)")


# --------------------------------------------------------------------------- ingest


def _print_results(results: list[Any], fmt: Format) -> None:
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
        out.print("See the rows with `pulse quarantine list`.")
    for r in results:
        for w in r.warnings:
            err.print(Text.assemble(("warning: ", "yellow"), w), soft_wrap=True)


@app.command("ingest")
def ingest(
    source: Annotated[str, typer.Argument(
        help="accounts, contacts, usage, purchases, tickets, mentions or incidents "
        "(or 'auto' to tell each file's source from its name)")],
    paths: Annotated[list[Path], typer.Argument(help="CSV or JSON Lines files (.gz too).")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Validate files against the data contract and land them; bad rows go to quarantine.

    Each file lands in one transaction: all of its accepted rows and quarantined rows, or
    nothing. Landing the same file twice changes nothing the second time.
    """
    from listeners.landing import get_source, land_file, source_for_path

    src = None if source == "auto" else get_source(source).name
    engine = _engine()
    results = []
    show = fmt is Format.table and sys.stderr.isatty()
    for path in paths:
        name = src or source_for_path(path)
        if show:
            from rich.progress import Progress

            with Progress(console=err, transient=True) as bar:
                task = bar.add_task(f"{path.name}", total=None)
                results.append(land_file(engine, path, source=name,
                                         progress=lambda n, t=task: bar.advance(t, n)))
        else:
            results.append(land_file(engine, path, source=name))
    _print_results(results, fmt)


# --------------------------------------------------------------------------- quarantine


@quarantine_app.command("list")
def quarantine_list(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    code: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    status: Annotated[str, typer.Option(help="open, relanded or all.")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List quarantined rows, newest first, with a count per reason."""
    from listeners.quarantine import list_rows, summarise

    engine = _engine()
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
    for col in ("id", "source", "file", "row", "field", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(Text(str(v)) for v in (
            r["quarantine_id"], r["source"], r["file"], r["row_number"], r["field"] or "",
            r["reason"])))
    out.print(table)
    summary = summarise(engine, status=status)
    out.print(f"{summary['total']:,} {status} row(s) in quarantine"
              + (f"; showing {len(rows)}" if summary["total"] > len(rows) else ""))


@quarantine_app.command("show")
def quarantine_show(quarantine_id: Annotated[int, typer.Argument(help="Quarantine id.")]) -> None:
    """Show one quarantined row verbatim, with where it came from and why it was stopped."""
    from listeners.quarantine import get_row

    row = get_row(_engine(), quarantine_id)
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
    from listeners.landing import retry_quarantine

    result = retry_quarantine(_engine(), source=source, code=code, ids=ids)
    _print_results([result], fmt)


# --------------------------------------------------------------------------- demo


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

    from pulse.demo import generate

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
    from pulse.mainjob import run_demo

    run_demo(accounts=accounts, days=days, seed=seed, fresh=fresh, console=out)


@app.command("summary")
def summary(fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Rows per warehouse table and open quarantine reasons."""
    from pulse.mainjob import print_summary, warehouse_summary

    data = warehouse_summary(_engine())
    if fmt is Format.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print_summary(data, out)


# --------------------------------------------------------------------------- bench


@bench_app.command("ingest")
def bench_ingest(
    rows: Annotated[int, typer.Option(help="Usage rows to generate.", min=1000)] = 200_000,
    postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL to measure too (default PULSE_TEST_POSTGRES_URL or local test db); "
        "'none' to skip.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """`pulse ingest` against each database's own bulk load of the same usage rows."""
    from pulse.bench import run_ingest_bench

    run_ingest_bench(rows=rows, postgres_url=postgres_url, fmt=fmt.value, console=out)


from pulse.cli_health import register as _register_health  # noqa: E402

_register_health(app)

from pulse.cli_model import register as _register_model  # noqa: E402

_register_model(app)

from pulse.cli_outage import register as _register_outage  # noqa: E402

_register_outage(app)

from pulse.cli_outreach import register as _register_outreach  # noqa: E402

_register_outreach(app)

from pulse.bench_send import register as _register_bench_send  # noqa: E402

_register_bench_send(app)

from pulse.cli_surveys import register as _register_surveys  # noqa: E402

_register_surveys(app)

from pulse.bench_survey import register as _register_bench_survey  # noqa: E402

_register_bench_survey(app)

from pulse.cli_social import register as _register_social  # noqa: E402

_register_social(app)

from pulse.cli_feedback import register as _register_feedback  # noqa: E402

_register_feedback(app)

from pulse.cli_text import register as _register_text  # noqa: E402

_register_text(app)

from pulse.cli_chatter import register as _register_chatter  # noqa: E402

_register_chatter(app)

from pulse.bench_chatter import register as _register_bench_chatter  # noqa: E402

_register_bench_chatter(app)


def main() -> None:
    try:
        app()
    except PulseError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the terminal width
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
