"""The one landing path: validate, quarantine, stage and merge, one file per transaction.

Every source goes through `land_file` (files) or `retry_quarantine` (rows that failed
before). Accepted rows are bulk-loaded into a temporary staging table (executemany on SQLite,
COPY on PostgreSQL) and merged into the warehouse with one set-based upsert that touches only
rows whose values changed. Rejected rows land verbatim in `quarantine` with the field and the
reason. The whole file commits or nothing does; the run log records both outcomes.

The staging, direct-load and merge SQL lives in listeners/staging.py; this module runs it
per file (validation, quarantine, the run log) and retries quarantined rows.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, text, update

from pulse.core.errors import InputFileError, PulseError, UnknownSourceError
from pulse.core.settings import get_settings
from pulse.listeners.contract import LANDING_ORDER, SOURCES, Source
from pulse.listeners.pipeline import IngestWorker
from pulse.listeners.prepare import (
    LagTally,
    Prepared,
    _Rejected,
    collect_chunk_garbage,
    prepare_chunk,
    storable,
)
from pulse.listeners.readers import (
    Chunk,
    Reject,
    given_columns,
    open_reader,
    parse_json,
    records_frame,
    scan,
)
from pulse.listeners.staging import (
    DIRECT_SOURCES,
    DirectLoad,
    _count_outcomes,
    _load_stage,
    _merge,
    _NeedsMerge,
    _stage_table,
)
from pulse.listeners.validate import CODES
from pulse.sql.db import dialect_insert, ensure_schema, write_transaction
from pulse.sql.rollups import ROLLUP_SOURCES, TouchedKeys, keys_of_stage
from pulse.sql.rollups import refresh as rollup_refresh
from pulse.sql.schema import (
    Account,
    Incident,
    IngestRun,
    Mention,
    PurchaseEvent,
    QuarantineRow,
    Ticket,
    UsageDailyFeed,
    UsageDailyUserFeed,
    UsageEvent,
)

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """What one landing did. read = inserted + updated + unchanged + quarantined, always."""

    source: str
    file: str
    run_id: int | None = None
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    #: optional values cleared from rows that landed (not part of read: the rows landed)
    fields_cleared: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: why values were cleared, with counts
    cleared: dict[str, int] = field(default_factory=dict)
    #: rows waiting for an account that landed after this landing (from quarantine)
    relanded: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: the run was a backfill (its rows count from when they happened, basis "auto"), and why
    backfill: bool = False
    backfill_reason: str | None = None
    median_lag_days: float | None = None

    def check(self) -> None:
        total = self.inserted + self.updated + self.unchanged + self.quarantined
        if total != self.read:
            raise AssertionError(f"{self.file}: read {self.read} rows but accounted for {total}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: IngestResult) -> None:
        for name in ("read", "inserted", "updated", "unchanged", "quarantined",
                     "fields_cleared", "relanded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n
        for reason, n in other.cleared.items():
            self.cleared[reason] = self.cleared.get(reason, 0) + n
        self.warnings.extend(other.warnings)
        self.seconds += other.seconds


def source_for_path(path: Path) -> str:
    """The source a file belongs to, from its name: `usage.csv`, `usage_2026-11-01.jsonl`..."""
    stem = path.name.lower().split(".")[0]
    # the longest name first: usage_daily.csv is daily usage, not usage events
    for name in sorted(SOURCES, key=len, reverse=True):
        if stem == name or (stem.startswith(name) and stem[len(name)] in "_-"):
            return name
    raise UnknownSourceError(
        f"{path}: cannot tell the source from the file name: expected it to start with one of "
        f"{', '.join(SOURCES)}"
    )


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownSourceError(
            f"unknown source {name!r}: expected one of {', '.join(SOURCES)}"
        ) from None


def reason_key(field_name: str | None, code: str) -> str:
    what = CODES.get(code, code)
    return f"{field_name}: {what}" if field_name else what


# --------------------------------------------------------------------------- the core


#: PostgreSQL advisory lock class for merges into one source's table
_MERGE_LOCK = 731_911


def _serialise_merges(conn: Connection, source: Source) -> None:
    """Count and merge one source at a time (PostgreSQL): a concurrent landing of the same
    source waits here until the other commits, then counts against what it committed."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                     {"a": _MERGE_LOCK, "b": LANDING_ORDER.index(source.name)})


