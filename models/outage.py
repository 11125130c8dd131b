"""Outage impact: which accounts an incident actually hit, and which it only exposed.

`compute_impact(engine, incident_id)` works out, for one incident, every account that used an
affected component inside the incident's window and replaces that incident's rows of
`incident_impacts` in one transaction; `refresh_impacts(engine)` does it for every incident
whose impact may have changed. Both are a few grouped queries over the usage table (SQLAlchemy
Core, the same on SQLite and PostgreSQL); no Python touches individual usage rows.

The rules (docs/outage.md)
--------------------------
* **Window**: from `started_at` to `resolved_at`, both ends included. An incident without a
  `resolved_at` runs until `now` (the caller's clock), or, when its status is already
  `resolved`, until Pulse learned that (`updated_at`).
* **Component of a usage row**: its own `component`; a row without one takes the component its
  `feature` is most often recorded with in the usage data (learned from the data each time, ties
  broken by name). Components compare case-insensitively and without surrounding blanks.
* **Region of a usage row**: its own `region`, else its account's region, compared the same way.
  An incident that names no regions affects every region.
* **hit**: the account has at least one `error` row on an affected component (in an affected
  region) inside the window. **exposed**: it has rows there, none of them errors.
* **Numbers**: failed and total events are rows; failed and total requests are the rows'
  `quantity`; affected users are the distinct contacts with errors (hit) or with any use
  (exposed); first and last affected times are those of the error rows (hit) or of the rows
  (exposed). Rows without a contact (API keys, service traffic) count as requests, not users.

`load_impact` reads one incident's stored rows; `affected_contacts` names the contacts who had
errors (for the outage notices); `recent_hits` gives the flags the incidents that hit each
account lately.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Float,
    and_,
    case,
    cast,
    delete,
    distinct,
    func,
    insert,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from pulse.core.errors import UnknownIncidentError
from pulse.core.times import as_utc, utc_or_now
from pulse.sql.db import result_frame
from pulse.sql.schema import Account, Incident, IncidentImpact, IngestRun, UsageEvent
from pulse.sql.types import UTCDateTime

log = logging.getLogger(__name__)

IMPACTS = IncidentImpact.__table__
HIT, EXPOSED = "hit", "exposed"
RESOLVED_STATUSES = ("resolved", "postmortem", "completed")


@dataclass
class ImpactSummary:
    """What `compute_impact` found for one incident."""

    incident_id: str
    title: str
    status: str
    window_start: datetime
    window_end: datetime
    open: bool  # the window ends at `now` because the incident is not resolved
    components: list[str]
    regions: list[str]
    hit_accounts: int = 0
    exposed_accounts: int = 0
    failed_requests: float = 0.0
    total_requests: float = 0.0
    affected_users: int = 0
    computed_at: datetime | None = None
    hit: list[str] = field(default_factory=list)  # the hit accounts' ids, sorted

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("window_start", "window_end", "computed_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out

    def __str__(self) -> str:
        return (f"{self.incident_id}: {self.hit_accounts} hit, {self.exposed_accounts} exposed "
                f"({self.failed_requests:,.0f} of {self.total_requests:,.0f} requests failed "
                f"for {self.affected_users} users)")


# --------------------------------------------------------------------------- the rules


def _norm(col: Any) -> ColumnElement[str]:
    """Lower case without surrounding blanks; NULL for a blank value."""
    return func.nullif(func.lower(func.trim(col)), "")


def _names(values: Any) -> list[str]:
    """An incident's components or regions as normalised, distinct names."""
    if not values:
        return []
    if isinstance(values, str):
        values = [values]
    out = dict.fromkeys(str(v).strip().lower() for v in values if v and str(v).strip())
    return list(out)


def feature_components(conn: Connection) -> dict[str, str]:
    """Each feature's usual component: the one its usage rows name most often (ties: the
    first name in alphabetical order), learned from every usage row that names one."""
    u = UsageEvent.__table__
    comp = _norm(u.c.component)
    counts = (
        select(u.c.feature, comp.label("component"), func.count().label("n"))
        .where(comp.is_not(None))
        .group_by(u.c.feature, comp)
        .subquery("feature_counts")
    )
    ranked = select(
        counts.c.feature, counts.c.component,
        func.row_number().over(partition_by=counts.c.feature,
                               order_by=(counts.c.n.desc(), counts.c.component)).label("rn"),
    ).subquery("feature_ranked")
    rows = conn.execute(select(ranked.c.feature, ranked.c.component).where(ranked.c.rn == 1))
    return {str(f): str(c) for f, c in rows}


