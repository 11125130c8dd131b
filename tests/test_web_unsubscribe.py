"""Signed links and the one-click unsubscribe, served for real by uvicorn and hit with httpx:
a GET only asks, a POST suppresses the address (once), the next message to that contact is
suppressed; bad, expired and other contacts' links change nothing for this one."""
from __future__ import annotations

import base64
import json
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, insert, select

from pulse.core.errors import TokenError
from pulse.core.settings import get_settings
from pulse.outreach.outbox import Draft, queue
from pulse.outreach.outbox_send import send_due
from pulse.outreach.tokens import sign, verify
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import Account, Contact, OutboxMessage, Suppression
from pulse.web.app import create_app

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- tokens


def test_tokens_are_signed_expiring_and_bound_to_a_purpose(pulse_home: Path) -> None:
    token = sign("unsubscribe", {"c": "con-1"}, ttl_days=14, now=NOW)
    assert verify("unsubscribe", token, now=NOW + timedelta(days=13)) == {"c": "con-1"}
    key_file = pulse_home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # made once, private
    assert sign("unsubscribe", {"c": "con-1"}, ttl_days=14, now=NOW) == token

    with pytest.raises(TokenError) as expired:
        verify("unsubscribe", token, now=NOW + timedelta(days=14, seconds=1))
    assert expired.value.reason == "expired"
    with pytest.raises(TokenError) as wrong:
        verify("survey", token, now=NOW)
    assert wrong.value.reason == "wrong_purpose"

    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert payload == {"p": "unsubscribe", "d": {"c": "con-1"}, "e": payload["e"]}
    forged = dict(payload, d={"c": "con-2"})
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    other = "B" if mac[-1] != "B" else "C"  # "A" was the last character 1 time in 16
    for bad in (f"{forged_body}.{mac}", f"{body}.{mac[:-1]}{other}", token + "x", "nonsense", "",
                f"{body}.{mac[:-1]}\u00e9"):
        with pytest.raises(TokenError) as tampered:
            verify("unsubscribe", bad, now=NOW)
        assert tampered.value.reason in ("tampered", "malformed")


def test_a_configured_key_is_used_and_no_key_file_is_made(
        pulse_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = sign("unsubscribe", {"c": "con-1"}, now=NOW)
    monkeypatch.setenv("PULSE_SECRET_KEY", "another-key-" + "x" * 32)
    get_settings(fresh=True)
    with pytest.raises(TokenError):  # a new key invalidates links in flight
        verify("unsubscribe", token, now=NOW)
    (pulse_home / "secret.key").unlink()
    assert verify("unsubscribe", sign("unsubscribe", {"c": "c"}, now=NOW), now=NOW) == {"c": "c"}
    assert not (pulse_home / "secret.key").exists()


# --------------------------------------------------------------------------- the web app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app served by uvicorn on a free port; public links point at it."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("PULSE_PUBLIC_BASE_URL", base)
    get_settings(fresh=True)
    srv = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port,
                                        log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield base
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _world(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__).values(
            account_id="acc-1", name="Northwind", mrr=100, currency="USD", landed_at=NOW,
            updated_at=NOW))
        conn.execute(insert(Contact.__table__), [
            {"contact_id": c, "account_id": "acc-1", "email": e, "name": n, "timezone": "UTC",
             "opted_out": False, "landed_at": NOW, "updated_at": NOW}
            for c, e, n in (("con-a", "Ana@NW.example", "Ana"), ("con-b", "bo@nw.example", "Bo"))])


def _checkin(contact: str, email: str, key: str) -> Draft:
    return Draft(kind="checkin", idempotency_key=key, template="checkin", to_email=email,
                 context={"account_name": "Northwind", "csm_name": "Kim Lee",
                          "csm_email": "kim.lee@pulse.example"},
                 contact_id=contact, account_id="acc-1")


def _suppressions(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(Suppression.email, Suppression.reason, Suppression.source)
            .order_by(Suppression.email))]


def _link_in_mail(folder: Path, message_id: int) -> str:
    with (folder / f"{message_id}.eml").open("rb") as fh:
        msg = BytesParser(policy=policy.default).parse(fh)
    header = re.match(r"<([^>]+)>", msg["List-Unsubscribe"])
    assert header is not None
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert f'href="{header.group(1)}"' in html  # the footer link is the header's link
    return header.group(1)


