"""The ingest worker: a second process that reads, validates and prepares a file's chunks
while the landing inserts the chunks before them.

A direct load on SQLite spends about as long inserting rows as reading and validating them,
and SQLite's inserts cannot share the process with that work (sqlite3 releases the GIL
around each row, so a thread fights the inserts for it row by row). The landing starts this
worker (`IngestWorker`) with the file; the worker sends back, one chunk at a time, the rows
that pass as columns in the database's form, the rejected rows and cleared values and the
chunk's tallies. The landing keeps its one write transaction and inserts each chunk as it
comes, so the file stays atomic.

Memory stays bounded: the worker's writes block on the pipe until the landing reads the next
chunk, so at most one chunk waits in flight beside the one being inserted and the one being
validated, and the worker's chunks are at most `_MAX_CHUNK` rows. A worker that dies closes its end of the pipe: the landing reads end-of-file,
raises and rolls back; it never waits on a dead worker. A landing that fails or is
interrupted kills its worker.

Protocol (pickles, each frame prefixed by its length): the landing writes one "go" dict to
the worker's stdin; the worker answers on the pipe given by file descriptor with
("batch", read, rejected, cleared, n_clean, columns) per chunk, then ("end", info) or
("error", kind, message).
"""
from __future__ import annotations

import gc
import io
import logging
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from pulse.core.errors import InputFileError, PulseError
from pulse.listeners.contract import SOURCES
from pulse.listeners.prepare import (
    LagTally,
    Prepared,
    _stage_columns,
    collect_chunk_garbage,
    prepare_chunk,
)
from pulse.listeners.readers import open_reader

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")
#: rows of the worker's first chunk (the next ones double up to the batch size)
_FIRST_CHUNK = 5_000
#: the most rows in one of the worker's chunks, whatever the batch size: each of the two
#: processes holds a chunk (and imports of its own), and together they stay under 300 MiB
#: (300,000-row bench: about 175 MiB landing + 120 MiB worker); smaller chunks also keep
#: the two sides' turns short, so neither waits long for the other
_MAX_CHUNK = 10_000


class IngestWorkerError(PulseError):
    """The ingest worker process stopped or failed before the file was read: nothing landed."""


def _write_frame(fh: BinaryIO, obj: Any) -> None:
    """Write one frame. Pickled without the memo ("fast" mode: a third of the time, both
    ways, for a chunk's hundreds of thousands of values): frames hold no cycles."""
    buf = io.BytesIO()
    buf.write(b"\0" * _HEADER.size)
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(obj)
    view = buf.getbuffer()
    _HEADER.pack_into(view, 0, len(view) - _HEADER.size)
    fh.write(view)
    del view
    fh.flush()


def _read_frame(fh: BinaryIO) -> Any | None:
    """The next frame, or None at end-of-file (the other side closed or died)."""
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = fh.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


class IngestWorker:
    """The landing's side of one worker process for one file (see the module docstring).

    Started as early as possible (`__init__`: the worker imports while the landing scans the
    file), told what to do with `begin` once the landing holds its write lock, read with
    `batches`, and always `close`d.
    """

    def __init__(self, path: Path, source: str, *, label: str) -> None:
        self.path, self.source, self.label = path, source, label
        self.unknown: list[str] = []
        self.lags: LagTally | None = None
        self.peak_mib: float | None = None
        #: what the worker needs to know that the landing learns before `begin` (the
        #: file's UTF-8 validity, the batch size)
        self.options: dict[str, Any] = {}
        self._closed = False
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "pulse.listeners.pipeline", str(write_fd)],
                stdin=subprocess.PIPE, pass_fds=(write_fd,), close_fds=True)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        # only the worker may hold the write end: its death is then end-of-file here
        os.close(write_fd)
        self._in = os.fdopen(read_fd, "rb", buffering=1 << 20)

    def begin(self, *, now: datetime, known_accounts: list[str] | None,
              max_future: timedelta, dialect: str, event_time: str | None) -> None:
        """Tell the worker to start on the file (`known_accounts`: read under the landing's
        write lock) with `options` (`utf8_valid`, `batch`)."""
        go = {"path": str(self.path), "source": self.source, "now": now,
              "known_accounts": known_accounts, "max_future": max_future, "dialect": dialect,
              "event_time": event_time, **self.options}
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            _write_frame(stdin, go)  # type: ignore[arg-type]
            stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: `batches` reports it

    def batches(self) -> Iterator[Prepared]:
        """The file's chunks, prepared by the worker, in file order."""
        while True:
            msg = _read_frame(self._in)
            if msg is None:
                code = self._proc.wait()
                raise IngestWorkerError(
                    f"{self.label}: the ingest worker process stopped (exit code {code}) before "
                    "the file was read to its end: nothing of the file landed")
            kind = msg[0]
            if kind == "batch":
                _, read, rejected, cleared, n_clean, columns = msg
                yield Prepared(read=read, rejected=rejected, cleared=cleared,
                               given=frozenset(), n_clean=n_clean, columns=columns)
            elif kind == "end":
                info = msg[1]
                self.unknown, self.lags, self.peak_mib = (
                    info["unknown"], info["lags"], info["peak_mib"])
                return
            else:
                _, what, message = msg
                if what == "InputFileError":
                    raise InputFileError(message)
                raise IngestWorkerError(f"{self.label}: the ingest worker failed: {what}: "
                                        f"{message}")

    def close(self) -> None:
        """Stop the worker if it still runs and release its pipe (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            self._in.close()


def _peak_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _work(go: dict[str, Any], out: BinaryIO) -> None:
    source = SOURCES[go["source"]]
    # the landing waits for the first chunk with nothing to insert: make it small, and let
    # the chunks grow (doubling) to the batch size, at most _MAX_CHUNK rows
    batch = min(go["batch"], _MAX_CHUNK)
    reader = open_reader(Path(go["path"]), source, batch=max(1, min(batch, _FIRST_CHUNK)),
                         utf8_valid=go["utf8_valid"])
    known = None
    if go["known_accounts"] is not None:
        ids = pd.Index(go["known_accounts"], dtype=object)

        def known(values: pd.Series) -> pd.Series:
            return values.isin(ids)

    lags = LagTally(go["event_time"], go["now"]) if go["event_time"] else None
    for chunk in reader:
        p = prepare_chunk(source, chunk, known=known, now=go["now"],
                          max_future=go["max_future"])
        assert p.clean is not None
        columns = _stage_columns(source, p.clean, go["dialect"])
        if lags is not None:
            lags.add(p.clean[lags.column])
        msg = ("batch", p.read, p.rejected, p.cleared, p.n_clean, columns)
        del p, chunk
        _write_frame(out, msg)
        del msg, columns
        collect_chunk_garbage()
        reader.batch = min(batch, reader.batch * 2)
    _write_frame(out, ("end", {"unknown": list(getattr(reader, "unknown", []) or []),
                               "lags": lags, "peak_mib": _peak_mib()}))


def main(argv: list[str]) -> int:
    out = os.fdopen(int(argv[0]), "wb", buffering=1 << 20)
    go = _read_frame(sys.stdin.buffer)
    if go is None:  # the landing went away before it said what to do
        return 0
    gc.disable()  # as in the landing: millions of short-lived strings, no cycles
    try:
        _work(go, out)
    except BrokenPipeError:
        return 1  # the landing went away (it failed or was interrupted)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # reported to the landing, which raises and rolls back
        try:
            _write_frame(out, ("error", type(exc).__name__, str(exc)))
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
