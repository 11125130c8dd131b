"""
### pulse_outage: tell the customers an outage hit, with their own numbers, within minutes

Runs every 5 minutes and whenever incidents land (`pulse_ingest` emits the
`x-pulse://warehouse/incidents` asset):

1. **statuspage** (optional): imports a Statuspage v1 `incidents.json` document from the
   `statuspage_url` param (a file path or URL; empty skips it).
2. **impact**: recomputes the impact of every open or changed incident
   (`pulse.models.outage.refresh_impacts`): which accounts were hit or exposed, failed and total
   requests, affected users, first and last affected times.
3. **notices**: queues one notice per relevant contact of each hit account and stage
   (`pulse.outreach.notices.queue_outage_notices`; idempotency keys make re-runs no-ops).
4. **send**: sends what is due through the configured transport (`pulse.outreach.outbox_send.send_due`),
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
    task,
)

from pulse import runtime

INCIDENTS = Asset("x-pulse://warehouse/incidents")


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
        source = str(runtime.param("statuspage_url", ""))
        if not source:
            return "no statuspage_url: skipped"
        from pulse.listeners.statuspage import import_statuspage

        return str(import_statuspage(runtime.engine(), source))

    @task
    def impact(_: str) -> str:
        from pulse.models.outage import refresh_impacts

        return str(refresh_impacts(runtime.engine(), now=runtime.run_time()))

    @task
    def notices(_: str) -> dict[str, Any]:
        from pulse.outreach.notices import queue_outage_notices

        report = queue_outage_notices(runtime.engine(), now=runtime.run_time())
        return {"report": str(report), "latency_seconds": report.latency_seconds}

    @task
    def send(_: dict[str, Any]) -> str:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        name = runtime.param("transport")
        return str(send_due(runtime.engine(), make_transport(name), now=runtime.run_time()))

    @task
    def x_updates(_: str) -> str:
        """The confirmed incidents' public updates on X, once each (PULSE_X_POST=on)."""
        from pulse.outreach.x_posts import run

        report = run(runtime.engine(), now=runtime.run_time())
        return "X posting is off (PULSE_X_POST)" if report is None else str(report)

    hit = impact(statuspage())
    send(notices(hit))
    x_updates(hit)


pulse_outage()
