"""`pulse bench scheduler`: task lag of a 1,000-task mapped run on the cluster profile.

Starts a cluster of its own (pulse/devkit/cluster.py: scheduler, dag-processor, api-server,
triggerer and Celery workers; a fresh Airflow metadata database on PostgreSQL, dropped
afterwards) whose only DAG is `pulse_bench_mapped` (pulse/devkit/bench/dags/): one task
returns N items and a no-op task is mapped over them. It triggers one run through the REST
API and reads every task instance's times from the metadata database:

- total: from the first mapped task's start to the last one's end (the figure the published
  Airflow 2.0 scheduler benchmark gives: 11.6 s for 1,000 tasks), and from the run's start
  to its end;
- lag per task: from the moment it could start (the end of `items`, which creates the mapped
  tasks) to its start on a worker, as p50 / p95 / max, and the tasks per second.

The reference ran on a cluster of many machines; here every task starts a Python process
on 2 shared cores, so the ratio says what one small machine gives, not what Airflow 3 can.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from pulse.core.settings import PROJECT_ROOT, get_settings

if TYPE_CHECKING:
    from rich.console import Console

BENCH_DAGS = PROJECT_ROOT / "pulse" / "devkit" / "bench" / "dags"
DAG_ID = "pulse_bench_mapped"
#: Airflow 2.0's published scheduler benchmark: 1,000 tasks in 11.6 s (total task time).
REFERENCE_SECONDS = 11.6
REFERENCE_TASKS = 1000


@dataclass
class SchedulerLag:
    tasks: int
    workers: int
    concurrency: int
    parallelism: int
    total_s: float  # first mapped start -> last mapped end
    run_s: float  # run start -> run end
    lag_p50_s: float
    lag_p95_s: float
    lag_max_s: float
    tasks_per_s: float
    reference_s: float

    @property
    def ratio(self) -> float:
        """Measured total against the reference, scaled to the reference's 1,000 tasks."""
        return self.total_s * (REFERENCE_TASKS / self.tasks) / self.reference_s


