"""Secrets: the one lookup (setting, then Airflow Connection), their shape, and redaction.

Every error text that is stored (`outbox.last_error`, `x_watermarks.last_error`, the ingest
run log) or printed (the CLI, logs) goes through `redact`, which replaces every secret this
process knows (API keys, the bearer token, the signing key, database passwords) and anything
shaped like a SendGrid key or an `Authorization` header with `[REDACTED]`.
"""
from __future__ import annotations

import logging
import re
import threading

from pulse.core.errors import ConfigError

log = logging.getLogger(__name__)


def airflow_connection_password(conn_id: str) -> str | None:
    """The password of an Airflow Connection, or None if Airflow or the Connection is absent.

    Airflow is imported only here and only when asked (it is heavy). The value is never logged.
    """
    try:
        from airflow.sdk import BaseHook
    except Exception as exc:  # ImportError, or a broken Airflow configuration
        log.debug("Airflow not importable for connection %s: %s", conn_id, type(exc).__name__)
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends
        log.debug("Airflow connection %s not found: %s", conn_id, type(exc).__name__)
        return None
    password = (conn.password or "").strip()
    return password or None


def resolve_secret(configured: str | None, conn_id: str) -> str | None:
    """A secret: the configured value (a setting, read from the environment or `.env`), else
    the password of the Airflow Connection `conn_id`; None when neither is set."""
    value = (configured or "").strip()
    if not value:
        value = (airflow_connection_password(conn_id) or "").strip()
    if value:
        remember_secret(value)
    return value or None


REDACTED = "[REDACTED]"
#: Secrets shorter than this are not redacted by value (they would match ordinary words).
_MIN_SECRET = 6
_SHAPES = (
    re.compile(r"SG\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # SendGrid API keys
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer\s+|basic\s+)?[^\s'\",;]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9%._~+/=\-]{12,}"),
)
_known: set[str] = set()
_known_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Add a secret that `redact` must hide from now on (each line of it, too)."""
    if not value:
        return
    with _known_lock:
        for part in (value, *value.splitlines(), value.strip()):
            if len(part.strip()) >= _MIN_SECRET:
                _known.add(part.strip())


def _configured_secrets() -> list[str]:
    from pulse.core.settings import get_settings

    s = get_settings()
    found = [s.sendgrid_api_key, s.x_bearer_token, s.secret_key, s.sendgrid_webhook_public_key]
    for url in (s.database_url,):
        match = re.match(r"^[^:]+://[^:/@]*:([^@]*)@", url or "")
        if match:
            found.append(match.group(1))
    return [v for v in found if v]


def redact(text: str | None) -> str:
    """`text` with every known secret and every secret-shaped token replaced by [REDACTED]."""
    if not text:
        return text or ""
    for value in _configured_secrets():
        remember_secret(value)
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        text = text.replace(value, REDACTED)
    text = _SHAPES[0].sub(REDACTED, text)
    text = _SHAPES[1].sub(lambda m: m.group(1) + (m.group(2) or "") + REDACTED, text)
    return _SHAPES[2].sub(lambda m: m.group(1) + REDACTED, text)


def check_secret_shape(value: str, *, what: str) -> str:
    """`value` stripped, or ConfigError naming `what` (never the value) when it cannot be a
    key: control characters (a newline from a pasted file), spaces or non-ASCII."""
    cleaned = value.strip()
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in cleaned):
        remember_secret(value)
        raise ConfigError(f"{what} is malformed: it holds spaces, line breaks or characters "
                          f"outside printable ASCII (its value is not shown)")
    return cleaned


class RedactingFilter(logging.Filter):
    """A logging filter that runs every record's message through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
