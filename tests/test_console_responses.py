"""Issue 15: unanswered public complaints reach the CSM console, through the real app on SQLite
and PostgreSQL.

`/responses` lists the negative customer posts still without a brand reply past their
channel's expectation, longest waiting first, with the post's link (http and https only), the
account when known, how long it has waited, the channel and the state of its alert; a viewer
reads it. The account's page shows its own above the timeline. Hostile text stays text."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from pulse.listeners.landing import land_file
from pulse.outreach.response_alerts import queue_unanswered_alerts
from pulse.sql.schema import Mention
from pulse.web import auth
from pulse.web.app import create_app
from pulse.web.guard import MemoryLimiter
from tests.test_console_auth import PASSWORD, sign_in

EVIL = '<script>alert("x")</script> the dashboard is down, awful and useless'


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine, limiter=MemoryLimiter()), base_url="http://127.0.0.1",
                    follow_redirects=False) as c:
        yield c


def _ago(**kw: float) -> str:
    """An instant that long before now (the pages read the clock: so do the posts)."""
    return (datetime.now(UTC) - timedelta(**kw)).isoformat()


def _world(engine: Engine, folder: Path) -> None:
    """Acme (X handle acme_ops) and posts of every kind: waiting, answered, too recent to be
    late, not negative, older than a week, hostile."""
    (folder / "accounts.csv").write_text("account_id,name,mrr,x_handle\n"
                                         "acc-1,Acme & Sons,100,acme_ops\n"
                                         "acc-2,Initech,50,\n", encoding="utf-8")
    posts = [
        {"mention_id": "p1", "created_at": _ago(hours=3), "author_handle": "acme_ops",
         "text": "@PulseDemoHQ exports are broken again, terrible",
         "url": "https://x.com/acme_ops/status/1"},
        {"mention_id": "p2", "created_at": _ago(minutes=40), "author_handle": "stranger",
         "text": EVIL, "url": "https://x.com/stranger/status/2"},
        {"mention_id": "p3", "created_at": _ago(hours=2), "author_handle": "acme_ops",
         "text": "@PulseDemoHQ the login page is broken, awful", "account_id": "acc-1"},
        {"mention_id": "r3", "created_at": _ago(hours=1, minutes=50),
         "author_handle": "PulseDemoHQ", "text": "@acme_ops sorry, fixing it now",
         "in_reply_to_id": "p3", "from_brand": True},
        {"mention_id": "p4", "created_at": _ago(minutes=5), "author_handle": "bo",
         "text": "@PulseDemoHQ reports are down, awful and useless"},
        {"mention_id": "p5", "created_at": _ago(hours=2), "author_handle": "acme_ops",
         "text": "@PulseDemoHQ love the new dashboards, thank you so much"},
        {"mention_id": "p6", "created_at": _ago(days=10), "author_handle": "acme_ops",
         "text": "@PulseDemoHQ billing is broken and support is useless, terrible"},
    ]
    (folder / "mentions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in posts),
                                           encoding="utf-8")
    for name in ("accounts.csv", "mentions.jsonl"):
        result = land_file(engine, folder / name)
        assert result.quarantined == 0, (name, result.reasons)
    # the contract lets only http(s) links land; a row written otherwise is still no link
    with engine.begin() as conn:
        conn.execute(update(Mention.__table__).where(Mention.mention_id == "p2")
                     .values(url="javascript:alert(1)"))


def _rows(html: str) -> list[str]:
    table = re.search(r'<table id="unanswered-complaints">(.*?)</table>', html, re.S)
    assert table, html
    return re.findall(r'<tr id="complaint-\d+">(.*?)</tr>', table.group(1), re.S)


def test_the_page_lists_the_open_unanswered_complaints(engine: Engine, client: TestClient,
                                                       tmp_path: Path) -> None:
    _world(engine, tmp_path)
    assert client.get("/responses").status_code == 303  # sign in first
    auth.add_user(engine, "vi@example.com", "viewer", PASSWORD, actor="cli:test")
    sign_in(client, "vi@example.com")
    page = client.get("/responses")
    assert page.status_code == 200
    assert re.search(r'<a href="/responses" id="nav-responses" aria-current="page">', page.text)
    assert "<script" not in page.text and "script-src" not in page.headers[
        "content-security-policy"]
    rows = _rows(page.text)
    # p1 (3 h) then p2 (40 min): p3 answered, p4 within X's 15 minutes, p5 not negative,
    # p6 older than the week
    assert len(rows) == 2
    first, second = rows
    assert "exports are broken again" in first and "3 h" in first
    assert "expected within 15 min" in first and "<td>x</td>" in first
    assert '<a href="/accounts/acc-1">Acme &amp; Sons</a>' in first
    assert '<a href="https://x.com/acme_ops/status/1" rel="noopener noreferrer nofollow">' \
           "open the post</a>" in first
    assert "not alerted yet" in first
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in second
    assert re.search(r"\b4\d min<br>", second) and "not known" in second  # the clock runs
    assert "javascript:" not in page.text and "open the post" not in second
    assert "<strong>2</strong> negative public posts of the last 7 days wait" in page.text
    # a longer window reaches the post of ten days ago
    month = _rows(client.get("/responses?days=30").text)
    assert len(month) == 3 and "billing is broken" in month[0] and "10 days" in month[0]
    assert len(_rows(client.get("/responses?days=999").text)) == 2  # not a choice: 7


def test_the_alert_state_and_the_account_page(engine: Engine, client: TestClient,
                                              tmp_path: Path) -> None:
    _world(engine, tmp_path)
    assert queue_unanswered_alerts(engine) == 2  # p1 and p2, the last 2 days
    auth.add_user(engine, "vi@example.com", "viewer", PASSWORD, actor="cli:test")
    sign_in(client, "vi@example.com")
    first, second = _rows(client.get("/responses").text)
    assert "queued" in first and "to social@pulse-demo.example" in first
    page = client.get("/accounts/acc-1")
    assert page.status_code == 200
    block = page.text.split('id="unanswered-items"')[1].split("</ul>")[0]
    items = re.findall(r"<li>(.*?)</li>", block, re.S)
    assert len(items) == 1  # p1 only: p3 was answered, p5 is no complaint, p6 is older
    assert "unanswered 3 h" in items[0] and "exports are broken again" in items[0]
    assert "alert queued to social@pulse-demo.example" in items[0]
    assert 'href="https://x.com/acme_ops/status/1"' in items[0]
    other = client.get("/accounts/acc-2")
    assert 'id="unanswered-none"' in other.text and 'id="unanswered-items"' not in other.text
    # once the brand answers, the post leaves both
    reply = tmp_path / "reply"
    reply.mkdir()
    (reply / "mentions.jsonl").write_text(json.dumps({
        "mention_id": "r1", "created_at": _ago(minutes=1), "author_handle": "PulseDemoHQ",
        "text": "@acme_ops on it", "in_reply_to_id": "p1", "from_brand": True}) + "\n",
        encoding="utf-8")
    land_file(engine, reply / "mentions.jsonl")
    assert len(_rows(client.get("/responses").text)) == 1
    assert 'id="unanswered-none"' in client.get("/accounts/acc-1").text


def test_a_broken_expectations_file_is_said_not_a_broken_page(
        engine: Engine, client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulse.core.settings import get_settings

    _world(engine, tmp_path)
    bad = tmp_path / "expect.yaml"
    bad.write_text("x: soon\n", encoding="utf-8")
    monkeypatch.setenv("PULSE_RESPONSES_EXPECTATIONS", str(bad))
    get_settings(fresh=True)
    auth.add_user(engine, "vi@example.com", "viewer", PASSWORD, actor="cli:test")
    sign_in(client, "vi@example.com")
    page = client.get("/responses")
    assert page.status_code == 503 and "invalid value for &#39;x&#39;" in page.text
    account = client.get("/accounts/acc-1")
    assert account.status_code == 200 and 'id="unanswered-problem"' in account.text