def _account_ids(conn: Connection, source: Source) -> list[str] | None:
    """The known account ids, when `source` references accounts (else None)."""
    if not any(f.references_account for f in source.fields):
        return None
    return list(conn.execute(select(Account.account_id)).scalars().all())


def _known_accounts(conn: Connection, source: Source) -> Callable[[pd.Series], pd.Series] | None:
    found = _account_ids(conn, source)
    if found is None:
        return None
    ids = pd.Index(found, dtype=object)
    return lambda values: values.isin(ids)


def _land_chunks(
    conn: Connection,
    source: Source,
    chunks: Iterable[Chunk],
    *,
    run_id: int,
    now: datetime,
    on_reject: Callable[[list[_Rejected]], None],
    on_clear: Callable[[list[_Rejected]], None] | None = None,
    progress: Callable[[int], None] | None = None,
    direct: bool = False,
    given_override: set[str] | None = None,
    lags: LagTally | None = None,
    worker: IngestWorker | None = None,
) -> IngestResult:
    """Validate and stage every chunk, then count and merge the whole file at once.

    Nothing here grows with the file: each chunk's rejected rows and cleared values are
    handed on (`on_reject`, `on_clear`) as the chunk is done, and keys that repeat are found
    by the database (the primary key on a direct load, a GROUP BY on the staging table),
    not by a set of every key in memory.

    With `direct`, rows go straight into the warehouse table as plain inserts; a key that is
    already there or repeated in the file raises IntegrityError, turned into _NeedsMerge, and
    the caller rolls back and lands the file through the staged merge instead. `lags`
    (direct loads) tallies how long after it happened each inserted row landed.

    With `worker` (direct loads only), `chunks` is not read here: the worker process reads,
    validates and prepares the chunks (listeners/pipeline.py) while the chunks before them
    are inserted here; the lags are then tallied by the worker (`worker.lags`).
    """
    settings = get_settings()
    result = IngestResult(source=source.name, file="")
    stage = _stage_table(source, f"_stage_{source.name}_{run_id}", conn.dialect.name)
    if not direct:
        stage.create(conn)
    max_future = timedelta(hours=settings.max_future_skew_hours)
    if worker is not None:  # the worker process checks the references to these accounts
        known = None
        worker.begin(known_accounts=_account_ids(conn, source), now=now, max_future=max_future,
                     dialect=conn.dialect.name, event_time=lags.column if lags else None)
    else:
        known = _known_accounts(conn, source)
    given: set[str] = set()
    staged = 0
    reasons: Counter[str] = Counter()
    cleared_reasons: Counter[str] = Counter()
    # whether a cleared value may be waiting for a key of this file (then each staged chunk
    # resolves the entries of its keys before recording its own)
    open_cleared = not direct and _has_open_cleared(conn, source)
    loader = DirectLoad(conn, source, now=now, run_id=run_id) if direct else None
    # the account-days a direct load touches, for the daily rollups (sql/rollups.py)
    origin = ROLLUP_SOURCES.get(source.name)
    touched = TouchedKeys(conn) if origin is not None and direct else None
    # quarantine writes wait while a direct COPY holds the connection (spilled to disk)
    deferred = _Deferred()
    def prepared() -> Iterator[Prepared]:
        if worker is not None:
            yield from worker.batches()
            return
        for chunk in chunks:
            p = prepare_chunk(source, chunk, known=known, now=now, max_future=max_future)
            del chunk
            yield p

    try:
        for p in prepared():
            rejected, cleared = p.rejected, p.cleared
            if rejected:
                deferred.write_or_hold("row", rejected, on_reject, loader)
                reasons.update(reason_key(r.field, r.code) for r in rejected)
            if cleared:
                cleared_reasons.update(reason_key(r.field, r.code) for r in cleared)
            chunk_given = set(p.given)
            if given_override is not None:
                chunk_given = set(given_override)
            given |= chunk_given
            if loader is not None:
                if p.columns is not None:
                    loader.add_columns(p.columns)
                    if touched is not None:
                        touched.add_events(
                            pd.Series(p.columns[source.columns.index("account_id")]),
                            pd.Series(p.columns[source.columns.index("occurred_at")]))
                else:
                    assert p.clean is not None
                    loader.add(p.clean)
                    if touched is not None:
                        touched.add_events(p.clean["account_id"], p.clean["occurred_at"])
                    if lags is not None:
                        lags.add(p.clean[lags.column])
            else:
                assert p.clean is not None
                _load_stage(conn, stage, source, p.clean)
                if open_cleared and p.n_clean:
                    _resolve_cleared(conn, source, stage, chunk_given, run_id, now,
                                     first_row=int(p.clean.index.min()))
            if cleared:
                deferred.write_or_hold("field_cleared", cleared, on_clear, loader)
                result.fields_cleared += len(cleared)
                open_cleared = not direct
            staged += p.n_clean
            result.read += p.read
            result.quarantined += len(rejected)
            if progress:
                progress(p.read)
            del p, rejected, cleared
            collect_chunk_garbage()
    except BaseException as exc:
        if loader is not None:
            loader.abort(exc)
        deferred.close()
        raise
    if loader is not None:
        try:
            loader.finish()
        except BaseException:
            deferred.close()
            raise
    deferred.replay(on_reject, on_clear)
    if direct:
        result.inserted = staged
        if touched:
            assert origin is not None
            rollup_refresh(conn, origin, touched)
    elif staged:
        dups = _has_repeats(conn, source, stage)
        if dups:
            conn.execute(text(f"CREATE INDEX ix{stage.name} ON {stage.name} ({source.key}, _row)"))
        _serialise_merges(conn, source)
        result.inserted, result.updated, result.unchanged = _count_outcomes(
            conn, source, stage, dups, given)
        # the keys the staged rows have, and those the rows they update had before
        keys = keys_of_stage(conn, source.name, stage) if origin is not None else None
        _merge(conn, source, stage, dups, run_id, now, given)
        if origin is not None and keys is not None:
            rollup_refresh(conn, origin, keys)
    if not direct:
        stage.drop(conn)
    result.reasons = dict(reasons.most_common())
    result.cleared = dict(cleared_reasons.most_common())
    return result


