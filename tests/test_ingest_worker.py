"""The ingest worker process (listeners/pipeline.py): a big file of new events is read and
validated in a second process while its rows are inserted.

The worker is forced on (both databases, any file size) so that small files exercise it; a
landing through it must equal the in-process landing of the same file, row for row and
quarantine entry for quarantine entry, and a worker that dies mid-file must leave nothing
landed and a run that failed with its reason, without the landing waiting on it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select

from pulse.core.errors import InputFileError
from pulse.core.settings import get_settings
from pulse.devkit.bench.ingest import write_usage_file
from pulse.listeners.landing import land_file
from pulse.listeners.pipeline import IngestWorker, IngestWorkerError
from pulse.listeners.staging import DirectLoad
from pulse.sql.schema import IngestRun, QuarantineRow, UsageEvent

Q = QuarantineRow.__table__
U = UsageEvent.__table__
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _worker(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    monkeypatch.setenv("PULSE_INGEST_WORKER", "sqlite,postgresql" if on else "")
    monkeypatch.setenv("PULSE_INGEST_WORKER_MIN_MIB", "0")
    monkeypatch.setenv("PULSE_INGEST_WORKER_MAX_LOAD", "1000")  # even on a busy machine
    get_settings(fresh=True)


def _usage_file(folder: Path, rows: int = 3000) -> Path:
    """A usage file with bad rows of every kind and, every 97th row, a contact id that is
    not an id (cleared: the row lands without it)."""
    path = write_usage_file(folder / "usage.csv", rows, bad_share=0.02, seed=7)
    lines = path.read_text().splitlines()
    for i in range(5, len(lines), 97):
        parts = lines[i].split(",")
        if len(parts) == 9:
            parts[4] = "not an id"
            lines[i] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    return path


def _snapshot(engine: Engine) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        usage = sorted(tuple(r) for r in conn.execute(
            select(*[c for c in U.c if c.name != "run_id"])).all())
        quarantine = sorted(tuple(r) for r in conn.execute(select(
            Q.c.kind, Q.c.source, Q.c.file, Q.c.row_number, Q.c.raw, Q.c.field, Q.c.code,
            Q.c.reason, Q.c.value, Q.c.row_key, Q.c.status)).all())
    return usage, quarantine


def _forget_usage(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(U))
        conn.execute(delete(Q))
        conn.execute(delete(IngestRun).where(IngestRun.source == "usage"))


def _outcome(result: Any) -> dict[str, Any]:
    d = result.to_dict()
    for name in ("run_id", "seconds"):
        d.pop(name)
    return d


# (rows, batch): many small chunks; and chunks the worker starts small and doubles
# (5,000 then 6,000 rows, against 6,000 and 6,000 in one process)
@pytest.mark.parametrize(("rows", "batch"), [(3000, 400), (12000, 6000)],
                         ids=["small-chunks", "growing-chunks"])
def test_a_file_landed_through_the_worker_equals_the_in_process_landing(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, rows: int, batch: int) -> None:
    path = _usage_file(tmp_path, rows)
    land_file(engine, tmp_path / "accounts.csv")
    _worker(monkeypatch, False)
    alone = land_file(engine, path, batch=batch, now=NOW)
    expected = _snapshot(engine)
    _forget_usage(engine)
    _worker(monkeypatch, True)
    with caplog.at_level(logging.INFO, logger="pulse.listeners.landing"):
        piped = land_file(engine, path, batch=batch, now=NOW)
    assert "ingest worker process" in caplog.text  # the worker did the reading
    assert 0 < piped.quarantined < rows * 0.05 and piped.fields_cleared > rows / 150
    assert piped.inserted + piped.quarantined == piped.read == rows
    assert _outcome(piped) == _outcome(alone)  # counts, reasons, cleared, lag, backfill
    usage, quarantine = _snapshot(engine)
    assert len(usage) == piped.inserted and usage == expected[0]
    assert len(quarantine) == piped.quarantined + piped.fields_cleared
    assert quarantine == expected[1]


def test_a_key_already_stored_falls_back_to_the_staged_merge_through_the_worker(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _usage_file(tmp_path)
    land_file(engine, tmp_path / "accounts.csv")
    _worker(monkeypatch, True)
    first = land_file(engine, path, batch=400, now=NOW)
    again = land_file(engine, path, batch=400, now=NOW)  # every key met again: the merge
    assert (again.read, again.inserted, again.unchanged, again.quarantined) == \
        (3000, 0, first.inserted, first.quarantined)


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a landing waiting on a dead worker is interrupted."""
    def expired(*_: Any) -> None:
        raise TimeoutError(f"the landing still waits after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_worker_that_dies_mid_file_lands_nothing_and_says_so(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _usage_file(tmp_path)
    land_file(engine, tmp_path / "accounts.csv")
    _worker(monkeypatch, True)
    workers: list[IngestWorker] = []
    start, insert = IngestWorker.__init__, DirectLoad.add_columns

    def spy(self: IngestWorker, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        workers.append(self)

    def insert_then_kill(self: DirectLoad, columns: list[list[Any]]) -> None:
        insert(self, columns)  # the first chunk is in; then the worker is killed
        if workers[0]._proc.poll() is None:
            os.kill(workers[0]._proc.pid, signal.SIGKILL)

    monkeypatch.setattr(IngestWorker, "__init__", spy)
    monkeypatch.setattr(DirectLoad, "add_columns", insert_then_kill)
    with _deadline(120), pytest.raises(IngestWorkerError, match=r"stopped \(exit code -9\)"):
        land_file(engine, path, batch=100, now=NOW)
    assert _snapshot(engine) == ([], [])  # rows and quarantine rolled back alike
    with engine.connect() as conn:
        status, error = conn.execute(select(IngestRun.status, IngestRun.error).where(
            IngestRun.source == "usage")).one()
    assert status == "failed" and "ingest worker" in error
    assert workers[0]._proc.poll() is not None


def test_a_file_broken_mid_way_through_the_worker_lands_nothing(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _usage_file(tmp_path)
    with open(path, "a") as fh:
        fh.write('evt_x,ACC-000001,2026-05-01T10:07:00Z,"api,,,,1,ok\n')  # never closed
    land_file(engine, tmp_path / "accounts.csv")
    _worker(monkeypatch, True)
    with _deadline(120), pytest.raises(InputFileError, match="never closed"):
        land_file(engine, path, batch=400, now=NOW)
    assert _snapshot(engine) == ([], [])
    with engine.connect() as conn:
        assert conn.execute(select(IngestRun.status).where(
            IngestRun.source == "usage")).scalar_one() == "failed"


def test_a_json_lines_file_through_the_worker_equals_the_in_process_landing(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON Lines too: bad lines, a cleared value, and a key outside the contract (warned
    about once the worker has read every line)."""
    (tmp_path / "accounts.csv").write_text("account_id,name,mrr\nacc-1,Northwind,10\n")
    land_file(engine, tmp_path / "accounts.csv")
    lines = []
    for i in range(1, 1201):
        row: dict[str, Any] = {"event_id": f"ev-{i}", "account_id": "acc-1",
                               "occurred_at": "2026-11-01T10:00:00Z", "feature": "api",
                               "quantity": i % 7}
        if i % 100 == 0:
            row["contact_id"] = "not an id"  # cleared
        if i % 150 == 0:
            row["account_id"] = "acc-404"  # quarantined
        if i == 1100:
            row["mood"] = "fine"  # not in the contract
        lines.append(json.dumps(row))
    lines[499] = "{not json"
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _worker(monkeypatch, False)
    alone = land_file(engine, path, batch=250, now=NOW)
    expected = _snapshot(engine)
    _forget_usage(engine)
    _worker(monkeypatch, True)
    piped = land_file(engine, path, batch=250, now=NOW)
    assert (piped.read, piped.quarantined, piped.fields_cleared) == (1200, 9, 7)
    assert any("mood" in w for w in piped.warnings)
    assert _outcome(piped) == _outcome(alone)
    assert _snapshot(engine) == expected


def test_a_busy_machine_lands_in_one_process(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    path = _usage_file(tmp_path, 500)
    land_file(engine, tmp_path / "accounts.csv")
    _worker(monkeypatch, True)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.6, 1.0, 1.0))
    monkeypatch.setenv("PULSE_INGEST_WORKER_MAX_LOAD", "1.5")
    get_settings(fresh=True)
    with caplog.at_level(logging.INFO, logger="pulse.listeners.landing"):
        result = land_file(engine, path, now=NOW)
    assert "the machine is busy (load 1.6" in caplog.text
    assert "ingest worker process" not in caplog.text
    assert result.read == 500