@dataclass(frozen=True)
class _Incident:
    incident_id: str
    title: str
    status: str
    impact: str | None
    started_at: datetime
    resolved_at: datetime | None
    updated_at: datetime
    components: list[str]
    regions: list[str]

    def window(self, now: datetime) -> tuple[datetime, datetime, bool]:
        """(start, end, open): the end is `resolved_at`, else `now` while unresolved."""
        if self.resolved_at is not None:
            return self.started_at, self.resolved_at, False
        if self.status in RESOLVED_STATUSES:
            return self.started_at, max(self.started_at, self.updated_at), False
        return self.started_at, max(self.started_at, now), True


def _get_incident(conn: Connection, incident_id: str) -> _Incident:
    i = Incident.__table__
    row = conn.execute(select(i).where(i.c.incident_id == incident_id)).mappings().first()
    if row is None:
        raise UnknownIncidentError(
            f"unknown incident {incident_id!r}: no incident with that id has landed "
            "(see `pulse outage import` and `pulse ingest`)")
    return _Incident(row["incident_id"], row["title"], row["status"], row["impact"],
                     row["started_at"], row["resolved_at"], row["updated_at"],
                     _names(row["components"]), _names(row["regions"]))


def _affected_rows(inc: _Incident, start: datetime, end: datetime,
                   mapping: dict[str, str]) -> Any:
    """The usage rows on the incident's components (and regions) inside its window, with
    their effective component and region."""
    u, a = UsageEvent.__table__, Account.__table__
    learned = {f: c for f, c in mapping.items() if c in inc.components}
    own = _norm(u.c.component)
    component = func.coalesce(own, case(learned, value=u.c.feature)) if learned else own
    region = func.coalesce(_norm(u.c.region), _norm(a.c.region))
    in_region = region.in_(inc.regions) if inc.regions else true()
    return (
        select(
            u.c.account_id, u.c.contact_id, u.c.occurred_at, u.c.quantity,
            (u.c.outcome == "error").label("is_error"),
            component.label("component"), region.label("region"),
        )
        .select_from(u.outerjoin(a, a.c.account_id == u.c.account_id))
        .where(u.c.occurred_at >= start, u.c.occurred_at <= end,
               component.in_(inc.components), in_region)
        .subquery("affected_rows")
    )


def _impact_rows(conn: Connection, inc: _Incident, start: datetime, end: datetime,
                 mapping: dict[str, str], computed_at: datetime) -> pd.DataFrame:
    """One row per account, in the columns of `incident_impacts`."""
    cols = [c.name for c in IMPACTS.columns]
    if not inc.components:
        return pd.DataFrame(columns=cols)
    r = _affected_rows(inc, start, end, mapping)
    err = r.c.is_error
    failed_events = func.count(case((err, 1)))

    def instant(expr: Any) -> Any:
        return type_coerce(expr, UTCDateTime)

    agg = conn.execute(
        select(
            r.c.account_id,
            failed_events.label("failed_events"),
            func.count().label("total_events"),
            cast(func.coalesce(func.sum(case((err, r.c.quantity), else_=0.0)), 0.0),
                 Float).label("failed_requests"),
            cast(func.coalesce(func.sum(r.c.quantity), 0.0), Float).label("total_requests"),
            func.count(distinct(case((err, r.c.contact_id)))).label("error_users"),
            func.count(distinct(r.c.contact_id)).label("users"),
            instant(func.min(case((err, r.c.occurred_at)))).label("first_error_at"),
            instant(func.max(case((err, r.c.occurred_at)))).label("last_error_at"),
            instant(func.min(r.c.occurred_at)).label("first_at"),
            instant(func.max(r.c.occurred_at)).label("last_at"),
        ).group_by(r.c.account_id).order_by(r.c.account_id)
    )
    frame = result_frame(agg)
    if frame.empty:
        return pd.DataFrame(columns=cols)
    where = conn.execute(
        select(r.c.account_id, r.c.component, r.c.region).distinct()
    ).all()
    comps: dict[str, set[str]] = {}
    regions: dict[str, set[str]] = {}
    for account, comp, region in where:  # one row per (account, component, region)
        comps.setdefault(account, set()).add(comp)
        if region is not None:
            regions.setdefault(account, set()).add(region)
    hit = frame["failed_events"] > 0
    out = pd.DataFrame({
        "incident_id": inc.incident_id,
        "account_id": frame["account_id"],
        "status": hit.map({True: HIT, False: EXPOSED}),
        "failed_events": frame["failed_events"].astype(int),
        "total_events": frame["total_events"].astype(int),
        "failed_requests": frame["failed_requests"].astype(float),
        "total_requests": frame["total_requests"].astype(float),
        "affected_users": frame["error_users"].where(hit, frame["users"]).astype(int),
        "components": [sorted(comps.get(a, ())) for a in frame["account_id"]],
        "regions": [sorted(regions.get(a, ())) for a in frame["account_id"]],
        "first_affected_at": frame["first_error_at"].where(hit, frame["first_at"]),
        "last_affected_at": frame["last_error_at"].where(hit, frame["last_at"]),
        "window_start": start,
        "window_end": end,
        "computed_at": computed_at,
    })
    return out[cols]


