"""The CSAT survey pages, served for real by uvicorn and hit with httpx on SQLite and
PostgreSQL: a GET records nothing, a POST records once, another rating changes the one
response, bad / expired / foreign links record nothing, comments are stored raw and shown
escaped, cross-site posts are refused, clients are rate-limited, and the OpenAPI schema
lists the routes."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, insert, select

from pulse.core.errors import (
    CommentTooLong,
    InvalidRating,
    NotRated,
    SurveyExpired,
    SurveyNotFound,
    WrongContact,
)
from pulse.core.settings import get_settings
from pulse.listeners.surveys import MAX_COMMENT_CHARS, clean_comment, record_comment, record_rating
from pulse.outreach.tokens import sign
from pulse.sql.schema import Account, Contact, Survey, SurveyResponse
from pulse.web.app import create_app
from pulse.web.guard import MemoryLimiter, rule

NOW = datetime.now(UTC).replace(microsecond=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """`serve(**env)`: the app on `engine`, served by uvicorn on a free port with the
    environment `env` (PULSE_...) when it was built; returns the base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**env: str) -> str:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("PULSE_PUBLIC_BASE_URL", base)
        monkeypatch.setenv("PULSE_RATE_LIMIT_PER_MINUTE", "100000")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings(fresh=True)
        srv = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port,
                                            log_level="warning", lifespan="off"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        servers.append((srv, thread))
        deadline = time.monotonic() + 10
        while not srv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return base

    yield start
    for srv, thread in servers:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(serve: Callable[..., str]) -> str:
    return serve()


QUESTION = "How satisfied were you with the help you got on ticket T-1?"


def _world(engine: Engine) -> None:
    """Survey 1 to con-a, 2 to con-b (open), 3 to con-a skipped, 4 to con-a closed."""
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__).values(
            account_id="acc-1", name="Northwind", mrr=100, currency="USD", landed_at=NOW,
            updated_at=NOW))
        conn.execute(insert(Contact.__table__), [
            {"contact_id": c, "account_id": "acc-1", "email": f"{c}@nw.example", "name": c,
             "timezone": "UTC", "opted_out": False, "landed_at": NOW, "updated_at": NOW}
            for c in ("con-a", "con-b")])
        conn.execute(insert(Survey.__table__), [
            {"survey_key": f"ticket:T-{i}", "trigger": "ticket", "ticket_id": f"T-{i}",
             "account_id": "acc-1", "contact_id": contact, "channel": "email",
             "question": QUESTION, "status": status, "due_at": NOW - timedelta(days=age),
             "created_at": NOW - timedelta(days=age),
             "expires_at": NOW - timedelta(days=age) + timedelta(days=14)}
            for i, contact, status, age in ((1, "con-a", "queued", 1), (2, "con-b", "queued", 1),
                                            (3, "con-a", "skipped", 1),
                                            (4, "con-a", "queued", 15))])


def link(survey: int, contact: str, rating: int, **kw: Any) -> str:
    return "/s/" + sign("survey", {"s": survey, "c": contact, "r": rating}, **kw)


def _responses(engine: Engine) -> list[dict[str, Any]]:
    r = SurveyResponse.__table__
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(r).order_by(r.c.survey_id))]


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no comment form on the page"
    return found.group(1)


# --------------------------------------------------------------------------- the listener


def test_record_rating_creates_changes_and_refuses(engine: Engine) -> None:
    _world(engine)
    first = record_rating(engine, 1, "con-a", 4, now=NOW)
    assert first.outcome == "created" and first.response.rating_changes == 0
    assert record_rating(engine, 1, "con-a", 4, now=NOW + timedelta(minutes=1)).outcome \
        == "unchanged"
    later = NOW + timedelta(hours=2)
    changed = record_rating(engine, 1, "con-a", 2, now=later)
    assert changed.outcome == "changed"
    assert (changed.response.rating, changed.response.rating_changes) == (2, 1)
    assert changed.response.first_rated_at == NOW and changed.response.rated_at == later

    for args, error in (((99, "con-a", 4), SurveyNotFound), ((3, "con-a", 4), SurveyNotFound),
                        ((1, "con-b", 4), WrongContact), ((4, "con-a", 4), SurveyExpired),
                        ((1, "con-a", 6), InvalidRating), ((1, "con-a", True), InvalidRating)):
        with pytest.raises(error):
            record_rating(engine, *args, now=NOW)
    with pytest.raises(SurveyExpired):  # 14 days after it was made (expires_at)
        record_rating(engine, 1, "con-a", 5, now=NOW + timedelta(days=13, seconds=1))
    with pytest.raises(NotRated):
        record_comment(engine, 2, "con-b", "hello", now=NOW)
    assert len(_responses(engine)) == 1


