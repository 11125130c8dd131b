"""
### pulse_surveys: CSAT surveys, hourly

Every hour, as of the run's logical date (else `run_after`; never later than now):

1. **queue**: finds the surveys due (tickets solved `PULSE_SURVEY_DELAY_HOURS` ago and still
   solved, resolved incidents that hit the contacts who received their notices, and the
   optional periodic relationship survey), applies the fatigue rules (one survey per contact
   per `PULSE_RECONTACT_DAYS`, never two for one ticket, no opted-out, suppressed or churned
   recipients, none while the contact has another open ticket), records every skipped survey
   with its reason and queues the others in the outbox (`pulse.outreach.surveys.queue_due_surveys`;
   one `surveys` row per trigger, so a re-run queues nothing new).
2. **alerts**: every answer rated 1 or 2 in the last 48 hours that has no CSM alert yet gets
   one (`pulse.outreach.csat_alerts.queue_low_rating_alerts`; the survey page queues it at
   once, this sweep catches any the page did not; keyed per answer, so never two).
3. **send**: sends what is due through the configured transport (`pulse.outreach.outbox_send.send_due`):
   quiet hours in the contact's time zone and the per-contact cap apply there.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from pulse import runtime


@dag(
    dag_id="pulse_surveys",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={"transport": Param("", type="string", description="file or sendgrid; empty: "
                               "PULSE_TRANSPORT")},
    tags=["pulse", "outreach", "surveys"],
    doc_md=__doc__,
)
def pulse_surveys() -> None:
    @task
    def queue() -> str:
        from pulse.outreach.surveys import queue_due_surveys

        return str(queue_due_surveys(runtime.engine(), now=runtime.logical_time()))

    @task
    def alerts(_: str) -> str:
        from pulse.outreach.csat_alerts import queue_low_rating_alerts

        return str(queue_low_rating_alerts(runtime.engine(), now=runtime.logical_time()))

    @task
    def send(_: str) -> str:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        name = runtime.param("transport")
        return str(send_due(runtime.engine(), make_transport(name), now=runtime.logical_time()))

    send(alerts(queue()))


pulse_surveys()
