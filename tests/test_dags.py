"""The Airflow DAGs: integrity of every DAG file, and real runs of `pulse_ingest`.

Airflow runs in subprocesses (`airflow dags test`, a DagBag in a fresh interpreter) with the
environment `pulse.devkit.airflow_runner` builds, so this process never imports Airflow. Every test has
its own PULSE_HOME (tests/conftest.py); the Airflow metadata database is migrated once per
test session (once per xdist worker) into a temporary AIRFLOW_HOME.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, Table, create_engine, func, select, text

from pulse.core.errors import PulseError
from pulse.core.settings import get_settings
from pulse.devkit import airflow_runner as airflow_env
from pulse.devkit.airflow_runner import (
    DAGS_FOLDER,
    DagSession,
    airflow_environ,
    ensure_airflow_db,
    run_dag_test,
)
from pulse.listeners.contract import LANDING_ORDER
from pulse.sql.db import make_engine
from pulse.sql.schema import ENTITY_TABLES, Account, IngestRun, QuarantineRow, UsageEvent
from tests.conftest import airflow_home

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory,
               airflow_template: Path) -> dict[str, str]:
    """A migrated Airflow metadata database for the session (a copy of the worker's
    template): the env keys that point at it."""
    return airflow_home(airflow_template, tmp_path_factory.mktemp("airflow-home"))


@pytest.fixture
def af_env(airflow_db: dict[str, str], pulse_home: Path) -> dict[str, str]:
    """The environment of `airflow` commands for this test's PULSE_HOME."""
    return {**airflow_environ(get_settings(fresh=True)), **airflow_db}


# --------------------------------------------------------------------------- integrity

