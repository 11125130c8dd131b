"""
### pulse_train: retrain the churn model weekly, promote only a better one

Every Monday at 03:00 UTC this DAG builds feature snapshots from history up to the run's
date, trains a churn model (`pulse.models.registry.train_and_register`), evaluates it on the latest
window whose churn horizon is complete, and registers it. It must clear a minimum bar there
(ROC AUC >= `min_roc_auc` and better than ranking by the scorecard's health), and then becomes
the champion only when it beats the current champion on that same window (higher ROC AUC; a
tie goes to the lower Brier score); otherwise it stays a challenger with a note saying why. `pulse model list` shows the
registry. When history is too short for both windows the task fails with a message saying how
much history it needs.

Params: `horizon_days` (default 90), `valid_days` (28), `min_roc_auc` (0.6), `basis` (`auto`,
the default: backfilled rows from when they happened; `occurred`; `known`: rows as they landed).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from pulse import runtime


@dag(
    dag_id="pulse_train",
    schedule="0 3 * * 1",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    params={
        "horizon_days": Param(90, type="integer", minimum=1),
        "valid_days": Param(28, type="integer", minimum=1),
        "min_roc_auc": Param(0.6, type="number", minimum=0, maximum=1),
        "basis": Param("auto", enum=["auto", "occurred", "known"]),
    },
    tags=["pulse", "health", "model"],
    doc_md=__doc__,
)
def pulse_train() -> None:
    @task
    def train() -> dict[str, Any]:
        from pulse.models.registry import train_and_register

        result = train_and_register(runtime.engine(), as_of=runtime.as_of(),
                                    horizon_days=int(runtime.param("horizon_days")),
                                    valid_days=int(runtime.param("valid_days")),
                                    min_roc_auc=float(runtime.param("min_roc_auc")),
                                    basis=str(runtime.param("basis", "auto")))
        print(result)
        return {"version": result.version, "status": result.record.status,
                "promoted": result.promoted, "roc_auc": result.metrics.get("roc_auc"),
                "note": result.record.note}

    train()


pulse_train()
