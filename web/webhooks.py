"""Inbound webhooks: SendGrid's signed Event Webhook.

`POST /webhooks/sendgrid` takes SendGrid's batch of events exactly as posted. Before anything
is parsed, the signature is checked the way SendGrid signs: ECDSA (P-256) with SHA-256 over
the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body bytes, the
base64 DER signature in `X-Twilio-Email-Event-Webhook-Signature`, verified with the public key
from the SendGrid console (`PULSE_SENDGRID_WEBHOOK_PUBLIC_KEY`, base64 DER or PEM). A post
that is unsigned, tampered with, older than `PULSE_WEBHOOK_MAX_AGE_SECONDS` or stamped in the
future is refused with 403 and changes nothing. Signed events go to
`listeners.delivery.record_events`; bad events inside a signed batch are counted and skipped
(answered 200, so SendGrid does not retry them forever).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import Engine

from pulse.core.errors import ConfigError
from pulse.core.settings import get_settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_FUTURE_SECONDS = 300  # clock skew we tolerate for a timestamp ahead of ours
MAX_BODY_BYTES = 16 * 1024 * 1024


class DeliveryAnswer(BaseModel):
    """What one accepted post did."""

    received: int
    recorded: int
    duplicates: int
    rejected: int
    reasons: dict[str, int]
    status_updates: dict[str, int]
    suppressions_added: int


def get_engine(request: Request) -> Engine:
    """The warehouse: `app.state.engine` when the app has one (tests, `create_app(engine)`),
    else one made from the settings and kept on the app."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        from pulse.sql.db import make_engine

        engine = make_engine()
        request.app.state.engine = engine
    return engine


@lru_cache(maxsize=4)
def load_public_key(value: str) -> Any:
    """SendGrid's verification key: base64 DER as the console shows it, or PEM."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    text = value.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
    else:
        key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("the Event Webhook key is not an elliptic-curve public key")
    return key


def verify_signature(public_key: Any, raw: bytes, signature: str, timestamp: str) -> bool:
    """True when `signature` signs `timestamp + raw` under `public_key` (ECDSA, SHA-256)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        der = base64.b64decode(signature.strip(), validate=True)
        public_key.verify(der, timestamp.encode("utf-8") + raw, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _forbid(why: str) -> HTTPException:
    log.warning("refused a SendGrid webhook post: %s", why)
    return HTTPException(status_code=403, detail=why)


def check_post(raw: bytes, signature: str | None, timestamp: str | None, *,
               now: float | None = None) -> None:
    """Raise 403 unless the post is signed by SendGrid's key, unaltered and fresh."""
    settings = get_settings()
    if not settings.sendgrid_webhook_public_key.strip():
        raise _forbid("webhook signature verification is not configured "
                      "(PULSE_SENDGRID_WEBHOOK_PUBLIC_KEY)")
    if not signature or not timestamp:
        raise _forbid(f"unsigned post: {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required")
    try:
        stamped = int(timestamp.strip())
    except ValueError:
        raise _forbid("the signature timestamp is not a number of seconds") from None
    now = time.time() if now is None else now
    age = now - stamped
    if age > settings.webhook_max_age_seconds:
        raise _forbid(f"stale post: signed {age:.0f} s ago "
                      f"(limit {settings.webhook_max_age_seconds} s)")
    if -age > MAX_FUTURE_SECONDS:
        raise _forbid(f"post stamped {-age:.0f} s in the future")
    try:
        key = load_public_key(settings.sendgrid_webhook_public_key)
    except (ValueError, binascii.Error, TypeError) as exc:
        log.error("PULSE_SENDGRID_WEBHOOK_PUBLIC_KEY cannot be read: %s", exc)
        raise _forbid("webhook verification key unreadable") from None
    if not verify_signature(key, raw, signature, timestamp):
        raise _forbid("signature does not match the body and timestamp")


@router.post(
    "/sendgrid",
    response_model=DeliveryAnswer,
    summary="SendGrid Event Webhook (signed)",
    responses={403: {"description": "Unsigned, tampered with, or stale"},
               400: {"description": "Signed, but not a JSON array of events"}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "array", "items": {"type": "object"}}}}}},
)
async def sendgrid_events(
    request: Request, engine: Annotated[Engine, Depends(get_engine)]
) -> DeliveryAnswer:
    """Verify, then record SendGrid delivery and engagement events."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail="post larger than 16 MB")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail="post larger than 16 MB")
    check_post(raw, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER))
    try:
        events = json.loads(raw)
    except ValueError:
        raise HTTPException(status_code=400, detail="body is not JSON") from None
    if not isinstance(events, list):
        raise HTTPException(status_code=400, detail="expected a JSON array of events")
    from pulse.listeners.delivery import record_events

    summary = await run_in_threadpool(record_events, engine, events)
    return DeliveryAnswer(**{k: v for k, v in summary.to_dict().items()
                             if k in DeliveryAnswer.model_fields})
