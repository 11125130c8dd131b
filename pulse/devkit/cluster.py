"""The production profile on one machine: Airflow on CeleryExecutor, started and stopped by pid.

`pulse cluster up` starts a real `scheduler`, `dag-processor`, `api-server`, `triggerer` and
N Celery workers (`airflow celery worker`, distinct hostnames) as processes of their own, each
in its own session, with the same environment (`cluster_environ`): Airflow's metadata on
PostgreSQL (a database of its own, created when missing), Redis (or RabbitMQ) as the broker,
the warehouse on PostgreSQL, the DAG folder of this checkout and the `pulse` package of this
environment. Everything it writes lives under `<PULSE_HOME>/cluster/`:

    cluster/
      airflow/            AIRFLOW_HOME (no airflow.cfg: the profile is environment variables)
      logs/<name>.log     each process's own output
      task-logs/          Airflow's task logs (base_log_folder), shared by the workers here
      pids/<name>.json    pid, start time and command of each process
      secrets/            fernet key, JWT secret, api secret key and the console password,
                          generated once (mode 0600) unless given in the environment

`pulse cluster down` stops each recorded process by its pid (its process group: SIGTERM, then
SIGKILL after a grace period); `status` checks each pid and asks the api-server's health
endpoint and the broker (a Celery ping) how the components are.

On several machines the same environment is what each machine's service manager (systemd,
Kubernetes) gives its process; docs/cluster.md describes it.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulse.core.errors import ConfigError, PulseError
from pulse.core.settings import Settings, get_settings
from pulse.devkit.airflow_runner import (
    DAGS_FOLDER,
    _absolute_database_url,
    airflow_executable,
    ensure_airflow_db,
)

log = logging.getLogger(__name__)

#: The console user of the simple auth manager (its password is generated into secrets/).
ADMIN_USER = "admin"
#: Names of the secrets and the environment variable that overrides each.
SECRET_ENV = {
    "fernet_key": "AIRFLOW__CORE__FERNET_KEY",
    "jwt_secret": "AIRFLOW__API_AUTH__JWT_SECRET",
    "api_secret_key": "AIRFLOW__API__SECRET_KEY",
}
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")


class ClusterError(PulseError):
    """The cluster cannot be started, stopped or reached."""


@dataclass(frozen=True)
class Cluster:
    """Where one local cluster lives and how it is wired."""

    home: Path
    airflow_db_url: str
    broker_url: str
    warehouse_url: str
    pulse_home: Path
    api_port: int
    workers: int
    concurrency: int
    heartbeat_timeout: int
    shards: int
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *,
                      home: Path | None = None, **overrides: Any) -> Cluster:
        s = settings or get_settings()
        workers = overrides.pop("workers", s.cluster_workers)
        concurrency = overrides.pop("concurrency", s.cluster_worker_concurrency)
        shards = overrides.pop("shards", None)
        if shards is None:
            given = "PULSE_SCORE_SHARDS" in os.environ
            shards = s.score_shards if given else workers * concurrency
        return cls(
            home=home or s.resolved_home() / "cluster",
            airflow_db_url=overrides.pop("airflow_db_url", s.cluster_airflow_db_url),
            broker_url=overrides.pop("broker_url", s.cluster_broker_url),
            warehouse_url=overrides.pop("warehouse_url", s.resolved_database_url()),
            pulse_home=s.resolved_home(),
            api_port=overrides.pop("api_port", s.cluster_api_port),
            workers=workers,
            concurrency=concurrency,
            heartbeat_timeout=overrides.pop("heartbeat_timeout", s.cluster_heartbeat_timeout),
            shards=shards,
            **overrides,
        )

    # ----------------------------------------------------------------- paths and names

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def pids(self) -> Path:
        return self.home / "pids"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def key_prefix(self) -> str:
        """Prefixes this cluster's broker keys, so that two clusters on one Redis (a test's
        beside an operator's) never take each other's tasks."""
        import hashlib

        return "pulse-" + hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:10] + ":"

    def worker_names(self) -> list[str]:
        return [f"worker{i + 1}" for i in range(self.workers)]

    def process_names(self) -> list[str]:
        return [*COMPONENTS, *self.worker_names()]

    def node_name(self, worker: str) -> str:
        """The hostname a worker reports (Celery's node name, and the task instances'
        hostname): `<worker>@<this machine>`."""
        return f"{worker}@{socket.gethostname()}"


# --------------------------------------------------------------------------- secrets


def _secret_values(cluster: Cluster) -> dict[str, str]:
    """Each secret from the environment, else from secrets/ (generated there once, 0600)."""
    from cryptography.fernet import Fernet

    makers: dict[str, Callable[[], str]] = {
        "fernet_key": lambda: Fernet.generate_key().decode(),
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        "api_secret_key": lambda: secrets.token_urlsafe(48),
    }
    cluster.secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cluster.secrets_dir, 0o700)
    out: dict[str, str] = {}
    for name, maker in makers.items():
        given = os.environ.get(SECRET_ENV[name], "").strip()
        out[name] = given or _stored_secret(cluster.secrets_dir / name, maker)
    return out


def _stored_secret(path: Path, maker: Callable[[], str]) -> str:
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    value = maker()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def passwords_file(cluster: Cluster) -> Path:
    return cluster.secrets_dir / "console-passwords.json"


def admin_password(cluster: Cluster) -> str:
    """The console (and REST API) password of `admin`, generated once into secrets/."""
    path = passwords_file(cluster)
    cluster.secrets_dir.mkdir(parents=True, exist_ok=True)
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict) or not stored.get(ADMIN_USER):
        stored = {ADMIN_USER: secrets.token_urlsafe(18)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(stored) + "\n")
    return str(stored[ADMIN_USER])


# --------------------------------------------------------------------------- the profile


def cluster_environ(cluster: Cluster, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every process of the cluster runs with (secrets included: never log
    it). The same on every machine of a real deployment, but for the api-server's address."""
    env = dict(os.environ if base is None else base)
    secret = _secret_values(cluster)
    admin_password(cluster)
    port = cluster.api_port
    env.update({
        "PULSE_HOME": str(cluster.pulse_home),
        "PULSE_DATABASE_URL": _absolute_database_url(cluster.warehouse_url),
        "PULSE_SCORE_SHARDS": str(cluster.shards),
        "AIRFLOW_HOME": str(cluster.airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cluster.api_url}/execution/",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pulse.runtime.hostname",
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "32"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(cluster)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.airflow_db_url,
        "AIRFLOW__CELERY__BROKER_URL": cluster.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _plain_postgres(cluster.airflow_db_url),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cluster.concurrency),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": cluster.key_prefix,
        # a task whose worker died unacknowledged goes back to the queue after this; by then
        # the scheduler has retried it (Airflow refuses to run a task instance twice)
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": env.get(
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT", "21600"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": cluster.api_url,
        "AIRFLOW__API__SECRET_KEY": secret["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cluster.home / "task-logs"),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port + 1),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(cluster.heartbeat_timeout),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(
            max(2, min(10, cluster.heartbeat_timeout // 4))),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": env.get(
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "60"),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    })
    env.update(cluster.extra_env)
    return env


def _plain_postgres(url: str) -> str:
    """Celery's result backend speaks SQLAlchemy with a plain `postgresql://` URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def process_commands(cluster: Cluster) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each process: its command line and the environment it adds to the profile's."""
    airflow = airflow_executable()
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        "scheduler": ([airflow, "scheduler"], {}),
        "dag-processor": ([airflow, "dag-processor"], {}),
        "api-server": ([airflow, "api-server", "--host", "127.0.0.1",
                        "--port", str(cluster.api_port), "--workers", "1"], {}),
        "triggerer": ([airflow, "triggerer"], {}),
    }
    for i, worker in enumerate(cluster.worker_names()):
        node = cluster.node_name(worker)
        out[worker] = (
            [airflow, "celery", "worker", "--celery-hostname", node,
             "--concurrency", str(cluster.concurrency)],
            {"PULSE_NODE_NAME": node,
             "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(cluster.api_port + 2 + i)},
        )
    return out


# --------------------------------------------------------------------------- the databases


def check_profile(cluster: Cluster) -> None:
    """Refuse a profile that cannot work across machines: the warehouse and Airflow's
    metadata must be PostgreSQL, and the broker Redis or RabbitMQ."""
    from sqlalchemy.engine import make_url

    if make_url(cluster.warehouse_url).get_backend_name() != "postgresql":
        raise ConfigError(
            "the cluster needs the warehouse on PostgreSQL: set PULSE_DATABASE_URL to "
            "postgresql+psycopg://USER@HOST:5432/DB (not "
            f"{make_url(cluster.warehouse_url).render_as_string(hide_password=True)!r})")
    if make_url(cluster.airflow_db_url).get_backend_name() != "postgresql":
        raise ConfigError("PULSE_CLUSTER_AIRFLOW_DB_URL must be a PostgreSQL URL (not "
                          f"{make_url(cluster.airflow_db_url).render_as_string(True)!r})")
    if not cluster.broker_url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ConfigError("PULSE_CLUSTER_BROKER_URL must be redis://... or amqp://... (not "
                          f"{cluster.broker_url.split('@')[-1]!r})")


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database of `url` when it is missing; True when created."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    parsed = make_url(url)
    name = parsed.database
    if not name:
        raise ConfigError(f"no database name in {parsed.render_as_string(hide_password=True)}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": name}).scalar()
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            log.info("created database %s", name)
            return True
    except OperationalError as exc:
        raise ClusterError(f"PostgreSQL at {parsed.host}:{parsed.port or 5432} unreachable: "
                           f"{str(exc).splitlines()[0]}") from None
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of `url` (tests; its connections are ended first)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(parsed.database or "")
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        admin.dispose()


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    argv: list[str]
    log: str
    started_at: str

    def alive(self) -> bool:
        """The recorded process is still running (the same process: its start time matches,
        so a reused pid is not mistaken for it)."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            return (abs(proc.create_time() - self.create_time) < 1.0
                    and proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False


def _pid_path(cluster: Cluster, name: str) -> Path:
    return cluster.pids / f"{name}.json"


def read_record(cluster: Cluster, name: str) -> ProcessRecord | None:
    try:
        data = json.loads(_pid_path(cluster, name).read_text())
        return ProcessRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def records(cluster: Cluster) -> list[ProcessRecord]:
    """Every recorded process (the known names first, then any other record found)."""
    names = cluster.process_names()
    found = sorted(p.stem for p in cluster.pids.glob("*.json")) if cluster.pids.is_dir() else []
    out = []
    for name in [*names, *(n for n in found if n not in names)]:
        rec = read_record(cluster, name)
        if rec is not None:
            out.append(rec)
    return out


def start_process(cluster: Cluster, name: str, argv: list[str], env: Mapping[str, str]
                  ) -> ProcessRecord:
    """Start one process in a session of its own, its output appended to logs/<name>.log."""
    import psutil

    existing = read_record(cluster, name)
    if existing is not None and existing.alive():
        log.info("%s already running (pid %d)", name, existing.pid)
        return existing
    cluster.logs.mkdir(parents=True, exist_ok=True)
    cluster.pids.mkdir(parents=True, exist_ok=True)
    log_path = cluster.logs / f"{name}.log"
    with open(log_path, "ab") as out:
        out.write(f"\n=== {name} starting {datetime.now(UTC).isoformat()} ===\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=str(cluster.home))
    rec = ProcessRecord(name=name, pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(),
                        argv=[Path(argv[0]).name, *argv[1:]], log=str(log_path),
                        started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _pid_path(cluster, name).write_text(json.dumps(rec.__dict__, indent=2) + "\n")
    log.info("started %s (pid %d)", name, proc.pid)
    return rec


def stop_process(cluster: Cluster, rec: ProcessRecord, *, grace: float = 20.0,
                 sig: int = signal.SIGTERM) -> str:
    """Stop one recorded process and its children (its process group) by its pid: `sig`,
    then SIGKILL after `grace` seconds. Returns what happened, in words."""
    return stop_processes(cluster, [rec], grace=grace, sig=sig)[rec.name]


def stop_processes(cluster: Cluster, recs: list[ProcessRecord], *, grace: float = 20.0,
                   sig: int = signal.SIGTERM) -> dict[str, str]:
    """Stop recorded processes together: `sig` to each one's process group (by its recorded
    pid), then SIGKILL to whatever is left of them after `grace` seconds."""
    import psutil

    how: dict[str, str] = {}
    members: dict[str, list[Any]] = {}
    for rec in recs:
        if not rec.alive():
            how[rec.name] = "not running"
            continue
        try:
            group = os.getpgid(rec.pid)
        except ProcessLookupError:
            how[rec.name] = "not running"
            continue
        if group != rec.pid:  # started by us in a session of its own: its group is its pid
            raise ClusterError(f"{rec.name} (pid {rec.pid}) is not the leader of its process "
                               "group: not stopping a process this cluster did not start")
        members[rec.name] = _group_members(group)
        os.killpg(group, sig)
    everyone = [p for procs in members.values() for p in procs]
    _, alive = psutil.wait_procs(everyone, timeout=grace)
    left = {p.pid for p in alive}
    for name, procs in members.items():
        stuck = [p for p in procs if p.pid in left]
        for proc in stuck:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(stuck, timeout=5)
        how[name] = f"killed after {grace:.0f} s" if stuck and sig != signal.SIGKILL else "stopped"
    for rec in recs:
        _pid_path(cluster, rec.name).unlink(missing_ok=True)
    return how


def _group_members(group: int) -> list[Any]:
    import psutil

    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == group:
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


# --------------------------------------------------------------------------- up, down, status


def up(cluster: Cluster, *, wait: float = 120.0,
       on_step: Callable[[str], None] | None = None) -> list[ProcessRecord]:
    """Create and migrate the metadata database when needed, then start every process and
    wait (up to `wait` seconds) until the api-server says the scheduler, dag-processor and
    triggerer are healthy and every worker answers the broker's ping."""
    say = on_step or (lambda _: None)
    check_profile(cluster)
    cluster.home.mkdir(parents=True, exist_ok=True)
    env = cluster_environ(cluster)
    if ensure_database(cluster.airflow_db_url):
        say("created the metadata database")
    say("migrating the metadata database (when behind)")
    from pulse.sql.db import make_engine, upgrade

    warehouse = make_engine(cluster.warehouse_url)
    try:
        upgrade(warehouse)  # the warehouse schema, once, before any worker touches it
    finally:
        warehouse.dispose()
    ensure_airflow_db(env)
    started = []
    for name, (argv, extra) in process_commands(cluster).items():
        started.append(start_process(cluster, name, argv, {**env, **extra}))
        say(f"started {name} (pid {started[-1].pid})")
    if wait > 0:
        wait_healthy(cluster, timeout=wait)
        say("every component is healthy")
    return started


