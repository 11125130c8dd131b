"""SendGrid's signed Event Webhook: verification, and what the events change.

Posts are signed exactly as SendGrid signs them (ECDSA P-256, SHA-256 over the timestamp
header followed by the raw body; base64 DER signature; the public key given to Pulse as the
console shows it, base64 DER). The app is served for real by uvicorn once.
"""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select

from pulse.core.settings import get_settings
from pulse.listeners.delivery import record_events
from pulse.sql.schema import DeliveryEvent, OutboxMessage, Suppression
from pulse.web.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

OUTBOX = OutboxMessage.__table__


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def public_key_setting(signing_key: ec.EllipticCurvePrivateKey,
                       monkeypatch: pytest.MonkeyPatch) -> str:
    der = signing_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    value = base64.b64encode(der).decode()  # what SendGrid's console shows
    monkeypatch.setenv("PULSE_SENDGRID_WEBHOOK_PUBLIC_KEY", value)
    monkeypatch.setenv("PULSE_WEBHOOK_MAX_AGE_SECONDS", "600")
    get_settings(fresh=True)
    return value


def sign(key: ec.EllipticCurvePrivateKey, raw: bytes, ts: str) -> str:
    return base64.b64encode(key.sign(ts.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()


def signed_headers(key: ec.EllipticCurvePrivateKey, raw: bytes,
                   ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {SIGNATURE_HEADER: sign(key, raw, stamp), TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json"}


def make_app(engine: Engine) -> Any:
    from pulse.web.app import create_app

    return create_app(engine)


def add_outbox(engine: Engine, n: int, *, status: str = "sent") -> list[int]:
    now = datetime.now(UTC)
    rows = [{
        "idempotency_key": f"test:{i}", "kind": "checkin", "account_id": f"A{i}",
        "contact_id": f"C{i}", "incident_id": None, "to_email": f"person{i}@example.com",
        "to_name": None, "from_email": "care@pulse-demo.example", "from_name": None,
        "reply_to": None, "template": "checkin", "subject": "Hello", "context": {},
        "urgent": False, "automated": True, "status": status, "rule": None,
        "rule_detail": None, "not_before": None, "queued_at": now, "claimed_at": now,
        "sent_at": now, "updated_at": now, "attempts": 1, "transport": "sendgrid",
        "provider_message_id": f"xmsg{i}", "last_error": None,
    } for i in range(n)]
    with engine.begin() as conn:
        conn.execute(insert(OUTBOX), rows)
        return list(conn.execute(select(OUTBOX.c.message_id).order_by(OUTBOX.c.message_id))
                    .scalars())


def event(kind: str, message_id: int | None, email: str, n: int, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"email": email, "timestamp": 1_760_000_000 + n, "event": kind,
                         "sg_event_id": f"ev-{kind}-{n}",
                         "sg_message_id": f"xmsg{n}.filterdrecv-1-2-3",
                         "smtp-id": f"<{n}@example>", "category": ["checkin"]}
    if message_id is not None:
        e["outbox_id"] = str(message_id)  # custom args arrive as top-level keys
    e.update(extra)
    return e


def statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(OUTBOX.c.message_id, OUTBOX.c.status)).all())


def suppressions(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Suppression.email, Suppression.reason)).all())


def count_events(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(DeliveryEvent)).scalar_one()


def batch_for(ids: list[int]) -> list[dict[str, Any]]:
    return [
        event("processed", ids[0], "person0@example.com", 0),
        event("delivered", ids[0], "person0@example.com", 1),
        event("open", ids[0], "person0@example.com", 2, useragent="Mozilla", ip="1.2.3.4"),
        event("click", ids[0], "person0@example.com", 3, url="https://x.example/a"),
        event("bounce", ids[1], "Person1@Example.com", 4, type="bounce", status="5.1.1",
              reason="550 5.1.1 no such user", bounce_classification="Invalid Address"),
        event("bounce", ids[2], "person2@example.com", 5, type="blocked", status="4.0.0",
              reason="blocked for now"),
        event("dropped", ids[3], "person3@example.com", 6, reason="Bounced Address"),
        event("dropped", ids[4], "person4@example.com", 7, reason="Invalid"),
        event("delivered", ids[5], "person5@example.com", 8),
        event("spamreport", ids[5], "person5@example.com", 9),
        event("delivered", ids[6], "person6@example.com", 10),
        event("unsubscribe", ids[6], "person6@example.com", 11),
        event("group_unsubscribe", None, "someone@else.example", 12, asm_group_id=7),
    ]


