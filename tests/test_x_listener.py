"""Listening to X: the real tweepy client against recorded API v2 response bodies.

The bodies under tests/fixtures/x/ have the documented v2 recent-search shape (`data`,
`includes.users`, `meta.newest_id/oldest_id/result_count/next_token`, problem-details
errors). They are served by a `requests` transport adapter mounted on the client's own
session, which checks each request as X would receive it.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import tweepy
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from pulse.cli import app as pulse_app
from pulse.core.errors import XListenerError
from pulse.devkit.x_double import CONNECTION_REFUSED, XSearchDouble
from pulse.listeners.landing import land_file
from pulse.listeners.x_listener import listen, watermarks
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.features import compute_features, load_features
from pulse.sql.schema import Mention, XWatermark
from tests.test_dags import af_env, airflow_db, asset_events  # noqa: F401  (fixtures)

FIXTURES = Path(__file__).parent / "fixtures" / "x"
TOKEN = "test-bearer-not-a-secret"
QUERY = '"Pulse Demo" OR @PulseDemoHQ -is:retweet'
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NEWEST = "1861000000000000005"


def client_for(*replies: tuple[int, str], wait: bool = True,
               reset_in: int = 900) -> tuple[tweepy.Client, XSearchDouble]:
    client = tweepy.Client(bearer_token=TOKEN, wait_on_rate_limit=wait)
    adapter = XSearchDouble(*((status, name if name == CONNECTION_REFUSED else FIXTURES / name)
                              for status, name in replies), token=TOKEN, reset_in=reset_in)
    return client, adapter.mount_on(client)


def mark(engine: Engine, query: str = QUERY) -> XWatermark | None:
    return next((w for w in watermarks(engine) if w.query == query), None)


def mention_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(Mention.mention_id)).scalars())


def land_people(engine: Engine, tmp_path: Path) -> None:
    """Acme with its own handle, Globex with a contact's handle, Initech with none."""
    accounts = tmp_path / "accounts.jsonl"
    accounts.write_text("".join(json.dumps(r) + "\n" for r in (
        {"account_id": "acc-acme", "name": "Acme", "mrr": 900, "x_handle": "@AcmeCorp",
         "created_at": "2026-01-05T00:00:00Z"},
        {"account_id": "acc-globex", "name": "Globex", "mrr": 500,
         "created_at": "2026-01-05T00:00:00Z"},
        {"account_id": "acc-initech", "name": "Initech", "mrr": 300,
         "created_at": "2026-01-05T00:00:00Z"},
    )))
    contacts = tmp_path / "contacts.jsonl"
    contacts.write_text(json.dumps({"contact_id": "c-jane", "account_id": "acc-globex",
                                    "email": "jane@globex.example",
                                    "x_handle": "jane_globex"}) + "\n")
    assert land_file(engine, accounts, now=NOW).inserted == 3
    assert land_file(engine, contacts, now=NOW).inserted == 1


def test_two_pages_land_with_handles_and_the_watermark_is_the_next_since_id(
    engine: Engine,
) -> None:
    client, x = client_for((200, "search_page1.json"), (200, "search_page2.json"))
    report = listen(engine, client=client, queries=[QUERY], now=NOW)

    assert report.errors == []
    (q,) = report.queries
    assert (q.pages, q.tweets, q.since_id, q.newest_id) == (2, 5, None, NEWEST)
    assert q.landing is not None and q.landing.inserted == 5 and q.landing.quarantined == 0
    assert "since_id" not in x.params[0] and x.params[0]["query"] == QUERY
    assert x.params[1]["next_token"] == "b26v89c19zqg8o3fosk71un0wp6q1k4v2ddevxc12tlp"
    with engine.connect() as conn:
        rows = {m.mention_id: m for m in conn.execute(select(Mention.__table__))}
    first = rows[NEWEST]
    assert (first.author_handle, first.author_id, first.platform, first.lang) == (
        "jane_globex", "3001", "x", "en")
    assert first.url == f"https://x.com/Jane_Globex/status/{NEWEST}"
    assert first.in_reply_to_id == "1860999999999999990"
    assert rows["1861000000000000001"].author_handle == "acmecorp"  # page 2's includes
    assert rows["1861000000000000003"].lang == "de"
    w = mark(engine)
    assert w is not None and (w.since_id, w.fetched, w.last_error) == (NEWEST, 5, None)

    # The next run asks only for what is newer: nothing, so nothing lands.
    client, x = client_for((200, "search_empty.json"))
    again = listen(engine, client=client, queries=[QUERY], now=NOW)
    assert x.params[0]["since_id"] == NEWEST and "next_token" not in x.params[0]
    (q,) = again.queries
    assert (q.pages, q.tweets, q.landing, q.newest_id) == (1, 0, None, NEWEST)
    assert mark(engine).since_id == NEWEST  # type: ignore[union-attr]
    assert len(mention_ids(engine)) == 5


