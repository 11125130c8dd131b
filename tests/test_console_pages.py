"""The console's report pages through the real app, on SQLite and PostgreSQL: `/feedback`
(the week's digests per team, week and team chosen by plain GET parameters) and `/csat`
(exact figures, the server-drawn accessible SVG trend and its table, comments low ratings
first), both for signed-in users only, readable by a viewer, hostile text shown as text."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select

from pulse.models.feedback import refresh_insights
from pulse.sql.schema import TextInsight
from pulse.web import auth
from pulse.web.app import create_app
from pulse.web.guard import MemoryLimiter
from tests.test_console_auth import PASSWORD, sign_in
from tests.test_csat import EVIL, _answered
from tests.test_feedback import SCRIPT, _land


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine, limiter=MemoryLimiter()), base_url="http://127.0.0.1",
                    follow_redirects=False) as c:
        yield c


def _users(engine: Engine) -> None:
    auth.add_user(engine, "vi@example.com", "viewer", PASSWORD, actor="cli:test")


def _cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each row of the table with this id."""
    found = re.search(rf'<table id="{table_id}"[^>]*>(.*?)</table>', html, re.S)
    assert found, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip()
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


@pytest.mark.parametrize("path", ["/feedback", "/csat"])
def test_the_pages_need_a_signed_in_user(engine: Engine, client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    _users(engine)
    sign_in(client, "vi@example.com")
    page = client.get(path)
    assert page.status_code == 200
    assert 'id="console-nav"' in page.text
    for href in ("/", "/tasks", "/feedback", "/csat"):
        assert f'<a href="{href}"' in page.text
    assert re.search(rf'<a href="{path}" id="nav-\w+" aria-current="page">', page.text)
    assert "script-src" not in page.headers["content-security-policy"]
    assert "<script" not in page.text


def test_feedback_page_shows_the_weeks_digests(engine: Engine, client: TestClient) -> None:
    _land(engine)
    assert refresh_insights(engine, now=datetime(2026, 11, 23, 6, tzinfo=UTC)) == 11
    _users(engine)
    sign_in(client, "vi@example.com")
    page = client.get("/feedback?week=2026-11-18")  # any day of the week of 16 November
    assert page.status_code == 200
    text = page.text
    assert "Week of <strong>2026-11-16</strong> to 2026-11-22" in text
    assert '<option value="2026-11-16" selected>' in text
    assert 'id="feedback-themes"' in text
    teams = set(re.findall(r'<table id="themes-([\w-]+)"', text))
    with engine.connect() as conn:
        routed = set(conn.execute(select(TextInsight.team).where(
            TextInsight.created_at >= datetime(2026, 11, 16, tzinfo=UTC),
            TextInsight.created_at < datetime(2026, 11, 23, tzinfo=UTC)).distinct()).scalars())
    assert teams == {re.sub(r"[^a-z0-9]+", "-", t.lower()) for t in routed}
    # the CSV export theme: five reports (two distinct texts) from Globex, Acme and Initech,
    # MRR counted once per account (2,500 + 1,000 + 400); one report the week before
    rows = [r for t in teams for r in _cells(text, f"themes-{t}")]
    export = [r for r in rows if "export" in r[0].lower() and "csv" in r[0].lower()]
    assert len(export) == 1, rows
    assert export[0][1:5] == ["5", "3", "3,900", "▲ up 4 (from 1)"]
    assert "5 raw items in 2 distinct texts" in export[0][0]
    # nothing was left out (no brand post, nothing off-topic), and the page says so
    assert re.search(r'id="feedback-dropped">[^<]*<strong>0</strong> posts not about the '
                     r'product, <strong>0</strong> posts by the brand', text)
    # the hostile mention is text, never markup; quotes are scrubbed
    assert "<script>alert(1)</script>" not in text and "onerror=alert(1)>" not in text
    assert "maria.lopez@acme.example" not in text and "+1 415 555 0100" not in text
    assert 'href="/accounts/acc-b"' in text

    one = next(iter(routed))
    alone = client.get(f"/feedback?week=2026-11-16&team={one}").text
    assert set(re.findall(r'<table id="themes-([\w-]+)"', alone)) == {
        re.sub(r"[^a-z0-9]+", "-", one.lower())}
    assert f'<option value="{one}" selected>' in alone
    empty = client.get("/feedback?week=2026-10-05").text
    assert 'id="feedback-none"' in empty and "themes-" not in empty
    with engine.connect() as conn:  # reading the page wrote nothing
        assert conn.execute(select(func.count()).select_from(TextInsight).where(
            TextInsight.theme_key.is_not(None))).scalar_one() == 0
    # the digests kept for the page follow the insights: gone from the table, gone from the page
    assert client.get("/feedback?week=2026-11-16").text.count('<table id="themes-') == len(teams)
    with engine.begin() as conn:
        conn.execute(delete(TextInsight).where(
            TextInsight.created_at >= datetime(2026, 11, 16, tzinfo=UTC)))
    gone = client.get("/feedback?week=2026-11-16").text
    assert "themes-" not in gone



def test_feedback_page_with_nothing_classified(engine: Engine, client: TestClient) -> None:
    _users(engine)
    sign_in(client, "vi@example.com")
    page = client.get("/feedback?week=not-a-date&team=<b>")
    assert page.status_code == 200 and 'id="feedback-empty"' in page.text
    assert "<b>" not in page.text


def test_csat_page_figures_chart_and_comments(engine: Engine, client: TestClient,
                                              tmp_path: Path) -> None:
    _answered(engine, tmp_path)  # 4 sent in two weeks; ratings 5, 2 (EVIL comment) and 4
    _users(engine)
    sign_in(client, "vi@example.com")
    page = client.get("/csat?weeks=4&end=2026-07-19")
    assert page.status_code == 200
    text = page.text
    summary = dict((k, v) for k, v in _cells(text, "csat-summary"))
    assert summary["Surveys sent"] == "4" and summary["Responses"] == "3"
    assert summary["Response rate"] == "75%"
    assert summary["CSAT (share of 4 and 5)"] == "67% (2 of 3)"
    assert summary["Mean rating"] == "3.7 of 5"
    assert summary["Low ratings (1 or 2)"] == "1"
    # the trend: an SVG with a title and a description, and the same figures in a table
    figure = re.search(r'<figure id="csat-trend".*?</figure>', text, re.S)
    assert figure
    svg = figure.group(0)
    assert 'role="img"' in svg and 'aria-labelledby="csat-chart-title csat-chart-desc"' in svg
    assert '<title id="csat-chart-title">' in svg and '<desc id="csat-chart-desc">' in svg
    assert svg.count("<circle") == 2 + 1  # a dot per week with responses, one in the legend
    assert ">50%</text>" in svg and ">100%</text>" in svg  # values written, not colour alone
    assert "line with dots: CSAT %" in svg and "bars: responses" in svg
    trend = _cells(text, "csat-trend-table")[1:]
    assert [r[0] for r in trend] == ["2026-07-13", "2026-07-06", "2026-06-29", "2026-06-22"]
    assert trend[0][1:] == ["1", "1", "100%", "100%", "4.0"]
    assert trend[1][1:] == ["3", "2", "67%", "50%", "3.5"]
    assert trend[2][1:] == ["0", "0", "—", "—", "—"]
    # comments: the low rating first, its hostile text escaped
    comments = _cells(text, "csat-comments")[1:]
    assert [c[0] for c in comments] == ["2 of 5, low", "5 of 5"]
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Quick &amp; kind" in text
    # another period: nothing
    before = client.get("/csat?weeks=4&end=2026-05-31").text
    assert dict((k, v) for k, v in _cells(before, "csat-summary"))["Surveys sent"] == "0"
    assert 'id="csat-no-comments"' in before and "No survey had a response" in before
    odd = client.get("/csat?weeks=x&end=<b>")  # bad values fall back to the defaults
    assert odd.status_code == 200 and "<b>" not in odd.text
    assert '<option value="12" selected>' in odd.text


def test_script_in_a_feedback_quote_is_text(engine: Engine, client: TestClient) -> None:
    _land(engine)
    refresh_insights(engine, now=datetime(2026, 11, 23, 6, tzinfo=UTC))
    _users(engine)
    sign_in(client, "vi@example.com")
    text = client.get("/feedback?week=2026-11-16").text
    assert SCRIPT not in text and "<script>" not in text
    assert "dashboard charts &lt;script&gt;alert(1)&lt;/script&gt;</blockquote>" in text