# ---------------------------------------------------------------------- the listener


def test_events_update_outbox_and_suppressions(engine: Engine) -> None:
    ids = add_outbox(engine, 8)
    summary = record_events(engine, batch_for(ids))
    assert summary.recorded == 13 and summary.rejected == 0 and summary.duplicates == 0
    st = statuses(engine)
    assert st[ids[0]] == "delivered"
    assert st[ids[1]] == "bounced"
    assert st[ids[2]] == "sent"  # blocked: recorded, status kept
    assert st[ids[3]] == "failed" and st[ids[4]] == "failed"
    assert st[ids[5]] == "delivered" and st[ids[6]] == "delivered"
    assert st[ids[7]] == "sent"
    assert suppressions(engine) == {
        "person1@example.com": "bounce",
        "person3@example.com": "dropped",
        "person5@example.com": "spamreport",
        "person6@example.com": "unsubscribe",
        "someone@else.example": "unsubscribe",
    }
    with engine.connect() as conn:
        row = conn.execute(select(DeliveryEvent.__table__).where(
            DeliveryEvent.event_id == "ev-bounce-4")).mappings().one()
    assert row["message_id"] == ids[1] and row["provider_message_id"].startswith("xmsg4.")
    assert row["detail"]["status"] == "5.1.1"
    assert row["occurred_at"] == datetime.fromtimestamp(1_760_000_004, UTC)


def test_repeated_events_are_idempotent(engine: Engine) -> None:
    ids = add_outbox(engine, 8)
    first = record_events(engine, batch_for(ids))
    before = (statuses(engine), suppressions(engine), count_events(engine))
    # A resubscribe by hand: a replayed unsubscribe must not bring the suppression back.
    with engine.begin() as conn:
        conn.execute(Suppression.__table__.delete().where(
            Suppression.email == "person6@example.com"))
    again = record_events(engine, batch_for(ids) + batch_for(ids)[:2])
    assert first.recorded == 13
    assert again.recorded == 0 and again.duplicates == 15 and again.suppressions_added == 0
    assert statuses(engine) == before[0]
    assert "person6@example.com" not in suppressions(engine)
    assert count_events(engine) == before[2]


def test_bad_events_are_rejected_with_reasons_not_the_batch(engine: Engine) -> None:
    ids = add_outbox(engine, 1)
    good = event("delivered", ids[0], "person0@example.com", 1)
    bad: list[Any] = [
        "not an object",
        {k: v for k, v in good.items() if k != "sg_event_id"},
        {**good, "sg_event_id": "x1", "event": "teleported"},
        {**good, "sg_event_id": "x2", "email": "nobody"},
        {**good, "sg_event_id": "x3", "timestamp": "yesterday"},
        {**good, "sg_event_id": "x4", "outbox_id": "abc"},
    ]
    summary = record_events(engine, [*bad, good])
    assert summary.recorded == 1 and summary.rejected == 6
    assert summary.reasons == {
        "event is not a JSON object": 1, "missing sg_event_id": 1,
        "unknown event 'teleported'": 1, "missing or invalid email": 1,
        "missing or invalid timestamp": 1, "invalid outbox_id 'abc'": 1,
    }
    assert statuses(engine)[ids[0]] == "delivered"


def test_late_delivered_does_not_undo_a_bounce(engine: Engine) -> None:
    ids = add_outbox(engine, 1)
    record_events(engine, [event("bounce", ids[0], "person0@example.com", 5, type="bounce")])
    record_events(engine, [event("delivered", ids[0], "person0@example.com", 1)])
    assert statuses(engine)[ids[0]] == "bounced"


# ---------------------------------------------------------------------- the endpoint


