"""
### pulse_train: retrain the churn model weekly, promote only a better one

Every Monday at 03:00 UTC this DAG builds feature snapshots across the history up to the run's
date, chooses and trains a churn model (`pulse.models.registry.train_and_register`), evaluates
it on the latest window whose churn horizon is complete beside two plain baselines, refits it
on every labelled snapshot, and registers it. It must clear a minimum bar there
(ROC AUC >= `min_roc_auc` and better than ranking by the scorecard's health), and then becomes
the champion only when it beats the current champion on that same window (higher ROC AUC; a
tie goes to the lower Brier score); otherwise it stays a challenger with a note saying why. `pulse model list` shows the
registry. When history is too short for the horizon, the longest horizon that fits is used
and the model's note says so.

Then it fits the scorecard's bands (and weights) to the same history's outcomes
(`pulse.models.calibration.calibrate_and_apply`, as `pulse scorecard calibrate --fit-weights
--apply`): the proposal and its chart go to `$PULSE_HOME/calibration/`, and it becomes the
active scorecard unless `PULSE_SCORECARD` names the team's own file or the history is too
short (then the defaults stay, and the task's log says why).

Params: `horizon_days` (default 90), `valid_days` (28), `min_roc_auc` (0.6), `basis` (`auto`,
the default: backfilled rows from when they happened; `occurred`; `known`: rows as they landed),
`classifier` (`auto`, the default, ranks every candidate; `logistic` or `hgb` ranks
only that family's candidates, for a quicker weekly run on a large book).
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
        "classifier": Param("auto", enum=["auto", "logistic", "hgb"]),
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
                                    basis=str(runtime.param("basis", "auto")),
                                    classifier=str(runtime.param("classifier", "auto")))
        print(result)
        return {"version": result.version, "status": result.record.status,
                "promoted": result.promoted, "roc_auc": result.metrics.get("roc_auc"),
                "note": result.record.note}

    @task
    def calibrate(trained: dict[str, Any]) -> dict[str, Any]:
        from pulse.models.calibration import calibrate_and_apply
        from pulse.models.scorecard import describe_bands

        result, proposal, applied = calibrate_and_apply(
            runtime.engine(), as_of=runtime.as_of(),
            horizon_days=int(runtime.param("horizon_days")),
            basis=str(runtime.param("basis", "auto")))
        print(result.fallback
              or f"bands {describe_bands(result.green, result.watch, result.amber)}")
        return {"fitted": result.fitted, "applied": str(applied) if applied else None,
                "proposal": str(proposal), "bands": result.to_dict()["bands"],
                "model_version": trained["version"]}

    calibrate(train())


pulse_train()
