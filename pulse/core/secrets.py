"""Secrets from Airflow Connections, for keys that are not in the environment."""
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