def down(cluster: Cluster, *, grace: float = 20.0) -> dict[str, str]:
    """Stop every recorded process by its pid: the workers first (a warm shutdown hands
    their running tasks back within `grace`), then the rest together."""
    recs = {r.name: r for r in records(cluster)}
    workers = [recs.pop(w) for w in cluster.worker_names() if w in recs]
    out = stop_processes(cluster, workers, grace=grace)
    out.update(stop_processes(cluster, list(recs.values()), grace=grace))
    return out


@dataclass
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    health: str  # healthy, unhealthy, unknown, stopped
    detail: str = ""


def status(cluster: Cluster) -> list[ComponentStatus]:
    """Each process: its pid, whether it runs, and its health (api-server, scheduler,
    dag-processor and triggerer from the api-server's /api/v2/monitor/health; workers from a
    Celery ping through the broker)."""
    recs = {r.name: r for r in records(cluster)}
    health = api_health(cluster)
    pongs = worker_pings(cluster) if any(
        recs.get(w) and recs[w].alive() for w in cluster.worker_names()) else {}
    out = []
    for name in cluster.process_names():
        rec = recs.get(name)
        running = bool(rec and rec.alive())
        state, detail = "stopped", ""
        if running:
            state, detail = "unknown", ""
            if name == "api-server":
                state = "healthy" if health is not None else "unhealthy"
                detail = "" if health is not None else f"no answer on {cluster.api_url}"
            elif name in COMPONENTS:
                part = (health or {}).get(name.replace("-", "_"), {})
                if part:
                    state = part.get("status") or "unknown"
                    beat = next((v for k, v in part.items() if k.endswith("heartbeat")), None)
                    detail = f"last heartbeat {beat}" if beat else ""
            else:
                node = cluster.node_name(name)
                state = "healthy" if node in pongs else "unhealthy"
                detail = node if node in pongs else f"{node} did not answer the ping"
        out.append(ComponentStatus(name, rec.pid if rec else None, running, state, detail))
    return out


