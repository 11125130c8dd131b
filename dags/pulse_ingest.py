"""
### pulse_ingest: land every file dropped into the landing folder

Every 15 minutes this DAG lands the files waiting in `<PULSE_HOME>/landing/` into the
warehouse, through the one landing path (`pulse.listeners.landing.land_file`): each row is either
accepted (inserted, updated or unchanged) or quarantined with its reason.

1. **list_accounts_files** creates or upgrades the warehouse schema, moves every file whose
   name maps to no source to `<PULSE_HOME>/rejected/` (with a `.reason.txt` beside it) and
   lists the accounts files.
2. **land_accounts** (one mapped task per file) lands the accounts first, because a row that
   names an unknown account is quarantined.
3. **list_other_files** / **land_files** (one mapped task per file) land every other source.
4. **reland_quarantine** lands again the rows quarantined for naming an unknown account, now
   that the accounts of this run are known.
5. **`publish_<source>`** emits an asset event on `x-pulse://warehouse/<source>` for each
   source whose rows changed in this run, and is skipped for the others. **publish_inputs**
   emits one event on `x-pulse://warehouse/inputs` when any source health reads changed
   (`HEALTH_SOURCES`), with their names: `pulse_health` schedules on it, so one landing
   scores once (the per-source events end seconds apart, and each would start a run).
6. **report** logs what landed and fails the run if a file was rejected or a task failed, so
   the run shows red until someone looks at `rejected/`.

A landed file moves to `<PULSE_HOME>/landed/<YYYY-MM-DD>/` (the run's logical date); a file
that fails as a whole (`InputFileError`) moves to `rejected/` with its reason and does not
stop the other files. A file whose landing fails for any other reason stays in `landing/`
and is tried again by the next run. Landing is idempotent: a file landed twice changes
nothing the second time. Writers should drop files atomically (write `name.part` or a
dot-file, then rename): names starting with `.`, `_` or `~` and `.part` / `.tmp` files
are left alone.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, TriggerRule, dag, get_current_context, task

# Airflow imports DAG files under a mangled module name; log under a readable one.
log = logging.getLogger("dags.pulse_ingest")

#: The sources of the data contract in landing order (listeners.contract.LANDING_ORDER; a
#: test keeps the two equal without importing the contract at parse time).
SOURCES = ("accounts", "contacts", "usage", "usage_daily", "usage_daily_users", "purchases",
           "tickets", "mentions", "incidents")
ASSETS = {source: Asset(f"x-pulse://warehouse/{source}") for source in SOURCES}
#: The sources health reads; a change to any of them is published once on INPUTS.
HEALTH_SOURCES = ("accounts", "usage", "usage_daily", "usage_daily_users", "purchases",
                  "tickets", "mentions")
#: "what health reads changed": pulse_health's trigger (pulse_social emits it too)
INPUTS = Asset("x-pulse://warehouse/inputs")


def _land(item: dict[str, str]) -> dict[str, Any]:
    """Land one file and move it to `landed/<day>/`, or to `rejected/` if it fails as a whole."""
    from pulse import runtime
    from pulse.listeners.landing_folder import land_waiting

    get_current_context()["landing_file"] = Path(item["path"]).name  # type: ignore[typeddict-unknown-key]
    return land_waiting(runtime.engine(), item, home=runtime.home(),
                        day=runtime.as_of().isoformat(), run_id=runtime.run_id())


def _changes(sources: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """What this run changed of each of `sources` that it changed (files, inserted, updated,
    quarantined, relanded); a source it changed no row of is absent."""
    from pulse import runtime

    landed = runtime.pulled(["land_accounts", "land_files"])
    again = runtime.pulled(["reland_quarantine"])
    out = {}
    for source in sources:
        change = _change(source, landed, again)
        if change is not None:
            out[source] = change
    return out


def _change(source: str, landed: list[dict[str, Any]], again: list[dict[str, Any]]
            ) -> dict[str, Any] | None:
    files = [r for r in landed if r.get("source") == source and r.get("status") == "landed"]
    relanded = [r for r in again if r.get("source") == source]
    if not sum(r["inserted"] + r["updated"] for r in [*files, *relanded]):
        return None
    return {
        "files": [r["file"] for r in files],
        "inserted": sum(r["inserted"] for r in [*files, *relanded]),
        "updated": sum(r["updated"] for r in [*files, *relanded]),
        "quarantined": sum(r["quarantined"] for r in files),
        "relanded": sum(r["inserted"] + r["updated"] for r in relanded),
    }


def _scan(*, accounts: bool) -> list[dict[str, str]]:
    from pulse import runtime
    from pulse.listeners.landing_folder import scan_landing

    return scan_landing(home=runtime.home(), accounts=accounts, run_id=runtime.run_id())


# --------------------------------------------------------------------------- the DAG


@dag(
    dag_id="pulse_ingest",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    doc_md=__doc__,
    tags=["pulse", "ingest", "listeners"],
    default_args={
        "owner": "pulse",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
    },
)
def pulse_ingest() -> None:
    @task
    def list_accounts_files() -> list[dict[str, str]]:
        """Create or upgrade the warehouse schema; reject unmappable files; list accounts files."""
        from pulse import runtime

        runtime.migrate()
        found = _scan(accounts=True)
        get_current_context()["ti"].xcom_push(
            key="rejected", value=[f for f in found if f["status"] == "rejected"]
        )
        files = [f for f in found if f["status"] == "waiting"]
        log.info("%d accounts file(s) to land first: %s", len(files),
                 ", ".join(f["file"] for f in files) or "none")
        return files

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def list_other_files() -> list[dict[str, str]]:
        """List the files of every other source, once the accounts stage is done."""
        from pulse import runtime

        runtime.require("list_accounts_files")
        found = _scan(accounts=False)
        get_current_context()["ti"].xcom_push(
            key="rejected", value=[f for f in found if f["status"] == "rejected"]
        )
        files = [f for f in found if f["status"] == "waiting"]
        log.info("%d file(s) to land: %s", len(files), ", ".join(f["file"] for f in files) or "none")
        return files

    # Accounts files one at a time (the scheduler queues map indexes in order, so in name
    # order): a later accounts file may update an account an earlier one created.
    @task(map_index_template="{{ landing_file }}", max_active_tis_per_dagrun=1)
    def land_accounts(item: dict[str, str]) -> dict[str, Any]:
        """Land one accounts file."""
        return _land(item)

    @task(map_index_template="{{ landing_file }}", max_active_tis_per_dagrun=4)
    def land_files(item: dict[str, str]) -> dict[str, Any]:
        """Land one file of any source but accounts."""
        return _land(item)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def reland_quarantine() -> list[dict[str, Any]]:
        """Land again the rows quarantined for naming an account that was unknown then."""
        from pulse import runtime
        from pulse.listeners.landing import retry_quarantine

        runtime.require("list_other_files")
        engine = runtime.engine()
        results = [
            retry_quarantine(engine, source=source, code="unknown_account").to_dict()
            for source in SOURCES
        ]
        results = [r for r in results if r["read"]]
        for r in results:
            log.info("%s: %d quarantined row(s) retried, %d landed, %d still quarantined",
                     r["source"], r["read"], r["inserted"] + r["updated"] + r["unchanged"],
                     r["quarantined"])
        return results

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def publish(source: str) -> dict[str, Any]:
        """Emit an asset event for `source` if this run changed its rows; skip otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pulse import runtime

        runtime.require("list_other_files")
        extra = _changes((source,)).get(source)
        if extra is None:
            raise AirflowSkipException(f"no {source} rows changed in this run")
        get_current_context()["outlet_events"][ASSETS[source]].extra = extra
        log.info("publishing %s: %s", ASSETS[source].uri, extra)
        return extra

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[INPUTS])
    def publish_inputs() -> dict[str, Any]:
        """One event when any source health reads changed in this run; skip otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pulse import runtime

        runtime.require("list_other_files")
        changed = list(_changes(HEALTH_SOURCES))
        if not changed:
            raise AirflowSkipException("no source health reads changed in this run")
        extra = {"sources": changed}
        get_current_context()["outlet_events"][INPUTS].extra = extra
        log.info("publishing %s: %s", INPUTS.uri, extra)
        return extra

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report() -> dict[str, Any]:
        """Log what this run landed; fail if a file was rejected or a task failed."""
        from airflow.sdk.exceptions import AirflowFailException

        from pulse import runtime

        ti = get_current_context()["ti"]
        results = runtime.pulled(["land_accounts", "land_files"])
        rejected = [
            *(ti.xcom_pull(task_ids="list_accounts_files", key="rejected") or []),
            *(ti.xcom_pull(task_ids="list_other_files", key="rejected") or []),
            *(r for r in results if r.get("status") == "rejected"),
        ]
        landed = [r for r in results if r.get("status") == "landed"]
        for r in landed:
            log.info("%s (%s): read %d, inserted %d, updated %d, unchanged %d, quarantined %d",
                     r["file"], r["source"], r["read"], r["inserted"], r["updated"],
                     r["unchanged"], r["quarantined"])
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
        summary = {
            "landed": len(landed),
            "rejected": [{"file": r["file"], "reason": r["reason"]} for r in rejected],
            "failed_tasks": failed,
            "inserted": sum(r["inserted"] for r in landed),
            "updated": sum(r["updated"] for r in landed),
            "quarantined": sum(r["quarantined"] for r in landed),
        }
        log.info("run summary: %s", summary)
        problems = [f"rejected {r['file']}: {r['reason']}" for r in rejected]
        problems += [f"task {t} failed" for t in failed]
        if problems:
            for p in problems:
                log.error(p)
            # the names first: a long reason (each names its path) must not hide them
            names = ", ".join(r["file"] for r in rejected) or "none"
            raise AirflowFailException(
                f"{len(rejected)} file(s) rejected ({names}; see "
                f"{runtime.home() / 'rejected'}), {len(failed)} task(s) failed: "
                + "; ".join(problems)
            )
        return summary

    accounts_files = list_accounts_files()
    landed_accounts = land_accounts.expand(item=accounts_files)
    other_files = list_other_files()
    [accounts_files, landed_accounts] >> other_files
    landed_files = land_files.expand(item=other_files)
    relanded = reland_quarantine()
    [other_files, landed_files] >> relanded
    done = report()
    for source in SOURCES:
        published = publish.override(task_id=f"publish_{source}", outlets=[ASSETS[source]])(source)
        relanded >> published >> done
    relanded >> publish_inputs() >> done


pulse_ingest()
