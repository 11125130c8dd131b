"""`pulse cluster`: the production profile (Airflow on CeleryExecutor) on this machine."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pulse.cli.common import out

if TYPE_CHECKING:
    from pulse.devkit.cluster import Cluster

cluster_app = typer.Typer(
    help="Start, stop and check Airflow on CeleryExecutor on this machine (docs/cluster.md).",
    no_args_is_help=True)


def _cluster(workers: int | None = None) -> Cluster:
    from pulse.devkit.cluster import Cluster

    return Cluster.from_settings(workers=workers) if workers else Cluster.from_settings()


@cluster_app.command("up")
def cluster_up(
    workers: Annotated[int | None, typer.Option(
        help="Celery workers (default PULSE_CLUSTER_WORKERS, 2).", min=1, max=16)] = None,
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for every component to be healthy (0: do not wait).",
        min=0)] = 180.0,
) -> None:
    """Start the scheduler, dag-processor, api-server, triggerer and the Celery workers."""
    from pulse.devkit.cluster import up

    cluster = _cluster(workers)
    up(cluster, wait=wait, on_step=lambda s: out.print(s))
    out.print(f"console and REST API: {cluster.api_url} (user admin, password in "
              f"{cluster.secrets_dir}/console-passwords.json); logs in {cluster.logs}/")


@cluster_app.command("down")
def cluster_down(
    grace: Annotated[float, typer.Option(
        help="Seconds each process has to stop after SIGTERM before SIGKILL.", min=0)] = 20.0,
) -> None:
    """Stop every process of the cluster by its recorded pid."""
    from pulse.devkit.cluster import down

    cluster = _cluster()
    result = down(cluster, grace=grace)
    for name, how in result.items():
        out.print(f"{name}: {how}")
    if not result:
        out.print("nothing recorded as running")


@cluster_app.command("status")
def cluster_status() -> None:
    """Each process of the cluster, its pid and its health; exits 1 unless all are healthy."""
    from rich.table import Table

    from pulse.devkit.cluster import status

    cluster = _cluster()
    states = status(cluster)
    table = Table("process", "pid", "running", "health", "detail")
    for s in states:
        table.add_row(s.name, str(s.pid or "-"), "yes" if s.running else "no", s.health,
                      s.detail)
    out.print(table)
    if any(s.health != "healthy" for s in states):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `cluster`."""
    app.add_typer(cluster_app, name="cluster")
