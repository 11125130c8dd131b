"""Shared fixtures: a fresh warehouse on SQLite and on PostgreSQL, and a private PULSE_HOME.

PostgreSQL comes from PULSE_TEST_POSTGRES_URL (default: the local `test` database). Each test
gets its own database (a copy of one migrated per worker) or, when it only needs an empty
one, its own schema; either is dropped afterwards, and their names carry the id of the
process that made them, so that the next run drops what a killed run left behind
(`pytest_sessionstart`). Outside CI an unreachable server skips those tests; under CI=true it
fails them.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from pulse.core.settings import env_flag, get_settings
from pulse.sql.db import create_schema, drop_schema, make_engine, upgrade

PG_URL = os.environ.get(
    "PULSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CI = env_flag("CI")
_pg_state: dict[str, str | None] = {}

# One OpenMP and one BLAS thread per process, in the workers and in every process a test
# starts (a `pulse` command, an Airflow task, a bench's pool): four workers share two cores,
# and a second thread only spins waiting for the other. Measured on an idle machine, the
# variant bench's test took 18.3 s of wall and 16.3 s of CPU with one thread, 23.3 s and
# 22.6 s with two. A test that sets its own counts (tests/test_pulse_cli.py) keeps them; no
# module needs a `threadpool_limits` of its own.
for _name_ in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name_, "1")


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_library() -> Iterator[None]:
    """The thread counts above, also for a library loaded before this file set them."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def postgres_unavailable() -> str | None:
    """None when the server answers, else why not."""
    if "why" not in _pg_state:
        try:
            eng = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with eng.connect() as conn:
                conn.execute(text("SELECT 1"))
            eng.dispose()
            _pg_state["why"] = None
        except Exception as exc:  # any driver error means: not reachable
            _pg_state["why"] = f"PostgreSQL at {PG_URL} unreachable: {exc}".splitlines()[0]
    return _pg_state["why"]


def _name(prefix: str) -> str:
    """A database or schema name of this run: `<prefix>_<pid>_<random>`."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


#: The names `_name` makes for the warehouses (pulse_t_, pulse_tmpl_), with the pid.
_OURS = re.compile(r"^pulse_(?:t|tmpl)_(\d+)_[0-9a-f]+$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def drop_leftovers() -> list[str]:
    """Drop the test databases and schemas whose maker's process is gone (a killed run's; a
    run still going keeps its own); returns their names."""
    dropped: list[str] = []
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            found = [("DATABASE", n, " WITH (FORCE)") for n in conn.execute(
                text("SELECT datname FROM pg_database")).scalars()]
            found += [("SCHEMA", n, " CASCADE") for n in conn.execute(
                text("SELECT nspname FROM pg_namespace")).scalars()]
            for kind, name, how in found:
                m = _OURS.match(name)
                if m and not _alive(int(m.group(1))):
                    conn.execute(text(f'DROP {kind} IF EXISTS "{name}"{how}'))
                    dropped.append(name)
    finally:
        admin.dispose()
    return dropped


def pytest_sessionstart(session: pytest.Session) -> None:
    """Drop what a killed run left behind (`drop_leftovers`): once, on the controller (or the
    only process), before any worker starts; best effort, never fails the run."""
    if hasattr(session.config, "workerinput") or postgres_unavailable():
        return
    try:
        drop_leftovers()
    except Exception as exc:  # a leftover costs disk, not correctness
        print(f"conftest: leftover test databases not dropped: {exc}")


def need_postgres() -> None:
    why = postgres_unavailable()
    if why:
        if CI:
            pytest.fail(f"{why} (required under CI=true)")
        pytest.skip(why)


@pytest.fixture(autouse=True)
def pulse_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test runs with its own PULSE_HOME and, by default, its own SQLite warehouse."""
    home = tmp_path / "pulse-home"
    home.mkdir()
    monkeypatch.setenv("PULSE_HOME", str(home))
    monkeypatch.delenv("PULSE_DATABASE_URL", raising=False)
    get_settings(fresh=True)
    yield home
    get_settings(fresh=True)


