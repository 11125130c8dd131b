"""
### pulse_ingest: land every file dropped into the landing folder

Every 15 minutes this DAG lands the files waiting in `<PULSE_HOME>/landing/` into the
warehouse, through the one landing path (`listeners.landing.land_file`): each row is either
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
   source whose rows changed in this run, and is skipped for the others; consumers schedule
   on those assets.
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
SOURCES = ("accounts", "contacts", "usage", "purchases", "tickets", "mentions", "incidents")
ASSETS = {source: Asset(f"x-pulse://warehouse/{source}") for source in SOURCES}

#: Names in the landing folder that are not (yet) files to land: hidden files, partial uploads.
_IGNORED_PREFIXES = (".", "~", "_")
_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".reason.txt")


# --------------------------------------------------------------------------- helpers
# Small filesystem plumbing; everything that touches the warehouse lives in listeners/.


def _home() -> Path:
    from pulse.core.settings import get_settings

    return get_settings().resolved_home()


def _run_day() -> str:
    """The run's logical date (its run-after time when it has none), as YYYY-MM-DD."""
    context = get_current_context()
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.astimezone(UTC).date().isoformat()


def _unique(directory: Path, name: str) -> Path:
    """`directory/name`, or `directory/<stem>-<n><suffixes>` if that is taken."""
    target = directory / name
    stem, dot, suffixes = name.partition(".")
    n = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        n += 1
        target = directory / f"{stem}-{n}{dot}{suffixes}"
    return target


def _move(path: Path, directory: Path) -> Path:
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    target = _unique(directory, path.name)
    shutil.move(str(path), str(target))
    return target


def _reject(path: Path, reason: str) -> Path:
    """Move `path` to `<home>/rejected/` and write the reason beside it."""
    target = _move(path, _home() / "rejected")
    run_id = get_current_context()["run_id"]
    target.with_name(target.name + ".reason.txt").write_text(
        f"{reason}\n\nrejected by pulse_ingest run {run_id}\n", encoding="utf-8"
    )
    log.error("rejected %s -> %s: %s", path.name, target, reason)
    return target


def _scan_landing(*, accounts: bool) -> list[dict[str, str]]:
    """The files waiting in the landing folder, sorted by name, with their source.

    Files whose name maps to no source are moved to `rejected/`; they are returned with
    `status = "rejected"` so that the report can list them.
    """
    from pulse.core.errors import UnknownSourceError
    from pulse.core.settings import get_settings
    from pulse.listeners.landing import source_for_path

    landing = get_settings().landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    found: list[dict[str, str]] = []
    for path in sorted(landing.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith(_IGNORED_PREFIXES):
            continue
        if name.lower().endswith(_IGNORED_SUFFIXES):
            continue
        try:
            source = source_for_path(path)
        except UnknownSourceError as exc:
            moved = _reject(path, str(exc))
            found.append({"file": name, "status": "rejected", "reason": str(exc),
                          "moved_to": str(moved)})
            continue
        if (source == "accounts") == accounts:
            found.append({"file": name, "path": str(path), "source": source, "status": "waiting"})
    return found


def _land(item: dict[str, str]) -> dict[str, Any]:
    """Land one file and move it to `landed/<day>/`, or to `rejected/` if it fails as a whole."""
    from pulse.core.errors import InputFileError
    from pulse.listeners.landing import land_file
    from pulse.sql.db import make_engine

    path = Path(item["path"])
    get_current_context()["landing_file"] = path.name  # type: ignore[typeddict-unknown-key]
    base = {"file": path.name, "source": item["source"]}
    if not path.exists():  # moved by an earlier try that failed after landing it
        log.warning("%s is no longer in the landing folder; nothing to do", path)
        return {**base, "status": "missing"}
    engine = make_engine()
    try:
        result = land_file(engine, path, source=item["source"])
    except InputFileError as exc:
        moved = _reject(path, str(exc))
        return {**base, "status": "rejected", "reason": str(exc), "moved_to": str(moved)}
    finally:
        engine.dispose()
    moved = _move(path, _home() / "landed" / _run_day())
    log.info("moved %s to %s", path.name, moved)
    return {**result.to_dict(), **base, "status": "landed", "moved_to": str(moved)}


def _pulled(task_ids: list[str]) -> list[dict[str, Any]]:
    """The dict results of `task_ids` (every map index) in this run; failed ones are absent."""
    ti = get_current_context()["ti"]
    values = ti.xcom_pull(task_ids=task_ids)
    out: list[dict[str, Any]] = []
    for value in values or []:
        if isinstance(value, dict):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
    return out


def _require(task_id: str) -> None:
    """Skip the calling task unless `task_id` succeeded in this run (it left its XCom)."""
    from airflow.sdk.exceptions import AirflowSkipException

    if get_current_context()["ti"].xcom_pull(task_ids=task_id) is None:
        raise AirflowSkipException(f"{task_id} did not succeed in this run")


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
        from pulse.sql.db import make_engine, upgrade

        engine = make_engine()
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        found = _scan_landing(accounts=True)
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
        _require("list_accounts_files")
        found = _scan_landing(accounts=False)
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
        from pulse.listeners.landing import retry_quarantine
        from pulse.sql.db import make_engine

        _require("list_other_files")
        engine = make_engine()
        try:
            results = [
                retry_quarantine(engine, source=source, code="unknown_account").to_dict()
                for source in SOURCES
            ]
        finally:
            engine.dispose()
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

        _require("list_other_files")
        files = [r for r in _pulled(["land_accounts", "land_files"])
                 if r.get("source") == source and r.get("status") == "landed"]
        relanded = [r for r in _pulled(["reland_quarantine"]) if r.get("source") == source]
        changed = sum(r["inserted"] + r["updated"] for r in [*files, *relanded])
        if not changed:
            raise AirflowSkipException(f"no {source} rows changed in this run")
        extra = {
            "files": [r["file"] for r in files],
            "inserted": sum(r["inserted"] for r in [*files, *relanded]),
            "updated": sum(r["updated"] for r in [*files, *relanded]),
            "quarantined": sum(r["quarantined"] for r in files),
            "relanded": sum(r["inserted"] + r["updated"] for r in relanded),
        }
        get_current_context()["outlet_events"][ASSETS[source]].extra = extra
        log.info("publishing %s: %s", ASSETS[source].uri, extra)
        return extra

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report() -> dict[str, Any]:
        """Log what this run landed; fail if a file was rejected or a task failed."""
        from airflow.sdk.exceptions import AirflowFailException

        context = get_current_context()
        ti = context["ti"]
        results = _pulled(["land_accounts", "land_files"])
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
            raise AirflowFailException(
                f"{len(rejected)} file(s) rejected (see {_home() / 'rejected'}), "
                f"{len(failed)} task(s) failed: " + "; ".join(problems)
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


pulse_ingest()