def api_health(cluster: Cluster) -> dict[str, Any] | None:
    """The api-server's /api/v2/monitor/health answer, or None when it does not answer."""
    import httpx

    try:
        resp = httpx.get(f"{cluster.api_url}/api/v2/monitor/health", timeout=5)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data
    except (httpx.HTTPError, ValueError):
        return None


def worker_pings(cluster: Cluster, timeout: float = 2.0) -> set[str]:
    """The node names of the workers that answer a Celery ping through this cluster's broker."""
    from celery import Celery

    app = Celery("pulse-cluster-status", broker=cluster.broker_url)
    app.conf.broker_transport_options = {"global_keyprefix": cluster.key_prefix}
    app.conf.broker_connection_retry_on_startup = False
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception as exc:  # the broker is down or refuses us: no worker answers
        log.warning("celery ping failed: %s", exc)
        return set()
    finally:
        app.close()
    return {node for reply in replies for node in reply}


def wait_healthy(cluster: Cluster, *, timeout: float = 120.0) -> list[ComponentStatus]:
    """Wait until every process reports healthy; `ClusterError` naming the others after
    `timeout` seconds (or at once when a process has died: its log's last lines say why)."""
    deadline = time.monotonic() + timeout
    while True:
        states = status(cluster)
        dead = [s for s in states if not s.running]
        if dead:
            names = ", ".join(s.name for s in dead)
            raise ClusterError(f"{names} not running; see {cluster.logs}/: "
                               + "; ".join(_tail(cluster.logs / f"{s.name}.log") for s in dead))
        bad = [s for s in states if s.health != "healthy"]
        if not bad:
            return states
        if time.monotonic() > deadline:
            raise ClusterError(f"not healthy after {timeout:.0f} s: "
                               + ", ".join(f"{s.name} {s.health}" for s in bad))
        time.sleep(1.0)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"{path.name}: no log"
    return f"{path.name}: " + " | ".join(t.strip() for t in text[-lines:])


