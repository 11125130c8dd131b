"""The embedded Airflow: its environment, its metadata database, and `airflow dags test` runs.

Pulse ships its DAGs in `<repo>/dags` and, by default, runs Airflow beside the warehouse:
`AIRFLOW_HOME` is `<PULSE_HOME>/airflow` with a SQLite metadata database inside it. Nothing
here imports Airflow: the CLI runs in a subprocess with the environment built here, so the
caller's process (a test session, the `pulse` command) keeps its own configuration.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from pulse.core.errors import ConfigError, PulseError
from pulse.core.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

DAGS_FOLDER = PROJECT_ROOT / "dags"

#: Written into AIRFLOW_HOME after a successful `airflow db migrate`.
MIGRATED_STAMP = "pulse-db-migrated.json"

# `airflow dags test` ends with `DagRun Finished: dag_id=..., ..., run_id=..., ..., state=...`.
_RUN_FINISHED = re.compile(
    r"DagRun Finished: dag_id=(?P<dag_id>[^,\s]+),.*?\brun_id=(?P<run_id>[^,\s]+),"
)
# The last line of a task's traceback: `airflow.sdk.exceptions.AirflowFailException: 2 file(s)...`
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit): .+")


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
    # Quiet: no ANSI colours in logs that end up in files and test reports, and none of the
    # two warnings every CLI start prints that say nothing about Pulse (no graphviz for
    # `dags show`; FastAPI's test client, which `dags test` runs its execution API on).
    env.setdefault("AIRFLOW__LOGGING__COLORED_CONSOLE_LOG", "False")
    quiet = [
        "ignore:Could not import graphviz",
        "ignore:Using `httpx` with `starlette.testclient` is deprecated",
    ]
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS", ""), *quiet]))
    return env


def ensure_airflow_db(env: Mapping[str, str], *, template: Path | None = None) -> None:
    """Run `airflow db migrate` with `env` unless its metadata database is already migrated.

    A stamp in `AIRFLOW_HOME` records the Airflow version, the database URL and the
    revision of the last successful migration; when all three still match (and the database
    says it is at that revision) the ~2.5 s migration is skipped. Concurrent callers on the
    same `AIRFLOW_HOME` wait for each other.

    `template` names a SQLite metadata database this function migrated before (its stamp
    beside it): a SQLite database that does not exist yet starts as a copy of it, stamped
    as a migration of its own once it says it is at the template's revision with the same
    Airflow. A template of another version, or without its stamp, is not copied: the
    database is migrated as without one.
    """
    home = Path(_required(env, "AIRFLOW_HOME"))
    conn = _required(env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    home.mkdir(parents=True, exist_ok=True)
    stamp_path = home / MIGRATED_STAMP
    with _locked(home / ".pulse-db-migrate.lock"):
        # The URL may hold a password: the stamp keeps only its digest.
        digest = hashlib.sha256(conn.encode()).hexdigest()
        wanted = {"airflow": _airflow_version(), "sql_alchemy_conn_sha256": digest}
        stamp = _read_json(stamp_path)
        if (
            stamp
            and {k: stamp.get(k) for k in wanted} == wanted
            and stamp.get("revision")
            and _db_revision(conn) == stamp["revision"]
        ):
            log.debug("airflow metadata database at %s is migrated", home)
            return
        if template is not None and _copy_template(template, conn, wanted["airflow"]):
            stamp_path.write_text(
                json.dumps({**wanted, "revision": _db_revision(conn)}, indent=2) + "\n")
            log.debug("airflow metadata database at %s copied from %s", home, template)
            return
        log.info("migrating the airflow metadata database in %s", home)
        proc = subprocess.run(
            [airflow_executable(), "db", "migrate"],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PulseError(
                f"airflow db migrate failed (exit {proc.returncode}) for AIRFLOW_HOME={home}: "
                f"{_last_line(proc.stderr or proc.stdout)}"
            )
        revision = _db_revision(conn)
        stamp_path.write_text(json.dumps({**wanted, "revision": revision}, indent=2) + "\n")


def _copy_template(template: Path, conn: str, airflow: str | None) -> bool:
    """Copy the migrated SQLite `template` to the SQLite file `conn` names, if that file does
    not exist yet and the template's stamp says this Airflow migrated it; True when the copy
    is at the template's revision (a copy that is not is removed again)."""
    import shutil

    from sqlalchemy.engine import make_url

    url = make_url(conn)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    target = Path(url.database)
    made = _read_json(template.parent / MIGRATED_STAMP)
    if target.exists() or not template.is_file() or not made or made.get("airflow") != airflow:
        return False
    shutil.copyfile(template, target)
    if made.get("revision") and _db_revision(conn) == made["revision"]:
        return True
    target.unlink()
    return False


class TextSink(Protocol):
    """Where `run_dag_test` streams Airflow's output: a text file, sys.stdout, or a tee."""

    def write(self, s: str, /) -> int: ...

    def flush(self) -> None: ...


