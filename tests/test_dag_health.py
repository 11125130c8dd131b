"""A real run of the pulse_health DAG: features -> scorecard -> churn -> flags -> playbooks and
the risk list."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pulse.core.fx import to_reporting
from pulse.devkit.airflow_runner import run_dag_test
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.models.playbooks import evaluate
from pulse.models.registry import CHALLENGER, CHAMPION, list_models
from pulse.models.selection import POOLED
from pulse.sql.db import make_engine, upgrade
from pulse.sql.schema import AccountFlag, AccountHealth, ChurnScore, PlaybookTask
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
        tasks = conn.execute(select(PlaybookTask.rule, PlaybookTask.account_id,
                                    PlaybookTask.episode_start, PlaybookTask.state)).all()
        # independent of the rule engine: what the rules read, straight from the tables
        champion_gone = set(conn.execute(select(AccountFlag.account_id).where(
            AccountFlag.as_of == today, AccountFlag.flag == "champion_gone")).scalars())
        red = set(conn.execute(select(AccountHealth.account_id).where(
            AccountHealth.as_of == today, AccountHealth.band == "red")).scalars())
    # the playbooks ran after the flags: a task for each rule that holds, as the rules say
    expected = evaluate(engine, today)
    engine.dispose()
    by_rule: dict[str, set[str]] = {}
    for rule, account, _, _ in tasks:
        by_rule.setdefault(rule, set()).add(account)
    assert by_rule.get("champion_gone_find_new", set()) == champion_gone
    assert by_rule.get("red_renewal_sponsor", set()) <= red
    assert tasks and sorted(tasks) == sorted(
        (r, a, today, "open") for r, a in zip(expected["rule"], expected["account_id"]))
    assert scored >= 38  # every account known today (a malformed one or two may be missing)
    assert churn == 0  # no champion model yet: nothing invented
    report = pulse_home / "reports" / f"risk-list-{today.isoformat()}.json"
    rows = json.loads(report.read_text())
    assert rows and all(r["risk_basis"].startswith("scorecard") for r in rows)
    # no calibration yet: no probability, so band first, then MRR in one currency
    assert all(r["revenue_at_risk"] is None for r in rows)
    money = to_reporting([r["mrr"] for r in rows], [r["currency"] for r in rows])
    keys = [({"red": 0, "amber": 1, "green": 2}[r["band"]], -m) for r, m in zip(rows, money)]
    assert keys == sorted(keys)


@pytest.mark.airflow
def test_pulse_train_registers_a_model_and_fits_the_bands(
    af_env: dict[str, str], pulse_home: Path  # noqa: F811
) -> None:
    end = date(2026, 6, 30)
    # 180 accounts: a third fewer than tests/test_training.py's world, the same 200 days
    summary = generate(pulse_home / "world", accounts=180, days=200, seed=3, end=end)
    engine = make_engine()
    upgrade(engine)
    land_files(engine, summary.files.values())
    # logistic only: the DAG passes its params through; ranking every candidate is tested
    # in-process (tests/test_training.py)
    conf = {"horizon_days": 14, "valid_days": 14, "min_roc_auc": 0.5, "classifier": "logistic"}

    out = run_dag_test("pulse_train", logical_date=end.isoformat(), env=af_env, conf=conf)
    models = list_models(engine)
    assert len(models) == 1
    (first,) = models
    assert first.train_end + timedelta(days=14) < first.valid_start <= first.valid_end
    assert first.valid_end + timedelta(days=14) <= end
    assert first.metrics["roc_auc"] > 0.5 and first.metrics["scorecard_roc_auc"] is not None
    assert first.status in (CHAMPION, CHALLENGER) and first.note
    assert Path(first.artifact_path).is_file()
    # the DAG's param was used: the logistic candidates, and the chosen one pooled with the
    # scorecard (models/selection.py)
    ranked = set(first.metrics["selection"]["mean_roc_auc"])
    logistic = {"logistic C=0.01", "logistic C=0.1", "logistic C=1"}
    chosen = first.metrics["selection"]["chosen"].removesuffix(POOLED)
    assert chosen in logistic and ranked == logistic | {f"{chosen}{POOLED}"}
    assert f"churn model v1: {first.status}" in out.stdout
    # then the bands were fitted to the same history: a valid proposal, applied when fitted
    from pulse.models.scorecard import load_scorecard

    proposal = load_scorecard(pulse_home / "calibration" / "scorecard-proposed.yaml")
    applied = pulse_home / "scorecard.yaml"
    # (180 accounts over 200 days are history enough to fit them: the proposal is applied)
    assert proposal.calibration is not None and applied.is_file()
    assert load_scorecard().calibration == proposal.calibration  # the active card

    engine.dispose()
    # (A second model judged against this one on the same window: the registry's rule,
    # tested in-process in tests/test_training.py.)
