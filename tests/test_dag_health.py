"""A real run of the pulse_health DAG: features -> scorecard -> churn -> flags -> risk list."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from listeners.landing import land_files
from pulse.airflow_env import run_dag_test
from pulse.demo import generate
from sql.db import make_engine, upgrade
from sql.schema import AccountHealth, ChurnScore
from tests.test_dags import af_env, airflow_db  # noqa: F401  (fixtures)


@pytest.mark.airflow
def test_pulse_health_scores_flags_and_writes_the_risk_list(
    af_env: dict[str, str], pulse_home: Path  # noqa: F811
) -> None:
    today = datetime.now(UTC).date()
    summary = generate(pulse_home / "demo", accounts=40, days=60, seed=4,
                       end=today - timedelta(days=1))
    engine = make_engine()
    upgrade(engine)
    land_files(engine, summary.files.values())  # landed today: known as of today

    run_dag_test("pulse_health", logical_date=today.isoformat(), env=af_env)

    with engine.connect() as conn:
        scored = conn.execute(select(func.count()).select_from(AccountHealth)
                              .where(AccountHealth.as_of == today)).scalar_one()
        churn = conn.execute(select(func.count()).select_from(ChurnScore)).scalar_one()
    engine.dispose()
    assert scored >= 38  # every account known today (a malformed one or two may be missing)
    assert churn == 0  # no champion model yet: nothing invented
    report = pulse_home / "reports" / f"risk-list-{today.isoformat()}.json"
    rows = json.loads(report.read_text())
    assert rows and all(r["risk_basis"] == "scorecard" for r in rows)
    risks = [r["revenue_at_risk"] for r in rows]
    assert risks == sorted(risks, reverse=True)
