"""The CSM console's account page behind signed digest links, served for real: without a
session it shows the one account its link names, read-only, escaped, with a health chart;
other, tampered or expired links show nothing, and no link at all asks to sign in."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, update

from pulse.models.flags import compute_flags
from pulse.models.health import score_date
from pulse.outreach.links import CONSOLE, account_url
from pulse.outreach.tokens import sign
from pulse.sql.schema import Account
from pulse.web.console import health_chart
from tests.test_flags import D, land_world
from tests.test_web_unsubscribe import server  # noqa: F401  (fixture)


def test_health_chart_scales_scores_into_the_box() -> None:
    chart = health_chart([{"as_of": "2026-06-01", "score": 100.0, "band": "green"},
                          {"as_of": "2026-06-08", "score": 0.0, "band": "red"}],
                         width=100, height=50)
    assert chart["points"] == "8.0,8.0 92.0,42.0"
    assert health_chart([{"as_of": "2026-06-01", "score": 50.0}])["points"] == ""


def test_a_digest_link_opens_its_account_and_nothing_else(
        engine: Engine, tmp_path: Path, server: str) -> None:  # noqa: F811
    land_world(engine, tmp_path)
    with engine.begin() as conn:  # a hostile name must come out escaped
        conn.execute(update(Account).where(Account.account_id == "acc-silent")
                     .values(name="<script>alert(1)</script> Silent Co"))
    score_date(engine, D - timedelta(days=7), basis="occurred")
    score_date(engine, D)
    compute_flags(engine, D)

    url = account_url("acc-silent")
    assert url.startswith(f"{server}/accounts/acc-silent?t=")
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Silent Co" in page.text
    assert "<script>" not in page.text
    assert "silently unhappy" in page.text and "events down" in page.text
    assert "silent_dissatisfied" not in page.text  # the flag in words, not its id
    assert len(re.findall(r"<circle ", page.text)) == 2  # two scored dates on the chart
    assert page.headers["cache-control"] == "no-store"

    token = url.split("?t=")[1]
    other = httpx.get(f"{server}/accounts/acc-loud?t={token}", timeout=10)
    assert other.status_code == 403 and "Loud Co" not in other.text
    tampered = httpx.get(f"{server}/accounts/acc-silent?t={token[:-2]}xx", timeout=10)
    assert tampered.status_code == 400 and "Silent Co" not in tampered.text
    expired = sign(CONSOLE, {"a": "acc-silent"}, ttl_days=1,
                   now=datetime(2020, 1, 1, tzinfo=UTC))
    gone = httpx.get(f"{server}/accounts/acc-silent?t={expired}", timeout=10)
    assert gone.status_code == 410 and "Silent Co" not in gone.text
    bare = httpx.get(f"{server}/accounts/acc-silent", timeout=10)  # no link: sign in first
    assert bare.status_code == 303
    assert bare.headers["location"] == "/login?next=%2Faccounts%2Facc-silent"
