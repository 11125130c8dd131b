"""
### pulse_health: the morning risk list, for the run's date

Runs daily (23:55 UTC, scoring the day that is ending) and whenever rows health reads land
or change (one `x-pulse://warehouse/inputs` event per landing, from `pulse_ingest` and
`pulse_social`; a landing of five sources scores once), and always for one date: the run's logical
date, or its run-after time when it has none. Backfilling a past date gives that date's
answer, because every step reads only rows known by then.

1. **prepare**: refreshes the impact of open or changed incidents and lets the sentiment
   model read the new tickets and mentions of the last 90 days (`text_insights`, for the
   support-tone features; the word list counts when it cannot), as `pulse score` and the
   training do (`pulse.models.scoring.refresh_inputs`), then marks the date as being scored
   (`pulse.models.sharded.begin_date`: hidden from the risk list and the console until
   published) and lists its `PULSE_SCORE_SHARDS` shards (a stable hash of the account id).
2. **score_shard** (a task group mapped over the shards): point-in-time **features**, the
   explainable scorecard **health** and the champion model's **churn** risk of the shard's
   accounts; each replaces only its shard's rows of the date, so a retry on any worker
   changes nothing twice. Without a champion, churn records nothing and says so.
3. **churn_drivers**: the top drivers of the riskiest accounts, ranked over every shard
   (`pulse.models.registry.explain_churn`); beside it,
4. **flags**: silent dissatisfaction, payment risk, renewal soon at risk, champion gone,
   outage affected (`pulse.models.flags.compute_flags`), over the whole book (peers and
   risk ranks are across every account), after the churn scores: the silent flag weighs
   them. Steps 1 to 4 run, in shards, the same sequence as the one "score a date" step that
   `pulse score` and the history backfill run (`pulse.models.scoring.score_day`).
5. **publish**: once every account with features has its health, the date is published
   (`pulse.models.sharded.publish_date`); a date with nothing to score fails here with the
   reason.
6. **playbooks**: the rules of `models/playbooks.yaml` create their tasks, once per account per
   episode (`pulse.models.playbooks.run_playbooks`); beside the risk list, after publishing.
7. **risk_list**: the ranked list written to `<PULSE_HOME>/reports/risk-list-<date>.json`
   (the documented JSON form) and emitted as the `x-pulse://warehouse/health` asset.

Param `basis`: `auto` (default; rows landed in a backfill count from when they happened, other
rows from when they landed: sql/features.py), `known` (rows landed by the date) or `occurred`
(rows that happened by the date).
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
    task_group,
)

from pulse import runtime

SOURCES = ("accounts", "contacts", "usage", "usage_daily", "usage_daily_users", "purchases",
           "tickets", "mentions", "incidents")
HEALTH = Asset("x-pulse://warehouse/health")
#: A shard's steps are idempotent and a lost worker is their usual failure: retry soon, on
#: whichever worker is free, backing off (10-20 s, then 20-40 s, ...) if it keeps failing.
SHARD_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay": timedelta(seconds=10),
                                 "retry_exponential_backoff": 2.0,
                                 "max_retry_delay": timedelta(minutes=10)}


@dag(
    dag_id="pulse_health",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("55 23 * * *", timezone="UTC"),
        # one event per landing that changed what health reads (pulse_ingest's publish_inputs,
        # pulse_social's publish): one run, not one per source
        assets=Asset("x-pulse://warehouse/inputs"),
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
    def prepare() -> list[dict[str, int]]:
        """Whole-book inputs first (incident impacts, text tone), then mark the date as
        being scored and list its shards."""
        from pulse.core.settings import get_settings
        from pulse.models.scoring import refresh_inputs
        from pulse.models.sharded import begin_date

        engine = runtime.engine()
        # incident minutes and outage_affected read stored impacts; support tone the texts the
        # sentiment model read (when it cannot, the reason is logged and the word list counts)
        refresh_inputs(engine, runtime.as_of())
        shards = begin_date(engine, runtime.as_of(), shards=get_settings().score_shards,
                            run_id=runtime.run_id())
        return [s.to_dict() for s in shards]

    @task_group
    def score_shard(shard: dict[str, int]) -> Any:
        """One shard of accounts: features, then health, then churn risk; each task replaces
        only its shard's rows of the date, so a retry (on any worker) changes nothing twice."""

        @task(**SHARD_RETRIES)
        def features(shard: dict[str, int]) -> dict[str, int]:
            from pulse.models.sharded import score_features_shard
            from pulse.sql.shards import Shard

            score_features_shard(runtime.engine(), runtime.as_of(), Shard.from_dict(shard),
                                 basis=str(runtime.param("basis", "auto")))
            return shard

        @task(**SHARD_RETRIES)
        def health(shard: dict[str, int]) -> dict[str, int]:
            from pulse.models.sharded import score_health_shard
            from pulse.sql.shards import Shard

            score_health_shard(runtime.engine(), runtime.as_of(), Shard.from_dict(shard))
            return shard

        @task(**SHARD_RETRIES)
        def churn(shard: dict[str, int]) -> int:
            from pulse.models.sharded import score_churn_shard
            from pulse.sql.shards import Shard

            return score_churn_shard(runtime.engine(), runtime.as_of(), Shard.from_dict(shard),
                                     basis=str(runtime.param("basis", "auto")))

        return churn(health(features(shard)))

    @task
    def churn_drivers() -> int:
        from pulse.models.sharded import finish_churn

        return finish_churn(runtime.engine(), runtime.as_of())

    @task
    def flags() -> int:
        from pulse.models.flags import compute_flags
        from pulse.models.sharded import check_complete

        engine = runtime.engine()
        check_complete(engine, runtime.as_of(), basis=str(runtime.param("basis", "auto")))
        return compute_flags(engine, runtime.as_of())

    @task
    def publish(*_: int) -> int:
        from pulse.models.sharded import publish_date

        return publish_date(runtime.engine(), runtime.as_of(),
                            basis=str(runtime.param("basis", "auto")))

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

    scored = score_shard.expand(shard=prepare())
    drivers, flagged = churn_drivers(), flags()
    scored >> [drivers, flagged]
    published = publish(drivers, flagged)
    playbooks(published)
    risk_list(published)


pulse_health()