_INSPECT_DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
heavy = ("pandas", "numpy", "sklearn", "listeners", "sql", "models", "outreach")
print("DAGBAG " + json.dumps({
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "heavy_imports": sorted(m for m in heavy if m in sys.modules),
    "dags": {
        d.dag_id: {
            "tags": sorted(d.tags),
            "default_retries": (d.default_args or {}).get("retries"),
            "doc_md": d.doc_md or "",
            "catchup": d.catchup,
            "max_active_runs": d.max_active_runs,
            "schedule": str(d.schedule),
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "outlets": [getattr(o, "uri", repr(o)) for o in t.outlets],
                    "upstream": sorted(t.upstream_task_ids),
                    "mapped": type(t).__name__ == "MappedOperator"
                    or t.get_closest_mapped_task_group() is not None,
                }
                for t in d.tasks
            },
        }
        for d in bag.dags.values()
    },
}))
"""


@pytest.fixture(scope="module")
def dagbag(airflow_db: dict[str, str]) -> dict[str, object]:
    """What a DagBag over dags/ holds, read in a fresh interpreter with examples off."""
    env = {**airflow_environ(), **airflow_db}
    proc = subprocess.run(
        [sys.executable, "-c", _INSPECT_DAGBAG, str(DAGS_FOLDER)],
        env=env, capture_output=True, text=True, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAGBAG ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("DAGBAG "))


@pytest.mark.airflow
def test_every_dag_file_imports_and_is_documented(dagbag: dict) -> None:
    assert dagbag["import_errors"] == {}
    assert "pulse_ingest" in dagbag["dags"]
    for dag_id, d in dagbag["dags"].items():
        assert d["tags"], f"{dag_id} has no tags"
        assert (d["default_retries"] or 0) >= 1, f"{dag_id} does not retry by default"
        assert d["doc_md"].strip(), f"{dag_id} has no doc_md"
    # Thin DAG files: parsing them imports none of the heavy or warehouse modules.
    assert dagbag["heavy_imports"] == []


@pytest.mark.airflow
def test_pulse_ingest_publishes_one_asset_per_source(dagbag: dict) -> None:
    d = dagbag["dags"]["pulse_ingest"]
    assert (d["schedule"], d["catchup"], d["max_active_runs"]) == ("*/15 * * * *", False, 1)
    outlets = {tid: t["outlets"] for tid, t in d["tasks"].items() if t["outlets"]}
    assert outlets == {f"publish_{s}": [f"x-pulse://warehouse/{s}"] for s in LANDING_ORDER} | {
        "publish_inputs": ["x-pulse://warehouse/inputs"]}
    # pulse_health starts on that one event per landing, not on each source's
    health = dagbag["dags"]["pulse_health"]["schedule"]
    assert "x-pulse://warehouse/inputs" in health and "warehouse/usage" not in health
    assert set(LANDING_ORDER) == set(ENTITY_TABLES)
    assert d["tasks"]["report"]["retries"] == 0


@pytest.mark.airflow
def test_pulse_health_scores_in_mapped_shards_and_publishes_after_all(dagbag: dict) -> None:
    tasks = dagbag["dags"]["pulse_health"]["tasks"]
    shard = ("score_shard.features", "score_shard.health", "score_shard.churn")
    assert all(tasks[t]["mapped"] and tasks[t]["retries"] >= 1 for t in shard)
    assert tasks["score_shard.health"]["upstream"] == ["score_shard.features"]
    assert tasks["score_shard.churn"]["upstream"] == ["score_shard.health"]
    # the whole-book steps wait for every shard; the date is published after them, and only
    # then read (playbooks, the risk list and its asset)
    assert tasks["churn_drivers"]["upstream"] == tasks["flags"]["upstream"] == [
        "score_shard.churn"]
    assert tasks["publish"]["upstream"] == ["churn_drivers", "flags"]
    assert tasks["playbooks"]["upstream"] == tasks["risk_list"]["upstream"] == ["publish"]
    assert tasks["risk_list"]["outlets"] == ["x-pulse://warehouse/health"]


def test_dags_use_airflow_3_spellings() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    assert ruff.exists(), f"ruff (requirements.txt) is not installed next to {sys.executable}"
    proc = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "AIR3", str(DAGS_FOLDER)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- environment


def test_airflow_environ_points_airflow_at_pulse(
    pulse_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pulse_home)
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    monkeypatch.setenv("PULSE_DATABASE_URL", "sqlite:///relative/warehouse.db")
    env = airflow_environ(get_settings(fresh=True))
    assert env["AIRFLOW_HOME"] == str(pulse_home / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER)
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).is_absolute()
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{pulse_home / 'airflow' / 'airflow.db'}"
    )
    assert env["PULSE_HOME"] == str(pulse_home)
    assert env["PULSE_DATABASE_URL"] == f"sqlite:///{pulse_home / 'relative' / 'warehouse.db'}"

    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://af@db/airflow")
    monkeypatch.setenv("PULSE_DATABASE_URL", "postgresql+psycopg://pulse:s3cret@db/pulse")
    env = airflow_environ(get_settings(fresh=True))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql://af@db/airflow"
    assert env["PULSE_DATABASE_URL"] == "postgresql+psycopg://pulse:s3cret@db/pulse"


@pytest.fixture
def migrations(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The `airflow db migrate` commands `ensure_airflow_db` runs, recorded instead of run."""
    calls: list[list[str]] = []

    def fake_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(airflow_env.subprocess, "run", fake_run)
    return calls


@pytest.mark.airflow
def test_ensure_airflow_db_skips_a_migrated_database(
    af_env: dict[str, str], migrations: list[list[str]]
) -> None:
    import json

    calls = migrations
    stamp = json.loads((Path(af_env["AIRFLOW_HOME"]) / airflow_env.MIGRATED_STAMP).read_text())
    ensure_airflow_db(af_env)  # the session fixture migrated it already
    assert calls == []  # no `airflow db migrate` the second time
    assert stamp["revision"] and stamp["revision"] == airflow_env._db_revision(
        af_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])

    # A stamp that disagrees with the database is not trusted: it migrates again.
    (Path(af_env["AIRFLOW_HOME"]) / airflow_env.MIGRATED_STAMP).write_text(
        json.dumps({**stamp, "revision": "not-a-revision"}))
    ensure_airflow_db(af_env)
    assert len(calls) == 1 and calls[0][-2:] == ["db", "migrate"]
    restamped = json.loads((Path(af_env["AIRFLOW_HOME"]) / airflow_env.MIGRATED_STAMP).read_text())
    assert restamped == stamp


