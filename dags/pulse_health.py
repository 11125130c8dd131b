"""
### pulse_health: the morning risk list, for the run's date

Runs daily (23:55 UTC, scoring the day that is ending) and whenever new rows land
(`pulse_ingest` emits one asset per source), and always for one date: the run's logical
date, or its run-after time when it has none. Backfilling a past date gives that date's
answer, because every step reads only rows known by then.

1. **scorecard**: refreshes the impact of open or changed incidents
   (`pulse.models.outage.refresh_impacts`) and lets the sentiment model read the new tickets
   and mentions of the last 90 days (`text_insights`, for the support-tone features; the word
   list counts when it cannot), then point-in-time features and the explainable scorecard
   health (`pulse.models.health.score_date`).
2. **churn**: the champion churn model's risk and its top drivers for every account
   (`pulse.models.registry.score_churn`); without a champion it records nothing and says so.
3. **flags**: silent dissatisfaction, payment risk, renewal soon at risk, champion gone,
   outage affected (`pulse.models.flags.compute_flags`).
4. **playbooks**: the rules of `models/playbooks.yaml` create their tasks, once per account per
   episode (`pulse.models.playbooks.run_playbooks`); beside the risk list, after the flags.
5. **risk_list**: the ranked list written to `<PULSE_HOME>/reports/risk-list-<date>.json`
   (the documented JSON form) and emitted as the `x-pulse://warehouse/health` asset.

Param `basis`: `auto` (default; rows landed in a backfill count from when they happened, other
rows from when they landed: sql/features.py), `known` (rows landed by the date) or `occurred`
(rows that happened by the date). A date with nothing to score fails the run with the reason.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    task,
)

from pulse import runtime

SOURCES = ("accounts", "contacts", "usage", "purchases", "tickets", "mentions", "incidents")
HEALTH = Asset("x-pulse://warehouse/health")


def _refresh_tone(engine: Any, as_of: Any) -> None:
    """The sentiment model reads the new texts of the last 90 days first (support tone
    features); when it cannot, the features count those texts by the word list."""
    import logging
    from datetime import timedelta

    from pulse.core.errors import PulseError
    from pulse.models.feedback import refresh_insights

    try:
        refresh_insights(engine, since=as_of - timedelta(days=90))
    except PulseError:
        logging.getLogger(__name__).exception(
            "support tone falls back to the word list: text insights could not be refreshed")


@dag(
    dag_id="pulse_health",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("55 23 * * *", timezone="UTC"),
        assets=(Asset("x-pulse://warehouse/usage") | Asset("x-pulse://warehouse/purchases")
                | Asset("x-pulse://warehouse/tickets") | Asset("x-pulse://warehouse/mentions")
                | Asset("x-pulse://warehouse/accounts")),
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={"basis": Param("auto", enum=["auto", "known", "occurred"])},
    tags=["pulse", "health"],
    doc_md=__doc__,
)
def pulse_health() -> None:
    @task
    def scorecard() -> dict[str, Any]:
        from pulse.models.health import score_date
        from pulse.models.outage import refresh_impacts

        engine = runtime.engine()
        refresh_impacts(engine)  # incident minutes and outage_affected read stored impacts
        _refresh_tone(engine, runtime.as_of())
        summary = score_date(engine, runtime.as_of(), basis=str(runtime.param("basis", "auto")))
        return {"as_of": runtime.as_of().isoformat(), "summary": str(summary)}

    @task
    def churn(_: dict[str, Any]) -> int:
        from pulse.models.registry import score_churn

        return score_churn(runtime.engine(), runtime.as_of(), basis=str(runtime.param("basis", "auto")))

    @task
    def flags(_: int) -> int:
        from pulse.models.flags import compute_flags

        return compute_flags(runtime.engine(), runtime.as_of())

    @task
    def playbooks(_: int) -> str:
        from pulse.models.playbooks import run_playbooks

        return str(run_playbooks(runtime.engine(), runtime.as_of()))

    @task(outlets=[HEALTH])
    def risk_list(_: int) -> dict[str, Any]:
        import json

        from pulse.core.settings import get_settings
        from pulse.models.risklist import build_risk_list

        as_of = runtime.as_of()
        rows = build_risk_list(runtime.engine(), as_of)
        reports = get_settings().resolved_home() / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        path = reports / f"risk-list-{as_of.isoformat()}.json"
        path.write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
        return {"as_of": as_of.isoformat(), "accounts": len(rows), "file": str(path)}

    flagged = flags(churn(scorecard()))
    playbooks(flagged)
    risk_list(flagged)


pulse_health()