def _has_repeats(conn: Connection, source: Source, stage: Any) -> bool:
    """Whether a key appears more than once among the staged rows (one set-based query)."""
    return conn.execute(text(
        f"SELECT 1 FROM {stage.name} GROUP BY {source.key} HAVING COUNT(*) > 1 LIMIT 1"
    )).first() is not None


def _has_open_cleared(conn: Connection, source: Source) -> bool:
    q = QuarantineRow.__table__
    return conn.execute(select(q.c.quarantine_id).where(
        q.c.kind == "field_cleared", q.c.status == "open", q.c.source == source.name,
    ).limit(1)).first() is not None


def _resolve_cleared(conn: Connection, source: Source, stage: Any, given: set[str],
                     run_id: int, now: datetime, *, first_row: int) -> None:
    """A row landed again with a field given: the value cleared from it before is replaced.

    Runs per staged chunk (`first_row`: its first row number), in file order: open
    "field_cleared" entries of the chunk's keys are resolved, then the chunk's own cleared
    values are recorded (re-opening an entry whose value is cleared again), so a key's last
    row in the file decides.
    """
    q = QuarantineRow.__table__
    fields = [c for c in source.columns if c in given and c != source.key]
    if not fields:
        return
    conn.execute(
        update(q).where(
            q.c.kind == "field_cleared", q.c.status == "open", q.c.source == source.name,
            q.c.field.in_(fields),
            q.c.row_key.in_(select(stage.c[source.key]).where(stage.c._row >= first_row)),
        ).values(status="relanded", resolved_at=now, resolved_run_id=run_id)
    )


