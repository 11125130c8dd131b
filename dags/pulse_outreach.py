"""
### pulse_outreach: daily check-ins and CSM digests, after the health run

Runs whenever `pulse_health` publishes the `x-pulse://warehouse/health` asset, for the latest
scored date (or the run's logical date when triggered by hand):

1. **daily**: queues a check-in from the CSM to the primary contact of every red or silently
   dissatisfied account (at most one per account per `PULSE_CHECKIN_EVERY_DAYS`, default 30)
   (a draft its CSM approves with `pulse outreach drafts approve` under the default
   `PULSE_CHECKINS=approve`; none, but a `no_csm` record, for accounts without a named CSM)
   and one digest per CSM listing accounts that entered red or got a new flag
   (`pulse.outreach.checkins.queue_daily`; keys carry the date, so re-runs queue nothing new).
2. **send**: sends what is due through the configured transport (`pulse.outreach.outbox_send.send_due`).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from pulse import runtime

HEALTH = Asset("x-pulse://warehouse/health")


@dag(
    dag_id="pulse_outreach",
    schedule=[HEALTH],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={"transport": Param("", type="string", description="file or sendgrid; empty: "
                               "PULSE_TRANSPORT")},
    tags=["pulse", "outreach"],
    doc_md=__doc__,
)
def pulse_outreach() -> None:
    @task
    def daily() -> str:
        from sqlalchemy import func, select

        from pulse.outreach.checkins import queue_daily
        from pulse.sql.schema import AccountHealth

        context = get_current_context()
        engine = runtime.engine()
        logical = context.get("logical_date")
        if logical is not None:
            as_of = logical.astimezone(UTC).date()
        else:
            with engine.connect() as conn:
                as_of = conn.execute(select(func.max(AccountHealth.as_of))).scalar()
            if as_of is None:
                return "nothing scored yet"
        return str(queue_daily(engine, as_of))

    @task
    def send(_: str) -> str:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        name = runtime.param("transport")
        return str(send_due(runtime.engine(), make_transport(name)))

    send(daily())


pulse_outreach()