# --------------------------------------------------------------------------- the REST API


class ApiClient:
    """A small client of the api-server's REST API (v2), signed in as the console admin."""

    def __init__(self, cluster: Cluster) -> None:
        import httpx

        self.cluster = cluster
        self._http = httpx.Client(base_url=cluster.api_url, timeout=30)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            resp = self._http.post("/auth/token", json={
                "username": ADMIN_USER, "password": admin_password(self.cluster)})
            if resp.status_code >= 400:
                raise ClusterError(f"the api-server refused the sign-in (HTTP {resp.status_code})")
            self._token = resp.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, *, missing_ok: bool = False, **kw: Any) -> Any:
        """The JSON of an API call; ClusterError on an HTTP error (with `missing_ok`, a 404
        gives None: "nothing to delete" is not an error)."""
        resp = self._http.request(method, "/api/v2" + path, headers=self._headers(), **kw)
        if missing_ok and resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise ClusterError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.json() if resp.content else None

    def dag_ids(self) -> list[str]:
        return [d["dag_id"] for d in self.request("GET", "/dags", params={"limit": 100})["dags"]]

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def trigger(self, dag_id: str, *, logical_date: datetime | None = None,
                conf: Mapping[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"logical_date": logical_date.isoformat() if logical_date else None,
                                "conf": dict(conf or {})}
        run: dict[str, Any] = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns",
                            params={"limit": 100, "order_by": "run_after"})
        runs: list[dict[str, Any]] = data["dag_runs"]
        return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                            params={"limit": 1000})
        tis: list[dict[str, Any]] = data["task_instances"]
        return tis