def _row_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _insert_quarantine(conn: Connection, source: Source, label: str, run_id: int,
                       now: datetime, rejected: list[_Rejected], *,
                       kind: str = "row") -> None:
    """Quarantine rejected rows, or record cleared fields (`kind` "field_cleared": one entry
    per row and field, re-opened when the same value is cleared again)."""
    rows = [
        {
            "run_id": run_id, "source": source.name, "file": label, "row_number": r.row,
            "raw": r.raw,
            "row_hash": _row_hash(r.raw if kind == "row" else f"{r.raw}\x00{r.field}"),
            "field": r.field, "code": r.code, "reason": r.reason, "landed_at": now,
            "status": "open", "kind": kind, "value": r.value, "row_key": r.row_key,
        }
        for r in rejected
    ]
    table = QuarantineRow.__table__
    ins = dialect_insert(conn, table)
    if kind == "row":
        stmt = ins.on_conflict_do_nothing(index_elements=["source", "row_hash"])
    else:
        stmt = ins.on_conflict_do_update(
            index_elements=["source", "row_hash"],
            set_={"status": "open", "resolved_at": None, "resolved_run_id": None,
                  "code": ins.excluded.code, "reason": ins.excluded.reason},
        )
    for start in range(0, len(rows), 5000):
        conn.execute(stmt, rows[start:start + 5000])


def _start_run(engine: Engine, source: str, label: str, sha: str | None, now: datetime) -> int:
    with write_transaction(engine) as conn:
        return int(conn.execute(
            insert(IngestRun).values(
                source=source, file=label, file_sha256=sha, started_at=now, status="running",
                read=0, inserted=0, updated=0, unchanged=0, quarantined=0,
            ).returning(IngestRun.run_id)
        ).scalar_one())


def _fail_run(engine: Engine, run_id: int, error: str) -> None:
    """Mark a run failed with its reason; the reason is made storable (no NUL, valid UTF-8)
    so that recording the failure cannot fail in turn and leave the run `running`."""
    error = storable(error)
    for attempt in (error, error.encode("ascii", "replace").decode("ascii")[:2000]):
        try:
            with write_transaction(engine) as conn:
                conn.execute(update(IngestRun).where(IngestRun.run_id == run_id).values(
                    status="failed", error=attempt, finished_at=datetime.now(UTC)))
            return
        except Exception:  # the database refused the message: retry with a plain one
            log.exception("could not record the failure of ingest run %d", run_id)


SOURCE_TABLES: dict[str, Table] = {
    "usage": UsageEvent.__table__, "purchases": PurchaseEvent.__table__,
    "tickets": Ticket.__table__, "mentions": Mention.__table__,
    "incidents": Incident.__table__, "accounts": Account.__table__,
    "usage_daily": UsageDailyFeed.__table__, "usage_daily_users": UsageDailyUserFeed.__table__,
}

#: the event time of each source's rows: how long after it a row landed is its lag
EVENT_TIME: dict[str, str] = {
    "usage": "occurred_at", "purchases": "occurred_at", "tickets": "opened_at",
    "mentions": "created_at", "incidents": "started_at", "usage_daily": "day",
    "usage_daily_users": "day",
}


