"""Secrets: the one lookup of setting (from the environment) -> Airflow Connection."""
from __future__ import annotations

import logging

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
    if value:
        return value
    return airflow_connection_password(conn_id)
