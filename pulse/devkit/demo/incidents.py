"""incidents.jsonl: the status-page incidents of the demo world."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from pulse.devkit.demo.world import (
    _COMPONENT_LABEL,
    _REGION_LABEL,
    COMPONENTS,
    INCIDENT_IMPACTS,
    REGIONS,
    _choice,
    _Clock,
    _fmt1,
    _Incident,
    _pick,
    _styles,
)

_INCIDENT_TITLES: dict[str, tuple[str, ...]] = {
    "api": ("Elevated API error rates", "Increased API latency and timeouts"),
    "dashboard": ("Dashboards failing to load", "Degraded dashboard performance"),
    "reports": ("Delayed report generation", "Report exports failing"),
    "integrations": ("Slack notifications delayed", "Salesforce sync failures"),
    "auth": ("SSO login failures", "Users unable to sign in"),
    "billing-portal": ("Billing portal unavailable", "Errors loading invoices"),
}


def _make_incidents(rng: np.random.Generator, clock: _Clock) -> list[_Incident]:
    days = clock.days
    n = min(int(rng.integers(4, 9)), max(0, days - 1))
    if n == 0:
        return []
    start_days = np.sort(rng.choice(np.arange(1, days), size=n, replace=False))
    out: list[_Incident] = []
    for k, day in enumerate(start_days.tolist()):
        start = clock.at1(day, int(rng.integers(0, 86400)))
        minutes = float(np.clip(rng.lognormal(np.log(100.0), 0.7), 20, 600))
        end = start + int(minutes * 60)
        ncomp = 1 if rng.random() < 0.7 else 2
        comps = tuple(sorted(rng.choice(len(COMPONENTS), size=ncomp, replace=False).tolist()))
        components = tuple(COMPONENTS[c] for c in comps)
        u = rng.random()
        nreg = 1 if u < 0.55 else (2 if u < 0.9 else len(REGIONS))
        regs = tuple(sorted(rng.choice(len(REGIONS), size=nreg, replace=False).tolist()))
        regions = tuple(REGIONS[r] for r in regs)
        impact = INCIDENT_IMPACTS[_choice(rng, [0.08, 0.42, 0.38, 0.12])]
        if len(components) == 1:
            title = _pick(rng, _INCIDENT_TITLES[components[0]])
        else:
            title = "Degraded performance: " + " and ".join(
                _COMPONENT_LABEL[c] for c in components)
        where = "all regions" if len(regions) == len(REGIONS) else ", ".join(
            _REGION_LABEL[r] for r in regions)
        title = f"{title} ({where})"
        if end <= clock.limit_ts:
            resolved, status = True, "resolved"
        else:
            resolved = False
            elapsed = clock.limit_ts - start
            status = ("investigating" if elapsed < 1200 else
                      "identified" if elapsed < 3600 else "monitoring")
            end = clock.limit_ts
        inc_id = f"INC-{(clock.start + timedelta(days=day)).strftime('%Y%m%d')}-{k + 1:02d}"
        out.append(_Incident(inc_id, title, start, end, resolved, status, impact, components,
                             regions))
    return out


def _live(inc: _Incident, clock: _Clock) -> _Incident:
    """The incident, moved to the last 50 minutes of the window and still open."""
    start = max(clock.start_ts, clock.limit_ts - 50 * 60)
    day = (start - clock.start_ts) // 86400
    suffix = inc.id.rsplit("-", 1)[1]
    inc_id = f"INC-{(clock.start + timedelta(days=day)).strftime('%Y%m%d')}-{suffix}"
    return _Incident(inc_id, inc.title, start, clock.limit_ts, False, "identified", "major",
                     inc.components, inc.regions)


def _incident_records(incidents: list[_Incident], rng: np.random.Generator
                      ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inc in incidents:
        style = int(_styles(rng, 1, 0.1, 0.0)[0])
        off = int(_pick(rng, (60, 120, -300, -420, 330)))
        out.append({
            "incident_id": inc.id,
            "title": inc.title,
            "started_at": _fmt1(inc.start_ts, off, style),
            "status": inc.status,
            "impact": inc.impact,
            "resolved_at": _fmt1(inc.end_ts, off, style) if inc.resolved else None,
            "components": list(inc.components),
            "regions": list(inc.regions),
        })
    return out