def run_dag_test(
    dag_id: str,
    *,
    logical_date: str | None = None,
    env: Mapping[str, str] | None = None,
    output: TextSink | None = None,
    conf: Mapping[str, Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one real DAG run with `airflow dags test DAG_ID [LOGICAL_DATE]`, in-process there.

    `conf` becomes the run's conf (`--conf JSON`), which overrides the DAG's params.

    The output is streamed to `output` (default: `sys.stdout`) as it comes and returned in
    `.stdout`. Raises `PulseError` when the command fails or any task instance ended failed.
    """
    env = dict(env) if env is not None else airflow_environ()
    ensure_airflow_db(env)
    args = [airflow_executable(), *_dags_test_args(dag_id, logical_date, conf)]
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
    return _checked(env, dag_id, args, returncode, "".join(lines))


class DagSession:
    """Several `airflow dags test` runs, one after the other, in one Airflow process.

    `run` takes the arguments and gives the result `run_dag_test` does (the output streamed,
    a `PulseError` for a failed command or task), but the runs share one process
    (pulse/devkit/dag_session.py runs each with Airflow's own CLI parser and command): Airflow
    and the tasks' imports are loaded once, not once per run. For a sequence of different
    DAGs, as the main job runs; a test of what a second process sees (a rerun that must send
    nothing twice) keeps `run_dag_test`.

        with DagSession(env) as dags:
            dags.run("pulse_ingest")
            dags.run("pulse_health", logical_date="2026-06-30")
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else airflow_environ()
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DagSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Migrate the metadata database if it needs it and start the Airflow process (the
        first `run` does both when this was not called)."""
        self._process()

    def _process(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            ensure_airflow_db(self.env)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pulse.devkit.dag_session"],
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        return self._proc

    def run(
        self,
        dag_id: str,
        *,
        logical_date: str | None = None,
        output: TextSink | None = None,
        conf: Mapping[str, Any] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """One DAG run, as `run_dag_test(dag_id, ...)` with this session's environment."""
        from pulse.devkit.dag_session import END_MARK

        argv = _dags_test_args(dag_id, logical_date, conf)
        proc = self._process()
        assert proc.stdin is not None and proc.stdout is not None
        log.info("running %s (in the DAG session's Airflow process)", " ".join(argv))
        sink = output if output is not None else sys.stdout
        lines: list[str] = []
        returncode: int | None = None
        try:
            proc.stdin.write(json.dumps(argv) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:  # it died before this run: its exit status says how
            pass
        for line in proc.stdout:
            # the mark has a line of its own, but output that did not end its last line
            # may come before it on the same one
            line, mark, status = line.partition(END_MARK)
            if line:
                lines.append(line)
                sink.write(line)
            if mark:
                returncode = int(status.strip() or 1)
                break
        if returncode is None:  # the process ended in the middle of the run
            returncode = proc.wait() or 1
        sink.flush()
        return _checked(self.env, dag_id, [airflow_executable(), *argv], returncode,
                        "".join(lines))

    def close(self) -> None:
        """End the Airflow process (it exits at the end of its input)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def _dags_test_args(dag_id: str, logical_date: str | None,
                    conf: Mapping[str, Any] | None) -> list[str]:
    """The arguments after `airflow` of one `dags test` run."""
    args = ["dags", "test", dag_id]
    if logical_date:
        args.append(logical_date)
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    return args


def _checked(env: Mapping[str, str], dag_id: str, args: list[str], returncode: int,
             out: str) -> subprocess.CompletedProcess[str]:
    """The finished run as a CompletedProcess, or a `PulseError` when the command failed or
    any of its task instances ended failed."""
    result = subprocess.CompletedProcess(args, returncode, stdout=out, stderr=None)
    finished = _RUN_FINISHED.search(out)
    failed = failed_task_instances(env, dag_id, finished["run_id"]) if finished else []
    if returncode != 0 or failed:
        what = [f"{', '.join(failed)} failed" if failed else "", _last_error(out)]
        raise PulseError(
            f"airflow dags test {dag_id} failed (exit {returncode}): "
            + "; ".join(w for w in what if w)
        )
    return result


def failed_task_instances(env: Mapping[str, str], dag_id: str, run_id: str) -> list[str]:
    """Task instances of one DAG run that ended failed or upstream-failed, as `task_id` or
    `task_id[map_index]`, read from the Airflow metadata database `env` points at."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_required(env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT task_id, map_index FROM task_instance WHERE dag_id = :dag_id "
                    "AND run_id = :run_id AND state IN ('failed', 'upstream_failed') "
                    "ORDER BY task_id, map_index"
                ),
                {"dag_id": dag_id, "run_id": run_id},
            ).all()
    finally:
        engine.dispose()
    return [task if index < 0 else f"{task}[{index}]" for task, index in rows]


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
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
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
    from sqlalchemy.exc import SQLAlchemyError

    try:
        url = make_url(conn)
        if (
            url.get_backend_name() == "sqlite"
            and url.database
            and url.database != ":memory:"
            and not Path(url.database).exists()
        ):
            return None
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError):  # a URL or driver Airflow will complain about
        return None
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:  # no such table, no server: either way, migrate
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


def _last_error(output: str) -> str:
    """The last exception message in `output`, or its last line; shortened to one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= 500 else line[:497] + "..."


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