@pytest.mark.airflow
def test_ensure_airflow_db_starts_a_new_database_from_a_template(
    airflow_template: Path, tmp_path: Path, migrations: list[list[str]]
) -> None:
    import json
    import shutil

    calls = migrations
    made = json.loads((airflow_template.parent / airflow_env.MIGRATED_STAMP).read_text())

    def env_of(home: Path) -> dict[str, str]:
        return {"AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}

    # A new home: a copy of the template, at its revision, stamped as its own migration.
    env = env_of(tmp_path / "new")
    ensure_airflow_db(env, template=airflow_template)
    assert calls == []
    conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert airflow_env._db_revision(conn) == made["revision"]
    stamp = json.loads((tmp_path / "new" / airflow_env.MIGRATED_STAMP).read_text())
    assert stamp["revision"] == made["revision"] and stamp["airflow"] == made["airflow"]
    assert stamp["sql_alchemy_conn_sha256"] != made["sql_alchemy_conn_sha256"]
    ensure_airflow_db(env, template=airflow_template)  # then it is simply migrated
    assert calls == []

    # A database already there is never overwritten: it is migrated as it is.
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "airflow.db").write_bytes(b"")
    ensure_airflow_db(env_of(tmp_path / "kept"), template=airflow_template)
    assert len(calls) == 1 and (tmp_path / "kept" / "airflow.db").stat().st_size == 0

    # A template another Airflow migrated is not copied.
    other = tmp_path / "other-template"
    other.mkdir()
    shutil.copyfile(airflow_template, other / "airflow.db")
    (other / airflow_env.MIGRATED_STAMP).write_text(json.dumps({**made, "airflow": "2.0.0"}))
    ensure_airflow_db(env_of(tmp_path / "older"), template=other / "airflow.db")
    assert len(calls) == 2 and not (tmp_path / "older" / "airflow.db").exists()


# --------------------------------------------------------------------------- real runs

ACCOUNTS = """\
account_id,name,mrr,currency,plan,segment,region,csm_email,domain,x_handle,seats,created_at,renewal_date
A1,Acme,1200.50,USD,pro,mid,eu,csm@pulse.example,acme.example,acme,25,2025-03-01T00:00:00Z,2026-03-01
A2,Globex,300,EUR,starter,smb,us,csm@pulse.example,globex.example,,5,2025-06-01T00:00:00Z,2026-06-01
"""
CONTACTS = """\
contact_id,account_id,email,name,role,timezone,locale,x_handle,opted_out
C1,A1,ann@acme.example,Ann,admin,Europe/Berlin,de-DE,,false
C2,A2,bob@globex.example,Bob,user,America/New_York,en-US,,true
"""
USAGE = """\
event_id,account_id,occurred_at,feature,contact_id,component,region,quantity,outcome
E1,A1,2026-01-10T10:00:00Z,reports,C1,api,eu,3,ok
E2,A2,2026-01-10T11:00:00Z,exports,C2,web,us,1,error
E3,A9,2026-01-10T12:00:00Z,reports,,api,eu,1,ok
"""
# The second drop: the account E3 named, an update of A1, and two files that fail whole.
ACCOUNTS_2 = """\
account_id,name,mrr,currency,plan,segment,region,csm_email,domain,x_handle,seats,created_at,renewal_date
A9,Initech,99,USD,starter,smb,us,,initech.example,,3,2025-09-01T00:00:00Z,
A1,Acme,1500,USD,pro,mid,eu,csm@pulse.example,acme.example,acme,30,2025-03-01T00:00:00Z,2026-03-01
"""
USAGE_NO_HEADER = "event_id,when,what\nE9,2026-01-11T10:00:00Z,reports\n"


