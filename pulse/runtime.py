"""What an Airflow task needs from Pulse: the run's warehouse, its dates and its params.

DAG files import this module and the layer functions they call, nothing else of Pulse. Every
function reads the running task's context through `airflow.sdk.get_current_context`, imported
when called, so importing this module costs nothing at DAG-parse time.

The warehouse is checked once per process, not on every task: the first `engine()` call in a
worker compares the schema revision with the one this Pulse ships and migrates when it is
behind (`pulse db upgrade` does the same by hand); later calls reuse the engine.
"""
from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from pulse.core.settings import get_settings

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine() -> Engine:
    """The run's warehouse (`PULSE_DATABASE_URL`), at the schema this Pulse ships.

    The schema is checked (and migrated when behind) the first time a process asks for a URL;
    the engine is then kept for the life of the process.
    """
    url = get_settings().resolved_database_url()
    with _lock:
        cached = _engines.get(url)
        if cached is not None:
            return cached
        cached = _engines[url] = _ready_engine(url)
        return cached


def _ready_engine(url: str) -> Engine:
    from pulse.sql.db import current_revision, head_revision, make_engine, upgrade

    eng: Engine = make_engine(url)
    current, head = current_revision(eng), head_revision()
    if current != head:
        log.info("warehouse at revision %s, this Pulse ships %s: migrating", current, head)
        upgrade(eng)
    return eng


def migrate() -> str:
    """Bring the warehouse to the shipped schema now (a task of its own); returns the revision."""
    from pulse.sql.db import make_engine, upgrade

    url = get_settings().resolved_database_url()
    eng = make_engine(url)
    try:
        revision: str = upgrade(eng)
        return revision
    finally:
        eng.dispose()


def hostname() -> str:
    """The name a task instance reports as its host (Airflow's `[core] hostname_callable`
    in the cluster profile): `PULSE_NODE_NAME` when set (several workers on one machine),
    else the machine's name."""
    import os
    import socket

    return os.environ.get("PULSE_NODE_NAME") or socket.getfqdn()


def home() -> Path:
    """`PULSE_HOME`, resolved."""
    return get_settings().resolved_home()


def _context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def _capped(when: datetime | None) -> datetime:
    now = datetime.now(UTC)
    return min(when.astimezone(UTC), now) if when else now


def as_of() -> date:
    """The date this run scores: its logical date, else its run-after time (asset runs)."""
    context = _context()
    when: datetime = context.get("logical_date") or context["dag_run"].run_after
    return when.astimezone(UTC).date()


def run_time() -> datetime:
    """The run's moment: its run-after time (else its logical date), never later than now."""
    context = _context()
    return _capped(context["dag_run"].run_after or context.get("logical_date"))


def logical_time() -> datetime:
    """The run's logical date (else when it was due to run), never later than now; re-running
    a past interval (`airflow dags test DAG DATE`) asks the same question again."""
    context = _context()
    return _capped(context.get("logical_date") or context["dag_run"].run_after)


def interval_end() -> datetime:
    """The end of the run's data interval (else its logical date, else now), in UTC."""
    context = _context()
    end = context.get("data_interval_end") or context.get("logical_date")
    return (end or datetime.now(UTC)).astimezone(UTC)


def run_id() -> str:
    """The run's id."""
    return str(_context()["run_id"])


def param(name: str, default: Any = None) -> Any:
    """A DAG param of this run; `default` when it is absent or empty."""
    value = _context()["params"].get(name)
    return default if value in (None, "") else value


def pulled(task_ids: list[str]) -> list[dict[str, Any]]:
    """The dict results of `task_ids` (every map index) in this run; failed ones are absent."""
    values = _context()["ti"].xcom_pull(task_ids=task_ids)
    out: list[dict[str, Any]] = []
    for value in values or []:
        if isinstance(value, dict):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
    return out


def require(task_id: str) -> None:
    """Skip the calling task unless `task_id` succeeded in this run (it left its XCom)."""
    from airflow.sdk.exceptions import AirflowSkipException

    if _context()["ti"].xcom_pull(task_ids=task_id) is None:
        raise AirflowSkipException(f"{task_id} did not succeed in this run")