def test_one_click_unsubscribe_from_a_real_email(engine: Engine, server: str,
                                                 tmp_path: Path) -> None:
    _world(engine)
    folder = tmp_path / "outbox"
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)  # not quiet
    queue(engine, [_checkin("con-a", "ana@nw.example", "c1"),
                   _checkin("con-b", "bo@nw.example", "c2")], now=noon)
    send_due(engine, FileTransport(folder), now=noon)
    link_a = _link_in_mail(folder, 1)
    link_b = _link_in_mail(folder, 2)
    assert link_a.startswith(f"{server}/u/") and "ana" not in link_a.lower()

    with httpx.Client(timeout=10) as http:
        assert http.get(f"{server}/healthz").json() == {"status": "ok"}
        page = http.get(link_a)
        assert page.status_code == 200
        assert re.search(r'<form method="post" action="/u/[^"]+">', page.text)
        assert "a***@nw.example" in page.text and "Ana@NW.example" not in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert _suppressions(engine) == []  # a prefetching scanner unsubscribes nobody

        # RFC 8058: what a mail client posts for List-Unsubscribe-Post
        done = http.post(link_a, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        again = http.post(link_a)
        assert again.status_code == 200
        assert _suppressions(engine) == [("ana@nw.example", "unsubscribe", "link")]
        assert "You are unsubscribed" in http.get(link_a).text

    queue(engine, [_checkin("con-a", "ana@nw.example", "c3"),
                   _checkin("con-b", "bo@nw.example", "c4")], now=noon)
    later = noon + timedelta(days=8)  # past the cap window of the first pair
    report = send_due(engine, FileTransport(folder), now=later)
    with engine.connect() as conn:
        got = {r.idempotency_key: (r.status, r.rule) for r in conn.execute(
            select(OutboxMessage.idempotency_key, OutboxMessage.status, OutboxMessage.rule)
            .where(OutboxMessage.idempotency_key.in_(("c3", "c4"))))}
    assert got == {"c3": ("suppressed", "suppressed"), "c4": ("sent", None)}
    assert report.sent == 1
    assert link_b != link_a


def test_bad_expired_and_foreign_links_change_nothing_for_this_contact(
        engine: Engine, server: str) -> None:
    _world(engine)
    good_a = sign("unsubscribe", {"c": "con-a"})
    body, mac = good_a.split(".")
    expired = sign("unsubscribe", {"c": "con-a"}, now=datetime.now(UTC) - timedelta(days=30))
    survey = sign("survey", {"c": "con-a"})
    with httpx.Client(timeout=10) as http:
        for token, status in ((f"{body}.{mac[:-2]}xx", 400), (f"{body}x.{mac}", 400),
                              ("not-a-token", 400), (expired, 410), (survey, 400)):
            for method in ("GET", "POST"):
                res = http.request(method, f"{server}/u/{token}")
                assert res.status_code == status, (token, method, res.text)
                assert "<form" not in res.text
        unknown = http.post(f"{server}/u/{sign('unsubscribe', {'c': 'con-zzz'})}")
        assert unknown.status_code == 404
        assert _suppressions(engine) == []

        # B's link unsubscribes B, never A
        res = http.post(f"{server}/u/{sign('unsubscribe', {'c': 'con-b'})}")
        assert res.status_code == 200 and "b***@nw.example" in res.text
    assert _suppressions(engine) == [("bo@nw.example", "unsubscribe", "link")]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Suppression)).scalar_one() == 1


def test_a_link_for_mail_to_a_bare_address_names_the_message(engine: Engine,
                                                             server: str) -> None:
    queue(engine, [Draft(kind="checkin", idempotency_key="bare", template="checkin",
                         to_email="Zed@Example.com",
                         context={"account_name": "Zed Co", "csm_name": "Kim Lee",
                                  "csm_email": "kim.lee@pulse.example"})])
    token = sign("unsubscribe", {"m": 1})
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{server}/u/{token}").status_code == 200
    assert _suppressions(engine) == [("zed@example.com", "unsubscribe", "link")]
