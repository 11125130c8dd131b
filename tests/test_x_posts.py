"""Open updates on X (outreach/x_posts.py): confirmed incidents' public updates posted once
through the real tweepy client, against a local double of X's POST /2/tweets that checks what
X checks (OAuth 1.0a user context, 280 characters as X counts them, duplicates, rate limits)."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import tweepy
from sqlalchemy import Engine, insert, select, update

from pulse.devkit.x_double import XPostDouble
from pulse.listeners.landing import land_file
from pulse.outreach.x_posts import LIMIT, compose, plan_incident_posts, post_due, run, x_length
from pulse.sql.schema import Incident, IncidentImpact, IncidentUpdate, SocialPost

NOW = datetime(2026, 7, 2, 12, tzinfo=UTC)
URL = "https://status.example.com/incidents/very/long/path/that/x/shortens/anyway"
KEYS = {"consumer_key": "ck-test", "consumer_secret": "cs-test", "access_token": "at-test",
        "access_token_secret": "ats-test"}
SP = SocialPost.__table__


def _client(**double: object) -> tuple[tweepy.Client, XPostDouble]:
    client = tweepy.Client(**KEYS, wait_on_rate_limit=False)
    x = XPostDouble(consumer_key="ck-test", access_token="at-test", **double).mount_on(client)
    return client, x


def test_a_post_fits_x_and_says_only_what_the_status_page_says() -> None:
    post = compose("Scheduled reports failing", "identified", "We found the cause. " * 40, URL,
                   ["Scheduled reports"])
    assert x_length(post) <= LIMIT and post.startswith(
        "[Identified] Scheduled reports failing (Scheduled reports): We found the cause.")
    assert post.endswith("… " + URL)
    assert x_length(URL) == 23 and x_length("日本") == 4
    short = compose("API errors", "resolved", "All clear.", URL, [])
    assert short == f"[Resolved] API errors: All clear. {URL}"
    assert x_length(compose("T" * 400, "monitoring", None, URL, [])) <= LIMIT


def _world(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text("account_id,name,mrr\nacc-1,Northwind,10\n")
    land_file(engine, tmp_path / "accounts.csv")
    t = datetime(2026, 7, 2, 9, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Incident), [
            {"incident_id": i, "title": title, "status": status, "impact": "major",
             "started_at": t, "resolved_at": None, "components": comps, "regions": [],
             "landed_at": t, "updated_at": t}
            for i, title, status, comps in [
                ("inc-hit", "Scheduled reports failing", "investigating", ["reports"]),
                ("inc-ok", "API latency", "identified", ["api"]),
                ("inc-maybe", "Search slow", "investigating", ["search"])]])
        conn.execute(insert(IncidentUpdate), [
            {"update_id": u, "incident_id": i, "status": s, "body": b, "created_at": t,
             "landed_at": t}
            for u, i, s, b in [("u1", "inc-hit", "investigating", "We are looking into it."),
                               ("u2", "inc-ok", "identified", "A bad deploy; rolling back."),
                               ("u3", "inc-maybe", "investigating", "Checking reports.")]])
        conn.execute(insert(IncidentImpact), [{
            "incident_id": "inc-hit", "account_id": "acc-1", "status": "hit",
            "failed_events": 3, "total_events": 3, "failed_requests": 3.0,
            "total_requests": 3.0, "affected_users": 1, "components": ["reports"],
            "regions": [], "window_start": t, "window_end": t, "computed_at": t}])


def _posts(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {k: (s, tid) for k, s, tid in conn.execute(
            select(SP.c.post_key, SP.c.status, SP.c.tweet_id))}


def test_confirmed_incidents_are_posted_exactly_once(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    # confirmed: one hit an account, one was identified; the third is not confirmed yet
    assert plan_incident_posts(engine, now=NOW, status_page_url=URL) == 2
    assert plan_incident_posts(engine, now=NOW, status_page_url=URL) == 0  # keyed once
    client, x = _client()
    report = post_due(engine, client, now=NOW)
    assert (report.posted, report.failed, report.stopped) == (2, 0, None)
    assert sorted(x.posts) == sorted([
        f"[Identified] API latency (API): A bad deploy; rolling back. {URL}",
        f"[Investigating] Scheduled reports failing (Scheduled reports): We are looking into "
        f"it. {URL}"])
    assert all("Northwind" not in p and "acc-1" not in p for p in x.posts)
    posts = _posts(engine)
    assert set(posts) == {"x:inc-hit:u1", "x:inc-ok:u2"}
    assert all(s == "posted" and tid and tid.isdigit() for s, tid in posts.values())
    again = post_due(engine, client, now=NOW)
    assert again.posted == 0 and len(x.posts) == 2 and x.requests == 2


def test_a_claimed_post_is_never_posted_again_by_itself(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    plan_incident_posts(engine, now=NOW, status_page_url=URL)
    with engine.begin() as conn:  # a run that claimed it, then stopped
        conn.execute(update(SP).where(SP.c.post_key == "x:inc-ok:u2").values(
            status="posting", claimed_at=NOW))
    client, x = _client()
    report = post_due(engine, client, now=NOW)
    assert report.posted == 1 and report.unknown == ["x:inc-ok:u2"]
    assert len(x.posts) == 1 and "API latency" not in x.posts[0]
    assert "check X before posting them again by hand" in str(report)


def test_rate_limits_refused_keys_and_duplicates(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    plan_incident_posts(engine, now=NOW, status_page_url=URL)
    # keys X refuses: nothing posted, everything still queued, said plainly
    bad = tweepy.Client(**{**KEYS, "access_token": "revoked"}, wait_on_rate_limit=False)
    XPostDouble(consumer_key="ck-test", access_token="at-test").mount_on(bad)
    refused = post_due(engine, bad, now=NOW)
    assert refused.posted == 0 and refused.stopped and refused.stopped.startswith("401")
    assert {s for s, _ in _posts(engine).values()} == {"queued"}
    # one post left in X's window: the second waits for the next run
    client, x = _client(limit=1)
    limited = post_due(engine, client, now=NOW)
    assert limited.posted == 1 and limited.left_queued == 1 and "429" in str(limited.stopped)
    later, x2 = _client(limit=10)
    x2.posts = list(x.posts)
    assert post_due(engine, later, now=NOW).posted == 1
    assert len(x2.posts) == 2 and {s for s, _ in _posts(engine).values()} == {"posted"}
    # X refuses a duplicate: recorded as failed with its reason, not retried
    with engine.begin() as conn:
        conn.execute(insert(SocialPost), [{"post_key": "x:inc-ok:copy", "incident_id": "inc-ok",
                                           "text": x2.posts[0], "status": "queued",
                                           "created_at": NOW}])
    dup = post_due(engine, later, now=NOW)
    assert (dup.posted, dup.failed) == (0, 1)
    with engine.connect() as conn:
        error = conn.execute(select(SP.c.error).where(SP.c.post_key == "x:inc-ok:copy")
                             ).scalar_one()
    assert "duplicate content" in error and error.startswith("403")


def test_posting_is_off_unless_asked(engine: Engine, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse.core.settings import get_settings

    _world(engine, tmp_path)
    monkeypatch.delenv("PULSE_X_POST", raising=False)
    get_settings(fresh=True)
    assert run(engine, now=NOW) is None and _posts(engine) == {}
    monkeypatch.setenv("PULSE_X_POST", "on")
    get_settings(fresh=True)
    client, x = _client()
    report = run(engine, client=client, now=NOW)
    assert report is not None and (report.planned, report.posted) == (2, 2)
    get_settings(fresh=True)


def test_the_cli_says_when_posting_is_off(pulse_home: Path) -> None:
    import os

    from tests.pulse_cli import run_pulse

    env = {k: v for k, v in os.environ.items() if k != "PULSE_X_POST"}
    env["PULSE_HOME"] = str(pulse_home)
    done = run_pulse("db", "upgrade", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    off = run_pulse("social", "post", env=env, timeout=300)
    assert off.returncode == 0, off.stderr
    assert "X posting is off: set PULSE_X_POST=on" in off.stdout
