"""`pulse demo run`, the main job behind `make demo`, run as a user runs it."""
from __future__ import annotations

import email
import email.policy
import email.utils
import html
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pulse.sql.db import make_engine
from pulse.sql.health import health_dates
from pulse.sql.schema import ENTITY_TABLES, IngestRun
from pulse.web.auth import authenticate, list_users
from tests.test_customer_leaks import CUSTOMER_TEMPLATES, leaks

PULSE = str(Path(sys.executable).parent / "pulse")


@pytest.mark.airflow
def test_demo_run_lands_a_world_through_airflow(pulse_home: Path) -> None:
    env = {**os.environ, "PULSE_HOME": str(pulse_home), "COLUMNS": "200"}
    env.pop("PULSE_DATABASE_URL", None)
    # bands an earlier run fitted to its own world: a fresh run starts without them
    from pulse.models.scorecard import DEFAULT_SCORECARD

    earlier = pulse_home / "scorecard.yaml"
    earlier.write_bytes(DEFAULT_SCORECARD.read_bytes())
    proc = subprocess.run([PULSE, "demo", "run", "--accounts", "40", "--days", "21",
                           "--history-days", "3"],  # the 90-day history: tests/test_history.py
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "task report done" in proc.stdout
    assert "task risk_list done" in proc.stdout and "Risk list" in proc.stdout
    text = " ".join(proc.stdout.split())  # rich wraps long lines wherever it likes
    # The world: the reference variant (churn throughout), at the size asked for.
    assert "demo world (variant 'reference'): 40 accounts over 21 days" in text, text[:2000]
    # Three weeks hold no 90-day outcome: the training step says so and the defaults stay,
    # so the risk list shows no probability and says why (the trained path: the
    # pulse_train DAG's test, tests/test_dag_health.py, and test_demo_training_step below).
    assert "7a. training the churn model" in text
    assert re.search(r"no churn model: .*history", text), text[-4000:]
    assert "health bands: the defaults stay (history too short to calibrate" in text
    assert not earlier.exists()
    assert "risk basis: scorecard (uncalibrated) (no probability without a churn model" in text
    assert "by band, then revenue at risk" in text
    # The live incident: its hit accounts match the demo truth, and the latency is printed.
    live = re.search(r"(\d+) accounts hit, \d+ exposed \(demo truth: (\d+) hit; matching "
                     r"(\d+)\).*?first notice queued in ([\d.]+) s", text)
    assert live, proc.stdout[-3000:]
    assert live[1] == live[2] == live[3] and float(live[4]) < 300
    assert "task send done" in proc.stdout and "Outbox" in proc.stdout
    assert (pulse_home / "outbox" / "index.html").is_file()
    assert re.search(r"surveys: \d+ queued", text) and "task queue done" in text
    assert "task chatter done" in text and "Feedback digests written" in text
    digests = sorted((pulse_home / "digests").glob("*/*.md"))
    assert digests and all(p.with_suffix(".html").is_file() for p in digests)
    for p in digests:  # every digest written is listed, as a row of week and team
        assert f"│ {p.parent.name} │ {p.stem}" in text, p
    pairs = re.findall(r"(\w+) (\d+)/(\d+)", proc.stdout.split("vs rows quarantined:")[1])
    assert len(pairs) == 7 and all(a == b for _, a, b in pairs), pairs
    engine = make_engine(f"sqlite:///{pulse_home / 'pulse.db'}")
    with engine.connect() as conn:
        accounts = conn.execute(
            select(func.count()).select_from(ENTITY_TABLES["accounts"])).scalar_one()
        failed = conn.execute(
            select(func.count()).where(IngestRun.status != "ok")).scalar_one()
    assert accounts == 40 and failed == 0
    # the history before today, then today through the DAG: four dates of health, and the
    # console's demo user, who can sign in with the password printed once
    history = re.search(r"history: (\d+) dates scored", text)
    assert history and history[1] == "3", text[-3000:]
    days = health_dates(engine)
    assert len(days) == 4 and (days[-1] - days[0]).days == 3
    login = re.search(r"sign in as demo@pulse\.local with the password (\S+) \(admin", text)
    assert login, text[-3000:]
    assert [(u["email"], u["role"]) for u in list_users(engine)] == [("demo@pulse.local",
                                                                      "admin")]
    signed = authenticate(engine, "demo@pulse.local", login[1])
    assert isinstance(signed, tuple) and signed[1] == "demo@pulse.local"
    assert not isinstance(authenticate(engine, "demo@pulse.local", login[1] + "x"), tuple)
    assert re.search(r"the CSM console: http://127\.0\.0\.1:\d+/", text)
    assert text.rstrip().endswith("(then open the URL above)")
    assert "next, run: pulse serve" in text
    engine.dispose()
    assert not list((pulse_home / "landing").iterdir())  # every file moved aside
    # What the demo's customers read carries no internal fact (issue 13): every email the
    # file transport wrote, read as its recipient reads it.
    read = _customer_emails(pulse_home / "outbox")
    assert read and {k for k, _ in read} >= {"outage_notice"}, read
    found = [(kind, what) for kind, text in read for what in leaks(text, kind)]
    assert not found, found[:5]


def _customer_emails(folder: Path) -> list[tuple[str, str]]:
    """(kind, what a reader sees: subject, sender's name, text and HTML without markup) of
    every customer-facing .eml in the file outbox."""
    found = []
    for path in sorted(folder.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        kind = str(msg["X-Pulse-Kind"] or "")
        if kind not in CUSTOMER_TEMPLATES:
            continue
        name = email.utils.parseaddr(str(msg["From"]))[0]
        parts = [str(msg["Subject"]), name]
        for part in msg.walk():
            if part.get_content_type() == "text/plain":
                parts.append(part.get_content())
            elif part.get_content_type() == "text/html":
                parts.append(html.unescape(re.sub(r"<[^>]+>", " ", part.get_content())))
        found.append((kind, "\n".join(parts)))
    return found


def test_demo_training_step_trains_a_champion_and_fits_the_bands(pulse_home: Path) -> None:
    """The main job's step 7a on a history it can learn from (the reference variant, 200
    accounts over 6 months, landed): a champion is registered and said with its figures
    beside the baselines', and the bands fitted to the outcomes become the active scorecard,
    so the risk list that follows has a probability."""
    import io

    from rich.console import Console

    from pulse.devkit.demo.variants import generate_variant
    from pulse.devkit.mainjob import _training_step
    from pulse.listeners.landing import land_files
    from pulse.models.registry import champion
    from pulse.models.scorecard import applied_scorecard_path, load_scorecard
    from pulse.sql.db import upgrade

    world = pulse_home / "world"
    end = date(2026, 11, 30)  # a fixed world and date: the same figures every day
    generate_variant(world, "reference", accounts=200, months=6, seed=7, end=end)
    engine = make_engine(f"sqlite:///{pulse_home / 'pulse.db'}")
    upgrade(engine)
    land_files(engine, [p for p in world.iterdir() if p.name != "truth.json"])
    console = Console(file=io.StringIO(), width=400)
    _training_step(engine, console, as_of=end)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    line = re.search(r"churn model v1 \(.+\): champion; validation ROC AUC (0\.\d+), logistic "
                     r"baseline (0\.\d+), hgb baseline (0\.\d+)", text)
    assert line, text
    best = champion(engine)
    assert best is not None and best.version == 1
    assert f"{best.metrics['roc_auc']:.3f}" == line[1]
    bands = re.search(r"health bands fitted to history: green >= ([\d.]+), watch >= ([\d.]+), "
                      r"amber >= ([\d.]+), red below; active", text)
    assert bands, text
    assert applied_scorecard_path().is_file()  # the active one, written by the step
    card = load_scorecard()
    assert card.calibration is not None
    assert float(bands[1]) > float(bands[2]) > float(bands[3])
    engine.dispose()