@pytest.mark.parametrize(("status", "body", "expected"), [
    (401, "error_401.json", "HTTP 401 Unauthorized: the bearer token was refused"),
    (503, "error_503.json", "HTTP 503 Service Unavailable: X is having trouble"),
])
def test_an_error_keeps_the_watermark_and_says_which_query_and_status(
    engine: Engine, status: int, body: str, expected: str,
) -> None:
    client, _ = client_for((200, "search_page1.json"), (200, "search_page2.json"))
    listen(engine, client=client, queries=[QUERY], now=NOW)

    client, x = client_for((status, body))
    report = listen(engine, client=client, queries=[QUERY], now=NOW)
    assert x.params[0]["since_id"] == NEWEST
    (q,) = report.queries
    assert q.error is not None and f"query {QUERY!r}" in q.error and expected in q.error
    assert q.landing is None and q.newest_id == NEWEST
    w = mark(engine)
    assert w is not None and w.since_id == NEWEST and w.fetched == 5
    assert w.last_error == q.error
    with pytest.raises(XListenerError, match=str(status)):
        report.raise_for_errors()

    # Recovery clears the error; the watermark never moved backwards.
    client, _ = client_for((200, "search_empty.json"))
    listen(engine, client=client, queries=[QUERY], now=NOW)
    w = mark(engine)
    assert w is not None and (w.since_id, w.last_error) == (NEWEST, None)


def test_an_error_on_page_two_keeps_the_watermark_but_lands_page_one(engine: Engine) -> None:
    client, _ = client_for((200, "search_page1.json"), (503, "error_503.json"),
                           (200, "search_empty.json"))
    report = listen(engine, client=client, queries=[QUERY, "@PulseDemoHQ"], now=NOW)
    first, other = report.queries
    assert other.error is None and other.pages == 1  # the other query still ran
    assert first.error and "503" in first.error and first.landing is not None
    assert first.landing.inserted == 3  # landing again later is a no-op
    w = mark(engine)
    assert w is not None and w.since_id is None and w.last_error == first.error


def test_an_unreachable_api_keeps_the_watermark(engine: Engine) -> None:
    client, _ = client_for((0, "connection refused"))
    (q,) = listen(engine, client=client, queries=[QUERY], now=NOW).queries
    assert q.error == (f"X search for query {QUERY!r} failed: cannot reach the X API: "
                       "ConnectionError: connection refused")
    w = mark(engine)
    assert w is not None and w.since_id is None and w.last_error == q.error


def test_rate_limited_without_waiting_fails_the_query_and_keeps_going(engine: Engine) -> None:
    client, x = client_for((429, "error_429.json"), (200, "search_page2.json"), wait=False)
    report = listen(engine, client=client, queries=[QUERY, "@PulseDemoHQ"], now=NOW)
    limited, other = report.queries
    assert limited.error is not None and "HTTP 429 Too Many Requests" in limited.error
    assert "rate limited" in limited.error and "resets at" in limited.error
    assert other.error is None and other.newest_id == "1861000000000000002"
    assert mark(engine).since_id is None  # type: ignore[union-attr]
    assert mark(engine, "@PulseDemoHQ").since_id == "1861000000000000002"  # type: ignore[union-attr]
    assert len(x.params) == 2


def test_rate_limited_while_waiting_retries_after_the_reset(engine: Engine) -> None:
    # the window has already reset (x-rate-limit-reset in the past): tweepy asks again at once
    client, x = client_for((429, "error_429.json"), (200, "search_page2.json"), reset_in=-5)
    report = listen(engine, client=client, queries=[QUERY], now=NOW)
    (q,) = report.queries
    assert q.error is None and q.tweets == 2 and len(x.params) == 2
    assert mark(engine).since_id == "1861000000000000002"  # type: ignore[union-attr]


