"""Statuspage incidents: read an `incidents.json` document and land it through the contract.

`import_statuspage(engine, source)` reads a Statuspage v1 incidents document (the public
`/api/v1/incidents.json` shape: `{"page": {...}, "incidents": [...]}`) from a file or an
http(s) URL, maps every incident into a row of the contract's `incidents` source and lands
those rows through the one landing path (`listeners.landing.land_file`, on a JSON Lines file
named `incidents-statuspage-<page>.jsonl`), so validation and quarantine apply to them as to
any file. The incidents' `incident_updates` of every accepted incident are then upserted into
`incident_updates` by their id: importing the same document again changes nothing.

The mapping (docs/outage.md)
----------------------------
=============  ==============================================================================
contract       Statuspage
=============  ==============================================================================
incident_id    `id`
title          `name`
started_at     `started_at`, else `created_at`
status         `status`; `postmortem` (and a maintenance's `completed`) is `resolved`,
               `in_progress` is `identified`, `verifying` is `monitoring`, `scheduled` is
               `investigating`
impact         `impact`; `maintenance` is `none`
resolved_at    `resolved_at`; for a resolved incident without one, the latest `resolved`
               update's `created_at`, else `updated_at`
components     each component's name, matched case-insensitively to the components the usage
               data names (the usage name is kept when it matches; otherwise the page's name)
regions        from component names of the form `Name (region)` where `region` is a region
               Pulse knows (an account's or a usage row's region, compared case-insensitively):
               `API (eu-west)` is component `api` in region `eu-west`. An incident whose
               components all carry a region affects those regions; when any of its components
               carries none, it affects every region (the contract cannot tie regions to
               single components, and naming fewer regions would miss accounts).
=============  ==============================================================================

Values the contract does not know (an unknown status or impact) are passed on unchanged, so
the incident is quarantined with the reason rather than guessed at.
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from pulse.core.errors import StatuspageError
from pulse.core.times import as_utc
from pulse.listeners.landing import IngestResult, land_file
from pulse.sql.schema import Account, Incident, IncidentUpdate, UsageEvent

log = logging.getLogger(__name__)

STATUS_MAP = {
    "investigating": "investigating", "identified": "identified", "monitoring": "monitoring",
    "resolved": "resolved", "postmortem": "resolved",
    # scheduled maintenances share the document shape
    "scheduled": "investigating", "in_progress": "identified", "verifying": "monitoring",
    "completed": "resolved",
}
IMPACT_MAP = {"none": "none", "minor": "minor", "major": "major", "critical": "critical",
              "maintenance": "none"}
TIMEOUT_SECONDS = 20.0
_REGION_SUFFIX = re.compile(r"^(?P<name>.*?)\s*\((?P<region>[^()]+)\)\s*$")


@dataclass
class StatuspageImport:
    """What one import did: the landing of the incidents, then their updates."""

    source: str
    page: str | None = None
    incidents: int = 0
    landing: IngestResult | None = None
    updates_inserted: int = 0
    updates_updated: int = 0
    updates_unchanged: int = 0
    updates_skipped: int = 0  # of quarantined incidents, or without an id or a time
    incident_ids: list[str] = field(default_factory=list)  # the incidents that landed

    def to_dict(self) -> dict[str, Any]:
        land = self.landing
        return {
            "source": self.source, "page": self.page, "incidents": self.incidents,
            "landed": None if land is None else {
                "run_id": land.run_id, "read": land.read, "inserted": land.inserted,
                "updated": land.updated, "unchanged": land.unchanged,
                "quarantined": land.quarantined, "reasons": land.reasons,
            },
            "updates": {"inserted": self.updates_inserted, "updated": self.updates_updated,
                        "unchanged": self.updates_unchanged, "skipped": self.updates_skipped},
            "incident_ids": self.incident_ids,
        }

    def __str__(self) -> str:
        land = self.landing
        landed = "nothing landed" if land is None else (
            f"{land.inserted} new, {land.updated} updated, {land.unchanged} unchanged, "
            f"{land.quarantined} quarantined")
        return (f"{self.source}: {self.incidents} incidents ({landed}); updates "
                f"{self.updates_inserted} new, {self.updates_updated} changed, "
                f"{self.updates_unchanged} unchanged, {self.updates_skipped} skipped")


# --------------------------------------------------------------------------- reading


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def fetch_document(source: str | Path, *, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """The parsed document at a path or an http(s) URL; `StatuspageError` when it cannot be
    read or is not a Statuspage incidents document."""
    text_: str
    where = str(source)
    if isinstance(source, str) and _is_url(source):
        import httpx

        try:
            response = httpx.get(source, timeout=timeout, follow_redirects=True,
                                 headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise StatuspageError(f"cannot fetch {source}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise StatuspageError(f"cannot fetch {source}: HTTP {response.status_code} "
                                  f"{response.reason_phrase}")
        text_ = response.text
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise StatuspageError(f"{path}: no such file (expected a Statuspage incidents.json "
                                  "file or an http(s) URL)")
        try:
            text_ = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise StatuspageError(f"{path}: cannot read the file: {exc}") from None
    try:
        doc = json.loads(text_)
    except json.JSONDecodeError as exc:
        raise StatuspageError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                              f"column {exc.colno}): expected a Statuspage incidents.json "
                              "document") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("incidents"), list):
        found = (f"an object with keys {', '.join(sorted(map(str, doc))) or 'none'}"
                 if isinstance(doc, dict) else f"a JSON {type(doc).__name__}")
        raise StatuspageError(f"{where}: not a Statuspage incidents document: expected an "
                              f'object with an "incidents" list (found {found})')
    return doc


# --------------------------------------------------------------------------- mapping


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _instant(value: Any) -> datetime | None:
    s = _text(value)
    if s is None:
        return None
    try:
        ts = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(ts)


def split_component(name: str, regions: Collection[str]) -> tuple[str, str | None]:
    """(component, region) of a Statuspage component name: `API (eu-west)` is `API` in
    `eu-west` when `eu-west` is a known region (case-insensitive); else the whole name."""
    m = _REGION_SUFFIX.match(name.strip())
    if m and m.group("region").strip().lower() in {r.lower() for r in regions}:
        return m.group("name").strip(), m.group("region").strip().lower()
    return name.strip(), None


def map_incident(raw: Any, *, components: Collection[str] = (),
                 regions: Collection[str] = ()) -> Any:
    """One Statuspage incident as a contract `incidents` row (see the module docstring).

    `components` and `regions` are the names Pulse knows. Anything that is not an object is
    returned unchanged, for the landing to quarantine.
    """
    if not isinstance(raw, dict):
        return raw
    known = {c.lower(): c for c in components}
    status = _text(raw.get("status"))
    status = STATUS_MAP.get(status.lower(), status) if status else None
    impact = _text(raw.get("impact"))
    impact = IMPACT_MAP.get(impact.lower(), impact) if impact else None
    names: list[str] = []
    found_regions: list[str] = []
    everywhere = False
    given = raw.get("components") or []
    for comp in given if isinstance(given, list) else [given]:
        name = _text(comp.get("name")) if isinstance(comp, dict) else _text(comp)
        if name is None:
            continue
        base, region = split_component(name, regions)
        names.append(known.get(base.lower(), known.get(name.lower(), base)))
        if region is None:
            everywhere = True
        else:
            found_regions.append(region)
    resolved_at = _text(raw.get("resolved_at"))
    if resolved_at is None and status == "resolved":
        updates = [u for u in raw.get("incident_updates") or [] if isinstance(u, dict)
                   and str(u.get("status", "")).lower() in ("resolved", "completed")]
        times = [t for t in (_instant(u.get("created_at")) for u in updates) if t is not None]
        resolved_at = (max(times).isoformat() if times else _text(raw.get("updated_at")))
    row: dict[str, Any] = {
        "incident_id": _text(raw.get("id")),
        "title": _text(raw.get("name")),
        "started_at": _text(raw.get("started_at")) or _text(raw.get("created_at")),
        "status": status,
        "impact": impact,
        "resolved_at": resolved_at,
        "components": list(dict.fromkeys(names)),
        "regions": [] if everywhere else list(dict.fromkeys(found_regions)),
    }
    return {k: v for k, v in row.items() if v is not None}


def _known_names(engine: Engine) -> tuple[list[str], list[str]]:
    """The components and regions the warehouse knows: usage rows' and accounts' values, and
    components of incidents that landed before."""
    u, a = UsageEvent.__table__, Account.__table__
    with engine.connect() as conn:
        comps = set(conn.execute(select(func.lower(func.trim(u.c.component))).distinct()
                                 .where(u.c.component.is_not(None))).scalars())
        regions = set(conn.execute(select(func.lower(func.trim(u.c.region))).distinct()
                                   .where(u.c.region.is_not(None))).scalars())
        regions |= set(conn.execute(select(func.lower(func.trim(a.c.region))).distinct()
                                    .where(a.c.region.is_not(None))).scalars())
    return sorted(c for c in comps if c), sorted(r for r in regions if r)


# --------------------------------------------------------------------------- landing


def _slug(value: Any) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(value or "").lower()).strip("-")
    return s[:40] or "page"


def _updates(doc: dict[str, Any], landed: set[str], now: datetime,
             result: StatuspageImport) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for inc in doc["incidents"]:
        if not isinstance(inc, dict):
            continue
        updates = inc.get("incident_updates") or []
        incident_id = _text(inc.get("id"))
        for up in updates if isinstance(updates, list) else []:
            if not isinstance(up, dict):
                result.updates_skipped += 1
                continue
            update_id, created = _text(up.get("id")), _instant(up.get("created_at"))
            if incident_id not in landed or update_id is None or created is None:
                result.updates_skipped += 1
                continue
            status = _text(up.get("status")) or "investigating"
            rows[update_id] = {
                "update_id": update_id[:64], "incident_id": incident_id,
                "status": status.lower()[:16], "body": _text(up.get("body")),
                "created_at": created, "landed_at": now,
            }
    return list(rows.values())


def _upsert_updates(engine: Engine, rows: list[dict[str, Any]],
                    result: StatuspageImport) -> None:
    if not rows:
        return
    t = IncidentUpdate.__table__
    cols = ("incident_id", "status", "body", "created_at")
    with engine.begin() as conn:
        stored = {
            r.update_id: r for r in conn.execute(
                select(t).where(t.c.update_id.in_([x["update_id"] for x in rows]))
            )
        }
        new = [r for r in rows if r["update_id"] not in stored]
        changed = [r for r in rows if r["update_id"] in stored
                   and any(getattr(stored[r["update_id"]], c) != r[c] for c in cols)]
        result.updates_inserted += len(new)
        result.updates_updated += len(changed)
        result.updates_unchanged += len(rows) - len(new) - len(changed)
        if new:
            conn.execute(t.insert(), new)
        for r in changed:  # rare: an update edited on the page
            conn.execute(t.update().where(t.c.update_id == r["update_id"])
                         .values({c: r[c] for c in cols}))


def import_statuspage(engine: Engine, source: str | Path, *, now: datetime | None = None,
                      timeout: float = TIMEOUT_SECONDS) -> StatuspageImport:
    """Read a Statuspage incidents document (a path or an http(s) URL), land its incidents
    through the landing path and upsert their updates. Idempotent.

    Raises `StatuspageError` (nothing landed) when the document cannot be fetched or is not
    an incidents document; single incidents that do not fit the contract are quarantined.
    """
    doc = fetch_document(source, timeout=timeout)
    result = StatuspageImport(source=str(source))
    raw_page = doc.get("page")
    page: dict[str, Any] = raw_page if isinstance(raw_page, dict) else {}
    result.page = _text(page.get("name")) or _text(page.get("id"))
    incidents: list[Any] = doc["incidents"]
    result.incidents = len(incidents)
    components, regions = _known_names(engine)
    rows = [map_incident(inc, components=components, regions=regions) for inc in incidents]
    with tempfile.TemporaryDirectory(prefix="pulse-statuspage-") as tmp:
        name = f"incidents-statuspage-{_slug(page.get('id') or page.get('name'))}.jsonl"
        path = Path(tmp) / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        result.landing = land_file(engine, path, source="incidents", now=now)
    ids = [r["incident_id"] for r in rows if isinstance(r, dict) and "incident_id" in r]
    i = Incident.__table__
    with engine.connect() as conn:
        landed = set(conn.execute(select(i.c.incident_id).where(
            i.c.incident_id.in_(ids))).scalars()) if ids else set()
    result.incident_ids = [x for x in dict.fromkeys(ids) if x in landed]
    _upsert_updates(engine, _updates(doc, landed, now or datetime.now(UTC), result), result)
    log.info("statuspage import: %s", result)
    return result


def statuspage_rows(doc: dict[str, Any], *, components: Iterable[str] = (),
                    regions: Iterable[str] = ()) -> list[Any]:
    """Every incident of a parsed document as a contract row (no database needed)."""
    comps, regs = list(components), list(regions)
    return [map_incident(inc, components=comps, regions=regs) for inc in doc["incidents"]]
