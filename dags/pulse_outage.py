"""
### pulse_outage: tell the customers an outage hit, with their own numbers, within minutes

Runs every 5 minutes and whenever incidents land (`pulse_ingest` emits the
`x-pulse://warehouse/incidents` asset):

1. **statuspage** (optional): imports a Statuspage v1 `incidents.json` document from the
   `statuspage_url` param (a file path or URL; empty skips it).
2. **impact**: recomputes the impact of every open or changed incident
   (`models.outage.refresh_impacts`): which accounts were hit or exposed, failed and total
   requests, affected users, first and last affected times.
3. **notices**: queues one notice per relevant contact of each hit account and stage
   (`outreach.notices.queue_outage_notices`; idempotency keys make re-runs no-ops).
4. **send**: sends what is due through the configured transport (`outreach.outbox_send.send_due`),
   applying opt-outs, suppressions, the frequency cap and quiet hours (major and critical
   incidents pass the cap and quiet hours).
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
    get_current_context,
    task,
)

INCIDENTS = Asset("x-pulse://warehouse/incidents")


def _engine() -> Any:
    from pulse.sql.db import make_engine, upgrade

    engine = make_engine()
    upgrade(engine)
    return engine


def _now() -> datetime:
    """The run's moment: its run-after time (never later than the clock)."""
    context = get_current_context()
    when = context["dag_run"].run_after or context.get("logical_date")
    return min(when.astimezone(UTC), datetime.now(UTC)) if when else datetime.now(UTC)


@dag(
    dag_id="pulse_outage",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/5 * * * *", timezone="UTC"), assets=INCIDENTS),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={"statuspage_url": Param("", type="string"),
            "transport": Param("", type="string", description="file or sendgrid; empty: "
                               "PULSE_TRANSPORT")},
    tags=["pulse", "outreach", "outage"],
    doc_md=__doc__,
)
def pulse_outage() -> None:
    @task
    def statuspage() -> str:
        source = str(get_current_context()["params"].get("statuspage_url") or "")
        if not source:
            return "no statuspage_url: skipped"
        from pulse.listeners.statuspage import import_statuspage

        return str(import_statuspage(_engine(), source))

    @task
    def impact(_: str) -> str:
        from pulse.models.outage import refresh_impacts

        return str(refresh_impacts(_engine(), now=_now()))

    @task
    def notices(_: str) -> dict[str, Any]:
        from pulse.outreach.notices import queue_outage_notices

        report = queue_outage_notices(_engine(), now=_now())
        return {"report": str(report), "latency_seconds": report.latency_seconds}

    @task
    def send(_: dict[str, Any]) -> str:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        name = str(get_current_context()["params"].get("transport") or "") or None
        return str(send_due(_engine(), make_transport(name), now=_now()))

    send(notices(impact(statuspage())))


pulse_outage()