def test_mentions_link_by_contact_handle_account_handle_or_explicit_id(
    engine: Engine, tmp_path: Path,
) -> None:
    land_people(engine, tmp_path)
    client, _ = client_for((200, "search_page1.json"), (200, "search_page2.json"))
    listen(engine, client=client, queries=[QUERY], now=NOW)
    listen(engine, replay=FIXTURES / "mentions_replay.jsonl", now=NOW)

    compute_features(engine, date(2026, 11, 21), negative_terms=NEGATIVE_TERMS)
    feats = load_features(engine, date(2026, 11, 21)).set_index("account_id")
    assert feats.loc["acc-acme", "mentions_28d"] == 3  # its own handle: 2 tweets + 1 replayed
    assert feats.loc["acc-globex", "mentions_28d"] == 1  # a contact's handle
    assert feats.loc["acc-initech", "mentions_28d"] == 1  # an explicit account_id
    # the fans' mentions are linked to nobody, and kept for volume and themes
    assert {"1861000000000000004", "1861000000000000002", "r-3"} <= mention_ids(engine)


def test_without_a_token_the_replay_file_lands_and_again_changes_nothing(
    engine: Engine, tmp_path: Path, pulse_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PULSE_X_BEARER_TOKEN", "X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    land_people(engine, tmp_path)
    (pulse_home / "demo").mkdir()
    shutil.copy(FIXTURES / "mentions_replay.jsonl", pulse_home / "demo" / "mentions.jsonl")

    first = listen(engine, now=NOW)
    assert first.mode == "replay" and first.replay is not None
    assert (first.replay.inserted, first.replay.quarantined) == (3, 0)
    second = listen(engine, now=NOW)
    assert second.replay is not None and (second.replay.inserted, second.replay.unchanged) == (
        0, 3)
    assert mention_ids(engine) == {"r-1", "r-2", "r-3"}
    assert watermarks(engine) == []


def test_the_cli_listens_and_shows_watermarks(engine: Engine, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = pulse_app
    runner = CliRunner()
    land_people(engine, tmp_path)
    replayed = runner.invoke(app, ["social", "listen", "--replay",
                                   str(FIXTURES / "mentions_replay.jsonl"), "-f", "json"])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["replay"]["inserted"] == 3

    client, _ = client_for((401, "error_401.json"))
    monkeypatch.setattr("pulse.listeners.x_listener.resolve_bearer_token", lambda: TOKEN)
    monkeypatch.setattr("pulse.listeners.x_listener.make_client", lambda token: client)
    failed = runner.invoke(app, ["social", "listen", "-q", QUERY])
    assert failed.exit_code == 1
    assert "401" in failed.stderr and QUERY in failed.stderr
    shown = runner.invoke(app, ["social", "watermarks", "-f", "json"])
    (w,) = json.loads(shown.stdout)
    assert w["query"] == QUERY and w["since_id"] is None and "401" in w["last_error"]


@pytest.mark.airflow
def test_pulse_social_replays_mentions_and_skips_or_runs_chatter(
    af_env: dict[str, str], pulse_home: Path, tmp_path: Path,  # noqa: F811
) -> None:
    from pulse.devkit.airflow_runner import run_dag_test
    from pulse.sql.db import make_engine, upgrade

    engine = make_engine()
    upgrade(engine)
    land_people(engine, tmp_path)
    replay = tmp_path / "mentions-replay.jsonl"
    shutil.copy(FIXTURES / "mentions_replay.jsonl", replay)
    env = {k: v for k, v in af_env.items()
           if k not in ("PULSE_X_BEARER_TOKEN", "X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN")}
    env["PULSE_X_REPLAY_FILE"] = str(replay)

    out = run_dag_test("pulse_social", logical_date="2026-06-01", env=env)
    assert "replayed" in out.stdout
    assert mention_ids(engine) == {"r-1", "r-2", "r-3"}
    # new mentions landed: one event for pulse_health; the same file again lands nothing
    # new, so the next quarter-hour publishes nothing (pulse_health does not score again)
    once = Counter({"x-pulse://warehouse/mentions": 1, "x-pulse://warehouse/inputs": 1})
    assert asset_events(env, "pulse_social") == once
    run_dag_test("pulse_social", logical_date="2026-06-01T00:15:00+00:00", env=env)
    assert asset_events(env, "pulse_social") == once
    engine.dispose()