def test_comments_are_cleaned_and_limited() -> None:
    assert clean_comment("  a\r\nb\rc\td\x00e\x1b[31m\u202eF\x7f  ") == "a\nb\nc de[31mF"
    assert clean_comment("x" * MAX_COMMENT_CHARS) == "x" * MAX_COMMENT_CHARS
    with pytest.raises(CommentTooLong) as long:
        clean_comment("x" * 100_000)
    assert str(long.value) == "a comment may have at most 2,000 characters (this one has 100,000)"


# --------------------------------------------------------------------------- the pages


def test_a_get_records_nothing_and_the_confirm_post_records_once(engine: Engine,
                                                                 server: str) -> None:
    _world(engine)
    path = link(1, "con-a", 4)
    with httpx.Client(base_url=server, timeout=10) as http:
        page = http.get(path)  # what a mail scanner's prefetch does
        assert page.status_code == 200
        assert "Confirm: 4 - Satisfied" in page.text and QUESTION in page.text
        assert f'<form method="post" action="{path}">' in page.text
        assert sorted(re.findall(r'name="rating" value="(\d)"', page.text)) == \
            ["1", "2", "3", "4", "5"]
        assert "<script" not in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src" not in csp and "'unsafe-inline'" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        style = re.search(r"<style>(.*?)</style>", page.text, re.S)
        assert style is not None  # the one inline style is allowed by its hash, nothing else
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in csp
        assert _responses(engine) == []

        done = http.post(path, data={"rating": "4"})  # the Confirm button
        assert done.status_code == 200, done.text
        assert "Thank you!" in done.text and "We have recorded your answer." in done.text
        again = http.post(path)  # a double click; no form field: the link's rating
        assert again.status_code == 200 and "We already had this answer." in again.text
        assert "Your answer: <strong>4 - Satisfied" in http.get(path).text
    [row] = _responses(engine)
    assert (row["survey_id"], row["account_id"], row["contact_id"], row["rating"],
            row["rating_changes"], row["comment"]) == (1, "acc-1", "con-a", 4, 0, None)


def test_concurrent_double_clicks_make_one_response(engine: Engine, server: str) -> None:
    _world(engine)
    path = link(1, "con-a", 5)
    start = threading.Barrier(16)

    def click(_: int) -> int:
        with httpx.Client(base_url=server, timeout=30) as http:
            start.wait()
            return http.post(path).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(click, range(16)))
    assert statuses == [200] * 16
    [row] = _responses(engine)
    assert (row["rating"], row["rating_changes"]) == (5, 0)

    # clicks on different ratings racing each other: still one response, every change counted
    paths = [link(2, "con-b", r) for r in (1, 2, 3, 4) * 4]
    start = threading.Barrier(16)

    def race(i: int) -> int:
        with httpx.Client(base_url=server, timeout=30) as http:
            start.wait()
            return http.post(paths[i]).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(race, range(16))) == [200] * 16
    rows = _responses(engine)
    assert [r["survey_id"] for r in rows] == [1, 2]
    assert rows[1]["rating"] in (1, 2, 3, 4) and 0 <= rows[1]["rating_changes"] <= 15


def test_a_second_rating_changes_the_one_response(engine: Engine, server: str) -> None:
    _world(engine)
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.post(link(1, "con-a", 4)).status_code == 200
        [first] = _responses(engine)
        time.sleep(0.01)
        page = http.get(link(1, "con-a", 2))  # a later click on another rating in the email
        assert "Your answer so far: <strong>4" in page.text and "Confirm: 2" in page.text
        assert _responses(engine) == [first]  # still only the GET
        changed = http.post(link(1, "con-a", 2))
        assert "We have changed your answer." in changed.text
        [second] = _responses(engine)
        # an alternative button on the page posts rating=5 to the same link
        assert http.post(link(1, "con-a", 2), data={"rating": "5"}).status_code == 200
    [third] = _responses(engine)
    assert (second["rating"], second["rating_changes"]) == (2, 1)
    assert (third["rating"], third["rating_changes"]) == (5, 2)
    assert second["first_rated_at"] == first["first_rated_at"] == third["first_rated_at"]
    assert second["landed_at"] == first["landed_at"]
    assert second["rated_at"] > first["rated_at"]


def _forge(token: str, **changes: Any) -> str:
    """The token's payload changed, its MAC kept: what an attacker without the key can do."""
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["d"].update(changes)
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + mac