@pytest.fixture
def client(engine: Engine, public_key_setting: str) -> Iterator[TestClient]:
    with TestClient(make_app(engine), base_url="http://127.0.0.1") as c:
        yield c


def test_signed_post_is_recorded(client: TestClient, engine: Engine,
                                 signing_key: ec.EllipticCurvePrivateKey) -> None:
    ids = add_outbox(engine, 8)
    raw = json.dumps(batch_for(ids)).encode()
    resp = client.post("/webhooks/sendgrid", content=raw,
                       headers=signed_headers(signing_key, raw))
    assert resp.status_code == 200, resp.text
    assert resp.json()["recorded"] == 13
    assert statuses(engine)[ids[1]] == "bounced"
    # SendGrid retries a post it got no 2xx for: the same post again changes nothing.
    again = client.post("/webhooks/sendgrid", content=raw,
                        headers=signed_headers(signing_key, raw))
    assert again.status_code == 200 and again.json()["duplicates"] == 13
    assert count_events(engine) == 13


@pytest.mark.parametrize("attack", ["unsigned", "no_timestamp", "tampered_body",
                                    "tampered_timestamp", "stale", "future", "other_key",
                                    "garbage_signature"])
def test_forged_posts_are_refused(client: TestClient, engine: Engine,
                                  signing_key: ec.EllipticCurvePrivateKey, attack: str) -> None:
    ids = add_outbox(engine, 8)
    raw = json.dumps(batch_for(ids)).encode()
    now = int(time.time())
    headers = signed_headers(signing_key, raw, now)
    body = raw
    if attack == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif attack == "no_timestamp":
        del headers[TIMESTAMP_HEADER]
    elif attack == "tampered_body":
        body = raw.replace(b'"bounce"', b'"delivered"', 1)
        assert body != raw
    elif attack == "tampered_timestamp":
        headers[TIMESTAMP_HEADER] = str(now + 1)
    elif attack == "stale":
        headers = signed_headers(signing_key, raw, now - 601)
    elif attack == "future":
        headers = signed_headers(signing_key, raw, now + 3600)
    elif attack == "other_key":
        headers[SIGNATURE_HEADER] = sign(ec.generate_private_key(ec.SECP256R1()), raw, str(now))
    elif attack == "garbage_signature":
        headers[SIGNATURE_HEADER] = "not base64!"
    resp = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert resp.status_code == 403, resp.text
    assert count_events(engine) == 0
    assert set(statuses(engine).values()) == {"sent"}
    assert suppressions(engine) == {}


def test_no_key_configured_refuses_everything(engine: Engine,
                                              signing_key: ec.EllipticCurvePrivateKey,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    get_settings(fresh=True)
    raw = b"[]"
    with TestClient(make_app(engine), base_url="http://127.0.0.1") as c:
        resp = c.post("/webhooks/sendgrid", content=raw, headers=signed_headers(signing_key, raw))
    assert resp.status_code == 403 and "not configured" in resp.json()["detail"]


def test_signed_but_not_an_array_is_400(client: TestClient,
                                        signing_key: ec.EllipticCurvePrivateKey) -> None:
    raw = b'{"event": "delivered"}'
    resp = client.post("/webhooks/sendgrid", content=raw, headers=signed_headers(signing_key, raw))
    assert resp.status_code == 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_served_for_real_by_uvicorn(engine: Engine, public_key_setting: str,
                                    signing_key: ec.EllipticCurvePrivateKey) -> None:
    import uvicorn

    ids = add_outbox(engine, 8)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(engine), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        raw = json.dumps(batch_for(ids)).encode()
        url = f"http://127.0.0.1:{port}/webhooks/sendgrid"
        with httpx.Client(timeout=10) as http:
            forged = http.post(url, content=raw, headers={"Content-Type": "application/json"})
            assert forged.status_code == 403
            assert count_events(engine) == 0
            ok = http.post(url, content=raw, headers=signed_headers(signing_key, raw))
        assert ok.status_code == 200, ok.text
        assert ok.json()["recorded"] == 13 and ok.json()["suppressions_added"] == 5
        assert statuses(engine)[ids[0]] == "delivered"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
