"""Replies on X to the public complaints attached to an incident (outreach/x_replies.py): a
draft per author, posted only after approval, once, threaded under the complaint through the
real tweepy client against the local double of POST /2/tweets; never naming the account.
Every database test runs on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tweepy
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from pulse.devkit.x_double import XPostDouble
from pulse.listeners.landing import land_file
from pulse.outreach.x_posts import LIMIT, eta_text, post_due, x_length
from pulse.outreach.x_replies import (
    approve_replies,
    check_reply,
    compose_reply,
    discard_replies,
    list_replies,
    plan_reply_drafts,
)
from pulse.sql.schema import Incident, IncidentImpact, IncidentUpdate, SocialPost
from tests.test_dags import af_env, airflow_db  # noqa: F401  (fixtures)

T0 = datetime(2026, 7, 2, 9, tzinfo=UTC)
NOW = datetime(2026, 7, 2, 10, tzinfo=UTC)
ETA = datetime(2026, 7, 2, 14, 30, tzinfo=UTC)
URL = "https://status.example.com"
KEYS = {"consumer_key": "ck-test", "consumer_secret": "cs-test", "access_token": "at-test",
        "access_token_secret": "ats-test"}
SP = SocialPost.__table__
#: the tweets on X (the complaints' ids)
TWEETS = ("1001", "1002", "1003", "1004", "1005", "1006", "1007")


def _mention(t0: datetime, mid: str, minutes: int, handle: str, text: str,
             **extra: str) -> dict:
    return {"mention_id": mid, "created_at": (t0 + timedelta(minutes=minutes)).isoformat(),
            "author_handle": handle, "text": text, **extra}


def _world(engine: Engine, tmp_path: Path, t0: datetime = T0) -> None:
    """An incident on `reports` started at `t0`, identified, with an ETA 5.5 hours later."""
    (tmp_path / "accounts.csv").write_text(
        "account_id,name,mrr,x_handle,domain\nacc-1,Northwind Traders,10,northwind,"
        "northwind.example\nacc-2,Initech,10,,\n")
    (tmp_path / "contacts.csv").write_text(
        "contact_id,account_id,email,name,x_handle\n"
        "con-1,acc-1,ana@northwind.example,Ana Lima,ana_nw\n")
    mentions = [
        _mention(t0, "1001", 20, "ana_nw", "scheduled reports failing again, so annoying",
                 account_id="acc-1"),
        _mention(t0, "1002", 40, "ana_nw", "still no csv export. broken all morning"),
        _mention(t0, "1003", 30, "bob", "are exports down for everyone?"),
        _mention(t0, "1004", 30, "carol", "love the new dashboard colours"),
        _mention(t0, "1005", -60, "dave", "reports failing"),  # before the incident
        _mention(t0, "1006", 25, "eve", "api errors everywhere"),  # another component
        _mention(t0, "1007", 25, "fay", "reports broken", platform="reddit"),
        _mention(t0, "m-8", 25, "gus", "export failing"),  # no tweet id: cannot be answered
    ]
    (tmp_path / "mentions.jsonl").write_text("".join(json.dumps(m) + "\n" for m in mentions))
    for name in ("accounts.csv", "contacts.csv", "mentions.jsonl"):
        result = land_file(engine, tmp_path / name, now=t0 + timedelta(hours=1))
        assert result.quarantined == 0, result.reasons
    with engine.begin() as conn:
        conn.execute(insert(Incident), [{
            "incident_id": "inc-1", "title": "Northwind's scheduled reports failing",
            "status": "identified", "impact": "major", "started_at": t0, "resolved_at": None,
            "eta": t0 + (ETA - T0), "components": ["reports"], "regions": [], "landed_at": t0,
            "updated_at": t0}])
        conn.execute(insert(IncidentImpact), [{
            "incident_id": "inc-1", "account_id": "acc-1", "status": "hit",
            "failed_events": 3, "total_events": 3, "failed_requests": 3.0,
            "total_requests": 3.0, "affected_users": 1, "components": ["reports"],
            "regions": [], "window_start": t0, "window_end": t0, "computed_at": t0}])


def _client(**double: object) -> tuple[tweepy.Client, XPostDouble]:
    client = tweepy.Client(**KEYS, wait_on_rate_limit=False)
    x = XPostDouble(consumer_key="ck-test", access_token="at-test", tweets=TWEETS,
                    **double).mount_on(client)  # type: ignore[arg-type]
    return client, x


def _replies(engine: Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r.post_key: (r.post_id, r.status, r.in_reply_to_id, r.text) for r in
                conn.execute(select(SP).order_by(SP.c.post_id))}


ANA = ("@ana_nw Sorry for the trouble with Scheduled reports. We found the cause and are "
       f"working on a fix. We expect it fixed by 2 Jul 14:30 UTC. Updates: {URL}")


def test_a_draft_per_complainant_and_nothing_posted_before_approval(
        engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    report = plan_reply_drafts(engine, now=NOW, status_page_url=URL)
    # ana's two posts and bob's are attached (they name the incident's component while it
    # was open); carol praises, dave posted before it, eve names another component, fay is
    # not on X, gus's post has no tweet id
    assert (report.complaints, report.drafted, report.refreshed) == (3, 2, 0)
    replies = _replies(engine)
    assert set(replies) == {"xreply:inc-1:ana_nw", "xreply:inc-1:bob"}
    _, status, to, text = replies["xreply:inc-1:ana_nw"]
    assert (status, to, text) == ("draft", "1001", ANA)  # her first complaint
    assert replies["xreply:inc-1:bob"][3].startswith("@bob Sorry for the trouble")
    for _, _, _, text in replies.values():  # the title names a customer: never used
        assert "northwind" not in text.lower() and "ana lima" not in text.lower()
        assert x_length(text) <= LIMIT
    again = plan_reply_drafts(engine, now=NOW, status_page_url=URL)
    assert (again.drafted, again.refreshed) == (0, 0) and _replies(engine) == replies
    client, x = _client()
    assert post_due(engine, client, now=NOW).posted == 0 and x.requests == 0


def test_approved_replies_are_posted_once_under_the_complaint(
        engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    plan_reply_drafts(engine, now=NOW, status_page_url=URL)
    # the incident moves on before anyone approved: the drafts follow it
    with engine.begin() as conn:
        conn.execute(update(Incident).values(status="resolved", resolved_at=NOW))
    later = NOW + timedelta(minutes=30)
    assert plan_reply_drafts(engine, now=later, status_page_url=URL).refreshed == 2
    ana_id, _, _, text = _replies(engine)["xreply:inc-1:ana_nw"]
    bob_id = _replies(engine)["xreply:inc-1:bob"][0]
    assert text == ("@ana_nw Sorry for the trouble with Scheduled reports. It is fixed now. "
                    f"Sorry again for the disruption. Updates: {URL}")
    assert approve_replies(engine, [ana_id], now=later).done == [ana_id]
    assert discard_replies(engine, [bob_id]).done == [bob_id]
    assert approve_replies(engine, [bob_id]).refused == {bob_id: "not a draft (it is discarded)"}
    client, x = _client()
    report = post_due(engine, client, now=later)
    assert (report.posted, report.failed) == (1, 0)
    assert x.replies == [(text, "1001")]
    # reruns: nothing posted twice, nothing redrafted, the posted text never rewritten
    plan_reply_drafts(engine, now=later + timedelta(hours=1), status_page_url=URL)
    assert post_due(engine, client, now=later).posted == 0 and x.requests == 1
    replies = _replies(engine)
    assert replies["xreply:inc-1:ana_nw"][1:] == ("posted", "1001", text)
    assert replies["xreply:inc-1:bob"][1] == "discarded"
    listed = list_replies(engine, status="posted")
    assert listed[["author_handle", "complaint"]].values.tolist() == [
        ["ana_nw", "scheduled reports failing again, so annoying"]]


def test_a_reply_to_a_deleted_complaint_is_refused_by_x_and_recorded(
        engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    plan_reply_drafts(engine, now=NOW, status_page_url=URL)
    ids = [v[0] for v in _replies(engine).values()]
    approve_replies(engine, ids, now=NOW)
    client, x = _client()
    x.tweets.discard("1003")  # bob deleted his post
    report = post_due(engine, client, now=NOW)
    assert (report.posted, report.failed) == (1, 1)
    with engine.connect() as conn:
        status, error = conn.execute(select(SP.c.status, SP.c.error).where(
            SP.c.post_key == "xreply:inc-1:bob")).one()
    assert status == "failed" and error.startswith("403") and "deleted" in error


def test_a_draft_that_names_the_account_is_never_approved(engine: Engine,
                                                           tmp_path: Path) -> None:
    _world(engine, tmp_path)
    plan_reply_drafts(engine, now=NOW, status_page_url=URL)
    ana_id = _replies(engine)["xreply:inc-1:ana_nw"][0]
    for bad, why in [(ANA.replace("Sorry for", "Northwind Traders, sorry for"), "account"),
                     (ANA.replace("Updates", "Ana Lima, updates"), "account"),
                     (ANA.replace("Updates", "see northwind.example for updates"), "account"),
                     (ANA.replace("Updates", "cc @northwind updates"), "handle"),
                     (ANA.replace("@ana_nw ", ""), "@-reply")]:
        with engine.begin() as conn:
            conn.execute(update(SP).where(SP.c.post_id == ana_id).values(text=bad))
        refused = approve_replies(engine, [ana_id], now=NOW).refused
        assert why in refused[ana_id], (bad, refused)
    assert _replies(engine)["xreply:inc-1:ana_nw"][1] == "draft"


def test_check_reply_and_compose_reply() -> None:
    assert check_reply(ANA, "ana_nw", ["Northwind Traders", "acc-1"]) is None
    assert "email" in str(check_reply(ANA + " ana@northwind.example", "ana_nw", []))
    assert "limit is 280" in str(check_reply("@ana_nw " + "x" * 280, "ana_nw", []))
    assert "acc-1" in str(check_reply(ANA + " (acc-1)", "ana_nw", ["acc-1"]))
    # a word inside another word is not a name: "Ana" is not in "Analytics"
    assert check_reply("@x Sorry for the trouble with Analytics.", "x", ["Ana"]) is None
    # a long list of components: the reply says less rather than run over 280
    many = compose_reply("someone", "investigating", [f"Component {i}" for i in range(40)],
                         URL, eta=ETA)
    assert x_length(many) <= LIMIT and many.startswith("@someone Sorry for the trouble. ")


def test_the_cli_lists_shows_approves_and_posts_once(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse.cli import app
    from pulse.core.settings import get_settings
    from pulse.outreach import x_posts

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    _world(engine, tmp_path, t0)
    with engine.begin() as conn:
        conn.execute(insert(IncidentUpdate), [{
            "update_id": "u1", "incident_id": "inc-1", "status": "identified",
            "body": "A bad deploy; rolling it back.", "created_at": t0, "landed_at": t0}])
    monkeypatch.setenv("PULSE_STATUS_PAGE_URL", URL)
    for env, value in zip(("PULSE_X_API_KEY", "PULSE_X_API_SECRET", "PULSE_X_ACCESS_TOKEN",
                           "PULSE_X_ACCESS_TOKEN_SECRET"), KEYS.values(), strict=True):
        monkeypatch.setenv(env, value)
    monkeypatch.setenv("PULSE_X_POST", "on")
    get_settings(fresh=True)
    # the real client the command builds from the environment, on the local double
    x = XPostDouble(consumer_key="ck-test", access_token="at-test", tweets=TWEETS)
    real = x_posts.user_client
    real_client: list[tweepy.Client] = []

    def on_double() -> tweepy.Client:
        client = real()
        x.mount_on(client)
        real_client.append(client)
        return client

    monkeypatch.setattr(x_posts, "user_client", on_double)
    runner = CliRunner()
    first = runner.invoke(app, ["social", "post"])
    assert first.exit_code == 0, first.output
    assert "2 new replies to complaints wait for approval" in " ".join(first.output.split())
    assert x.requests == 1 and x.replies == []  # the update, no reply before approval
    assert x.posts[0].startswith("[Identified] Northwind's scheduled reports failing")
    listed = runner.invoke(app, ["social", "replies", "list", "--format", "json"])
    rows = json.loads(listed.output)
    assert [r["author_handle"] for r in rows] == ["ana_nw", "bob"]
    ana, bob = rows[0]["post_id"], rows[1]["post_id"]
    drafted = runner.invoke(app, ["social", "replies", "draft"])  # nothing new: no repeat
    assert drafted.exit_code == 0, drafted.output
    assert "3 complaints, 0 new reply drafts, 0 drafts updated" in drafted.output
    discarded = runner.invoke(app, ["social", "replies", "discard", str(bob)])
    assert discarded.exit_code == 0 and f"discarded 1: {bob}" in discarded.output
    again = runner.invoke(app, ["social", "replies", "discard", str(bob)])
    assert again.exit_code == 1 and "discarded 0" in again.output
    shown = runner.invoke(app, ["social", "replies", "show", str(ana)])
    said = " ".join(shown.output.split())
    assert "To @ana_nw: scheduled reports failing again" in said
    eta = eta_text(t0 + (ETA - T0)).replace("ETA", "We expect it fixed by")
    assert eta in said and "of 280 characters" in said
    approved = runner.invoke(app, ["social", "replies", "approve", str(ana), "999"])
    assert approved.exit_code == 1 and "approved 1" in approved.output
    for _ in range(2):  # exactly once, however often it runs
        posted = runner.invoke(app, ["social", "post"])
        assert posted.exit_code == 0, posted.output
    assert x.replies == [(ANA.replace("We expect it fixed by 2 Jul 14:30 UTC.", eta), "1001")]
    assert len(real_client) == 3 and x.requests == 2
    get_settings(fresh=True)


@pytest.mark.airflow
def test_the_pulse_outage_dag_posts_updates_and_approved_replies_once(
        engine: Engine, tmp_path: Path, af_env: dict[str, str]  # noqa: F811
) -> None:
    from pulse.devkit.airflow_runner import run_dag_test
    from pulse.devkit.x_double import XPostServer

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    _world(engine, tmp_path, t0)
    with engine.begin() as conn:
        conn.execute(insert(IncidentUpdate), [{
            "update_id": "u1", "incident_id": "inc-1", "status": "identified",
            "body": "A bad deploy; rolling it back.", "created_at": t0, "landed_at": t0}])
    plan_reply_drafts(engine, status_page_url=URL)
    ana = _replies(engine)["xreply:inc-1:ana_nw"][0]
    assert approve_replies(engine, [ana]).done == [ana]  # bob's stays a draft
    x = XPostDouble(consumer_key="ck-test", access_token="at-test", tweets=TWEETS)
    with XPostServer(x) as server:
        env = {**af_env, "PULSE_X_POST": "on", "PULSE_X_API_HOST": server.url,
               "PULSE_STATUS_PAGE_URL": URL,
               "PULSE_DATABASE_URL": engine.url.render_as_string(hide_password=False),
               "PULSE_X_API_KEY": "ck-test", "PULSE_X_API_SECRET": "cs-test",
               "PULSE_X_ACCESS_TOKEN": "at-test", "PULSE_X_ACCESS_TOKEN_SECRET": "ats-test"}
        run_dag_test("pulse_outage", env=env)
        run_dag_test("pulse_outage", env=env)  # a rerun: nothing posted twice
    eta = eta_text(t0 + (ETA - T0))
    update_post = ("[Identified] Northwind's scheduled reports failing (Scheduled reports): A "
                   f"bad deploy; rolling it back. {eta} {URL}")
    reply = ANA.replace("We expect it fixed by 2 Jul 14:30 UTC.",
                        eta.replace("ETA", "We expect it fixed by"))
    assert sorted(x.posts) == sorted([update_post, reply]) and x.requests == 2
    assert x.replies == [(reply, "1001")]
    statuses = {k: v[1] for k, v in _replies(engine).items()}
    assert statuses == {"x:inc-1:u1": "posted", "xreply:inc-1:ana_nw": "posted",
                        "xreply:inc-1:bob": "draft"}
