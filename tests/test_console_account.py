"""smoke"""
from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.test_console_auth import sign_in
from tests.test_console_risk import ANA, client, scored  # noqa: F401
from tests.test_risklist import world  # noqa: F401


def test_smoke(scored: Engine, client: TestClient) -> None:  # noqa: F811
    from pulse.outreach.checkins import queue_daily
    from tests.test_flags import D
    queue_daily(scored, D)
    sign_in(client, ANA)
    got = client.get("/accounts/acc-silent")
    assert got.status_code == 200, got.text
    open("/tmp/acct/page.html", "w").write(got.text)
