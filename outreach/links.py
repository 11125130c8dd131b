"""Signed links into the CSM console (account pages), for digests and alerts."""
from __future__ import annotations

from urllib.parse import quote

from pulse.core.settings import get_settings
from pulse.outreach.tokens import sign

CONSOLE = "console"  # the token purpose of console links


def account_url(account_id: str, *, ttl_days: int | None = None) -> str:
    """`{public_base_url}/accounts/{id}?t=TOKEN`: opens that one account, until it expires."""
    token = sign(CONSOLE, {"a": account_id}, ttl_days=ttl_days)
    base = get_settings().public_base_url.rstrip("/")
    return f"{base}/accounts/{quote(account_id, safe='')}?t={token}"