def _counts(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def asset_events(env: dict[str, str], dag_id: str = "pulse_ingest") -> Counter[str]:
    """The asset events `dag_id` emitted so far, by asset URI, from the Airflow metadata
    database."""
    engine = create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                "WHERE e.source_dag_id = :dag_id"), {"dag_id": dag_id}).scalars().all()
    finally:
        engine.dispose()
    return Counter(rows)


@pytest.mark.airflow
@pytest.mark.slow
def test_pulse_ingest_lands_rejects_relands_and_publishes(
    af_env: dict[str, str], pulse_home: Path
) -> None:
    settings = get_settings()
    landing = settings.landing_dir
    landing.mkdir(parents=True)
    (landing / "accounts.csv").write_text(ACCOUNTS)
    (landing / "contacts.csv").write_text(CONTACTS)
    (landing / "usage.csv").write_text(USAGE)
    events_before = asset_events(af_env)
    # The three runs share one Airflow process, as the main job's DAGs do (DagSession): the
    # second fails, and the session still runs the third. (The other DAGs' tests rerun in a
    # process of its own: what a rerun may not do twice, it must not do from a new process.)
    with DagSession(af_env) as dags:
        # 1. Good files: everything lands, the row naming an unknown account is quarantined.
        dags.run("pulse_ingest", logical_date="2026-01-15")

        engine = make_engine()
        assert _counts(engine, Account.__table__) == 2
        assert _counts(engine, ENTITY_TABLES["contacts"]) == 2
        assert _counts(engine, UsageEvent.__table__) == 2
        with engine.connect() as conn:
            open_rows = conn.execute(
                select(QuarantineRow.source, QuarantineRow.code, QuarantineRow.status)
            ).all()
            file_runs = conn.execute(
                select(IngestRun.file, IngestRun.status, IngestRun.read, IngestRun.quarantined)
                .where(IngestRun.file != "quarantine retry").order_by(IngestRun.run_id)
            ).all()
        assert [tuple(r) for r in open_rows] == [("usage", "unknown_account", "open")]
        # Accounts land first; the other files in any order.
        assert tuple(file_runs[0]) == ("accounts.csv", "ok", 2, 0)
        assert sorted(tuple(r) for r in file_runs[1:]) == [
            ("contacts.csv", "ok", 2, 0), ("usage.csv", "ok", 3, 1),
        ]
        assert sorted(p.name for p in landing.iterdir()) == []
        day1 = pulse_home / "landed" / "2026-01-15"
        assert sorted(p.name for p in day1.iterdir()) == ["accounts.csv", "contacts.csv", "usage.csv"]
        events = asset_events(af_env) - events_before
        assert events == Counter({
            "x-pulse://warehouse/accounts": 1,
            "x-pulse://warehouse/contacts": 1,
            "x-pulse://warehouse/usage": 1,
            "x-pulse://warehouse/inputs": 1,  # one for pulse_health, for the three
        })

        # 2. A new account relands the quarantined row; two files that fail whole are rejected
        #    with their reasons, do not stop the good file, and turn the run red.
        (landing / "accounts_2026-01-16.csv").write_text(ACCOUNTS_2)
        (landing / "usage_2026-01-16.csv").write_text(USAGE_NO_HEADER)
        (landing / "weather.csv").write_text("city,temp\nParis,12\n")
        events_before = asset_events(af_env)
        with pytest.raises(PulseError, match=r"report failed.*2 file\(s\) rejected") as failure:
            dags.run("pulse_ingest", logical_date="2026-01-16")
        assert "\n" not in str(failure.value)
        assert "weather.csv" in str(failure.value)
        assert "usage_2026-01-16.csv" in str(failure.value)

        assert _counts(engine, Account.__table__) == 3
        assert _counts(engine, UsageEvent.__table__) == 3
        with engine.connect() as conn:
            mrr = conn.execute(select(Account.mrr).where(Account.account_id == "A1")).scalar_one()
            statuses = conn.execute(select(QuarantineRow.status)).scalars().all()
            bad_run = conn.execute(
                select(IngestRun.status, IngestRun.error)
                .where(IngestRun.file == "usage_2026-01-16.csv")
            ).one()
        assert float(mrr) == 1500.0
        assert statuses == ["relanded"]
        assert bad_run.status == "failed" and bad_run.error
        rejected = pulse_home / "rejected"
        assert sorted(p.name for p in rejected.iterdir()) == [
            "usage_2026-01-16.csv", "usage_2026-01-16.csv.reason.txt",
            "weather.csv", "weather.csv.reason.txt",
        ]
        assert "cannot tell the source" in (rejected / "weather.csv.reason.txt").read_text()
        assert "account_id" in (rejected / "usage_2026-01-16.csv.reason.txt").read_text()
        assert [p.name for p in (pulse_home / "landed" / "2026-01-16").iterdir()] == [
            "accounts_2026-01-16.csv"
        ]
        assert list(landing.iterdir()) == []
        events = asset_events(af_env) - events_before
        assert events == Counter({"x-pulse://warehouse/accounts": 1, "x-pulse://warehouse/usage": 1,
                                  "x-pulse://warehouse/inputs": 1})

        # 3. Nothing new: the run succeeds and changes nothing, not even the run log.
        runs_before = _counts(engine, IngestRun.__table__)
        events_before = asset_events(af_env)
        third = dags.run("pulse_ingest", logical_date="2026-01-17")
        assert "DagRun Finished: dag_id=pulse_ingest" in third.stdout
        assert "2026-01-16" not in third.stdout  # the output of this run only
        assert _counts(engine, IngestRun.__table__) == runs_before
        assert _counts(engine, Account.__table__) == 3
        assert _counts(engine, UsageEvent.__table__) == 3
        assert not (pulse_home / "landed" / "2026-01-17").exists()
        assert asset_events(af_env) - events_before == Counter()
        engine.dispose()