@pytest.fixture(autouse=True)
def cheap_password_hashes(request: pytest.FixtureRequest,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its smallest cost in the test process: the product's profile (RFC 9106's
    second, 64 MiB and three passes) takes a quarter of a second a hash on an idle machine,
    and the console's tests sign users up and in some hundreds of times. The hashes are
    still argon2id, verified by the same code; a test marked `real_password_cost` keeps the
    product's parameters and checks them (tests/test_console_auth.py). Commands the tests
    run as processes of their own (`pulse user add`, `pulse serve`) hash as the product
    does."""
    if request.node.get_closest_marker("real_password_cost"):
        return
    from argon2 import PasswordHasher

    import pulse.web.auth as web_auth

    monkeypatch.setattr(web_auth, "_hasher", lambda: PasswordHasher(
        time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setattr(web_auth, "_dummy", [])


#: PostgreSQL URLs `db_url` made as copies of the migrated template (`engine` skips upgrade)
_MIGRATED: set[str] = set()


def _pg_admin() -> Engine:
    """An autocommit connection pool on the test server (CREATE/DROP DATABASE)."""
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


def _pg_database_url(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _end_sessions(conn: Connection, name: str) -> None:
    """End every session on the database `name` but `conn`'s own (an admin connection)."""
    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per worker: each test that asks for `engine` on
    PostgreSQL gets a copy of it (CREATE DATABASE ... TEMPLATE, a third of a second of the
    server's CPU: it copies the files and checkpoints) instead
    of running every migration again (about a second each, for some hundreds of tests; the
    migrations themselves are tested on their own, from empty schemas). A copy a test has
    finished with is emptied and given to the next one (`_emptied`): in a run of the suite's
    PostgreSQL tests that cut the machine's CPU by a sixth (147 s to 120 s, 77 s to 66 s of
    wall on four workers), the server's share of CREATE DATABASE being most of it."""
    need_postgres()
    name = _name("pulse_tmpl")
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        eng = make_engine(_pg_database_url(name))
        upgrade(eng)
        eng.dispose()  # a template may have no open connection while it is copied
        yield name
    finally:
        with admin.connect() as conn:
            for spare, _ in _SPARE:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{spare}" WITH (FORCE)'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        _SPARE.clear()
        admin.dispose()