def _write(conn: Connection, incident_id: str, rows: pd.DataFrame) -> None:
    conn.execute(delete(IMPACTS).where(IMPACTS.c.incident_id == incident_id))
    if rows.empty:
        return
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    for rec in records:
        for key in ("first_affected_at", "last_affected_at", "window_start", "window_end",
                    "computed_at"):
            if rec[key] is not None:
                rec[key] = pd.Timestamp(rec[key]).to_pydatetime()
    for start in range(0, len(records), 5000):
        conn.execute(insert(IMPACTS), records[start:start + 5000])


def _compute(conn: Connection, incident_id: str, now: datetime,
             mapping: dict[str, str]) -> ImpactSummary:
    inc = _get_incident(conn, incident_id)
    start, end, is_open = inc.window(now)
    computed_at = datetime.now(UTC)
    rows = _impact_rows(conn, inc, start, end, mapping, computed_at)
    _write(conn, inc.incident_id, rows)
    hit = rows[rows["status"] == HIT]
    summary = ImpactSummary(
        incident_id=inc.incident_id, title=inc.title, status=inc.status, window_start=start,
        window_end=end, open=is_open, components=inc.components, regions=inc.regions,
        hit_accounts=len(hit), exposed_accounts=int((rows["status"] == EXPOSED).sum()),
        failed_requests=float(hit["failed_requests"].sum()),
        total_requests=float(hit["total_requests"].sum()),
        affected_users=int(hit["affected_users"].sum()), computed_at=computed_at,
        hit=sorted(hit["account_id"].tolist()),
    )
    log.info("impact of %s: %s", inc.incident_id, summary)
    return summary


def compute_impact(engine: Engine, incident_id: str, *,
                   now: datetime | None = None) -> ImpactSummary:
    """Work out which accounts one incident hit or exposed, and replace its stored rows.

    `now` ends the window of an unresolved incident (default: the current time). Raises
    `UnknownIncidentError` when no incident with that id has landed.
    """
    now = utc_or_now(now)
    with engine.begin() as conn:
        return _compute(conn, incident_id, now, feature_components(conn))


def stale_incidents(engine: Engine, *, late_usage_days: int = 30) -> list[str]:
    """Incidents whose impact may have changed since it was last computed: unresolved ones,
    ones that changed since (their `updated_at`), ones never computed (or that touched
    nobody), and, when usage rows landed since, the incidents of the `late_usage_days` days
    before that landing (late usage can still change them)."""
    i, im, runs = Incident.__table__, IMPACTS, IngestRun.__table__
    last = (
        select(im.c.incident_id, func.max(im.c.computed_at).label("computed_at"))
        .group_by(im.c.incident_id).subquery("last_computed")
    )
    with engine.connect() as conn:
        usage_landed = conn.execute(
            select(type_coerce(func.max(runs.c.finished_at), UTCDateTime))
            .where(runs.c.source == "usage", runs.c.status == "ok",
                   (runs.c.inserted + runs.c.updated) > 0)
        ).scalar_one_or_none()
        stale = [
            and_(i.c.resolved_at.is_(None), i.c.status.not_in(RESOLVED_STATUSES)),
            last.c.computed_at.is_(None),
            i.c.updated_at > last.c.computed_at,
        ]
        if usage_landed is not None:
            landed = as_utc(usage_landed)
            stale.append(and_(last.c.computed_at < landed,
                              i.c.started_at >= landed - timedelta(days=late_usage_days)))
        query = (
            select(i.c.incident_id)
            .select_from(i.outerjoin(last, last.c.incident_id == i.c.incident_id))
            .where(or_(*stale))
            .order_by(i.c.started_at, i.c.incident_id)
        )
        return [str(x) for x in conn.execute(query).scalars()]


def refresh_impacts(engine: Engine, *, now: datetime | None = None,
                    incident_ids: Sequence[str] | None = None) -> list[ImpactSummary]:
    """Recompute every incident whose impact may have changed (`stale_incidents`), or the
    named ones; each incident's rows are replaced in its own transaction."""
    now = utc_or_now(now)
    ids = list(incident_ids) if incident_ids is not None else stale_incidents(engine)
    if not ids:
        return []
    with engine.connect() as conn:
        mapping = feature_components(conn)
    out = []
    for incident_id in ids:
        with engine.begin() as conn:
            out.append(_compute(conn, incident_id, now, mapping))
    log.info("refreshed the impact of %d incidents", len(out))
    return out


