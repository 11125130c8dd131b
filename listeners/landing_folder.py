"""The landing folder: files dropped into `$PULSE_HOME/landing/` waiting to land.

Each waiting file is mapped to its source by name, landed through the one landing path
(`pulse.listeners.landing.land_file`) and moved to `landed/<day>/`; a file that cannot be
landed as a whole (no source for its name, unreadable, not the contract) is moved to
`rejected/` with the reason in a `.reason.txt` beside it. Nothing here knows about Airflow:
the DAG `pulse_ingest` passes the run's day and id.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulse.core.errors import InputFileError, UnknownSourceError

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

#: Names in the landing folder that are not (yet) files to land: hidden files, partial uploads.
IGNORED_PREFIXES = (".", "~", "_")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".reason.txt")


def unique_path(directory: Path, name: str) -> Path:
    """`directory/name`, or `directory/<stem>-<n><suffixes>` if that is taken."""
    target = directory / name
    stem, dot, suffixes = name.partition(".")
    n = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        n += 1
        target = directory / f"{stem}-{n}{dot}{suffixes}"
    return target


def move_to(path: Path, directory: Path) -> Path:
    """Move `path` into `directory` (created as needed) under a name not yet taken there."""
    directory.mkdir(parents=True, exist_ok=True)
    target = unique_path(directory, path.name)
    shutil.move(str(path), str(target))
    return target


def reject_file(path: Path, reason: str, *, home: Path, run_id: str) -> Path:
    """Move `path` to `<home>/rejected/` and write the reason beside it."""
    target = move_to(path, home / "rejected")
    target.with_name(target.name + ".reason.txt").write_text(
        f"{reason}\n\nrejected by pulse_ingest run {run_id}\n", encoding="utf-8"
    )
    log.error("rejected %s -> %s: %s", path.name, target, reason)
    return target


def scan_landing(*, home: Path, accounts: bool, run_id: str) -> list[dict[str, str]]:
    """The files waiting in `<home>/landing/`, sorted by name, with their source: the accounts
    files (`accounts=True`) or all the others.

    Files whose name maps to no source are moved to `rejected/`; they are returned with
    `status = "rejected"` so that the run's report can list them.
    """
    from pulse.listeners.landing import source_for_path

    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    found: list[dict[str, str]] = []
    for path in sorted(landing.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith(IGNORED_PREFIXES):
            continue
        if name.lower().endswith(IGNORED_SUFFIXES):
            continue
        try:
            source = source_for_path(path)
        except UnknownSourceError as exc:
            moved = reject_file(path, str(exc), home=home, run_id=run_id)
            found.append({"file": name, "status": "rejected", "reason": str(exc),
                          "moved_to": str(moved)})
            continue
        if (source == "accounts") == accounts:
            found.append({"file": name, "path": str(path), "source": source, "status": "waiting"})
    return found


def land_waiting(engine: Engine, item: dict[str, str], *, home: Path, day: str,
                 run_id: str) -> dict[str, Any]:
    """Land one file found by `scan_landing` and move it to `landed/<day>/`, or to `rejected/`
    if it fails as a whole. A file no longer there (moved by an earlier try) is `missing`."""
    from pulse.listeners.landing import land_file

    path = Path(item["path"])
    base = {"file": path.name, "source": item["source"]}
    if not path.exists():
        log.warning("%s is no longer in the landing folder; nothing to do", path)
        return {**base, "status": "missing"}
    try:
        # the DAG re-lands the rows waiting for an account after all files: not here
        result = land_file(engine, path, source=item["source"], reland=False)
    except InputFileError as exc:
        moved = reject_file(path, str(exc), home=home, run_id=run_id)
        return {**base, "status": "rejected", "reason": str(exc), "moved_to": str(moved)}
    moved = move_to(path, home / "landed" / day)
    log.info("moved %s to %s", path.name, moved)
    return {**result.to_dict(), **base, "status": "landed", "moved_to": str(moved)}
