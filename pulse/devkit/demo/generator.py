"""The entry point: `generate()` runs every stage on its own random stream and writes the world."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pulse.devkit.demo.accounts import _entity_rows, _make_accounts
from pulse.devkit.demo.contacts import _make_contacts
from pulse.devkit.demo.incidents import _incident_records, _live, _make_incidents
from pulse.devkit.demo.mentions import _make_mentions
from pulse.devkit.demo.purchases import _make_purchases
from pulse.devkit.demo.tickets import _make_tickets
from pulse.devkit.demo.truth import _truth, _write_truth
from pulse.devkit.demo.usage import _make_usage
from pulse.devkit.demo.world import (
    BRAND_HANDLE,
    FILE_NAMES,
    HEADERS,
    SOURCES,
    DemoSummary,
    _Accounts,
    _assign_groups,
    _Clock,
    _Contacts,
    _Groups,
    _rng,
    _Shape,
    _trajectories,
    _Voice,
)
from pulse.devkit.demo.writer import (
    _Breakers,
    _inject_csv,
    _inject_jsonl,
    _n_malformed,
    _write_csv,
    _write_lines,
)

log = logging.getLogger("pulse.devkit.demo")  # the package's logger, as before the split


def generate(out_dir: Path, *, accounts: int = 2000, days: int = 180, seed: int = 7,
             end: date | None = None, malformed_rate: float = 0.01,
             live_incident: bool = False,
             progress: Callable[[str, int], None] | None = None,
             now: datetime | None = None) -> DemoSummary:
    """Write a demo world of `accounts` accounts over the `days` days ending on `end`.

    `live_incident=True` moves the world's last incident to the end of the window: a major
    incident that started 50 minutes before the window ends and is still open (`identified`),
    so that the outage path (impact, notices) has something current to act on.

    `end` defaults to today's UTC date and may not lie after it; no timestamp lies after the
    end of `end` or after the current time. `progress(source, rows)` is called after each
    source file is written. The same arguments (with a past `end`) give byte-identical files.
    `now` (aware; default: the wall clock) is the current time the world is generated at: a
    test pins it to replay a given hour.
    """
    clock, end = _check_and_clock(accounts, days, malformed_rate, end, now)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    used_handles: set[str] = {BRAND_HANDLE}

    acc = _make_accounts(_rng(seed, 1), accounts, clock, used_handles)
    con = _make_contacts(_rng(seed, 2), acc, used_handles)
    grp = _assign_groups(_rng(seed, 3), acc, con, clock)
    level, err_rate = _trajectories(_rng(seed, 4), acc, grp, clock)
    return _assemble(out_dir, seed=seed, clock=clock, acc=acc, con=con, grp=grp, level=level,
                     err_rate=err_rate, used_handles=used_handles, accounts=accounts,
                     days=days, malformed_rate=malformed_rate, live_incident=live_incident,
                     progress=progress, t0=t0)


def _check_and_clock(accounts: int, days: int, malformed_rate: float, end: date | None,
                     now: datetime | None = None) -> tuple[_Clock, date]:
    """Check the common arguments; return the window's clock and its last day."""
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, not {accounts}")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    if not 0.0 <= malformed_rate <= 0.5:
        raise ValueError(f"malformed_rate must lie in [0, 0.5], not {malformed_rate}")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError(f"now must be an aware datetime, not {now!r}")
    now = now.astimezone(UTC)
    if isinstance(end, datetime):
        end = end.date()
    if end is None:
        end = now.date()
    if end > now.date():
        raise ValueError(f"end {end} lies after today's UTC date {now.date()}")
    return _Clock.make(end, days, now), end


