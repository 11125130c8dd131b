"""
### pulse_feedback: daily feedback classification and routing, weekly team digests

Runs every day, for the day that just ended (`data_interval_end`):

1. **classify**: classifies and routes the feedback items (X mentions, tickets, survey
   comments) that are new or changed - sentiment, kind, team - into `text_insights`
   (`pulse.models.feedback.refresh_insights`; an upsert keyed by item, so re-runs change nothing).
   `lookback_days` bounds how far back items are looked at (0: all of them).
2. **digests**: on Mondays, builds one digest per team for the week that just ended,
   writes `$PULSE_HOME/digests/{week_start}/{team}.html|.md`, and queues one email per team
   (`pulse.outreach.feedback_digest.queue_digests`; key `team_digest:{team}:{week_start}`, so a
   re-run queues nothing new). Other days it does nothing.
3. **send**: sends what is due through the configured transport (`pulse.outreach.outbox_send.send_due`).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from pulse import runtime


@dag(
    dag_id="pulse_feedback",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "lookback_days": Param(35, type="integer", minimum=0,
                               description="Classify items created this many days before "
                               "the run's end (0: all items)"),
        "force_digest": Param(False, type="boolean",
                              description="Build the weekly digests even when not Monday"),
        "transport": Param("", type="string",
                           description="file or sendgrid; empty: PULSE_TRANSPORT"),
    },
    tags=["pulse", "feedback"],
    doc_md=__doc__,
)
def pulse_feedback() -> None:
    @task
    def classify() -> int:
        from pulse.models.feedback import refresh_insights

        end = runtime.interval_end()
        days = int(runtime.param("lookback_days", 0))
        since = end - timedelta(days=days) if days else None
        return refresh_insights(runtime.engine(), since=since, now=end)

    @task
    def digests(_: int) -> str:
        from pulse.outreach.feedback_digest import queue_digests

        end = runtime.interval_end()
        force = bool(runtime.param("force_digest", False))
        if end.weekday() != 0 and not force:
            return "not Monday: no weekly digest"
        run = queue_digests(runtime.engine(), period="week", period_end=end.date(), now=end)
        return f"{len(run.digests)} digests, {run.queued} queued, {run.duplicates} known"

    @task
    def send(_: str) -> str:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        name = runtime.param("transport")
        return str(send_due(runtime.engine(), make_transport(name)))

    send(digests(classify()))


pulse_feedback()