def run_scheduler_bench(*, tasks: int = 1000, workers: int = 2, concurrency: int = 4,
                        parallelism: int = 32, timeout: float = 1800.0, fmt: str = "table",
                        console: Console) -> SchedulerLag:
    """Start the bench cluster, run the mapped DAG once, print and return the figures."""
    from pulse.devkit.cluster import (
        ApiClient,
        Cluster,
        down,
        drop_database,
        ensure_database,
        up,
    )
    from pulse.sql.db import create_schema, drop_schema, schema_url

    settings = get_settings()
    tag = uuid.uuid4().hex[:8]
    pg = settings.test_postgres_url
    base = pg.rsplit("/", 1)[0].replace("+psycopg:", "+psycopg2:")
    schema = f"pulse_bench_{tag}"
    create_schema(pg, schema).dispose()
    cluster = Cluster.from_settings(
        home=settings.resolved_home() / "bench-cluster", airflow_db_url=f"{base}/pulse_bench_af_{tag}",
        warehouse_url=schema_url(pg, schema), workers=workers, concurrency=concurrency,
        api_port=settings.cluster_api_port + 20, shards=1,
        extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(BENCH_DAGS),
                   "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                   "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"})
    ensure_database(cluster.airflow_db_url)
    try:
        console.print(f"starting a cluster of {workers} worker(s) x {concurrency} slot(s)...")
        up(cluster, wait=180)
        with ApiClient(cluster) as api:
            deadline = time.monotonic() + 120
            while DAG_ID not in api.dag_ids():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{DAG_ID} was not parsed within 120 s")
                time.sleep(1)
            api.unpause(DAG_ID)
            console.print(f"running {tasks:,} mapped tasks...")
            run_id = api.trigger(DAG_ID, conf={"n": tasks})
            deadline = time.monotonic() + timeout
            while True:
                state = next(r["state"] for r in api.runs(DAG_ID) if r["dag_run_id"] == run_id)
                if state in ("success", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the run did not finish within {timeout:.0f} s")
                time.sleep(2)
        result = _measure(cluster.airflow_db_url, run_id, tasks=tasks, workers=workers,
                          concurrency=concurrency, parallelism=parallelism)
        if state != "success":
            raise RuntimeError(f"the bench run ended {state}: see {cluster.logs}/")
    finally:
        down(cluster, grace=10)
        drop_database(cluster.airflow_db_url)
        drop_schema(pg, schema)
    _print(result, fmt, console)
    return result


def _measure(airflow_db_url: str, run_id: str, **kw: Any) -> SchedulerLag:
    from sqlalchemy import create_engine, text

    engine = create_engine(airflow_db_url)
    try:
        with engine.connect() as conn:
            run = conn.execute(text("SELECT start_date, end_date FROM dag_run WHERE dag_id = :d "
                                    "AND run_id = :r"), {"d": DAG_ID, "r": run_id}).one()
            items_end = conn.execute(text(
                "SELECT end_date FROM task_instance WHERE dag_id = :d AND run_id = :r "
                "AND task_id = 'items'"), {"d": DAG_ID, "r": run_id}).scalar_one()
            rows = conn.execute(text(
                "SELECT start_date, end_date FROM task_instance WHERE dag_id = :d AND "
                "run_id = :r AND task_id = 'noop' AND state = 'success'"),
                {"d": DAG_ID, "r": run_id}).all()
    finally:
        engine.dispose()
    starts = np.array([_ts(r.start_date) for r in rows])
    ends = np.array([_ts(r.end_date) for r in rows])
    lag = starts - _ts(items_end)
    total = float(ends.max() - starts.min()) if len(rows) else float("nan")
    return SchedulerLag(
        total_s=round(total, 2), run_s=round(_ts(run.end_date) - _ts(run.start_date), 2),
        lag_p50_s=round(float(np.percentile(lag, 50)), 2),
        lag_p95_s=round(float(np.percentile(lag, 95)), 2),
        lag_max_s=round(float(lag.max()), 2),
        tasks_per_s=round(len(rows) / total, 2) if total > 0 else 0.0,
        reference_s=REFERENCE_SECONDS, **{**kw, "tasks": len(rows)})


def _ts(value: datetime) -> float:
    return value.timestamp()


def _print(r: SchedulerLag, fmt: str, console: Console) -> None:
    if fmt == "json":
        console.print_json(json.dumps({**asdict(r), "ratio_vs_reference": round(r.ratio, 2)}))
        return
    from rich.table import Table

    table = Table("measure", "this machine", "Airflow 2.0 reference", title=(
        f"scheduler lag: {r.tasks:,} mapped no-op tasks, {r.workers} Celery worker(s) x "
        f"{r.concurrency} slot(s), parallelism {r.parallelism}"))
    scaled = r.total_s * REFERENCE_TASKS / r.tasks
    table.add_row("total, first task start to last end", f"{r.total_s:.1f} s",
                  f"{REFERENCE_SECONDS:.1f} s for {REFERENCE_TASKS:,}")
    table.add_row("the same per 1,000 tasks", f"{scaled:.1f} s",
                  f"{REFERENCE_SECONDS:.1f} s")
    table.add_row("run, start to end", f"{r.run_s:.1f} s", "")
    table.add_row("task lag p50 / p95 / max",
                  f"{r.lag_p50_s:.1f} / {r.lag_p95_s:.1f} / {r.lag_max_s:.1f} s", "")
    table.add_row("tasks per second", f"{r.tasks_per_s:.1f}",
                  f"{REFERENCE_TASKS / REFERENCE_SECONDS:.1f}")
    console.print(table)
    console.print(f"ratio to the reference (time per 1,000 tasks): {r.ratio:.1f}x")
