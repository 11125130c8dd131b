"""Sign-in to the CSM console, through the real app: local users with argon2 passwords,
server-side sessions, cookie flags, idle expiry, rate limits, CSRF, roles, the trusted
header of an SSO proxy, the audit log, and `pulse user` reading the password from stdin."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from pulse.core.errors import ConsoleUserError
from pulse.core.settings import get_settings
from pulse.sql.audit import entries
from pulse.sql.schema import ConsoleSession, ConsoleUser
from pulse.web import auth
from pulse.web.app import create_app
from pulse.web.guard import MemoryLimiter
from tests.pulse_cli import piped_env, run_pulse

PASSWORD = "violet tractor harbour 42"


def make_app(engine: Engine) -> FastAPI:
    """The real app, plus one action route of the kind the console's pages will have."""
    app = create_app(engine, limiter=MemoryLimiter())

    @app.post("/test-action")
    def act(who: Annotated[auth.Identity, Depends(auth.acting)]) -> dict[str, str]:
        return {"done_by": who.email}

    return app


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(make_app(engine), base_url="http://127.0.0.1",
                    follow_redirects=False) as c:
        yield c


def login_token(client: TestClient, path: str = "/login") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": login_token(client)})


def csrf_of(client: TestClient) -> str:
    home = client.get("/")
    assert home.status_code == 200, home.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert found
    return found.group(1)


def actions(engine: Engine) -> list[tuple[str, str, str | None]]:
    return [(e["actor"], e["action"], (e["detail"] or {}).get("why"))
            for e in reversed(entries(engine))]


