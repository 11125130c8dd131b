"""Issue 13: an incident's estimated resolution (ETA) in the contract, the update notice and
the X posts; an account's own SLA that overrides its plan's, with the credit arithmetic.
Bad optional values are cleared, never fatal. The database tests run on SQLite and
PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, insert, select

from pulse.listeners.landing import land_file
from pulse.outreach.notices import _service_credits, plan_outage_notices
from pulse.outreach.render import Renderer
from pulse.outreach.sla import Sla, account_sla, plan_sla, service_credit
from pulse.outreach.x_posts import LIMIT, compose, plan_incident_posts, x_length
from pulse.sql.schema import Account, Incident, IncidentImpact, IncidentUpdate, SocialPost

JULY = datetime(2026, 7, 1, tzinfo=UTC)  # 31 days: 44,640 minutes
NOW = datetime(2026, 7, 2, 12, tzinfo=UTC)
ETA = datetime(2026, 7, 2, 14, 30, tzinfo=UTC)
URL = "https://status.example.com"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the contract


def test_an_incident_lands_with_its_eta_and_a_bad_eta_is_cleared(engine: Engine,
                                                                  tmp_path: Path) -> None:
    base = {"title": "Reports failing", "started_at": "2026-07-02T09:00:00Z",
            "status": "identified", "components": ["reports"]}
    rows = [{"incident_id": "good", **base, "eta": "2026-07-02T16:30:00+02:00"},
            {"incident_id": "none", **base},
            {"incident_id": "garbled", **base, "eta": "in two hours"},
            {"incident_id": "before", **base, "eta": "2026-07-02T08:00:00Z"},
            # an estimate may lie days ahead: it is not an event time
            {"incident_id": "far", **base, "eta": "2026-07-09T09:00:00Z"}]
    path = _write(tmp_path, "incidents.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = land_file(engine, path, now=NOW)
    assert (result.read, result.inserted, result.quarantined, result.fields_cleared) == (
        5, 5, 0, 2)
    assert result.cleared == {"eta: not an ISO 8601 timestamp": 1,
                              "eta: timestamps out of order": 1}
    with engine.connect() as conn:
        etas = dict(conn.execute(select(Incident.incident_id, Incident.eta)).all())
    assert etas == {"good": ETA, "none": None, "garbled": None, "before": None,
                    "far": datetime(2026, 7, 9, 9, tzinfo=UTC)}


def test_an_account_sla_out_of_range_is_cleared_and_the_account_lands(
        engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, "accounts.csv", (
        "account_id,name,mrr,plan,sla_uptime_pct\n"
        "acc-1,Northwind,10,business,99.99\nacc-2,Initech,20,starter,120\n"
        "acc-3,Globex,30,business,ninety\nacc-4,Umbrella,40,growth,10\n"
        "acc-5,Hooli,50,growth,100\nacc-6,Stark,60,growth,\n"))
    result = land_file(engine, path, now=NOW)
    assert (result.read, result.inserted, result.quarantined, result.fields_cleared) == (
        6, 6, 0, 3)
    with engine.connect() as conn:
        own = dict(conn.execute(select(Account.account_id, Account.sla_uptime_pct)).all())
    assert own == {"acc-1": 99.99, "acc-2": None, "acc-3": None, "acc-4": None,
                   "acc-5": 100.0, "acc-6": None}


# --------------------------------------------------------------------------- the SLA


def test_an_account_promise_overrides_its_plan_with_the_plans_credits() -> None:
    business = plan_sla("business")
    assert account_sla("business", None) == business
    assert account_sla("business", float("nan")) == business
    # a stricter promise than the plan's: the first tier moves up to it
    assert account_sla("business", 99.99) == Sla(99.99, ((99.99, 10.0), (99.0, 25.0)))
    # a looser one: the plan's 99.0 tier is no longer below the promise and falls away
    assert account_sla("enterprise", 99.0) == Sla(99.0, ((99.0, 10.0), (95.0, 50.0)))
    # a plan without an SLA: the `custom` credits of sla.yaml, below the account's promise
    assert account_sla("starter", 99.5) == Sla(99.5, ((99.5, 10.0), (99.0, 25.0),
                                                      (95.0, 50.0)))
    assert account_sla(None, 99.5) == account_sla("starter", 99.5)
    # a value the contract would have cleared is never trusted
    assert account_sla("business", 10.0) == business and account_sla("starter", 101) is None


def test_the_credit_arithmetic_of_an_account_promise() -> None:
    fee = Decimal("1200")
    # 5 minutes down in July: 99.98880 %, within business's 99.9 but not the account's 99.99
    assert service_credit(account_sla("business", None), downtime=5, month_start=JULY,
                          fee=fee, currency="EUR") is None
    own = service_credit(account_sla("business", 99.99), downtime=5, month_start=JULY,
                         fee=fee, currency="EUR")
    assert own is not None and (own.percent, own.amount) == (10.0, Decimal("120.00"))
    assert own.to_context()["promised"] == 99.99 and own.to_context()["uptime"] == 99.989
    # 4 minutes: 99.99104 %, just within the promise
    assert service_credit(account_sla("business", 99.99), downtime=4, month_start=JULY,
                          fee=fee, currency="EUR") is None
    # enterprise at its own 99.0: 500 minutes (98.880 %) owe its 10 %, not the plan's 25 %
    loose = service_credit(account_sla("enterprise", 99.0), downtime=500, month_start=JULY,
                           fee=fee, currency="USD")
    assert loose is not None and (loose.percent, loose.amount) == (10.0, Decimal("120.00"))
    # 2,300 minutes (94.85 %): below 95.0, 50 % of 333.33 is 166.665, half up to the cent
    deep = service_credit(account_sla("enterprise", 99.0), downtime=2300, month_start=JULY,
                          fee=Decimal("333.33"), currency="USD")
    assert deep is not None and (deep.percent, deep.amount) == (50.0, Decimal("166.67"))
    # no plan SLA, an own promise of 99.5: 300 minutes (99.328 %) owe 10 %
    custom = service_credit(account_sla("starter", 99.5), downtime=300, month_start=JULY,
                            fee=Decimal("89.50"), currency="EUR")
    assert custom is not None and custom.amount == Decimal("8.95")


def test_a_resolved_notice_gives_the_credit_of_the_accounts_own_sla(
        engine: Engine, tmp_path: Path) -> None:
    land_file(engine, _write(tmp_path, "accounts.csv", (
        "account_id,name,mrr,currency,plan,sla_uptime_pct\n"
        "acc-1,Northwind,1200,EUR,business,99.99\n"   # own promise, stricter
        "acc-2,Initech,900,USD,starter,99.95\n"       # own promise, no plan SLA
        "acc-3,Globex,500,USD,business,\n"            # the plan's
        "acc-4,Umbrella,100,USD,starter,\n")))        # no SLA at all
    now = datetime(2026, 7, 20, tzinfo=UTC)
    start, end = datetime(2026, 7, 9, 8, tzinfo=UTC), datetime(2026, 7, 9, 8, 30, tzinfo=UTC)
    impact = {"failed_events": 1, "total_events": 1, "failed_requests": 1.0,
              "total_requests": 1.0, "affected_users": 1, "components": [], "regions": [],
              "window_start": start, "window_end": end, "computed_at": now}
    with engine.begin() as conn:
        conn.execute(insert(Incident), [{
            "incident_id": "inc-1", "title": "API errors", "started_at": start,
            "resolved_at": end, "status": "resolved", "impact": "major", "components": [],
            "regions": [], "landed_at": now, "updated_at": now}])
        conn.execute(insert(IncidentImpact), [
            {"incident_id": "inc-1", "account_id": a, "status": "hit", **impact}
            for a in ("acc-1", "acc-2", "acc-3", "acc-4")])
    credits = _service_credits(engine, ["acc-1", "acc-2", "acc-3", "acc-4"], end)
    # 30 minutes: 99.933 %, within business's 99.9 (acc-3), below 99.99 and 99.95
    assert credits == {
        "acc-1": {"month": "2026-07-01", "uptime": 99.933, "promised": 99.99,
                  "percent": 10.0, "amount": "120.00", "currency": "EUR"},
        "acc-2": {"month": "2026-07-01", "uptime": 99.933, "promised": 99.95,
                  "percent": 10.0, "amount": "90.00", "currency": "USD"}}


# --------------------------------------------------------------------------- the ETA said


def _incident_world(engine: Engine, tmp_path: Path, eta: datetime | None) -> None:
    land_file(engine, _write(tmp_path, "accounts.csv", "account_id,name,mrr\nacc-1,Northwind,10\n"))
    land_file(engine, _write(tmp_path, "contacts.csv", (
        "contact_id,account_id,email,timezone,role\n"
        "con-1,acc-1,ana@northwind.example,Europe/Paris,admin\n"
        "con-2,acc-1,bo@northwind.example,America/New_York,admin\n")))
    t = datetime(2026, 7, 2, 9, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Incident), [{
            "incident_id": "inc-1", "title": "Scheduled reports failing", "status": "identified",
            "impact": "major", "started_at": t, "resolved_at": None, "eta": eta,
            "components": ["reports"], "regions": [], "landed_at": t, "updated_at": t}])
        conn.execute(insert(IncidentUpdate), [
            {"update_id": "u1", "incident_id": "inc-1", "status": "identified",
             "body": "A bad deploy; rolling it back.", "created_at": t, "landed_at": t}])
        conn.execute(insert(IncidentImpact), [{
            "incident_id": "inc-1", "account_id": "acc-1", "status": "hit",
            "failed_events": 3, "total_events": 3, "failed_requests": 3.0,
            "total_requests": 3.0, "affected_users": 1, "components": ["reports"],
            "regions": [], "window_start": t, "window_end": t, "computed_at": t}])


def _read(draft: object) -> str:
    renderer = Renderer(now=NOW)
    ctx = draft.context  # type: ignore[attr-defined]
    subject = renderer.subject("outage_notice", ctx)
    msg = renderer.outgoing({"message_id": 1, "kind": "outage_notice",
                             "template": "outage_notice", "to_email": "a@x.example",
                             "to_name": None, "subject": subject, "context": ctx})
    return " ".join(msg.full_text().split()) + " " + " ".join(msg.full_html().split())


def test_the_update_notice_says_what_changed_and_the_eta_in_each_contacts_time_zone(
        engine: Engine, tmp_path: Path) -> None:
    _incident_world(engine, tmp_path, ETA)
    drafts = {d.contact_id: d for d in plan_outage_notices(engine, now=NOW)}
    assert {d.idempotency_key for d in drafts.values()} == {
        "notice:inc-1:update-identified:con-1", "notice:inc-1:update-identified:con-2"}
    paris, new_york = _read(drafts["con-1"]), _read(drafts["con-2"])
    assert "What changed A bad deploy; rolling it back." in paris
    # 14:30 UTC is 16:30 in Paris and 10:30 in New York (summer time)
    # (contacts without a locale: en_US; the narrow no-break space before PM reads as one)
    assert paris.count("Estimated resolution: Thu, Jul 2, 2026, 4:30 PM CEST") == 1
    assert "<strong>Estimated resolution:</strong> Thu, Jul 2, 2026, 4:30 PM CEST" in paris
    assert "Estimated resolution: Thu, Jul 2, 2026, 10:30 AM EDT" in new_york
    # an estimate that has passed is not news
    late = {d.contact_id: d for d in plan_outage_notices(
        engine, now=datetime(2026, 7, 2, 15, tzinfo=UTC))}
    assert "Estimated resolution" not in _read(late["con-1"])


def test_an_update_notice_without_an_eta_says_none(engine: Engine, tmp_path: Path) -> None:
    _incident_world(engine, tmp_path, None)
    (draft, _) = plan_outage_notices(engine, now=NOW)
    text = _read(draft)
    assert "What changed A bad deploy" in text and "Estimated resolution" not in text


def test_x_posts_mention_the_eta_while_it_is_ahead(engine: Engine, tmp_path: Path) -> None:
    post = compose("Scheduled reports failing", "identified", "We found the cause. " * 40, URL,
                   ["Scheduled reports"], eta=ETA)
    assert x_length(post) <= LIMIT and post.endswith(f"… ETA 2 Jul 14:30 UTC. {URL}")
    assert "ETA" not in compose("Reports", "resolved", "Fixed.", URL, [], eta=ETA)
    _incident_world(engine, tmp_path, ETA)
    assert plan_incident_posts(engine, now=NOW, status_page_url=URL) == 1
    with engine.connect() as conn:
        text = conn.execute(select(SocialPost.text)).scalar_one()
    assert text == ("[Identified] Scheduled reports failing (Scheduled reports): A bad deploy; "
                    f"rolling it back. ETA 2 Jul 14:30 UTC. {URL}")
