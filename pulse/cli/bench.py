"""`pulse bench`: every benchmark that prints figures (their bodies live in pulse.devkit.bench)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pulse.cli.common import Format, out
from pulse.devkit.bench.chatter import bench_chatter
from pulse.devkit.bench.console import bench_console
from pulse.devkit.bench.features import bench_features
from pulse.devkit.bench.models import bench_models, bench_score
from pulse.devkit.bench.send import bench_send
from pulse.devkit.bench.survey import bench_survey
from pulse.devkit.bench.text import bench_text

bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)



def bench_ingest(
    rows: Annotated[int, typer.Option(help="Usage rows to generate.", min=1000)] = 200_000,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Measure this usage file instead of generated rows (see "
        "`pulse bench usage-file`).", exists=True, dir_okay=False)] = None,
    accounts: Annotated[Path | None, typer.Option(
        help="With --file: the accounts its rows name (default accounts.csv beside it).")] = None,
    postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL to measure too (default PULSE_TEST_POSTGRES_URL or local test db); "
        "'none' to skip.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """`pulse ingest` against each database's own bulk load of the same usage rows.

    With --file: time, rows/s and peak memory of each side (each in a process of its own),
    and the ratio of rows/s.
    """
    if file is not None:
        from pulse.devkit.bench.ingest import run_file_bench

        acc = accounts or file.parent / "accounts.csv"
        if not acc.is_file():
            raise typer.BadParameter(f"no accounts file {acc}: expected --accounts PATH")
        run_file_bench(path=file, accounts=acc, postgres_url=postgres_url, fmt=fmt.value,
                       console=out)
        return
    from pulse.devkit.bench.ingest import run_ingest_bench

    run_ingest_bench(rows=rows, postgres_url=postgres_url, fmt=fmt.value, console=out)


def bench_usage_file(
    out_path: Annotated[Path, typer.Option("--out", help="The usage CSV to write.")],
    rows: Annotated[int, typer.Option(help="Rows to write.", min=1)] = 1_000_000,
    bad_share: Annotated[float, typer.Option(
        help="Share of broken rows (wrong field count, bad timestamp, unknown account, ...).",
        min=0.0, max=1.0)] = 0.005,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Write a usage file shaped like real data (and accounts.csv beside it) for the bench."""
    from pulse.devkit.bench.ingest import write_usage_file

    write_usage_file(out_path, rows, bad_share=bad_share, seed=seed)
    out.print(f"wrote {rows:,} rows to {out_path} ({out_path.stat().st_size / 1e6:.0f} MB) "
              f"and {out_path.parent / 'accounts.csv'}")


def bench_scheduler(
    tasks: Annotated[int, typer.Option(help="Mapped tasks (at most max_map_length, 1,024).",
                                       min=1, max=1024)] = 1000,
    workers: Annotated[int, typer.Option(help="Celery workers.", min=1, max=8)] = 2,
    concurrency: Annotated[int, typer.Option(help="Slots per worker.", min=1, max=64)] = 4,
    parallelism: Annotated[int, typer.Option(help="[core] parallelism.", min=1)] = 32,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Task lag of a 1,000-task mapped run on a cluster of its own (CeleryExecutor, metadata
    on PostgreSQL, Redis), against Airflow 2.0's published 11.6 s for 1,000 tasks."""
    from pulse.devkit.bench.scheduler import run_scheduler_bench

    run_scheduler_bench(tasks=tasks, workers=workers, concurrency=concurrency,
                        parallelism=parallelism, fmt=fmt.value, console=out)


def bench_scale(
    accounts: Annotated[int, typer.Option(help="Accounts in the synthetic warehouse.",
                                          min=10)] = 100_000,
    days: Annotated[int, typer.Option(help="Days of usage (ending yesterday).", min=7)] = 56,
    shards: Annotated[list[int] | None, typer.Option(
        "--shards", help="Shard counts to measure; repeatable (default 1, 2, 4).", min=1)]
    = None,
    workers: Annotated[list[int] | None, typer.Option(
        "--workers", help="Worker processes scoring shards in parallel; repeatable (default "
        "1, 2).", min=1)] = None,
    usage: Annotated[list[str] | None, typer.Option(
        "--usage", help="Where usage features come from: rollups, events (raw events); "
        "repeatable (default both).")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="The warehouse to measure on: a PostgreSQL URL (a schema of its own, dropped "
        "afterwards); default a SQLite file in a temporary folder.")] = None,
    chart: Annotated[Path | None, typer.Option(
        help="Where to draw the PNG chart (default $PULSE_HOME/bench/scale.png); 'none' to "
        "skip.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic warehouse.")] = 1,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Wall time of a full scoring day (features, health, churn per shard; churn drivers,
    flags and publish once, as pulse_health runs it) against shard and worker count, with
    usage read from the daily rollups and from the raw events, on a synthetic warehouse."""
    from pulse.core.errors import InvalidArgumentError
    from pulse.core.settings import get_settings
    from pulse.devkit.bench.scale import USAGE_SOURCES, print_json, print_report, run_scale_bench

    bad = [u for u in usage or [] if u not in USAGE_SOURCES]
    if bad:
        raise InvalidArgumentError(f"invalid value for --usage: expected one of "
                                   f"{', '.join(USAGE_SOURCES)} (not {bad[0]!r})")
    target: Path | None = chart or get_settings().resolved_home() / "bench" / "scale.png"
    if chart is not None and str(chart).lower() == "none":
        target = None
    report = run_scale_bench(accounts=accounts, days=days, shards=shards, workers=workers,
                             usage=usage, database_url=database_url, seed=seed, chart=target,
                             console=out if fmt is Format.table else None)
    if fmt is Format.json:
        print_json(report)
    else:
        print_report(report, out)


def register(app: typer.Typer) -> None:
    """Add `bench` with all its benchmarks."""
    bench_app.command("ingest")(bench_ingest)
    bench_app.command("features")(bench_features)
    bench_app.command("usage-file")(bench_usage_file)
    bench_app.command("models")(bench_models)
    bench_app.command("score")(bench_score)
    bench_app.command("send")(bench_send)
    bench_app.command("survey")(bench_survey)
    bench_app.command("text")(bench_text)
    bench_app.command("chatter")(bench_chatter)
    bench_app.command("console")(bench_console)
    bench_app.command("scheduler")(bench_scheduler)
    bench_app.command("scale")(bench_scale)
    app.add_typer(bench_app, name="bench")
