"""
### pulse_feedback: daily feedback classification and routing, weekly team digests

Runs every day, for the day that just ended (`data_interval_end`):

1. **classify**: classifies and routes the feedback items (X mentions, tickets, survey
   comments) that are new or changed - sentiment, kind, team - into `text_insights`
   (`models.feedback.refresh_insights`; an upsert keyed by item, so re-runs change nothing).
   `lookback_days` bounds how far back items are looked at (0: all of them).
2. **digests**: on Mondays, builds one digest per team for the week that just ended,
   writes `$PULSE_HOME/digests/{week_start}/{team}.html|.md`, and queues one email per team
   (`outreach.feedback_digest.queue_digests`; key `team_digest:{team}:{week_start}`, so a
   re-run queues nothing new). Other days it does nothing.
3. **send**: sends what is due through the configured transport (`outreach.outbox_send.send_due`).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task


def _engine() -> Any:
    from pulse.sql.db import make_engine, upgrade

    engine = make_engine()
    upgrade(engine)
    return engine


def _interval_end() -> datetime:
    context = get_current_context()
    end = context.get("data_interval_end") or context.get("logical_date")
    return (end or datetime.now(UTC)).astimezone(UTC)


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

        end = _interval_end()
        days = int(get_current_context()["params"].get("lookback_days") or 0)
        since = end - timedelta(days=days) if days else None
        return refresh_insights(_engine(), since=since, now=end)

    @task
    def digests(_: int) -> str:
        from pulse.outreach.feedback_digest import queue_digests

        end = _interval_end()
        force = bool(get_current_context()["params"].get("force_digest"))
        if end.weekday() != 0 and not force:
            return "not Monday: no weekly digest"
        run = queue_digests(_engine(), period="week", period_end=end.date(), now=end)
        return f"{len(run.digests)} digests, {run.queued} queued, {run.duplicates} known"

    @task
    def send(_: str) -> str:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        name = str(get_current_context()["params"].get("transport") or "") or None
        return str(send_due(_engine(), make_transport(name)))

    send(digests(classify()))


pulse_feedback()