@pytest.mark.airflow
@pytest.mark.slow
def test_pulse_ingest_lands_the_demo_world(af_env: dict[str, str], pulse_home: Path) -> None:
    from pulse.devkit.demo import generate

    summary = generate(pulse_home / "demo", accounts=30, days=14, seed=5,
                       end=date(2026, 6, 30), malformed_rate=0.02)
    truth = json.loads(summary.truth_path.read_text())
    landing = get_settings().landing_dir
    landing.mkdir(parents=True)
    for path in summary.files.values():
        shutil.copy2(path, landing / path.name)
    events_before = asset_events(af_env)

    run_dag_test("pulse_ingest", logical_date="2026-06-30", env=af_env)

    engine = make_engine()
    with engine.connect() as conn:
        runs = conn.execute(
            select(IngestRun.source, IngestRun.status, IngestRun.read, IngestRun.quarantined)
            .where(IngestRun.file != "quarantine retry")
        ).all()
    engine.dispose()
    assert {r.source: (r.status, r.read, r.quarantined) for r in runs} == {
        source: ("ok", summary.rows[source], truth["malformed"][source])
        for source in summary.files
    }
    assert list(landing.iterdir()) == []
    assert sorted(p.name for p in (pulse_home / "landed" / "2026-06-30").iterdir()) == sorted(
        p.name for p in summary.files.values()
    )
    assert not (pulse_home / "rejected").exists()
    assert asset_events(af_env) - events_before == Counter(
        {f"x-pulse://warehouse/{source}": 1 for source in [*summary.files, "inputs"]})
