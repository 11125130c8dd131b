"""The console's account page (`/accounts/{id}`) through the real app, on SQLite and
PostgreSQL: sign-in first (a signed digest link still opens its read-only view), the stacked
health chart whose parts add up to the health, the churn history, the drivers in words, the
timeline newest first and filtered by kind, the contacts, and the actions (handled, snooze,
log, assign the CSM, edit and approve a check-in draft), audited and refused for viewers and
forged tokens; a snoozed account leaves the risk list until a low rating; names and texts
shown as text."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import Engine, func, insert, select, update

from pulse.models.risklist import build_risk_list
from pulse.outreach.links import account_url
from pulse.sql import account_page as sqla
from pulse.sql.audit import entries
from pulse.sql.schema import (
    Account,
    AccountActivity,
    AccountHealth,
    ChurnScore,
    Contact,
    HealthMeasure,
    Incident,
    IncidentImpact,
    Mention,
    OutboxMessage,
    Suppression,
    Survey,
    SurveyResponse,
    TextInsight,
    UsageEvent,
)
from tests import test_console_risk as risk_tests
from tests import test_risklist
from tests.test_console_auth import PASSWORD, login_token, sign_in
from tests.test_console_risk import ANA, FUTURE, csrf, ids_on
from tests.test_flags import D
from tests.test_risklist import WEEK_AGO

# the scored world with its console users, and a client of the real app (fixtures)
world, scored, client = test_risklist.world, risk_tests.scored, risk_tests.client

VIC, ADA = "vic@pulse.example", "ada@pulse.example"
SILENT = "/accounts/acc-silent"


def at(days_before_d: float, hour: int = 12) -> datetime:
    return datetime.combine(D, datetime.min.time(), tzinfo=UTC).replace(hour=hour) - \
        timedelta(days=days_before_d)


def enrich(engine: Engine) -> None:
    """Mentions (one by id, one by the account's handle), an incident that hit acc-silent and
    one it was only exposed to, a suppressed message, a low survey answer with a comment."""
    now = datetime.now(UTC)
    lineage = {"landed_at": now, "updated_at": now}
    with engine.begin() as conn:
        conn.execute(update(Account).where(Account.account_id == "acc-silent")
                     .values(x_handle="silentco"))
        conn.execute(update(Contact).where(Contact.contact_id == "s1")
                     .values(role="champion", name="Sam One"))
        conn.execute(update(Contact).where(Contact.contact_id == "s2").values(opted_out=True))
        conn.execute(insert(Suppression), [{"email": "s3@silent.example", "reason": "bounce",
                                            "source": "webhook", "created_at": now}])
        conn.execute(insert(Mention), [
            {"mention_id": "m1", "created_at": at(2), "text": "<b>support</b> is so slow",
             "author_handle": "someone", "platform": "x", "account_id": "acc-silent",
             **lineage},
            {"mention_id": "m2", "created_at": at(4), "text": "loving the new exports",
             "author_handle": "silentco", "platform": "x", "account_id": None, **lineage},
            {"mention_id": "m3", "created_at": at(1), "text": "not about them",
             "author_handle": "other", "platform": "x", "account_id": None, **lineage}])
        conn.execute(insert(TextInsight), [{
            "item_type": "mention", "item_id": "m1", "account_id": "acc-silent",
            "created_at": at(2), "text": "support is so slow", "sentiment": "negative",
            "sentiment_score": 0.9, "sentiment_method": "model", "kind": "complaint",
            "kind_confidence": 0.8, "team": "support", "route_confidence": 0.7,
            "route_method": "keywords", "computed_at": now}])
        conn.execute(insert(Incident), [
            {"incident_id": f"inc-{k}", "title": title, "started_at": at(days),
             "status": "resolved", "impact": "major", "components": ["api"],
             "regions": ["eu"], **lineage}
            for k, title, days in ((1, "API errors in EU", 5), (2, "Slow exports", 6))])
        conn.execute(insert(IncidentImpact), [
            {"incident_id": f"inc-{k}", "account_id": "acc-silent", "status": status,
             "failed_events": 12, "total_events": 40, "failed_requests": 12.0,
             "total_requests": 40.0, "affected_users": 3, "components": ["api"],
             "regions": ["eu"], "first_affected_at": at(5, 13), "last_affected_at": at(5, 14),
             "window_start": at(5), "window_end": at(5, 15), "computed_at": now}
            for k, status in ((1, "hit"), (2, "exposed"))])
        conn.execute(insert(OutboxMessage), [{
            "idempotency_key": "test-suppressed", "kind": "outage_notice",
            "account_id": "acc-silent", "contact_id": "s1", "incident_id": "inc-1",
            "to_email": "s1@silent.example", "from_email": "support@pulse.example",
            "template": "outage_notice", "subject": "About the API errors", "context": {},
            "urgent": False, "automated": True, "status": "suppressed", "rule": "cap",
            "rule_detail": "3 automated emails in 7 days", "queued_at": at(3),
            "updated_at": at(3), "attempts": 0}])
        survey_id = conn.execute(insert(Survey).values(
            survey_key="test-survey", trigger="ticket", account_id="acc-silent",
            contact_id="s1", channel="email", question="How did we do?", status="queued",
            due_at=at(1, 9), created_at=at(1, 9)).returning(Survey.survey_id)).scalar_one()
        conn.execute(insert(SurveyResponse).values(
            survey_id=survey_id, account_id="acc-silent", contact_id="s1", rating=2,
            comment="Too slow lately", first_rated_at=at(1), rated_at=at(1),
            rating_changes=0, landed_at=at(1), updated_at=at(1)))


def get(client: TestClient, path: str = SILENT) -> str:
    got = client.get(path)
    assert got.status_code == 200, got.text[:500]
    return got.text


def section(html: str, ident: str) -> str:
    found = re.search(rf'<(section|svg|ol|table)[^>]* id="{ident}".*?</\1>', html, flags=re.S)
    assert found, ident
    return found.group(0)


def timeline_of(html: str) -> list[tuple[str, datetime, str]]:
    """(kind, when, text) of each timeline item, in page order."""
    out = []
    for kind, when, body in re.findall(
            r'<li class="item" data-kind="(\w+)">.*?<time datetime="([^"]+)">(.*?)</li>',
            section(html, "timeline-items"), flags=re.S):
        out.append((kind, datetime.fromisoformat(when), re.sub(r"<[^>]+>", " ", body)))
    return out


# --------------------------------------------------------------------------- access


def test_sign_in_first_and_digest_links_keep_working(scored: Engine,
                                                     client: TestClient) -> None:
    gone = client.get(SILENT)
    assert gone.status_code == 303
    assert gone.headers["location"] == "/login?next=%2Faccounts%2Facc-silent"
    link = account_url("acc-silent")
    token = link.split("?t=")[1]
    ro = client.get(f"{SILENT}?t={token}")  # no session: today's read-only view
    assert ro.status_code == 200 and 'id="health-chart"' not in ro.text
    assert "silently unhappy" in ro.text and "silent_dissatisfied" not in ro.text
    assert 'href="/login?next=%2Faccounts%2Facc-silent"' in ro.text
    assert client.get(f"/accounts/acc-loud?t={token}").status_code == 403
    next_path = gone.headers["location"]
    signed = client.post("/login", data={  # the sign-in form carries where to go back to
        "email": ANA, "password": PASSWORD, "csrf_token": login_token(client, next_path),
        "next": re.search(r'name="next" value="([^"]+)"', get(client, next_path)
                          ).group(1)})  # type: ignore[union-attr]
    assert signed.status_code == 303 and signed.headers["location"] == SILENT
    page = get(client, f"{SILENT}?t={token}")  # the same digest link, signed in: the page
    assert 'id="health-chart"' in page and 'id="timeline"' in page
    assert client.get("/accounts/acc-nobody").status_code == 404
    now = datetime.now(UTC)
    with scored.begin() as conn:  # an account landed today, never scored: the page says so
        conn.execute(insert(Account).values(account_id="acc-new", name="New Co", mrr=10,
                                            currency="USD", landed_at=now, updated_at=now))
    fresh = get(client, "/accounts/acc-new")
    assert "This account has not been scored yet." in fresh and 'id="timeline"' in fresh
    assert 'id="health-chart"' not in fresh and 'id="assign-form"' in fresh


# --------------------------------------------------------------------------- charts


def test_the_health_chart_stacks_the_scorecards_parts_beside_churn_and_drivers(
        scored: Engine, client: TestClient) -> None:
    sign_in(client, ANA)
    html = get(client)
    svg = section(html, "health-chart")
    assert '<title id="health-chart-title">' in svg and '<desc id="health-chart-desc">' in svg
    assert 'aria-labelledby="health-chart-title health-chart-desc"' in svg
    hm = HealthMeasure.__table__
    with scored.connect() as conn:
        parts = pd.DataFrame(conn.execute(select(hm.c.as_of, hm.c.measure, hm.c.contribution)
                                          .where(hm.c.account_id == "acc-silent")).all())
    parts["contribution"] = parts["contribution"].astype(float).fillna(0.0)
    wide = parts.pivot(index="as_of", columns="measure", values="contribution")
    polygons = re.findall(r'<polygon points="([^"]+)"', svg)
    assert len(polygons) == wide.shape[1]  # one layer per measure
    # the top edge of the last layer is the health line: the parts add up to the health
    top = [tuple(map(float, p.split(","))) for p in polygons[-1].split()][:len(wide)]
    line = [tuple(map(float, p.split(","))) for p in re.search(
        r'<polyline fill="none" stroke="#1f2933" stroke-width="2" points="([^"]+)"',
        svg).group(1).split()]  # type: ignore[union-attr]
    assert len(line) == 2 and all(abs(a[1] - b[1]) <= 0.3 for a, b in zip(top, line))
    # the text alternative names what moved, by the stored numbers
    change = (wide.loc[D] - wide.loc[WEEK_AGO]).round(1)
    biggest = change.abs().idxmax()
    assert change[biggest] != 0
    from pulse.models.risklist import measure_labels
    from pulse.models.scorecard import load_scorecard

    label = measure_labels(load_scorecard())[biggest]
    moved = re.search(r'<p id="what-moved">(.*?)</p>', html, flags=re.S).group(1)  # type: ignore[union-attr]
    assert moved.split("</strong> from")[1].split(":", 1)[1].strip().startswith(
        f"{escape(label)} {change[biggest]:+.1f} points")
    assert len(re.findall(r"<pattern id=", svg)) == len(polygons)  # a pattern, not colour alone
    h = AccountHealth.__table__
    with scored.connect() as conn:
        score = dict(conn.execute(select(h.c.as_of, h.c.score).where(
            h.c.account_id == "acc-silent")).all())
    fall = round(score[D] - score[WEEK_AGO], 1)
    assert fall <= -1  # the world's acc-silent fell: the page says by how much and where
    drop = re.search(r'<p id="biggest-drop">(.*?)</p>', html, flags=re.S).group(1)  # type: ignore[union-attr]
    # the parts that fell most come first (seat use counts on D only, the world's last day,
    # so the other parts' shares moved too)
    most = change.idxmin()
    assert change[most] < 0
    assert f"health {fall:+.1f} points from {WEEK_AGO.isoformat()} to {D.isoformat()}, in " \
        f"{escape(measure_labels(load_scorecard())[most])} {change[most]:+.1f}" in drop
    table = html.split('id="health-table"')[1].split("</details>")[0]
    assert f"<th scope=\"row\">{D.isoformat()}</th>" in table
    churn_history_is_the_models_and_says_so(scored, client)
    drivers_in_words_without_raw_ids(scored, client)


def test_the_health_chart_marks_where_each_band_starts() -> None:
    """Green's line, amber's below the watch band when the scorecard has one, red's."""
    from pulse.web.account_charts import stacked_health

    days = [WEEK_AGO, D]
    health = pd.DataFrame({"as_of": days, "score": [62.0, 50.0], "band": ["watch", "amber"]})
    parts = pd.DataFrame({"as_of": days, "measure": ["usage", "usage"], "part": [62.0, 50.0]})
    texts = [g["text"] for g in stacked_health(health, parts, {}, green=80.0, amber=30.0,
                                               watch=55.0).guides]
    assert texts == ["green from 80", "amber below 55", "red below 30"]
    texts = [g["text"] for g in stacked_health(health, parts, {}, green=80.0,
                                               amber=30.0).guides]
    assert texts == ["green from 80", "red below 30"]


def churn_history_is_the_models_and_says_so(scored: Engine, client: TestClient) -> None:
    assert 'id="churn-none"' in get(client)  # no model, no calibration: said, not drawn
    with scored.begin() as conn:
        conn.execute(insert(ChurnScore), [
            {"as_of": day, "account_id": "acc-silent", "model_version": 4, "probability": p,
             "drivers": [], "computed_at": datetime.now(UTC)}
            for day, p in ((WEEK_AGO, 0.2), (D, 0.45))])
    svg = section(get(client), "churn-chart")
    dots = re.findall(r"<title>([^<]+)</title></circle>", svg)
    assert dots == [f"{WEEK_AGO.isoformat()}: 20% (churn model)",
                    f"{D.isoformat()}: 45% (churn model)"]
    assert '<title id="churn-chart-title">' in svg


# --------------------------------------------------------------------------- drivers


def drivers_in_words_without_raw_ids(scored: Engine, client: TestClient) -> None:
    html = get(client, "/accounts/acc-champ")
    row = build_risk_list(scored, D, flag="champion_gone")[0]
    assert row["account_id"] == "acc-champ"
    assert "champion gone" in html and "champion_gone" not in html
    assert str(escape(row["next_action"])) in html
    reasons = html.split('id="reasons"')[1].split("</ol>")[0]
    for d in row["drivers"]:
        assert str(escape(d)) in reasons
    assert "no_data" not in html and "stale_source" not in html


# --------------------------------------------------------------------------- timeline


def test_the_timeline_has_every_kind_newest_first_and_filters_and_the_contacts(
        scored: Engine, client: TestClient) -> None:
    enrich(scored)
    sign_in(client, ANA)
    items = timeline_of(get(client, f"{SILENT}?page=1"))
    whens = [w for _k, w, _t in items]
    assert whens == sorted(whens, reverse=True)
    assert {"usage", "tickets", "mentions", "incidents", "messages", "surveys"} <= {
        k for k, _w, _t in items}
    text = " ".join(t for _k, _w, t in items)
    assert "Incident inc-1: API errors in EU" in text and "inc-2" not in text  # hit only
    assert "suppressed by the rule cap: 3 automated emails in 7 days" in text
    assert "Rated 2 of 5 after a ticket" in text and "Too slow lately" in text
    assert "low rating" in text
    mentions = timeline_of(get(client, f"{SILENT}?kind=mentions"))
    assert [(k, t.split("@")[1].split()[0]) for k, _w, t in mentions] == [
        ("mentions", "someone"), ("mentions", "silentco")]  # by id and by handle, newest first
    assert "negative" in mentions[0][2] and "&lt;b&gt;support&lt;/b&gt;" in mentions[0][2]
    both = timeline_of(get(client, f"{SILENT}?kind=incidents&kind=surveys&kind=bogus"))
    assert sorted({k for k, _w, _t in both}) == ["incidents", "surveys"]
    assert 'value="incidents" checked' in get(client, f"{SILENT}?kind=incidents")
    # weekly usage: one item per Monday week, its events and errors summed from the events
    u = UsageEvent.__table__
    with scored.connect() as conn:
        events = pd.DataFrame(conn.execute(select(u.c.occurred_at, u.c.quantity, u.c.outcome)
                                           .where(u.c.account_id == "acc-silent")).all())
    days = pd.to_datetime(events["occurred_at"], utc=True).dt.tz_localize(None).dt.normalize()
    events["week"] = (days - pd.to_timedelta(days.dt.day_of_week, unit="D")).dt.date
    weekly = events.groupby("week")["quantity"].sum().sort_index(ascending=False)
    usage = timeline_of(get(client, f"{SILENT}?kind=usage"))
    shown = [re.search(r"Week of (\S+): ([\d,]+) events", t).groups()  # type: ignore[union-attr]
             for _k, _w, t in usage]
    assert shown == [(w.isoformat(), f"{q:,.0f}") for w, q in weekly.items()][:len(shown)]
    timeline_pages_cover_it_once(scored)
    contacts_show_role_last_activity_and_opt_out(scored, client)


def timeline_pages_cover_it_once(scored: Engine) -> None:
    everything, more = sqla.timeline(scored, "acc-silent", size=500)
    assert not more and len(everything) > 12
    pages, page = [], 1
    while True:
        items, more = sqla.timeline(scored, "acc-silent", page=page, size=5)
        pages.extend(items)
        if not more:
            break
        page += 1
    assert pages == everything and page == -(-len(everything) // 5)


# --------------------------------------------------------------------------- contacts


def contacts_show_role_last_activity_and_opt_out(scored: Engine, client: TestClient) -> None:
    table = section(get(client), "contacts-table")
    rows = {m[0]: m for m in re.findall(
        r'<tr><th scope="row">([^<]+)</th><td>([^<]+)</td><td>([^<]*)</td>\s*<td>([^<]+)</td>'
        r'\s*<td>([^<]+)</td></tr>', table)}
    assert set(rows) == {"Sam One", "s2", "s3", "s4"}
    assert rows["Sam One"][2] == "champion" and rows["Sam One"][4] == "receives email"
    assert rows["s2"][4] == "opted out" and rows["s3"][4] == "suppressed (bounce)"
    u = UsageEvent.__table__
    with scored.connect() as conn:
        last = conn.execute(select(func.max(u.c.occurred_at)).where(
            u.c.contact_id == "s3")).scalar_one()
    last_day = (last if isinstance(last, datetime) else datetime.fromisoformat(str(last)))
    assert rows["s3"][3] == f"{last_day.date().isoformat()} (used the product)"


# --------------------------------------------------------------------------- actions


def test_actions_from_the_page_are_audited_and_come_back(scored: Engine,
                                                         client: TestClient) -> None:
    sign_in(client, ANA)
    html = get(client)
    token = csrf(client)
    for form in ("handled-form", "snooze-form", "log-form", "assign-form"):
        assert f'id="{form}"' in html
    done = client.post(f"{SILENT}/log", data={"csrf_token": token, "kind": "meeting",
                                              "reason": "QBR <with> the CTO", "back": SILENT})
    assert done.status_code == 303
    assert done.headers["location"] == f"{SILENT}?done=meeting&account=acc-silent"
    page = get(client, done.headers["location"])
    assert "Logged a meeting with acc-silent." in page
    notes = timeline_of(get(client, f"{SILENT}?kind=notes"))
    assert notes[0][0] == "notes" and "Meeting logged" in notes[0][2]
    assert "QBR &lt;with&gt; the CTO" in notes[0][2]
    assert client.post(f"{SILENT}/handled", data={"csrf_token": token, "back": SILENT,
                                                   "reason": "renewal agreed"}
                       ).status_code == 303
    state = re.search(r'<li id="handled-state">(.*?)</li>', get(client)).group(1)  # type: ignore[union-attr]
    assert state.startswith(f"Marked handled by {ANA} on ") and "renewal agreed" in state
    risk = get(client, "/?q=acc-silent")
    assert f"handled by {ANA} on {datetime.now(UTC).date().isoformat()}" in risk
    assert f'<a href="{SILENT}">Silent Co</a>' in risk  # the row links to the page
    # assign: the account moves to Bo's book, audited with who it came from
    moved = client.post(f"{SILENT}/assign", data={"csrf_token": token,
                                                  "csm": "Bo.CSM@pulse.example",
                                                  "reason": "Ana is on leave"})
    assert moved.status_code == 303 and "Gave acc-silent to its new CSM." in get(
        client, moved.headers["location"])
    assert "acc-silent" not in ids_on(get(client, "/"))  # not in Ana's book any more
    assert "acc-silent" in ids_on(get(client, "/?csm=bo.csm%40pulse.example"))
    (entry,) = entries(scored, action="assign_csm")
    assert (entry["actor"], entry["target"], entry["reason"], entry["detail"]) == (
        ANA, "acc-silent", "Ana is on leave",
        {"from": "Ana.CSM@pulse.example", "to": "bo.csm@pulse.example"})
    assert client.post(f"{SILENT}/assign", data={"csrf_token": token, "csm": "not-an-email",
                                                 "reason": "x"}).status_code == 400
    assert client.post(f"{SILENT}/assign", data={"csrf_token": token, "csm": ANA,
                                                 "reason": " "}).status_code == 400
    assert [e["action"] for e in entries(scored, target="acc-silent")] == [
        "assign_csm", "handled", "log_meeting"]


def test_a_viewer_reads_but_cannot_act_and_forged_tokens_fail(scored: Engine,
                                                              client: TestClient) -> None:
    from pulse.outreach.checkins import queue_daily

    queue_daily(scored, D)
    (draft,) = sqla.checkin_drafts(scored, "acc-silent")
    sign_in(client, VIC)
    html = get(client)
    token = csrf(client)
    assert 'id="read-only"' in html and 'id="handled-form"' not in html
    assert 'id="contacts-table"' in html and 'id="timeline-items"' in html  # reads it all
    assert f'id="draft-{draft["message_id"]}-approve"' not in html
    mid = draft["message_id"]
    for path, data in ((f"{SILENT}/assign", {"csm": VIC, "reason": "x"}),
                       (f"{SILENT}/drafts/{mid}/approve", {}),
                       (f"{SILENT}/drafts/{mid}/edit", {"note": "hi"}),
                       (f"{SILENT}/handled", {"reason": "x"})):
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 403
    client.post("/logout", data={"csrf_token": token})
    sign_in(client, ANA)
    for forged in ("forged", ""):
        assert client.post(f"{SILENT}/drafts/{mid}/approve",
                           data={"csrf_token": forged}).status_code == 403
        assert client.post(f"{SILENT}/assign", data={"csrf_token": forged, "csm": ANA,
                                                     "reason": "x"}).status_code == 403
    with scored.connect() as conn:
        assert conn.execute(select(OutboxMessage.status).where(
            OutboxMessage.message_id == mid)).scalar_one() == "draft"
        assert conn.execute(select(func.count()).select_from(AccountActivity)).scalar() == 0
    assert entries(scored, action="assign_csm") == []


def test_a_drafted_check_in_is_edited_and_approved_from_the_page(
        scored: Engine, client: TestClient) -> None:
    from pulse.outreach.checkins import queue_daily

    queue_daily(scored, D)
    (draft,) = sqla.checkin_drafts(scored, "acc-silent")
    mid = draft["message_id"]
    sign_in(client, ANA)
    html = get(client)
    token = csrf(client)
    card = html.split(f'id="draft-{mid}"')[1].split("</article>")[0]
    assert "Best regards," in card and "/u/" not in card  # no live unsubscribe link
    assert "renews on July 20, 2026" in card
    edited = client.post(f"{SILENT}/drafts/{mid}/edit", data={
        "csrf_token": token, "note": "Good to <see> you at the workshop!",
        "subject": "Checking in", "drop_renewal": "yes"})
    assert edited.status_code == 303
    card = get(client, edited.headers["location"]).split(f'id="draft-{mid}"')[1]
    assert "Good to &lt;see&gt; you at the workshop!" in card and "renews on" not in card
    assert client.post(f"/accounts/acc-loud/drafts/{mid}/approve",
                       data={"csrf_token": token}).status_code == 409  # not acc-loud's
    approved = client.post(f"{SILENT}/drafts/{mid}/approve", data={"csrf_token": token})
    assert approved.status_code == 303
    page = get(client, approved.headers["location"])
    assert "Approved the check-in of acc-silent" in page and 'id="no-drafts"' in page
    assert client.post(f"{SILENT}/drafts/{mid}/approve",
                       data={"csrf_token": token}).status_code == 409  # once
    with scored.connect() as conn:
        row = conn.execute(select(OutboxMessage.status, OutboxMessage.subject,
                                  OutboxMessage.context).where(
            OutboxMessage.message_id == mid)).one()
    assert row[0] == "queued" and row[1] == "Checking in"
    assert row[2]["note"] == "Good to <see> you at the workshop!"
    assert [(e["action"], e["detail"]) for e in entries(scored, target="acc-silent")] == [
        ("approve_checkin", {"message_id": mid}), ("edit_checkin", {"message_id": mid})]
    assert "Check-in approved" in timeline_of(get(client, f"{SILENT}?kind=notes"))[0][2]


def test_a_snooze_from_the_page_leaves_the_list_until_a_low_rating(
        scored: Engine, client: TestClient) -> None:
    sign_in(client, ANA)
    token = csrf(client)
    assert client.post(f"{SILENT}/snooze", data={
        "csrf_token": token, "until": FUTURE, "reason": "waiting on budget",
        "back": SILENT}).status_code == 303
    state = re.search(r'<li id="snooze-state">(.*?)</li>', get(client)).group(1)  # type: ignore[union-attr]
    assert state.startswith(f"Snoozed until {FUTURE}: waiting on budget")
    assert "acc-silent" not in ids_on(get(client, "/"))
    with scored.begin() as conn:  # a rating of 2 after the snooze wakes it
        sid = conn.execute(insert(Survey).values(
            survey_key="s-late", trigger="ticket", account_id="acc-silent", contact_id="s1",
            channel="email", question="?", status="queued", due_at=datetime.now(UTC),
            created_at=datetime.now(UTC)).returning(Survey.survey_id)).scalar_one()
        later = datetime.now(UTC) + timedelta(seconds=1)
        conn.execute(insert(SurveyResponse).values(
            survey_id=sid, account_id="acc-silent", contact_id="s1", rating=2,
            first_rated_at=later, rated_at=later, rating_changes=0, landed_at=later,
            updated_at=later))
    assert "acc-silent" in ids_on(get(client, "/"))
    assert "snooze ended early: a low rating" in get(client, "/?q=acc-silent")
    assert "ended early: a low rating" in get(client)


# --------------------------------------------------------------------------- escaping


def test_a_name_holding_script_shows_as_text(scored: Engine, client: TestClient) -> None:
    hostile = "<script>alert(1)</script> Co"
    with scored.begin() as conn:
        conn.execute(update(Account).where(Account.account_id == "acc-silent")
                     .values(name=hostile))
        conn.execute(update(Contact).where(Contact.contact_id == "s1")
                     .values(name='"><script>alert(2)</script>', role="<i>boss</i>"))
    sign_in(client, ANA)
    html = get(client)
    assert "<script>" not in html and "<i>boss</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Co" in html
    assert "&lt;i&gt;boss&lt;/i&gt;" in html
    svg = section(html, "health-chart")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Co" in svg  # the chart's title too


def test_a_cancelled_account_off_the_list_still_shows_who_handled_it(
        scored: Engine, client: TestClient) -> None:
    sign_in(client, ANA)
    gone = "/accounts/acc-gone"
    assert 'id="handled-state"' not in get(client, gone)
    assert client.post(f"{gone}/handled", data={"csrf_token": csrf(client), "back": gone,
                                                 "reason": "cancelled: budget cut"}
                       ).status_code == 303
    state = re.search(r'<li id="handled-state">(.*?)</li>', get(client, gone)).group(1)  # type: ignore[union-attr]
    assert state.startswith(f"Marked handled by {ANA} on ") and "budget cut" in state
