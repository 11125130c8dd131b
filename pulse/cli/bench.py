"""`pulse bench`: every benchmark that prints figures (their bodies live in pulse.devkit.bench)."""
from __future__ import annotations

from typing import Annotated

import typer

from pulse.cli.common import Format, out
from pulse.devkit.bench.chatter import bench_chatter
from pulse.devkit.bench.features import bench_features
from pulse.devkit.bench.models import bench_models, bench_score
from pulse.devkit.bench.send import bench_send
from pulse.devkit.bench.survey import bench_survey
from pulse.devkit.bench.text import bench_text

bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)



def bench_ingest(
    rows: Annotated[int, typer.Option(help="Usage rows to generate.", min=1000)] = 200_000,
    postgres_url: Annotated[str | None, typer.Option(
        help="PostgreSQL to measure too (default PULSE_TEST_POSTGRES_URL or local test db); "
        "'none' to skip.")] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """`pulse ingest` against each database's own bulk load of the same usage rows."""
    from pulse.devkit.bench.ingest import run_ingest_bench

    run_ingest_bench(rows=rows, postgres_url=postgres_url, fmt=fmt.value, console=out)


def register(app: typer.Typer) -> None:
    """Add `bench` with all its benchmarks."""
    bench_app.command("ingest")(bench_ingest)
    bench_app.command("features")(bench_features)
    bench_app.command("models")(bench_models)
    bench_app.command("score")(bench_score)
    bench_app.command("send")(bench_send)
    bench_app.command("survey")(bench_survey)
    bench_app.command("text")(bench_text)
    bench_app.command("chatter")(bench_chatter)
    app.add_typer(bench_app, name="bench")
