"""The console's task page through the real app: a CSM's own tasks, overdue first, done and
skipped through the page (CSRF, audit), a viewer refused, a forged token refused, and an
account name holding markup shown as text."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from pulse.models.playbooks import run_playbooks
from pulse.sql.audit import entries
from pulse.web import auth
from pulse.web.app import create_app
from pulse.web.guard import MemoryLimiter
from tests.test_console_auth import PASSWORD, sign_in
from tests.test_playbooks import add_account, score, tasks_of

TODAY = datetime.now(UTC).date()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine, limiter=MemoryLimiter()), base_url="http://127.0.0.1",
                    follow_redirects=False) as c:
        yield c


def world(engine: Engine) -> None:
    """Two tasks of ana's (one overdue), one of bo's; an account name holding a script."""
    add_account(engine, "old", name="Old & Co")
    add_account(engine, "evil", name="<script>alert(1)</script>")
    add_account(engine, "bos", name="Bo's account", csm="bo@example.com")
    early = TODAY - timedelta(days=20)
    score(engine, "old", early, 60, "amber", flags=("champion_gone",))
    run_playbooks(engine, early)
    for a in ("evil", "bos"):
        score(engine, a, TODAY, 60, "amber", flags=("champion_gone",))
    run_playbooks(engine, TODAY)
    auth.add_user(engine, "ana@example.com", "csm", PASSWORD, actor="cli:test")
    auth.add_user(engine, "vi@example.com", "viewer", PASSWORD, actor="cli:test")


def token_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    return found.group(1)


def test_a_csm_sees_their_tasks_overdue_first_and_escaped(engine: Engine,
                                                          client: TestClient) -> None:
    world(engine)
    assert client.get("/tasks").status_code == 303  # sign in first
    assert sign_in(client, "ana@example.com").status_code == 303
    page = client.get("/tasks")
    assert page.status_code == 200
    text = page.text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Old &amp; Co" in text
    assert text.index("Old &amp; Co") < text.index("&lt;script&gt;")  # overdue first
    assert "Overdue" in text and "Bo&#39;s account" not in text  # only ana's book
    assert "Bo&#39;s account" in client.get("/tasks?who=all").text
    assert "script-src" not in page.headers["content-security-policy"]


def test_complete_and_skip_through_the_page(engine: Engine, client: TestClient) -> None:
    world(engine)
    sign_in(client, "ana@example.com")
    token = token_of(client.get("/tasks").text)
    ids = {t["account_id"]: t["task_id"] for t in tasks_of(engine)}
    done = client.post(f"/tasks/{ids['old']}/done",
                       data={"csrf_token": token, "outcome": "met <b>Dee</b>, new champion"})
    assert done.status_code == 303 and done.headers["location"] == "/tasks"
    skipped = client.post(f"/tasks/{ids['evil']}/skip",
                          data={"csrf_token": token, "reason": "test account"})
    assert skipped.status_code == 303
    again = client.post(f"/tasks/{ids['evil']}/done",
                        data={"csrf_token": token, "outcome": "x"})
    assert again.status_code == 409
    empty = client.post(f"/tasks/{ids['bos']}/done", data={"csrf_token": token, "outcome": ""})
    assert empty.status_code == 400
    unknown = client.post("/tasks/999999/done", data={"csrf_token": token, "outcome": "x"})
    assert unknown.status_code == 404 and "no task 999999" in unknown.text
    states = {t["account_id"]: (t["state"], t["outcome"], t["skip_reason"], t["closed_by"])
              for t in tasks_of(engine)}
    assert states == {"old": ("done", "met <b>Dee</b>, new champion", None, "ana@example.com"),
                      "evil": ("skipped", None, "test account", "ana@example.com"),
                      "bos": ("open", None, None, None)}
    page = client.get("/tasks").text
    assert "Outcome: met &lt;b&gt;Dee&lt;/b&gt;, new champion" in page
    assert "Skipped because: test account" in page
    logged = [(e["actor"], e["action"], e["target"], e["reason"])
              for e in entries(engine) if e["action"].startswith("task_")]
    assert logged == [("ana@example.com", "task_skipped", "evil", "test account"),
                      ("ana@example.com", "task_done", "old", "met <b>Dee</b>, new champion")]


def test_a_viewer_and_a_forged_token_are_refused(engine: Engine, client: TestClient) -> None:
    world(engine)
    task = tasks_of(engine)[0]["task_id"]
    sign_in(client, "ana@example.com")
    forged = client.post(f"/tasks/{task}/done", data={"csrf_token": "forged", "outcome": "x"})
    assert forged.status_code == 403
    missing = client.post(f"/tasks/{task}/skip", data={"reason": "x"})
    assert missing.status_code == 403
    client.post("/logout", data={"csrf_token": token_of(client.get("/tasks").text)})

    sign_in(client, "vi@example.com")
    page = client.get("/tasks?who=all")
    assert page.status_code == 200 and "Old &amp; Co" in page.text
    assert "Mark done" not in page.text  # no forms for a viewer
    refused = client.post(f"/tasks/{task}/done",  # the viewer's own, valid token
                          data={"csrf_token": token_of(page.text), "outcome": "x"})
    assert refused.status_code == 403 and "Viewers can look but not act" in refused.text
    assert all(t["state"] == "open" for t in tasks_of(engine))
    assert not [e for e in entries(engine) if e["action"].startswith("task_")]