def test_bad_expired_and_foreign_links_record_nothing(engine: Engine, server: str) -> None:
    _world(engine)
    good = link(1, "con-a", 4)[3:]
    body, mac = good.split(".")
    cases = {
        "tampered mac": (f"/s/{body}.{mac[:-2]}xy", 400, "This link does not work"),
        "forged payload": ("/s/" + _forge(link(2, "con-b", 4)[3:], s=1), 400, "does not work"),
        "forged rating": ("/s/" + _forge(good, r=1), 400, "does not work"),
        "malformed": ("/s/not-a-token", 400, "does not work"),
        "unsubscribe token": ("/s/" + sign("unsubscribe", {"c": "con-a"}), 400, "not work"),
        "rating out of range": (link(1, "con-a", 9), 400, "does not work"),
        "expired link": (link(1, "con-a", 4, now=NOW - timedelta(days=15)), 410,
                         "This survey has closed"),
        "closed survey": (link(4, "con-a", 4), 410, "This survey has closed"),
        "another contact": (link(1, "con-b", 4), 404, "We could not find this survey"),
        "unknown survey": (link(999, "con-a", 4), 404, "We could not find this survey"),
        "skipped survey": (link(3, "con-a", 4), 404, "We could not find this survey"),
    }
    pages: dict[str, str] = {}
    with httpx.Client(base_url=server, timeout=10) as http:
        for name, (path, status, text) in cases.items():
            for method in ("GET", "POST"):
                res = http.request(method, path)
                assert res.status_code == status, (name, method, res.text)
                assert text in res.text, name
                assert "<form" not in res.text, name
                assert res.headers["cache-control"] == "no-store"
                pages[name] = res.text
        # a link for another contact looks exactly like an unknown survey: nothing leaks
        assert pages["another contact"] == pages["unknown survey"] == pages["skipped survey"]
        bad_choice = http.post(link(1, "con-a", 4), data={"rating": "7"})
        assert bad_choice.status_code == 400 and "not one of the ratings" in bad_choice.text
    assert _responses(engine) == []


def test_comments_are_stored_raw_shown_escaped_and_limited(engine: Engine,
                                                           server: str) -> None:
    _world(engine)
    path = link(1, "con-a", 3)
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>\r\nSecond line\x00'
    with httpx.Client(base_url=server, timeout=10) as http:
        first = http.post(path)
        assert http.cookies.get("pulse_survey_csrf")
        set_cookie = first.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        saved = http.post(f"{path}/comment", data={"comment": attack, "csrf": _csrf(first.text)})
        assert saved.status_code == 200, saved.text
        assert "Thank you for your comment." in saved.text
        assert "<script>alert" not in saved.text and "<img src=x" not in saved.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x" in saved.text
        [row] = _responses(engine)
        assert row["comment"] == '<script>alert("x")</script><img src=x onerror=alert(1)>\n' \
                                 "Second line"
        assert row["commented_at"] is not None

        shown = http.get(path)  # the page shows it escaped again, in the form to edit it
        assert "&lt;script&gt;" in shown.text and "<script>" not in shown.text

        csrf = _csrf(shown.text)
        long = http.post(f"{path}/comment", data={"comment": "é" * 100_000, "csrf": csrf})
        assert long.status_code == 422
        assert "at most 2,000 characters (this one has 100,000)" in long.text
        huge = http.post(f"{path}/comment", data={"comment": "x" * 1_100_000, "csrf": csrf})
        assert huge.status_code == 413 and "Too much text" in huge.text
        empty = http.post(f"{path}/comment", data={"comment": " \x00 ", "csrf": csrf})
        assert empty.status_code == 422
        assert _responses(engine)[0]["comment"] == row["comment"]  # unchanged by refusals

        exact = http.post(f"{path}/comment", data={"comment": "y" * 2000, "csrf": csrf})
        assert exact.status_code == 200
        assert _responses(engine)[0]["comment"] == "y" * 2000

        # a comment on a survey not rated yet
        other = link(2, "con-b", 4)
        page = http.get(other)
        assert "<textarea" not in page.text  # no comment form before a rating
        from pulse.web.surveys import csrf_token

        res = http.post(f"{other}/comment", data={
            "comment": "hi", "csrf": csrf_token(http.cookies["pulse_survey_csrf"], other[3:])})
        assert res.status_code == 409
    assert [r["survey_id"] for r in _responses(engine)] == [1]