@pytest.mark.real_password_cost
def test_sign_in_and_out_with_audit(engine: Engine, client: TestClient) -> None:
    auth.add_user(engine, "Ana@Example.com", "csm", PASSWORD, actor="cli:test",
                  reason="new hire")
    first = client.get("/")
    assert first.status_code == 303 and first.headers["location"] == "/login"
    filtered = client.get("/?band=red&csm=all")  # back to the same view after sign-in
    assert filtered.headers["location"] == "/login?next=%2F%3Fband%3Dred%26csm%3Dall"

    wrong = sign_in(client, "ana@example.com", "not the password at all")
    assert wrong.status_code == 401 and "do not match" in wrong.text
    assert auth.SESSION_COOKIE not in client.cookies
    unknown = sign_in(client, "nobody@example.com")
    assert unknown.status_code == 401 and unknown.text.count("do not match") == 1

    ok = sign_in(client, "ANA@example.com")
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = next(c for c in ok.headers.get_list("set-cookie")
                  if c.startswith(auth.SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    session_id = client.cookies[auth.SESSION_COOKIE]
    with engine.connect() as conn:  # the warehouse keeps only the id's hash
        stored = conn.execute(select(ConsoleSession.session_hash)).scalars().all()
    assert len(stored) == 1 and session_id not in stored[0] and len(stored[0]) == 64

    home = client.get("/")
    assert home.status_code == 200
    assert "ana@example.com" in home.text and "(csm" in home.text
    assert "Nothing has been scored yet" in home.text  # the risk list, of an empty warehouse

    token = csrf_of(client)
    assert client.post("/logout").status_code == 403  # no CSRF token
    assert client.post("/logout", data={"csrf_token": token + "x"}).status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/").status_code == 303
    with engine.connect() as conn:
        assert conn.execute(select(ConsoleSession.session_hash)).first() is None

    assert actions(engine) == [
        ("cli:test", "user_add", None),
        ("ana@example.com", "sign_in_failed", "wrong password"),
        ("unknown", "sign_in_failed", "unknown user"),
        ("ana@example.com", "sign_in", None),
        ("ana@example.com", "sign_out", None),
    ]
    added = entries(engine, action="user_add")[0]
    assert added["target"] == "ana@example.com" and added["reason"] == "new hire"
    assert added["detail"] == {"role": "csm", "sign_in": "password"}
    assert entries(engine, action="sign_in")[0]["address"] == "testclient"
    with engine.connect() as conn:
        stored_hash = conn.execute(select(ConsoleUser.password_hash)).scalar_one()
    # argon2id with RFC 9106's second recommended profile: 64 MiB, three passes
    assert stored_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored_hash


def test_a_disabled_user_is_refused_and_their_sessions_end(engine: Engine,
                                                           client: TestClient) -> None:
    auth.add_user(engine, "bo@example.com", "admin", PASSWORD, actor="cli:test")
    assert sign_in(client, "bo@example.com").status_code == 303
    assert client.get("/").status_code == 200
    assert auth.disable_user(engine, "bo@example.com", actor="cli:test", reason="left")
    assert client.get("/").status_code == 303  # the open session ended with the user
    refused = sign_in(client, "bo@example.com")
    assert refused.status_code == 401
    assert actions(engine)[-1] == ("bo@example.com", "sign_in_failed", "user disabled")
    assert not auth.disable_user(engine, "bo@example.com", actor="cli:test")


def test_sign_in_attempts_are_rate_limited_per_user_and_per_address(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_LOGIN_USER_PER_MINUTE", "3")
    monkeypatch.setenv("PULSE_LOGIN_PER_MINUTE", "5")
    get_settings(fresh=True)
    auth.add_user(engine, "cy@example.com", "csm", PASSWORD, actor="cli:test")
    auth.add_user(engine, "di@example.com", "csm", PASSWORD, actor="cli:test")
    app = make_app(engine)
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as c:
        for _ in range(3):
            assert sign_in(c, "cy@example.com", "wrong wrong wrong").status_code == 401
        limited = sign_in(c, "cy@example.com")  # the right password, but too many tries
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert auth.SESSION_COOKIE not in c.cookies
        assert sign_in(c, "di@example.com").status_code == 303  # another user: fine
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as c:
        assert sign_in(c, "di@example.com").status_code == 429  # the address's 6th try
    failed = [a for a in actions(engine) if a[1] == "sign_in_failed"]
    assert len(failed) == 3  # refused attempts were never checked


def test_cookies_are_secure_over_https(engine: Engine) -> None:
    auth.add_user(engine, "ed@example.com", "viewer", PASSWORD, actor="cli:test")
    with TestClient(make_app(engine), base_url="https://127.0.0.1",
                    follow_redirects=False) as c:
        ok = sign_in(c, "ed@example.com")
    assert ok.status_code == 303
    cookies = ok.headers.get_list("set-cookie")
    assert cookies and all("Secure" in c and "HttpOnly" in c and "SameSite=Lax" in c
                           for c in cookies)
    assert "strict-transport-security" in ok.headers


def test_a_session_expires_when_idle(engine: Engine, client: TestClient) -> None:
    auth.add_user(engine, "fay@example.com", "csm", PASSWORD, actor="cli:test")
    assert sign_in(client, "fay@example.com").status_code == 303
    idle = get_settings().session_idle_minutes
    t = ConsoleSession.__table__

    def last_seen(minutes_ago: float) -> None:
        with engine.begin() as conn:
            conn.execute(update(t).values(
                last_seen_at=datetime.now(UTC) - timedelta(minutes=minutes_ago)))

    last_seen(idle - 1)
    assert client.get("/").status_code == 200  # used in time: still in, and seen now
    with engine.connect() as conn:
        seen = conn.execute(select(t.c.last_seen_at)).scalar_one()
    assert datetime.now(UTC) - seen < timedelta(minutes=1)
    last_seen(idle + 1)
    gone = client.get("/")
    assert gone.status_code == 303 and gone.headers["location"] == "/login"
    with engine.connect() as conn:
        assert conn.execute(select(t.c.session_hash)).first() is None

    # however busy, a session ends PULSE_SESSION_MAX_HOURS after sign-in
    assert sign_in(client, "fay@example.com").status_code == 303
    assert client.get("/").status_code == 200
    with engine.begin() as conn:
        conn.execute(update(t).values(created_at=datetime.now(UTC) - timedelta(
            hours=get_settings().session_max_hours, minutes=1)))
    assert client.get("/").status_code == 303


def test_state_changes_need_the_sessions_csrf_token_and_a_role_that_acts(
        engine: Engine, client: TestClient) -> None:
    auth.add_user(engine, "gil@example.com", "viewer", PASSWORD, actor="cli:test")
    auth.add_user(engine, "hal@example.com", "csm", PASSWORD, actor="cli:test")
    assert client.post("/test-action").status_code == 401  # nobody signed in

    # the sign-in form itself: a forged or missing token is refused
    login_token(client)
    forged = client.post("/login", data={"email": "hal@example.com", "password": PASSWORD,
                                         "csrf_token": "0" * 64})
    missing = client.post("/login", data={"email": "hal@example.com", "password": PASSWORD})
    assert forged.status_code == 403 and missing.status_code == 403
    assert auth.SESSION_COOKIE not in client.cookies

    assert sign_in(client, "hal@example.com").status_code == 303
    token = csrf_of(client)
    assert client.post("/test-action").status_code == 403
    assert client.post("/test-action", data={"csrf_token": "forged"}).status_code == 403
    assert client.post("/test-action", headers={"X-CSRF-Token": token[:-1]}).status_code == 403
    done = client.post("/test-action", data={"csrf_token": token})
    assert done.status_code == 200 and done.json() == {"done_by": "hal@example.com"}
    assert client.post("/test-action", headers={"X-CSRF-Token": token}).status_code == 200

    client.post("/logout", data={"csrf_token": token})
    assert sign_in(client, "gil@example.com").status_code == 303
    viewer_token = csrf_of(client)
    assert viewer_token != token  # the token belongs to the session
    refused = client.post("/test-action", data={"csrf_token": viewer_token})
    assert refused.status_code == 403 and "Viewers can look but not act" in refused.text
    assert client.post("/test-action", data={"csrf_token": token}).status_code == 403


def test_the_trusted_header_counts_only_from_the_proxys_addresses(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_AUTH_HEADER", "X-Forwarded-Email")
    monkeypatch.setenv("PULSE_AUTH_PROXIES", '["10.0.0.0/8", "fd00::/8"]')
    get_settings(fresh=True)
    auth.add_user(engine, "ida@example.com", "csm", None, actor="cli:test")
    app = make_app(engine)
    header = {"X-Forwarded-Email": "Ida@Example.com"}
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False,
                    client=("192.0.2.7", 40000)) as outsider:
        assert outsider.get("/", headers=header).status_code == 303  # ignored: not signed in
        assert auth.SESSION_COOKIE not in outsider.cookies
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False,
                    client=("10.1.2.3", 40000)) as proxied:
        home = proxied.get("/", headers=header)
        assert home.status_code == 200 and "ida@example.com" in home.text
        assert "single sign-on" in home.text
        assert proxied.get("/", headers=header).status_code == 200  # the same session
        token = csrf_of_with(proxied, header)
        assert proxied.post("/test-action", headers={**header, "X-CSRF-Token": token}
                            ).status_code == 200
        stranger = proxied.get("/", headers={"X-Forwarded-Email": "eve@example.com"})
        assert stranger.status_code == 303  # unknown to Pulse: no access, Ida's session gone
        page = proxied.get("/login", headers={"X-Forwarded-Email": "eve@example.com"})
        assert "eve@example.com has no access" in page.text
    # a password cannot open an SSO-only user
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as c:
        assert sign_in(c, "ida@example.com", "").status_code in (401, 422)
    with engine.connect() as conn:
        sessions = conn.execute(select(ConsoleSession.via)).scalars().all()
    assert sessions == []
    assert [a for a in actions(engine) if a[1] != "user_add"][:2] == [
        ("ida@example.com", "sign_in", None), ("unknown", "sign_in_failed", "unknown user")]


def csrf_of_with(client: TestClient, headers: dict[str, str]) -> str:
    home = client.get("/", headers=headers)
    found = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert found
    return found.group(1)


def test_pages_escape_what_users_typed(engine: Engine, client: TestClient) -> None:
    auth.add_user(engine, "<b>x</b>@example.com", "admin", PASSWORD, actor="cli:test")
    assert sign_in(client, "<b>x</b>@example.com").status_code == 303
    home = client.get("/")
    assert "&lt;b&gt;x&lt;/b&gt;@example.com" in home.text and "<b>x</b>" not in home.text
    assert "Signed in now" in home.text  # an admin sees who is signed in
    page = client.get("/login?next=//evil.example")
    assert page.status_code == 303 and page.headers["location"] == "/"
    with TestClient(client.app, base_url="http://127.0.0.1", follow_redirects=False) as anon:
        form = anon.get('/login?next=/x"><script>alert(1)</script>')
        assert form.status_code == 200 and "<script>" not in form.text
        assert 'value="/x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in form.text
        assert "form-action 'self'" in form.headers["content-security-policy"]
        away = anon.post("/login", data={"email": "<b>x</b>@example.com", "password": PASSWORD,
                                         "csrf_token": login_token(anon),
                                         "next": "https://evil.example/"})
        assert away.status_code == 303 and away.headers["location"] == "/"


def test_weak_passwords_are_refused() -> None:
    for weak in ("", "x7q", "password1234", "aaaaaaaaaaaaaaaa", "joan@example.com-2026",
                 "Password123!"):
        with pytest.raises(ConsoleUserError) as caught:
            auth.check_password(weak, "joan@example.com")
        assert not weak or weak not in str(caught.value)
    auth.check_password(PASSWORD, "joan@example.com")


def _pulse(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = piped_env()
    return run_pulse(*args, input=stdin, env=env, timeout=120)


def test_pulse_user_reads_the_password_from_stdin(engine: Engine,
                                                  client: TestClient) -> None:
    weak = _pulse("user", "add", "kit@example.com", "--role", "csm", stdin="kit\n")
    assert weak.returncode == 1 and "too short" in weak.stderr
    empty = _pulse("user", "add", "kit@example.com", "--role", "csm", stdin="")
    assert empty.returncode == 1 and "empty" in empty.stderr
    added = _pulse("user", "add", "Kit@Example.com", "--role", "csm", "--reason", "onboarding",
                   stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    again = _pulse("user", "add", "kit@example.com", "--role", "admin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert sign_in(client, "kit@example.com").status_code == 303
    listed = _pulse("user", "list", "--format", "csv", stdin="")
    assert listed.stdout.splitlines()[1].startswith("kit@example.com,csm,password,active,")
    disabled = _pulse("user", "disable", "kit@example.com", "--reason", "left", stdin="")
    assert disabled.returncode == 0 and client.get("/").status_code == 303
    log = [(e["action"], e["target"], e["reason"]) for e in reversed(entries(engine))
           if e["actor"].startswith("cli:")]
    assert log == [("user_add", "kit@example.com", "onboarding"),
                   ("user_disable", "kit@example.com", "left")]
    assert PASSWORD not in added.stdout + added.stderr
