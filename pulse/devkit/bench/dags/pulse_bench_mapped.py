"""
### pulse_bench_mapped: scheduler lag of one wide mapped task (`pulse bench scheduler`)

`items` returns `n` numbers (param, default 1,000; at most `[core] max_map_length`, 1,024 by
default) and `noop` is mapped over them: every mapped task does nothing, so what the run
measures is Airflow's own cost per task: scheduling, queueing through the broker, starting
the task on a worker and recording its end. Only the benchmark's cluster loads this folder.
"""
from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="pulse_bench_mapped",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_tasks=1024,
    params={"n": Param(1000, type="integer", minimum=1, maximum=1024)},
    tags=["pulse", "bench"],
    doc_md=__doc__,
)
def pulse_bench_mapped() -> None:
    @task
    def items() -> list[int]:
        return list(range(int(get_current_context()["params"]["n"])))

    @task
    def noop(i: int) -> None:
        return None

    noop.expand(i=items())


pulse_bench_mapped()
