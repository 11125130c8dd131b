"""Signed, expiring tokens for public links (unsubscribe now, CSAT surveys later).

A token is `PAYLOAD.MAC`, both URL-safe base64 without padding:

* `PAYLOAD` is compact JSON `{"p": purpose, "d": data, "e": expiry (unix seconds)}`. Put
  ids in `data`, never an email address or anything else about the customer: the payload
  is signed, not encrypted.
* `MAC` is HMAC-SHA256 over `PAYLOAD` with the secret key, compared in constant time.

The key is `PULSE_SECRET_KEY`; without it a random key is made once and kept in
`$PULSE_HOME/secret.key` (mode 0600). Changing the key invalidates every link in flight.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pulse.core.errors import InvalidArgumentError, TokenError
from pulse.core.settings import get_settings

KEY_FILE = "secret.key"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_key() -> bytes:
    """The signing key: the setting, else the key file (created once, mode 0600)."""
    configured = get_settings().secret_key
    if configured:
        return configured.encode("utf-8")
    path: Path = get_settings().resolved_home() / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    key = path.read_text().strip()
    if not key:
        raise TokenError("malformed", f"the key file {path} is empty: delete it to make a new one")
    return key.encode("utf-8")


def _mac(payload_b64: str, key: bytes) -> str:
    return _b64(hmac.new(key, payload_b64.encode("ascii"), hashlib.sha256).digest())


def sign(purpose: str, data: dict[str, Any], *, ttl_days: float | None = None,
         now: datetime | None = None) -> str:
    """A token for `purpose` carrying `data` (ids only), valid `ttl_days` (default: settings)."""
    if not purpose:
        raise InvalidArgumentError("a token needs a purpose")
    ttl = get_settings().link_ttl_days if ttl_days is None else ttl_days
    expires = (now or datetime.now(UTC)) + timedelta(days=ttl)
    payload = json.dumps({"p": purpose, "d": data, "e": int(expires.timestamp())},
                         separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    body = _b64(payload.encode("ascii"))
    return f"{body}.{_mac(body, secret_key())}"


def verify(purpose: str, token: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The data of a valid token for `purpose`; else `TokenError` saying why."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 2048 \
            or not token.isascii():  # a token is URL-safe base64: anything else is malformed
        raise TokenError("malformed", "this link is not complete")
    body, mac = token.split(".")
    if not hmac.compare_digest(_mac(body, secret_key()).encode("ascii"),
                               mac.encode("ascii", errors="replace")):
        raise TokenError("tampered", "this link is not valid")
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        raise TokenError("malformed", "this link is not complete") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("d"), dict):
        raise TokenError("malformed", "this link is not complete")
    if payload.get("p") != purpose:
        raise TokenError("wrong_purpose", "this link is meant for something else")
    current = (now or datetime.now(UTC)).timestamp()
    if not isinstance(payload.get("e"), int) or current > payload["e"]:
        raise TokenError("expired", "this link has expired")
    return payload["d"]
