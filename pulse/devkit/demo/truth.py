"""truth.json: the hidden truth of a demo world, which the engine never reads."""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from pulse.devkit.demo.world import (
    BRAND_HANDLE,
    FEATURES,
    GENERATOR_VERSION,
    GROUPS,
    TRUTH_FILE,
    VENDOR_DOMAIN,
    _Accounts,
    _Clock,
    _fmt1,
    _Groups,
    _Incident,
)


def _truth(acc: _Accounts, grp: _Groups, clock: _Clock, incidents: list[_Incident],
           hits_idx: dict[str, list[int]], mention_kinds: dict[str, str],
           malformed: dict[str, int], *, accounts: int, days: int, seed: int,
           malformed_rate: float, live_incident: bool,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What truth.json says: groups, churn dates, the silently dissatisfied, incident hits.

    `churn` holds the date of every cancellation; `silent_periods` every spell of silent
    dissatisfaction as [first day, first day after it] (null: still silent at the end), and
    `silent_since` each such account's first silent day, so that a benchmark can ask who was
    silently dissatisfied on any date. `silent_dissatisfied` lists the accounts silent on the
    last day. `extra` (a variant's description) is merged in.
    """
    groups = {acc.ids[i]: grp.name(i) for i in range(acc.n)}

    def day(d: int) -> str:
        return (clock.start + timedelta(days=int(d))).isoformat()

    periods: dict[str, list[list[str | None]]] = {}
    if grp.silent_periods is None:
        for i in np.flatnonzero(grp.group == GROUPS.index("silent_fade")).tolist():
            periods[acc.ids[i]] = [[day(max(0, int(grp.fade_start[i]))), None]]
        silent_now = [acc.ids[i] for i in
                      np.flatnonzero(grp.group == GROUPS.index("silent_fade")).tolist()]
    else:
        silent_now = []
        for i, spans in enumerate(grp.silent_periods):
            if spans:
                periods[acc.ids[i]] = [[day(max(0, a)), None if b >= days else day(b)]
                                       for a, b in spans]
                if spans[-1][1] >= days and grp.cancel_day[i] < 0:
                    silent_now.append(acc.ids[i])
    truth: dict[str, Any] = {
        "generated_with": {
            "generator": "pulse.devkit.demo", "version": GENERATOR_VERSION, "accounts": accounts,
            "days": days, "seed": seed, "start": clock.start.isoformat(),
            "end": clock.end.isoformat(),
            "window_end": _fmt1(clock.limit_ts), "malformed_rate": malformed_rate,
            "vendor_domain": VENDOR_DOMAIN, "brand_handle": BRAND_HANDLE,
        },
        "groups": groups,
        "churn": {acc.ids[i]: (date(1970, 1, 1) + timedelta(seconds=int(grp.cancel_ts[i])))
                  .isoformat() for i in np.flatnonzero(grp.cancel_day >= 0).tolist()},
        "silent_dissatisfied": silent_now,
        "silent_since": {a: spans[0][0] for a, spans in periods.items()},
        "silent_periods": periods,
        "incident_hits": {inc_id: [acc.ids[i] for i in idx] for inc_id, idx in hits_idx.items()},
        "live_incident": incidents[-1].id if live_incident and incidents else None,
        "malformed": malformed,
        "features": dict(FEATURES),
        "mention_kinds": mention_kinds,
    }
    if extra:
        truth.update(extra)
    return truth


def _write_truth(out_dir: Path, truth: dict[str, Any]) -> Path:
    """Write truth.json into `out_dir`; return its path."""
    truth_path = out_dir / TRUTH_FILE
    truth_path.write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n",
                          encoding="utf-8")
    return truth_path