def test_cross_site_posts_are_refused(engine: Engine, server: str) -> None:
    _world(engine)
    path = link(1, "con-a", 4)
    with httpx.Client(base_url=server, timeout=10) as http:
        # a rating posted by another site's page
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Referer": "https://evil.example/page"}):
            res = http.post(path, headers=headers)
            assert res.status_code == 403 and "request was refused" in res.text
        assert _responses(engine) == []
        ok = http.post(path, headers={"Origin": server, "Sec-Fetch-Site": "same-origin"})
        assert ok.status_code == 200
        csrf = _csrf(ok.text)
        cookie = http.cookies["pulse_survey_csrf"]

        url = f"{path}/comment"
        refused = {
            "no csrf field": (http, {"comment": "x"}, {}),
            "wrong csrf": (http, {"comment": "x", "csrf": csrf[:-2] + "AA"}, {}),
            "other link's csrf": (http, {"comment": "x", "csrf": _csrf(
                http.post(link(1, "con-a", 5), data={"rating": "4"}).text)}, {}),
            "foreign origin": (http, {"comment": "x", "csrf": csrf},
                               {"Origin": "https://evil.example"}),
            "cross-site fetch": (http, {"comment": "x", "csrf": csrf},
                                 {"Sec-Fetch-Site": "same-site"}),
        }
        for name, (client, data, headers) in refused.items():
            res = client.post(url, data=data, headers=headers)
            assert res.status_code == 403, name
        # another browser (no cookie: SameSite=Strict keeps it off cross-site posts)
        with httpx.Client(base_url=server, timeout=10) as stranger:
            assert stranger.post(url, data={"comment": "x", "csrf": csrf}).status_code == 403
        assert _responses(engine)[0]["comment"] is None

        # our own page: `no-referrer` makes browsers send `Origin: null`
        assert http.cookies["pulse_survey_csrf"] == cookie
        res = http.post(url, data={"comment": "fine", "csrf": csrf},
                        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
        assert res.status_code == 200
    assert _responses(engine)[0]["comment"] == "fine"


def test_public_pages_are_rate_limited_per_client(engine: Engine,
                                                  serve: Callable[..., str]) -> None:
    _world(engine)
    base = serve(PULSE_RATE_LIMIT_PER_MINUTE="6", PULSE_RATE_LIMIT_BURST="3")
    path = link(1, "con-a", 4)
    with httpx.Client(base_url=base, timeout=10) as http:
        assert [http.get(path).status_code for _ in range(3)] == [200] * 3
        limited = http.post(path)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 10
        assert "Please slow down" in limited.text
        assert limited.headers["cache-control"] == "no-store"
        assert http.get("/u/whatever").status_code == 429  # unsubscribe pages too
        assert http.get("/healthz").status_code == 200  # not a public page
    assert _responses(engine) == []


def test_the_token_bucket_refills() -> None:
    limiter, limit = MemoryLimiter(), rule(60, 2)
    assert [limiter.take("1.2.3.4", limit, 0.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("1.2.3.4", limit, 0.0) == pytest.approx(1.0)
    assert limiter.take("5.6.7.8", limit, 0.0) == 0.0  # per client
    assert limiter.take("1.2.3.4", limit, 1.0) == 0.0
    assert all(limiter.take("x", rule(0), 0.0) == 0.0 for _ in range(1000))


def test_the_openapi_schema_lists_the_survey_routes(engine: Engine,
                                                    serve: Callable[..., str]) -> None:
    with httpx.Client(base_url=serve(PULSE_WEB_API_DOCS="true"), timeout=10) as http:
        res = http.get("/openapi.json")
    assert res.status_code == 200
    schema = res.json()
    paths = schema["paths"]
    assert set(paths["/s/{token}"]) == {"get", "post"}
    assert set(paths["/s/{token}/comment"]) == {"post"}
    assert {"400", "404", "410", "429"} <= set(paths["/s/{token}"]["get"]["responses"])
    assert {"403", "413"} <= set(paths["/s/{token}"]["post"]["responses"])
    assert "422" in paths["/s/{token}/comment"]["post"]["responses"]
    body = paths["/s/{token}/comment"]["post"]["requestBody"]["content"]
    ref = body["application/x-www-form-urlencoded"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == {"comment", "csrf"}
    assert "/u/{token}" in paths and "/healthz" in paths  # the rest is still there


def test_the_load_benchmark_checks_every_response(pulse_home: object) -> None:
    """`pulse bench survey` in miniature: `pulse serve` as a subprocess, concurrent clients
    with double clicks and changed ratings, and the warehouse checked afterwards."""
    from rich.console import Console

    from pulse.devkit.bench.survey import run_survey_bench

    figure = run_survey_bench(surveys=60, clients=6, workers=2, postgres_url=None,
                              double_share=0.5, change_share=0.5, seed=3, fmt="json",
                              console=Console(quiet=True))
    assert figure.requests == 60 + figure.double_clicks + figure.rating_changes
    assert figure.double_clicks > 10 and figure.rating_changes > 10
    assert figure.statuses == {"200": figure.requests}
    assert (figure.responses, figure.lost, figure.duplicated, figure.wrong) == (60, 0, 0, 0)
    assert figure.p99_ms >= figure.p50_ms > 0 and figure.requests_per_second > 0