def _assemble(out_dir: Path, *, seed: int, clock: _Clock, acc: _Accounts, con: _Contacts,
              grp: _Groups, level: np.ndarray, err_rate: np.ndarray, used_handles: set[str],
              accounts: int, days: int, malformed_rate: float, live_incident: bool,
              progress: Callable[[str, int], None] | None, t0: float,
              shape: _Shape | None = None, voice: _Voice | None = None,
              truth_extra: dict[str, Any] | None = None) -> DemoSummary:
    """Every source from the accounts, contacts and behaviour; break rows; write the files."""
    incidents = _make_incidents(_rng(seed, 5), clock)
    if live_incident and incidents:
        incidents[-1] = _live(incidents[-1], clock)
    usage_rows, hits_idx = _make_usage(_rng(seed, 6), acc, con, grp, level, err_rate, clock,
                                       incidents, shape)
    billing = _make_purchases(_rng(seed, 7), acc, grp, clock)
    ticket_rows = _make_tickets(_rng(seed, 8), acc, con, grp, level, clock, incidents, hits_idx,
                                voice)
    mention_recs, mention_kinds = _make_mentions(_rng(seed, 9), acc, con, grp, level, clock,
                                                 incidents, hits_idx, used_handles, voice)
    incident_recs = _incident_records(incidents, _rng(seed, 10))

    account_rows, contact_rows = _entity_rows(_rng(seed, 11), acc, con, billing, clock)

    # Break a few rows of every source.
    breakers = _Breakers(accounts)
    mrng = _rng(seed, 12)
    csv_rows: dict[str, Sequence[Sequence[str]]] = {
        "accounts": account_rows, "contacts": contact_rows, "usage": usage_rows,
        "purchases": billing.rows, "tickets": ticket_rows,
    }
    malformed: dict[str, int] = {}
    width = max(5, len(str(accounts)))
    id_rng = _rng(seed, 13)

    def random_id(prefix: str, rows: Sequence[Sequence[str]]
                  ) -> Callable[[int, list[str]], None]:
        taken: set[str] = set()

        def fresh(j: int, row: list[str]) -> None:
            if not taken:
                taken.update(r[0] for r in rows)
            while True:
                new = f"{prefix}{int(id_rng.integers(0, np.iinfo(np.int64).max)):016x}"
                if new not in taken:
                    taken.add(new)
                    row[0] = new
                    return
        return fresh

    def same_id(j: int, row: list[str]) -> None:
        pass  # a broken update of the same ticket

    fresh_csv: dict[str, Callable[[int, list[str]], None]] = {
        "accounts": lambda j, r: r.__setitem__(0, f"ACC-{accounts + 1 + j:0{width}d}"),
        "contacts": lambda j, r: r.__setitem__(0, f"C-{con.n + 1 + j:06d}"),
        "usage": random_id("evt_", usage_rows),
        "purchases": random_id("pay_", billing.rows),
        "tickets": same_id,
    }
    final_csv: dict[str, list[Sequence[str]]] = {}
    for source, rows in csv_rows.items():
        k = _n_malformed(malformed_rate, len(rows))
        final_csv[source] = _inject_csv(mrng, rows, breakers.csv(source), k, fresh_csv[source])
        malformed[source] = k

    def mention_fresh(j: int, rec: dict[str, Any]) -> None:
        # Real ids keep bit 21 of the sequence clear; broken copies set it.
        mid = int(rec["mention_id"])
        rec["mention_id"] = str((mid & ~0x3FFFFF) | 0x200000 | (j & 0x1FFFFF))

    def incident_fresh(j: int, rec: dict[str, Any]) -> None:
        prefix = rec["incident_id"].rsplit("-", 1)[0]
        rec["incident_id"] = f"{prefix}-{len(incident_recs) + 1 + j:02d}"

    final_lines: dict[str, list[str]] = {}
    for source, recs, fresh in (("mentions", mention_recs, mention_fresh),
                                ("incidents", incident_recs, incident_fresh)):
        k = _n_malformed(malformed_rate, len(recs))
        final_lines[source] = _inject_jsonl(mrng, recs, breakers.jsonl(source), k, fresh)
        malformed[source] = k

    # Write.
    files: dict[str, Path] = {}
    rows_written: dict[str, int] = {}
    for source in SOURCES:
        path = out_dir / FILE_NAMES[source]
        if source in final_csv:
            _write_csv(path, HEADERS[source], final_csv[source])
            rows_written[source] = len(final_csv[source])
        else:
            _write_lines(path, final_lines[source])
            rows_written[source] = len(final_lines[source])
        files[source] = path
        log.debug("wrote %s: %d rows (%d malformed)", path, rows_written[source],
                  malformed[source])
        if progress is not None:
            progress(source, rows_written[source])

    truth = _truth(acc, grp, clock, incidents, hits_idx, mention_kinds, malformed,
                   accounts=accounts, days=days, seed=seed, malformed_rate=malformed_rate,
                   live_incident=live_incident, extra=truth_extra)
    truth_path = _write_truth(out_dir, truth)
    log.info("demo world in %s: %d accounts x %d days, %s rows in %.1f s", out_dir, accounts,
             days, sum(rows_written.values()), time.perf_counter() - t0)
    return DemoSummary(out_dir=out_dir, files=files, rows=rows_written, malformed=malformed,
                       truth_path=truth_path)
