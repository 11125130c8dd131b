"""
### pulse_social: listen to X every 15 minutes

1. **listen**: runs every configured recent-search query (`PULSE_X_QUERIES`) against the
   X API v2 with `tweepy`, from each query's `since_id` watermark, and lands the new mentions
   through the data contract (`pulse.listeners.x_listener.listen`). The watermark advances only
   after a successful landing; a 401, 403, 429 or 5xx keeps it and fails the task with the
   query and the status (the retry asks again). Without a bearer token (`PULSE_X_BEARER_TOKEN`,
   `X_BEARER_TOKEN` or the Airflow Connection `x_default`) it replays a JSON Lines file of
   mentions (`PULSE_X_REPLAY_FILE`, else `$PULSE_HOME/landing/mentions.jsonl`, else the
   demo's).
   **publish**, when mentions landed or changed: emits the `x-pulse://warehouse/mentions`
   asset and `x-pulse://warehouse/inputs`, so `pulse_health` scores again (skipped
   otherwise: a quarter-hour without new mentions scores nothing).
2. **chatter**: negative posts per component per 15 minutes against a robust baseline
   (`pulse.models.chatter.detect_chatter`), or a few distinct people within 15 minutes on a
   quiet component: a spike with no open incident is a *suspected incident*; with one, the
   chatter is attached to it.
3. **alerts**: each new suspected incident goes, once, to on-call (`PULSE_ONCALL_EMAIL`) and to
   the CSMs of the accounts in the chatter, with sample posts; complaints made while an
   incident is open go, once per incident and account, to the account's CSM
   (`pulse.outreach.chatter_alerts.queue_chatter_alerts`); each negative public post left
   without a brand reply past its channel's expectation goes, once, to the social team
   (`pulse.outreach.response_alerts.queue_unanswered_alerts`); then the outbox sends what is
   due.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from pulse import runtime

MENTIONS = Asset("x-pulse://warehouse/mentions")
INPUTS = Asset("x-pulse://warehouse/inputs")  # what health reads changed (pulse_health's trigger)
log = logging.getLogger(__name__)


@dag(
    dag_id="pulse_social",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=14),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={"replay_file": Param("", type="string", description="A JSON Lines file of "
                                 "mentions to replay instead of listening; empty: the "
                                 "configured mode")},
    tags=["pulse", "listeners", "social"],
    doc_md=__doc__,
)
def pulse_social() -> None:
    @task
    def listen() -> dict[str, Any]:
        from pulse.listeners.x_listener import listen as listen_x

        replay = runtime.param("replay_file")
        report = listen_x(runtime.engine(), replay=replay, now=runtime.run_time())
        log.info("%s", report)
        report.raise_for_errors()  # after every query ran; their watermarks stayed put
        return {"report": str(report), "mode": report.mode, "changed": report.changed}

    @task(outlets=[MENTIONS, INPUTS])
    def publish(listened: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if not listened["changed"]:
            raise AirflowSkipException("no mention landed or changed")
        return {"changed": listened["changed"]}

    @task
    def chatter(_: dict[str, Any]) -> str:
        from pulse.models.chatter import detect_chatter

        return str(detect_chatter(runtime.engine(), now=runtime.run_time()))

    @task
    def alerts(_: str) -> str:
        from pulse.outreach.chatter_alerts import queue_chatter_alerts
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.response_alerts import queue_unanswered_alerts
        from pulse.outreach.transports import make_transport

        engine = runtime.engine()
        now = runtime.run_time()
        queued = queue_chatter_alerts(engine, since=now - timedelta(days=2), now=now)
        queued += queue_unanswered_alerts(engine, since=now - timedelta(days=2), now=now)
        return f"{queued} alerts queued; {send_due(engine, make_transport(), now=now)}"

    listened = listen()
    publish(listened)
    alerts(chatter(listened))


pulse_social()