class _Deferred:
    """Quarantine rows and cleared values held back while a direct COPY holds the
    connection: each chunk's list is pickled to a temporary file as it comes (memory does
    not grow with the file) and written once the COPY is done (`replay`)."""

    def __init__(self) -> None:
        self._file: Any = None

    def write_or_hold(self, kind: str, batch: list[_Rejected],
                      write: Callable[[list[_Rejected]], None] | None,
                      loader: DirectLoad | None) -> None:
        """Write `batch` now, or hold it while `loader`'s COPY holds the connection."""
        if write is None:
            return
        if loader is None or not loader.busy:
            write(batch)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pulse-quarantine-")
        pickle.dump((kind, batch), self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def replay(self, on_reject: Callable[[list[_Rejected]], None],
               on_clear: Callable[[list[_Rejected]], None] | None) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            while True:
                try:
                    kind, batch = pickle.load(self._file)
                except EOFError:
                    break
                if kind == "row":
                    on_reject(batch)
                elif on_clear is not None:
                    on_clear(batch)
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _backfill_of(conn: Connection, src: Source, run_id: int, now: datetime,
                 explicit: bool, lags: LagTally | None = None
                 ) -> tuple[bool, str | None, float | None]:
    """Whether a run is a backfill: asked for, the first landing of its source that landed
    rows, or history that landed long after it happened: the rows it landed first happened
    a median of more than `backfill_lag_days` before they landed, over a span of more than
    that many days (a handful of late rows in a daily file is not history). Accounts and
    contacts are backfills only when asked for or first. `lags`: the lags tallied during a
    direct load (then no query over the landed rows is needed). Returns (backfill, reason,
    lag)."""
    from pulse.sql.feature_sources import epoch_seconds

    lag: float | None = None
    span = 0.0
    column = EVENT_TIME.get(src.name)
    if lags is not None:
        lag, span = lags.median_days(), lags.span_days()
    elif column is not None:
        t = SOURCE_TABLES[src.name]
        new = (t.c.landed_at == now, t.c.run_id == run_id, t.c[column].is_not(None))
        event = epoch_seconds(t.c[column])
        n, first, last = conn.execute(select(func.count(), func.min(event), func.max(event))
                                      .where(*new)).one()
        if n:
            days = (epoch_seconds(t.c.landed_at) - event) / 86400.0
            lag = float(conn.execute(select(days).where(*new).order_by(days)
                                     .limit(1).offset(int(n) // 2)).scalar_one())
            span = (float(last) - float(first)) / 86400.0
    if explicit:
        return True, "explicit", lag
    earlier = conn.execute(select(func.count()).select_from(IngestRun).where(
        IngestRun.source == src.name, IngestRun.status == "ok", IngestRun.run_id < run_id,
        IngestRun.inserted > 0)).scalar_one()
    if not earlier:
        return True, "first", lag
    limit = get_settings().backfill_lag_days
    if lag is not None and lag > limit and span > limit:
        return True, "lag", lag
    return False, None, lag


def _finish_run(conn: Connection, run_id: int, result: IngestResult) -> None:
    conn.execute(update(IngestRun).where(IngestRun.run_id == run_id).values(
        status="ok", finished_at=datetime.now(UTC), read=result.read,
        inserted=result.inserted, updated=result.updated, unchanged=result.unchanged,
        quarantined=result.quarantined, fields_cleared=result.fields_cleared,
        backfill=result.backfill, backfill_reason=result.backfill_reason,
        median_lag_days=result.median_lag_days,
    ))


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Pause the cyclic garbage collector: a landing allocates millions of short-lived
    strings that hold no cycles, and collecting over them costs seconds per million rows."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _land_transaction(
    engine: Engine, src: Source, reader: Any, path: Path, *, run_id: int, now: datetime,
    progress: Callable[[int], None] | None, utf8_valid: bool, direct: bool,
    backfill: bool = False, worker: IngestWorker | None = None,
) -> IngestResult:
    label = file_label(path)
    column = EVENT_TIME.get(src.name)
    lags = LagTally(column, now) if direct and column is not None else None
    # a direct load checks every account reference itself, under the write lock: SQLite's
    # per-row foreign key checks would repeat that work (see write_transaction)
    with _no_gc_pauses(), write_transaction(engine, sqlite_foreign_keys=not direct) as conn:
        result = _land_chunks(
            conn, src, reader, run_id=run_id, now=now, progress=progress, direct=direct,
            lags=lags, worker=worker,
            on_reject=lambda rej: _insert_quarantine(conn, src, label, run_id, now, rej),
            on_clear=lambda rej: _insert_quarantine(conn, src, label, run_id, now, rej,
                                                    kind="field_cleared"),
        )
        unknown = getattr(reader, "unknown", None)
        if worker is not None:
            lags, unknown = worker.lags, worker.unknown
        result.file, result.run_id = storable(str(path)), run_id
        if unknown:
            result.warnings.append(
                f"{label}: ignored column(s) not in the contract: {', '.join(unknown)}"
            )
        if not utf8_valid:
            result.warnings.append(f"{label}: the file is not entirely valid UTF-8")
        result.check()
        if result.inserted:
            result.backfill, result.backfill_reason, result.median_lag_days = _backfill_of(
                conn, src, run_id, now, backfill, lags)
        _finish_run(conn, run_id, result)
    return result


def land_file(
    engine: Engine,
    path: Path | str,
    *,
    source: str | None = None,
    now: datetime | None = None,
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
    reland: bool = True,
    backfill: bool = False,
) -> IngestResult:
    """Validate and land one file; the whole file commits or nothing does.

    `backfill`: the file is history loaded after the fact, so its rows count from when they
    happened (basis "auto" of sql/features.py). A run is also a backfill without it when it is
    the first of its source to land rows, or when its new rows happened a median of more than
    `backfill_lag_days` before they landed.

    After an accounts file, the rows waiting for those accounts land too (each source in its
    own transaction), unless `reland` is false (the ingest DAG re-lands them in a step of its
    own, after every file of the run).

    Raises `InputFileError` (nothing landed) for an unreadable file, an unknown source or a
    header without a required column.
    """
    path = Path(path)
    src = get_source(source) if source else get_source(source_for_path(path))
    label = file_label(path)
    batch_rows = batch or get_settings().batch_rows
    # a worker process for a big file of new events, started first: it imports while the
    # schema is checked and the file scanned here
    worker = _start_worker(engine, src, path, label)
    try:
        ensure_schema(engine)
        started = datetime.now(UTC)
        now = now or started
        return _land_file(engine, src, path, label, now=now, started=started,
                          batch_rows=batch_rows, progress=progress, reland=reland,
                          backfill=backfill, worker=worker)
    finally:
        if worker is not None:
            worker.close()


def _use_worker(engine: Engine, src: Source, path: Path) -> bool:
    """Whether to read and validate `path` in a worker process beside the inserts: a file of
    a direct-load source on a database where that pays (SQLite; see listeners/pipeline.py),
    at least `ingest_worker_min_mib` big (below, the worker's start costs more than it
    saves), on a machine with a core to spare.

    The two processes together spend about a fifth more CPU than one: they pay only when
    each has a core. With fewer than two cores, or a load average (one minute) at or above
    `ingest_worker_max_load` (default: the cores less one half), the file lands in-process.
    """
    settings = get_settings()
    if src.name not in DIRECT_SOURCES or engine.dialect.name not in settings.ingest_worker_databases:
        return False
    try:
        size = path.stat().st_size
    except OSError:
        return False  # the landing reports the file
    if size < settings.ingest_worker_min_mib * 2**20:
        return False
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else os.cpu_count() or 1
    if cores < 2:
        return False  # one core: the two processes would only take turns
    max_load = settings.ingest_worker_max_load
    if max_load is None:
        max_load = cores - 0.5
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load >= max_load:
        log.info("%s: landing in one process: the machine is busy (load %.1f, %d cores)",
                 path.name, load, cores)
        return False
    return True


def _start_worker(engine: Engine, src: Source, path: Path, label: str) -> IngestWorker | None:
    if not _use_worker(engine, src, path):
        return None
    try:
        worker = IngestWorker(path, src.name, label=label)
    except OSError as exc:  # no process to be had: land in this one
        log.warning("%s: cannot start an ingest worker process (%s); landing in-process",
                    label, exc)
        return None
    log.info("%s: read and validated by an ingest worker process while its rows land", label)
    return worker


def _land_file(engine: Engine, src: Source, path: Path, label: str, *, now: datetime,
               started: datetime, batch_rows: int, progress: Callable[[int], None] | None,
               reland: bool, backfill: bool, worker: IngestWorker | None) -> IngestResult:
    sha: str | None = None
    try:
        sha, utf8_valid, _size = scan(path)
        reader = open_reader(path, src, batch=batch_rows, utf8_valid=utf8_valid)
    except InputFileError as exc:
        run_id = _start_run(engine, src.name, label, sha, now)
        _fail_run(engine, run_id, str(exc))
        raise
    except Exception as exc:  # anything else that stops the file still ends in the run log
        run_id = _start_run(engine, src.name, label, sha, now)
        _fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    run_id = _start_run(engine, src.name, label, sha, now)
    if worker is not None:
        reader.close()  # the header was checked here; the worker reads the rows
        worker.options.update(utf8_valid=utf8_valid, batch=batch_rows)
    try:
        result = None
        if src.name in DIRECT_SOURCES:
            # events are usually new: load them straight into the table, and fall back to the
            # staged merge (in a fresh transaction, the file read again) at the first key that
            # is already there or repeated
            try:
                result = _land_transaction(engine, src, reader, path, run_id=run_id, now=now,
                                           progress=progress, utf8_valid=utf8_valid, direct=True,
                                           backfill=backfill, worker=worker)
            except _NeedsMerge:
                log.info("%s: some keys repeat or are already known; landing through the "
                         "staged merge instead", label)
                if worker is not None:
                    worker.close()
                reader = open_reader(path, src, batch=batch_rows, utf8_valid=utf8_valid)
        if result is None:
            result = _land_transaction(engine, src, reader, path, run_id=run_id, now=now,
                                       progress=progress, utf8_valid=utf8_valid, direct=False,
                                       backfill=backfill)
    except InputFileError as exc:
        _fail_run(engine, run_id, str(exc))
        raise
    except PulseError as exc:
        _fail_run(engine, run_id, str(exc))
        raise
    except BaseException as exc:  # interrupted too: the run never stays `running`
        _fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    if src.name == "accounts" and reland:
        result.relanded = reland_waiting(engine)
    result.seconds = (datetime.now(UTC) - started).total_seconds()
    for w in result.warnings:
        log.warning(w)
    log.info(
        "landed %s: read %d, inserted %d, updated %d, unchanged %d, quarantined %d, "
        "fields cleared %d", label, result.read, result.inserted, result.updated,
        result.unchanged, result.quarantined, result.fields_cleared,
    )
    return result


def file_label(path: Path) -> str:
    """The file's name as stored in the run log and quarantine: a name whose bytes are not
    UTF-8 keeps U+FFFD where they were."""
    return storable(path.name)


def reland_waiting(engine: Engine) -> int:
    """Land the open `unknown_account` rows whose account now exists; returns how many landed.

    Called after accounts land (a file or a quarantine retry), so rows that arrived before
    their account land without anyone asking.
    """
    q = QuarantineRow.__table__
    with engine.connect() as conn:
        ids = conn.execute(
            select(q.c.quarantine_id).where(
                q.c.status == "open", q.c.code == "unknown_account",
                q.c.value.in_(select(Account.account_id)),
            )
        ).scalars().all()
    if not ids:
        return 0
    result = retry_quarantine(engine, ids=ids)
    log.info("%d row(s) waiting for their account landed", result.inserted + result.updated
             + result.unchanged)
    return result.inserted + result.updated + result.unchanged


def land_files(engine: Engine, paths: Iterable[Path | str], *, source: str | None = None,
               progress: Callable[[int], None] | None = None,
               backfill: bool = False) -> list[IngestResult]:
    """Land several files, accounts first; stops at the first file that fails as a whole."""
    plist = [Path(p) for p in paths]
    order = {name: i for i, name in enumerate(LANDING_ORDER)}

    def rank(p: Path) -> int:
        try:
            return order[source or source_for_path(p)]
        except UnknownSourceError:
            return len(order)

    return [land_file(engine, p, source=source, progress=progress, backfill=backfill)
            for p in sorted(plist, key=rank)]


# --------------------------------------------------------------------------- quarantine


def _retry_chunks(source: Source, entries: list[tuple[int, str]]) -> Iterator[Chunk]:
    objs: list[tuple[int, dict[str, Any]]] = []
    rejects: list[Reject] = []
    raw: dict[int, str] = {}
    for qid, text_ in entries:
        raw[qid] = text_
        obj, _why = parse_json(text_)
        if isinstance(obj, dict):
            objs.append((qid, obj))
        elif isinstance(obj, list):
            rejects.append(Reject(qid, text_, None, "wrong_field_count",
                                  "the row does not have the header's number of fields"))
        else:
            rejects.append(Reject(qid, text_, None, "bad_json", "the row is not a JSON object"))
    values, bad = records_frame(objs, source)
    for row, fld, reason in bad:
        rejects.append(Reject(row, raw[row], fld, "not_scalar", reason))
    yield Chunk(values=values, raw=raw, rejects=rejects, given=given_columns(objs, source))


def retry_quarantine(
    engine: Engine,
    *,
    source: str | None = None,
    code: str | None = None,
    ids: Iterable[int] | None = None,
) -> IngestResult:
    """Validate open quarantined rows again and land those that now pass.

    Rows that still fail stay open with their (possibly new) reason. A "field_cleared" entry
    is applied again: when its value now passes, that one field of the landed row is set to
    it (the row's other fields are left as they are). When accounts land, the rows waiting
    for them land too.
    """
    ensure_schema(engine)
    q = QuarantineRow.__table__
    # bad_encoding rows keep U+FFFD where the undecodable bytes were: landing them would store
    # the damage, so they stay open until the file is fixed and landed again
    cond = [q.c.status == "open", q.c.code != "bad_encoding"]
    if source:
        cond.append(q.c.source == get_source(source).name)
    if code:
        cond.append(q.c.code == code)
    if ids is not None:
        cond.append(q.c.quarantine_id.in_(list(ids)))
    total = IngestResult(source=source or "all", file="quarantine retry")
    with engine.connect() as conn:
        found = conn.execute(
            select(q.c.quarantine_id, q.c.source, q.c.raw, q.c.kind, q.c.field, q.c.file,
                   q.c.row_number).where(*cond)
            .order_by(q.c.quarantine_id)
        ).all()
    groups: dict[tuple[str, str | None], list[tuple[int, str]]] = {}
    origin: dict[int, tuple[str, int]] = {}
    for qid, src_name, raw, kind, fld, file_, row_number in found:
        what = None if kind == "row" else fld
        groups.setdefault((src_name, what), []).append((qid, raw))
        origin[qid] = (file_, row_number)
    accounts_landed = False
    for src_name in LANDING_ORDER:
        for (name, fld), entries in sorted(
                ((k, v) for k, v in groups.items() if k[0] == src_name),
                key=lambda kv: (kv[0][1] is not None, kv[0][1] or "")):
            landed, result = _retry_group(engine, SOURCES[name], fld, entries, origin)
            accounts_landed = accounts_landed or (name == "accounts" and bool(landed))
            total.add(result)
    if accounts_landed:
        total.relanded += reland_waiting(engine)
    return total


def _retry_group(engine: Engine, src: Source, fld: str | None, entries: list[tuple[int, str]],
                 origin: dict[int, tuple[str, int]]) -> tuple[list[int], IngestResult]:
    """Retry quarantined rows of one source (`fld` None) or the cleared values of one field."""
    q = QuarantineRow.__table__
    now = datetime.now(UTC)
    run_id = _start_run(engine, src.name, "quarantine retry", None, now)
    still: list[_Rejected] = []
    cleared: list[_Rejected] = []
    try:
        with write_transaction(engine) as conn:
            result = _land_chunks(
                conn, src, _retry_chunks(src, entries), run_id=run_id, now=now,
                on_reject=still.extend, on_clear=cleared.extend,
                given_override=None if fld is None else {src.key, fld},
            )
            failed_ids = {r.row for r in still}
            if fld is not None:  # only this field is applied; its entry re-opens if still bad
                cleared = [r for r in cleared if r.field == fld]
                failed_ids |= {r.row for r in cleared}
            landed = sorted({qid for qid, _ in entries} - failed_ids)
            if fld is None:
                for start in range(0, len(landed), 5000):
                    conn.execute(
                        update(q).where(q.c.quarantine_id.in_(landed[start:start + 5000]))
                        .values(status="relanded", resolved_at=now, resolved_run_id=run_id)
                    )
                for r in still:
                    conn.execute(update(q).where(q.c.quarantine_id == r.row).values(
                        field=r.field, code=r.code, reason=r.reason, value=r.value))
            by_file: dict[str, list[_Rejected]] = {}
            for r in cleared:  # keep where the row came from
                file_, row_number = origin[r.row]
                r.row = row_number
                by_file.setdefault(file_, []).append(r)
            for file_, rows in by_file.items():
                _insert_quarantine(conn, src, file_, run_id, now, rows, kind="field_cleared")
            result.file, result.run_id = "quarantine retry", run_id
            result.check()
            _finish_run(conn, run_id, result)
    except BaseException as exc:
        _fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    if not landed:
        # a retry that re-lands nothing changes nothing: it leaves no run behind either,
        # so a schedule that retries every few minutes does not flood the run log
        with write_transaction(engine) as conn:
            conn.execute(delete(IngestRun).where(IngestRun.run_id == run_id))
        result.run_id = None
    log.info("quarantine retry for %s%s: %d relanded, %d still quarantined", src.name,
             f" ({fld})" if fld else "", len(landed), len(entries) - len(landed))
    return landed, result