# --------------------------------------------------------------------------- reading


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def load_impact(engine: Engine, incident_id: str, *,
                status: str | None = None) -> pd.DataFrame:
    """The stored impact of one incident: one row per account, hit first, then by failed
    requests and account id. Raises `UnknownIncidentError` for an unknown incident."""
    with engine.connect() as conn:
        _get_incident(conn, incident_id)
    a = Account.__table__
    query = (
        select(IMPACTS, a.c.name.label("account_name"))
        .select_from(IMPACTS.outerjoin(a, a.c.account_id == IMPACTS.c.account_id))
        .where(IMPACTS.c.incident_id == incident_id)
        .order_by(case((IMPACTS.c.status == HIT, 0), else_=1), IMPACTS.c.failed_requests.desc(),
                  IMPACTS.c.total_requests.desc(), IMPACTS.c.account_id)
    )
    if status is not None:
        query = query.where(IMPACTS.c.status == status)
    frame = _frame(engine, query)
    for col in ("first_affected_at", "last_affected_at", "window_start", "window_end",
                "computed_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def incident_info(engine: Engine, incident_id: str) -> dict[str, Any]:
    """The incident's own fields (title, status, impact, times, components, regions)."""
    with engine.connect() as conn:
        inc = _get_incident(conn, incident_id)
    return {
        "incident_id": inc.incident_id, "title": inc.title, "status": inc.status,
        "impact": inc.impact, "started_at": inc.started_at, "resolved_at": inc.resolved_at,
        "components": inc.components, "regions": inc.regions,
    }


def affected_contacts(engine: Engine, incident_id: str) -> pd.DataFrame:
    """(account_id, contact_id, failed_events, failed_requests): the contacts who had errors
    on the incident's components inside its stored window (rows of hit accounts)."""
    with engine.connect() as conn:
        inc = _get_incident(conn, incident_id)
        window = conn.execute(
            select(type_coerce(func.min(IMPACTS.c.window_start), UTCDateTime),
                   type_coerce(func.max(IMPACTS.c.window_end), UTCDateTime))
            .where(IMPACTS.c.incident_id == incident_id)
        ).one()
        cols = ["account_id", "contact_id", "failed_events", "failed_requests"]
        if window[0] is None or not inc.components:
            return pd.DataFrame(columns=cols)
        r = _affected_rows(inc, window[0], window[1], feature_components(conn))
        result = conn.execute(
            select(r.c.account_id, r.c.contact_id, func.count().label("failed_events"),
                   cast(func.sum(r.c.quantity), Float).label("failed_requests"))
            .where(r.c.is_error, r.c.contact_id.is_not(None))
            .group_by(r.c.account_id, r.c.contact_id)
            .order_by(r.c.account_id, r.c.contact_id)
        )
        return result_frame(result, cols)


def recent_hits(engine: Engine, as_of: date, *, basis: str = "known",
                days: int = 7) -> pd.DataFrame:
    """The incidents that hit each account in the `days` days ending with `as_of` (UTC): the
    account's errors in the incident's window reach into those days. With `basis="known"`,
    only incidents that had landed by the end of the date. One row per (account, incident),
    latest first: account_id, incident_id, title, impact, failed_requests, total_requests,
    affected_users, failed_events, components, first_affected_at, last_affected_at."""
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    since = end - timedelta(days=days)
    i = Incident.__table__
    conds = [IMPACTS.c.status == HIT, IMPACTS.c.last_affected_at >= since,
             IMPACTS.c.first_affected_at < end]
    if basis == "known":
        conds.append(i.c.landed_at < end)
    query = (
        select(IMPACTS.c.account_id, IMPACTS.c.incident_id, i.c.title, i.c.impact,
               IMPACTS.c.failed_requests, IMPACTS.c.total_requests, IMPACTS.c.affected_users,
               IMPACTS.c.failed_events, IMPACTS.c.components, IMPACTS.c.first_affected_at,
               IMPACTS.c.last_affected_at)
        .join_from(IMPACTS, i, i.c.incident_id == IMPACTS.c.incident_id)
        .where(*conds)
        .order_by(IMPACTS.c.account_id, IMPACTS.c.first_affected_at.desc(),
                  IMPACTS.c.incident_id)
    )
    frame = _frame(engine, query)
    for col in ("first_affected_at", "last_affected_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


__all__ = [
    "EXPOSED", "HIT", "ImpactSummary", "UnknownIncidentError", "affected_contacts",
    "compute_impact", "feature_components", "incident_info", "load_impact", "recent_hits",
    "refresh_impacts", "stale_incidents",
]
