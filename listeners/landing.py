"""The one landing path: validate, quarantine, stage and merge, one file per transaction.

Every source goes through `land_file` (files) or `retry_quarantine` (rows that failed
before). Accepted rows are bulk-loaded into a temporary staging table (executemany on SQLite,
COPY on PostgreSQL) and merged into the warehouse with one set-based upsert that touches only
rows whose values changed. Rejected rows land verbatim in `quarantine` with the field and the
reason. The whole file commits or nothing does; the run log records both outcomes.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pulse.core.errors import InputFileError, PulseError, UnknownSourceError
from pulse.core.settings import get_settings
from pulse.listeners.contract import LANDING_ORDER, SOURCES, Source
from pulse.listeners.readers import Chunk, Reject, given_columns, open_reader, records_frame, scan
from pulse.listeners.validate import CODES, validate
from pulse.sql.db import ensure_schema
from pulse.sql.schema import ENTITY_TABLES, Account, IngestRun, QuarantineRow
from pulse.sql.types import UTCDateTime

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
    reasons: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self) -> None:
        total = self.inserted + self.updated + self.unchanged + self.quarantined
        if total != self.read:
            raise AssertionError(f"{self.file}: read {self.read} rows but accounted for {total}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: IngestResult) -> None:
        for name in ("read", "inserted", "updated", "unchanged", "quarantined"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n
        self.warnings.extend(other.warnings)
        self.seconds += other.seconds


def source_for_path(path: Path) -> str:
    """The source a file belongs to, from its name: `usage.csv`, `usage_2026-11-01.jsonl`..."""
    stem = path.name.lower().split(".")[0]
    for name in SOURCES:
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


# --------------------------------------------------------------------------- staging


def _stage_table(source: Source, name: str, dialect: str) -> Table:
    target = ENTITY_TABLES[source.name]
    cols = [Column(c, target.c[c].type) for c in source.columns]
    kw: dict[str, Any] = {}
    if dialect == "postgresql":
        kw["postgresql_on_commit"] = "DROP"
    return Table(name, MetaData(), *cols, Column("_row", BigInteger), prefixes=["TEMPORARY"], **kw)


def _stage_rows(source: Source, clean: pd.DataFrame, dialect: str,
                trailing: list[Any] | None = None) -> list[list[Any]]:
    """Rows for the staging load, as each database stores them.

    SQLite gets what SQLAlchemy's SQLite types store (naive UTC text timestamps, 0/1 booleans);
    PostgreSQL gets text for COPY (timestamps with an explicit +00:00).
    """
    cols: list[np.ndarray] = []
    for f in source.fields:
        s = clean[f.name]
        if f.kind == "timestamp":
            utc = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            text_ = np.strings.replace(np.datetime_as_string(utc, unit="us"), "T", " ")
            if dialect == "postgresql":
                text_ = np.strings.add(text_, "+00:00")
            out = pd.Series(text_.astype(object), index=s.index)
        elif f.kind == "date":
            out = s.map(lambda d: d.isoformat() if d is not None else None, na_action="ignore")
        elif f.kind == "bool":
            out = s.astype("Int64").astype(object)
        else:
            out = s.astype(object)
        arr = out.to_numpy(dtype=object, copy=True)
        arr[s.isna().to_numpy()] = None
        cols.append(arr)
    if trailing is None:
        cols.append(clean.index.to_numpy(dtype=object))  # the row number, for staging
    else:
        cols.extend(np.full(len(clean), v, dtype=object) for v in trailing)
    grid = np.empty((len(clean), len(cols)), dtype=object)
    for i, col in enumerate(cols):
        grid[:, i] = col
    return grid.tolist()


def _copy_rows(cur: Any, table: str, names: list[str], rows: list[list[Any]]) -> None:
    """COPY rows into `table`; psycopg adapts and escapes each value (None is NULL)."""
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _load_stage(conn: Connection, stage: Table, source: Source, clean: pd.DataFrame) -> None:
    if clean.empty:
        return
    names = [*source.columns, "_row"]
    if conn.dialect.name == "postgresql":
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        _copy_rows(cur, stage.name, names, _stage_rows(source, clean, "postgresql"))
        cur.close()
    else:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.executemany(
            f"INSERT INTO {stage.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            _stage_rows(source, clean, "sqlite"),
        )
        cur.close()


class _NeedsMerge(Exception):
    """A direct load met a key that repeats or is already stored: the staged merge must
    handle the file."""


#: sources whose rows are immutable events, usually new: tried with a direct load first
DIRECT_SOURCES = frozenset({"usage", "purchases", "mentions"})


def _load_direct(conn: Connection, source: Source, clean: pd.DataFrame, *, now: datetime,
                 run_id: int) -> None:
    """Plain inserts straight into the warehouse table (COPY on PostgreSQL)."""
    if clean.empty:
        return
    target = ENTITY_TABLES[source.name].name
    names = [*source.columns, "landed_at", "updated_at", "run_id"]
    try:
        _insert_direct(conn, source, clean, names, target, now=now, run_id=run_id)
    except conn.dialect.loaded_dbapi.IntegrityError as exc:  # a key already in the table
        raise _NeedsMerge(source.name) from exc


def _insert_direct(conn: Connection, source: Source, clean: pd.DataFrame, names: list[str],
                   target: str, *, now: datetime, run_id: int) -> None:
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if conn.dialect.name == "postgresql":
        stamp = now.astimezone(UTC).isoformat()
        _copy_rows(cur, target, names,
                   _stage_rows(source, clean, "postgresql", [stamp, stamp, run_id]))
    else:
        stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        cur.executemany(
            f"INSERT INTO {target} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            _stage_rows(source, clean, "sqlite", [stamp, stamp, run_id]),
        )
    cur.close()


def _distinct(conn: Connection, a: str, b: str) -> str:
    op = "IS NOT" if conn.dialect.name == "sqlite" else "IS DISTINCT FROM"
    return f"({a} {op} {b})"


def _any_distinct(conn: Connection, cols: list[str], left: str, right: str,
                  rprefix: str = "") -> str:
    return " OR ".join(_distinct(conn, f"{left}.{c}", f"{right}.{rprefix}{c}") for c in cols)


def _count_outcomes(conn: Connection, source: Source, stage: Table, dups: bool,
                    given: set[str]) -> tuple[int, int, int]:
    """(inserted, updated, unchanged) for the staged rows, before the merge.

    Without repeated keys each staged row is new, changed or the same as the warehouse row.
    With repeated keys (a ticket opened, then solved, in one file) the rows of a key are
    replayed in file order: the first against the warehouse, each later one against the one
    before it; when the key's last version equals the warehouse row, all its rows are unchanged.
    """
    target = ENTITY_TABLES[source.name].name
    key = source.key
    cols = [c for c in source.columns if c != key and c in given]
    if not dups:
        changed = _any_distinct(conn, cols, "t", "s")
        sql = f"""
            SELECT
              COALESCE(SUM(CASE WHEN t.{key} IS NULL THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN t.{key} IS NOT NULL AND ({changed}) THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN t.{key} IS NOT NULL AND NOT ({changed}) THEN 1 ELSE 0 END), 0)
            FROM {stage.name} s LEFT JOIN {target} t ON t.{key} = s.{key}
        """
        ins, upd, same = conn.execute(text(sql)).one()
        return int(ins), int(upd), int(same)
    lags = ", ".join(
        f"LAG({c}) OVER (PARTITION BY {key} ORDER BY _row) AS p_{c}" for c in cols
    )
    vs_prev = _any_distinct(conn, cols, "r", "r", rprefix="p_")
    vs_target = _any_distinct(conn, cols, "t", "r")
    last_vs_target = _any_distinct(conn, cols, "t", "l")
    sql = f"""
        WITH r AS (
          SELECT s.*, {lags},
                 ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY _row) AS rn,
                 ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY _row DESC) AS rd
          FROM {stage.name} s
        ),
        k AS (
          SELECT l.{key} AS k,
                 CASE WHEN t.{key} IS NULL THEN 'new'
                      WHEN {last_vs_target} THEN 'changed' ELSE 'same' END AS fate
          FROM r l LEFT JOIN {target} t ON t.{key} = l.{key}
          WHERE l.rd = 1
        ),
        c AS (
          SELECT CASE
                   WHEN k.fate = 'same' THEN 'unchanged'
                   WHEN r.rn = 1 AND k.fate = 'new' THEN 'inserted'
                   WHEN r.rn = 1 AND ({vs_target}) THEN 'updated'
                   WHEN r.rn = 1 THEN 'unchanged'
                   WHEN {vs_prev} THEN 'updated'
                   ELSE 'unchanged' END AS outcome
          FROM r JOIN k ON k.k = r.{key}
          LEFT JOIN {target} t ON t.{key} = r.{key}
        )
        SELECT outcome, COUNT(*) FROM c GROUP BY outcome
    """
    counts = dict(conn.execute(text(sql)).all())
    return (int(counts.get("inserted", 0)), int(counts.get("updated", 0)),
            int(counts.get("unchanged", 0)))


def _merge(conn: Connection, source: Source, stage: Table, dups: bool, run_id: int,
           now: datetime, given: set[str]) -> None:
    """One set-based upsert from staging into the warehouse; unchanged rows are not touched."""
    target = ENTITY_TABLES[source.name]
    key = source.key
    cols = source.columns
    if dups:
        ranked = select(
            *[stage.c[c] for c in cols],
            func.row_number().over(partition_by=stage.c[key], order_by=stage.c._row.desc())
            .label("rd"),
        ).subquery("ranked")
        base = select(*[ranked.c[c] for c in cols]).where(ranked.c.rd == 1)
    else:
        base = select(*[stage.c[c] for c in cols]).where(true())
    rows = base.add_columns(
        literal(now, UTCDateTime).label("landed_at"),
        literal(now, UTCDateTime).label("updated_at"),
        literal(run_id).label("run_id"),
    )
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = make(target).from_select([*cols, "landed_at", "updated_at", "run_id"], rows)
    changed = [c for c in cols if c != key and c in given]
    stmt = stmt.on_conflict_do_update(
        index_elements=[target.c[key]],
        set_={c: stmt.excluded[c] for c in [*changed, "updated_at", "run_id"]},
        where=or_(*[target.c[c].is_distinct_from(stmt.excluded[c]) for c in changed]),
    )
    conn.execute(stmt)


# --------------------------------------------------------------------------- the core


@dataclass
class _Rejected:
    row: int
    raw: str
    field: str | None
    code: str
    reason: str


def _known_accounts(conn: Connection, source: Source) -> Callable[[pd.Series], pd.Series] | None:
    if not any(f.references_account for f in source.fields):
        return None
    ids = pd.Index(conn.execute(select(Account.account_id)).scalars().all(), dtype=object)
    return lambda values: values.isin(ids)


def _land_chunks(
    conn: Connection,
    source: Source,
    chunks: Iterable[Chunk],
    *,
    run_id: int,
    now: datetime,
    on_reject: Callable[[list[_Rejected]], None],
    progress: Callable[[int], None] | None = None,
    direct: bool = False,
) -> IngestResult:
    """Validate and stage every chunk, then count and merge the whole file at once.

    With `direct`, rows go straight into the warehouse table as plain inserts; a key that is
    already there raises IntegrityError and a key repeated in the file raises _NeedsMerge, and
    the caller rolls back and lands the file through the staged merge instead.
    """
    settings = get_settings()
    result = IngestResult(source=source.name, file="")
    stage = _stage_table(source, f"_stage_{source.name}_{run_id}", conn.dialect.name)
    if not direct:
        stage.create(conn)
    known = _known_accounts(conn, source)
    max_future = timedelta(hours=settings.max_future_skew_hours)
    seen: set[Any] = set()
    dups = False
    given: set[str] = set()
    staged = 0
    reasons: Counter[str] = Counter()
    for chunk in chunks:
        checked = validate(source, chunk.values, known_accounts=known, now=now,
                           max_future=max_future)
        rejected = [_Rejected(r.row, r.raw, r.field, r.code, r.reason) for r in chunk.rejects]
        for row, err in checked.errors.iterrows():
            rejected.append(_Rejected(int(row), chunk.raw_text(int(row)), err["field"],
                                      err["code"], err["reason"]))
        if rejected:
            on_reject(rejected)
            reasons.update(reason_key(r.field, r.code) for r in rejected)
        clean = checked.clean
        before = len(seen)
        seen.update(clean[source.key].to_numpy())
        dups = dups or len(seen) != before + len(clean)  # a key repeated, here or earlier
        given.update(source.columns if chunk.given is None else chunk.given)
        if direct:
            if dups:
                raise _NeedsMerge(source.name)
            _load_direct(conn, source, clean, now=now, run_id=run_id)
        else:
            _load_stage(conn, stage, source, clean)
        staged += len(clean)
        n = len(chunk.values) + len(chunk.rejects)
        result.read += n
        result.quarantined += len(rejected)
        if progress:
            progress(n)
    if dups:
        conn.execute(text(f"CREATE INDEX ix{stage.name} ON {stage.name} ({source.key}, _row)"))
    if direct:
        result.inserted = staged
    elif staged:
        result.inserted, result.updated, result.unchanged = _count_outcomes(
            conn, source, stage, dups, given)
        _merge(conn, source, stage, dups, run_id, now, given)
    if not direct:
        stage.drop(conn)
    result.reasons = dict(reasons.most_common())
    return result


def _row_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _insert_quarantine(conn: Connection, source: Source, label: str, run_id: int,
                       now: datetime, rejected: list[_Rejected]) -> None:
    rows = [
        {
            "run_id": run_id, "source": source.name, "file": label, "row_number": r.row,
            "raw": r.raw, "row_hash": _row_hash(r.raw), "field": r.field, "code": r.code,
            "reason": r.reason, "landed_at": now, "status": "open",
        }
        for r in rejected
    ]
    table = QuarantineRow.__table__
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = make(table).on_conflict_do_nothing(index_elements=["source", "row_hash"])
    for start in range(0, len(rows), 5000):
        conn.execute(stmt, rows[start:start + 5000])


def _start_run(engine: Engine, source: str, label: str, sha: str | None, now: datetime) -> int:
    with engine.begin() as conn:
        return int(conn.execute(
            insert(IngestRun).values(
                source=source, file=label, file_sha256=sha, started_at=now, status="running",
                read=0, inserted=0, updated=0, unchanged=0, quarantined=0,
            ).returning(IngestRun.run_id)
        ).scalar_one())


def _fail_run(engine: Engine, run_id: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(IngestRun).where(IngestRun.run_id == run_id).values(
            status="failed", error=error, finished_at=datetime.now(UTC)))


def _finish_run(conn: Connection, run_id: int, result: IngestResult) -> None:
    conn.execute(update(IngestRun).where(IngestRun.run_id == run_id).values(
        status="ok", finished_at=datetime.now(UTC), read=result.read,
        inserted=result.inserted, updated=result.updated, unchanged=result.unchanged,
        quarantined=result.quarantined,
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
) -> IngestResult:
    label = path.name
    with _no_gc_pauses(), engine.begin() as conn:
        result = _land_chunks(
            conn, src, reader, run_id=run_id, now=now, progress=progress, direct=direct,
            on_reject=lambda rej: _insert_quarantine(conn, src, label, run_id, now, rej),
        )
        result.file, result.run_id = str(path), run_id
        if getattr(reader, "unknown", None):
            result.warnings.append(
                f"{label}: ignored column(s) not in the contract: {', '.join(reader.unknown)}"
            )
        if not utf8_valid:
            result.warnings.append(f"{label}: the file is not entirely valid UTF-8")
        result.check()
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
) -> IngestResult:
    """Validate and land one file; the whole file commits or nothing does.

    Raises `InputFileError` (nothing landed) for an unreadable file, an unknown source or a
    header without a required column.
    """
    path = Path(path)
    src = get_source(source) if source else get_source(source_for_path(path))
    ensure_schema(engine)
    started = datetime.now(UTC)
    now = now or started
    label = path.name
    sha: str | None = None
    try:
        sha, utf8_valid, _size = scan(path)
        reader = open_reader(path, src, batch=batch or get_settings().batch_rows,
                             utf8_valid=utf8_valid)
    except InputFileError as exc:
        run_id = _start_run(engine, src.name, label, sha, now)
        _fail_run(engine, run_id, str(exc))
        raise
    run_id = _start_run(engine, src.name, label, sha, now)
    batch_rows = batch or get_settings().batch_rows
    try:
        result = None
        if src.name in DIRECT_SOURCES:
            # events are usually new: load them straight into the table, and fall back to the
            # staged merge (in a fresh transaction, the file read again) at the first key that
            # is already there or repeated
            try:
                result = _land_transaction(engine, src, reader, path, run_id=run_id, now=now,
                                           progress=progress, utf8_valid=utf8_valid, direct=True)
            except _NeedsMerge:
                log.info("%s: some keys repeat or are already known; landing through the "
                         "staged merge instead", label)
                reader = open_reader(path, src, batch=batch_rows, utf8_valid=utf8_valid)
        if result is None:
            result = _land_transaction(engine, src, reader, path, run_id=run_id, now=now,
                                       progress=progress, utf8_valid=utf8_valid, direct=False)
    except InputFileError as exc:
        _fail_run(engine, run_id, str(exc))
        raise
    except PulseError as exc:
        _fail_run(engine, run_id, str(exc))
        raise
    except Exception as exc:
        _fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    result.seconds = (datetime.now(UTC) - started).total_seconds()
    for w in result.warnings:
        log.warning(w)
    log.info(
        "landed %s: read %d, inserted %d, updated %d, unchanged %d, quarantined %d",
        label, result.read, result.inserted, result.updated, result.unchanged, result.quarantined,
    )
    return result


def land_files(engine: Engine, paths: Iterable[Path | str], *, source: str | None = None,
               progress: Callable[[int], None] | None = None) -> list[IngestResult]:
    """Land several files, accounts first; stops at the first file that fails as a whole."""
    plist = [Path(p) for p in paths]
    order = {name: i for i, name in enumerate(LANDING_ORDER)}

    def rank(p: Path) -> int:
        try:
            return order[source or source_for_path(p)]
        except UnknownSourceError:
            return len(order)

    return [land_file(engine, p, source=source, progress=progress)
            for p in sorted(plist, key=rank)]


# --------------------------------------------------------------------------- quarantine


def _retry_chunks(source: Source, entries: list[tuple[int, str]]) -> Iterator[Chunk]:
    objs: list[tuple[int, dict[str, Any]]] = []
    rejects: list[Reject] = []
    raw: dict[int, str] = {}
    for qid, text_ in entries:
        raw[qid] = text_
        try:
            obj = json.loads(text_)
        except json.JSONDecodeError:
            obj = None
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

    Rows that still fail stay open with their (possibly new) reason.
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
            select(q.c.quarantine_id, q.c.source, q.c.raw).where(*cond)
            .order_by(q.c.quarantine_id)
        ).all()
    by_source: dict[str, list[tuple[int, str]]] = {}
    for qid, src_name, raw in found:
        by_source.setdefault(src_name, []).append((qid, raw))
    for src_name in [s for s in LANDING_ORDER if s in by_source]:
        src = SOURCES[src_name]
        now = datetime.now(UTC)
        run_id = _start_run(engine, src.name, "quarantine retry", None, now)
        still: list[_Rejected] = []
        try:
            with engine.begin() as conn:
                result = _land_chunks(
                    conn, src, _retry_chunks(src, by_source[src_name]), run_id=run_id, now=now,
                    on_reject=still.extend,
                )
                entries = {qid for qid, _ in by_source[src_name]}
                failed_ids = {r.row for r in still}
                landed = sorted(entries - failed_ids)
                for start in range(0, len(landed), 5000):
                    conn.execute(
                        update(q).where(q.c.quarantine_id.in_(landed[start:start + 5000]))
                        .values(status="relanded", resolved_at=now, resolved_run_id=run_id)
                    )
                for r in still:
                    conn.execute(update(q).where(q.c.quarantine_id == r.row).values(
                        field=r.field, code=r.code, reason=r.reason))
                result.file, result.run_id = "quarantine retry", run_id
                result.check()
                _finish_run(conn, run_id, result)
        except Exception as exc:
            _fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
            raise
        if not landed:
            # a retry that re-lands nothing changes nothing: it leaves no run behind either,
            # so a schedule that retries every few minutes does not flood the run log
            with engine.begin() as conn:
                conn.execute(delete(IngestRun).where(IngestRun.run_id == run_id))
            result.run_id = None
        log.info("quarantine retry for %s: %d relanded, %d still quarantined",
                 src_name, len(landed), len(still))
        total.add(result)
    return total