def _copy_of_template(template: str) -> tuple[str, str]:
    name = _name("pulse_t")
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            # FILE_COPY: a small database is copied at once (WAL_LOG logs every page)
            conn.execute(text(
                f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY'))
    finally:
        admin.dispose()
    return name, _pg_database_url(name)


#: Per worker: migrated PostgreSQL warehouses that a finished test left, emptied again
#: (`_emptied`), each the next `engine` test's instead of a new copy of the template.
_SPARE: list[tuple[str, str]] = []

#: What a warehouse's catalogue and migration state must read to count as a copy of the
#: template: every relation, column and constraint outside PostgreSQL's own schemas, and
#: alembic's revision.
_FINGERPRINT = text("""
    SELECT md5(coalesce((SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text,
                                           ',' ORDER BY n.nspname, c.relname, c.relkind)
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'),
                        '')
               || coalesce((SELECT string_agg(a.attrelid::regclass::text || '.' || a.attname
                                              || ':' || format_type(a.atttypid, a.atttypmod)
                                              || ':' || a.attnotnull::text || ':' || a.atthasdef::text,
                                              ',' ORDER BY a.attrelid::regclass::text, a.attnum)
                            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = 'public' AND a.attnum > 0
                              AND NOT a.attisdropped), '')
               || coalesce((SELECT string_agg(conrelid::regclass::text || '.' || conname, ','
                                              ORDER BY conrelid::regclass::text, conname)
                            FROM pg_constraint WHERE connamespace = 'public'::regnamespace), '')
               || coalesce((SELECT string_agg(version_num, ',') FROM alembic_version), ''))
""")
_TEMPLATE_PRINT: dict[str, str] = {}


def _fingerprint(name: str) -> str:
    eng = create_engine(_pg_database_url(name), poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return str(conn.execute(_FINGERPRINT).scalar_one())
    finally:
        eng.dispose()


def _emptied(name: str, template: str) -> bool:
    """Make the warehouse `name` that a test has finished with what a new copy of `template`
    is, for the next test: every other session on it ended, the tables that hold rows
    truncated, every sequence restarted, then its catalogue and revision compared with the
    template's. False when that fails or they differ (a test that added a table, say): the
    caller drops it. Costs a hundredth of a second of the server's CPU where CREATE DATABASE
    ... TEMPLATE costs about a third."""
    try:
        if template not in _TEMPLATE_PRINT:
            _TEMPLATE_PRINT[template] = _fingerprint(template)
        admin = _pg_admin()
        try:
            with admin.connect() as conn:
                _end_sessions(conn, name)
        finally:
            admin.dispose()
        eng = create_engine(_pg_database_url(name), poolclass=NullPool)
        try:
            with eng.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                tables = list(conn.execute(text(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'")).scalars())
                if tables:
                    probe = " UNION ALL ".join(
                        f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM public.{t})" for t in tables)
                    full = list(conn.execute(text(probe)).scalars())
                    if full:
                        conn.execute(text(f"TRUNCATE {', '.join(full)} RESTART IDENTITY CASCADE"))
                for seq in conn.execute(text(
                        "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                        "FROM pg_sequences")).scalars():
                    conn.execute(text(f"ALTER SEQUENCE {seq} RESTART"))
        finally:
            eng.dispose()
        return _fingerprint(name) == _TEMPLATE_PRINT[template]
    except Exception:  # noqa: BLE001 - not reusable: the caller drops it
        return False


def _drop_database(name: str) -> None:
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no schema yet), on SQLite and on PostgreSQL; for a test
    that also asks for `engine`, a database already migrated (see `engine`)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    need_postgres()
    if "engine" in request.fixturenames:
        template = request.getfixturevalue("pg_template")
        name, url = _SPARE.pop() if _SPARE else _copy_of_template(template)
        _MIGRATED.add(url)
        try:
            yield url
        finally:
            _MIGRATED.discard(url)
            if _emptied(name, template):
                _SPARE.append((name, url))
            else:
                _drop_database(name)
        return
    schema = _name("pulse_t")
    eng = create_schema(PG_URL, schema)
    eng.dispose()
    from pulse.sql.db import schema_url

    try:
        yield schema_url(PG_URL, schema)
    finally:
        drop_schema(PG_URL, schema)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite warehouse migrated once per worker: each test's SQLite warehouse starts as a
    copy of it (the same file `upgrade` would write, without running every migration again
    for each of some hundreds of tests; the migrations themselves are tested on their own)."""
    path = tmp_path_factory.mktemp("template") / "warehouse.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()
    return path


@pytest.fixture
def engine(db_url: str, monkeypatch: pytest.MonkeyPatch,
           sqlite_template: Path) -> Iterator[Engine]:
    """A migrated, empty warehouse; PULSE_DATABASE_URL points at it for CLI runs."""
    monkeypatch.setenv("PULSE_DATABASE_URL", db_url)
    get_settings(fresh=True)
    target = db_url.removeprefix("sqlite:///") if db_url.startswith("sqlite:///") else None
    if target is not None and not Path(target).exists():
        shutil.copyfile(sqlite_template, target)
        eng = make_engine(db_url)
    elif db_url in _MIGRATED:  # a copy of the migrated PostgreSQL template
        eng = make_engine(db_url)
    else:
        eng = make_engine(db_url)
        upgrade(eng)
    yield eng
    eng.dispose()


#: What `prebuilt` keeps per worker: (key, dialect) -> the SQLite file or the PostgreSQL
#: database each later test's warehouse is copied from.
_PREBUILT: dict[tuple[str, str], str] = {}


def prebuilt(engine: Engine, key: str, build: Callable[[], object]) -> None:
    """Fill the test's new warehouse `engine` with what `build()` writes into it.

    The first test on each worker and database runs `build` and keeps a copy of the result;
    every later test with the same `key` gets a copy of that copy instead (SQLite's backup,
    or CREATE DATABASE ... TEMPLATE on PostgreSQL), a few milliseconds where scoring a world
    takes seconds. Only the warehouse is copied: `build` may write nothing else a test reads
    (files under PULSE_HOME, say), and two builds that write different rows need two keys.
    `engine` keeps working: its pool is emptied and reconnects to the copy."""
    dialect, here = engine.dialect.name, str(engine.url.database)
    kept = _PREBUILT.get((key, dialect))
    first = kept is None
    if first:
        build()
    engine.dispose()
    if dialect == "sqlite":
        import sqlite3
        import tempfile

        if kept is None:
            kept = str(Path(tempfile.mkdtemp(prefix="pulse-prebuilt-")) / f"{key}.db")
        source, target = (here, kept) if first else (kept, here)
        src, dst = sqlite3.connect(source), sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        _PREBUILT[(key, dialect)] = kept
        return
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            if kept is None:
                kept = _name("pulse_tmpl")
                source, target = here, kept
            else:
                conn.execute(text(f'DROP DATABASE "{here}" WITH (FORCE)'))
                source, target = kept, here
            # a build's own engines may still hold connections: a template may have none
            _end_sessions(conn, source)
            conn.execute(text(
                f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY FILE_COPY'))
    finally:
        admin.dispose()
    _PREBUILT[(key, dialect)] = kept


@pytest.fixture(scope="session", autouse=True)
def _drop_prebuilt() -> Iterator[None]:
    """The copies `prebuilt` kept on PostgreSQL are dropped when the worker's session ends
    (and by `drop_leftovers` after a killed run: their names carry the worker's pid)."""
    yield
    for (_, dialect), kept in _PREBUILT.items():
        if dialect == "sqlite":
            shutil.rmtree(Path(kept).parent, ignore_errors=True)
        else:
            _drop_database(kept)
    _PREBUILT.clear()


@pytest.fixture(scope="session")
def airflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata database (SQLite) migrated once per run: each Airflow home a test
    makes starts as a copy of it (`airflow_home`) instead of running `airflow db migrate`
    again, about 6 s of CPU each time. Under xdist it lives in the run's directory, shared by
    the workers: the first to need it migrates it, and `ensure_airflow_db`'s lock makes the
    others wait for that, then find it migrated."""
    from pulse.devkit.airflow_runner import airflow_environ, ensure_airflow_db

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # .../pytest-N, whose popen-gwK folders are the workers'
    home = root / "airflow-template"
    ensure_airflow_db({**airflow_environ(), **_airflow_keys(home)})
    return home / "airflow.db"


def _airflow_keys(home: Path) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}


def airflow_home(template: Path, home: Path) -> dict[str, str]:
    """A new AIRFLOW_HOME at `home` whose metadata database starts as a copy of the migrated
    `template` (`ensure_airflow_db(..., template=)`); returns the env keys that point Airflow
    at it."""
    from pulse.devkit.airflow_runner import airflow_environ, ensure_airflow_db

    keys = _airflow_keys(home)
    ensure_airflow_db({**airflow_environ(), **keys}, template=template)
    return keys


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests first (marked slow or airflow, and the churn trainings), so that the
    xdist workers share them from the start and the run does not end on one long test while
    the other workers idle. The order within each group is kept."""
    def heavy(item: pytest.Item) -> bool:
        return (item.get_closest_marker("slow") is not None
                or item.get_closest_marker("airflow") is not None
                or item.path.name == "test_training.py")

    items.sort(key=lambda item: not heavy(item))
    _xdist_group_ids(config, items)


def _xdist_group_ids(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` on this pytest: give each test marked `xdist_group(NAME)` the node
    id `...@NAME` that xdist's scheduler groups by. pytest 9.2 keeps node ids structured
    (`Node._id`), so xdist 3.8's own `item._nodeid = ...@NAME` no longer takes and grouped
    tests were spread over the workers like any others (pytest-dev/pytest-xdist#1386). Only
    on an xdist worker with loadgroup; a no-op where the id already carries the suffix (an
    older pytest, or a fixed xdist). A marker with `per_database=True` makes one group per
    database of the `db_url` fixture (`NAME-sqlite`, `NAME-postgresql`), run side by side."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # an older pytest: xdist's own suffix works there
        return
    for item in items:
        callspec = getattr(item, "callspec", None)
        database = callspec.params.get("db_url") if callspec is not None else None
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        + (f"-{database}" if database and m.kwargs.get("per_database") else "")
                        for m in item.iter_markers("xdist_group")})
        if not names:
            continue
        suffix = "@" + "_".join(names)
        if not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)  # type: ignore[attr-defined]
