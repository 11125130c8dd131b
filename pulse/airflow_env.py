"""The embedded Airflow: its environment, its metadata database, and `airflow dags test` runs.

Pulse ships its DAGs in `<repo>/dags` and, by default, runs Airflow beside the warehouse:
`AIRFLOW_HOME` is `<PULSE_HOME>/airflow` with a SQLite metadata database inside it. Nothing
here imports Airflow: the CLI runs in a subprocess with the environment built here, so the
caller's process (a test session, the `pulse` command) keeps its own configuration.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Iterator

from pulse.errors import ConfigError, PulseError
from pulse.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

DAGS_FOLDER = PROJECT_ROOT / "dags"

#: Written into AIRFLOW_HOME after a successful `airflow db migrate`.
MIGRATED_STAMP = "pulse-db-migrated.json"

# What `airflow dags test` prints when a task instance ends badly, e.g.
# `... [info] Task finished ... task_id=land map_index=2 ... state=failed ...` in Airflow 3.
_TASK_FAILED = re.compile(r"\bstate=(?:failed|upstream_failed)\b")
_TASK_ID = re.compile(r"\btask_id=(\S+)")
_MAP_INDEX = re.compile(r"\bmap_index=(-?\d+)")


def airflow_environ(settings: Settings | None = None) -> dict[str, str]:
    """`os.environ` plus what the embedded Airflow needs to find Pulse's DAGs and warehouse.

    `AIRFLOW_HOME` is `<PULSE_HOME>/airflow`, the DAGs folder is `<repo>/dags`, examples and
    unit-test mode are off, and the metadata database is a SQLite file in `AIRFLOW_HOME`
    unless `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN` is already set. `PULSE_HOME` and
    `PULSE_DATABASE_URL` are passed on as absolute values, so tasks write to the warehouse
    the caller sees, whatever their working directory.
    """
    settings = settings or get_settings()
    airflow_home = settings.airflow_home
    env = dict(os.environ)
    env["PULSE_HOME"] = str(settings.resolved_home())
    env["PULSE_DATABASE_URL"] = _absolute_database_url(settings.resolved_database_url())
    env["AIRFLOW_HOME"] = str(airflow_home)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    if not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{airflow_home / 'airflow.db'}"
    # Quiet and offline: no provider-manifest warnings for absent extras, no ANSI colours in
    # logs that end up in files and test reports.
    env.setdefault("AIRFLOW__LOGGING__COLORED_CONSOLE_LOG", "False")
    env.setdefault("AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS", "True")
    return env


def ensure_airflow_db(env: Mapping[str, str]) -> None:
    """Run `airflow db migrate` with `env` unless its metadata database is already migrated.

    A stamp in `AIRFLOW_HOME` records the Airflow version, the database URL and the
    revision of the last successful migration; when all three still match (and the database
    says it is at that revision) the ~2.5 s migration is skipped. Concurrent callers on the
    same `AIRFLOW_HOME` wait for each other.
    """
    home = Path(_required(env, "AIRFLOW_HOME"))
    conn = _required(env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    home.mkdir(parents=True, exist_ok=True)
    stamp_path = home / MIGRATED_STAMP
    with _locked(home / ".pulse-db-migrate.lock"):
        wanted = {"airflow": _airflow_version(), "sql_alchemy_conn": conn}
        stamp = _read_json(stamp_path)
        if stamp and {k: stamp.get(k) for k in wanted} == wanted:
            if stamp.get("revision") and _db_revision(conn) == stamp["revision"]:
                log.debug("airflow metadata database at %s is migrated", home)
                return
        log.info("migrating the airflow metadata database in %s", home)
        proc = subprocess.run(
            [airflow_executable(), "db", "migrate"],
            env=dict(env),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise PulseError(
                f"airflow db migrate failed (exit {proc.returncode}) for AIRFLOW_HOME={home}: "
                f"{_last_line(proc.stderr or proc.stdout)}"
            )
        revision = _db_revision(conn)
        stamp_path.write_text(json.dumps({**wanted, "revision": revision}, indent=2) + "\n")


def run_dag_test(
    dag_id: str,
    *,
    logical_date: str | None = None,
    env: Mapping[str, str] | None = None,
    output: IO[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one real DAG run with `airflow dags test DAG_ID [LOGICAL_DATE]`, in-process there.

    The output is streamed to `output` (default: `sys.stdout`) as it comes and returned in
    `.stdout`. Raises `PulseError` when the command fails or any task instance ended failed.
    """
    env = dict(env) if env is not None else airflow_environ()
    ensure_airflow_db(env)
    args = [airflow_executable(), "dags", "test", dag_id]
    if logical_date:
        args.append(logical_date)
    sink = output if output is not None else sys.stdout
    lines: list[str] = []
    log.info("running %s", " ".join(args[1:]))
    with subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            sink.write(line)
        returncode = proc.wait()
    sink.flush()
    out = "".join(lines)
    result = subprocess.CompletedProcess(args, returncode, stdout=out, stderr=None)
    failed = failed_tasks(out)
    if returncode != 0 or failed:
        what = f"failed tasks: {', '.join(failed)}" if failed else _last_line(out)
        raise PulseError(f"airflow dags test {dag_id} failed (exit {returncode}); {what}")
    return result


def failed_tasks(output: str) -> list[str]:
    """Task instances (`task_id` or `task_id[map_index]`) that `airflow dags test` reports
    as failed or upstream-failed, in order of appearance."""
    failed: list[str] = []
    for line in output.splitlines():
        if not _TASK_FAILED.search(line):
            continue
        task = _TASK_ID.search(line)
        if not task:
            continue
        name = task.group(1).strip("'\",")
        index = _MAP_INDEX.search(line)
        if index and index.group(1) != "-1":
            name = f"{name}[{index.group(1)}]"
        if name not in failed:
            failed.append(name)
    return failed


def airflow_executable() -> str:
    """The `airflow` script of the running interpreter's environment."""
    bindir = Path(sys.executable).parent
    for name in ("airflow", "airflow.exe"):
        candidate = bindir / name
        if candidate.exists():
            return str(candidate)
    raise ConfigError(
        f"no airflow executable next to {sys.executable}: expected {bindir / 'airflow'} "
        "(install apache-airflow into this environment)"
    )


def _absolute_database_url(url: str) -> str:
    """`url` with a relative SQLite path made absolute; other URLs unchanged."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() != "sqlite":
        return url
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    absolute = str(Path(database).expanduser().resolve())
    if absolute == database:
        return url
    return parsed.set(database=absolute).render_as_string(hide_password=False)


def _db_revision(conn: str) -> str | None:
    """The Alembic revision the Airflow metadata database is at, or None if it has none."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(conn)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).exists():
            return None
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # no such table, no server: either way, migrate
        return None
    finally:
        engine.dispose()


def _airflow_version() -> str:
    try:
        return version("apache-airflow")
    except PackageNotFoundError:
        raise ConfigError("apache-airflow is not installed in this environment") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, callers must not race
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(f"{name} is not set: build the environment with airflow_environ()")
    return value


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
