"""End to end, as it runs for real: a solved ticket in the demo world -> the CSAT survey
email in the file outbox -> its rating-4 link followed by an HTTP client against `pulse
serve` (a subprocess, production settings) -> the response in the warehouse -> the account's
features show it. On SQLite and PostgreSQL."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from pulse.core.settings import get_settings
from pulse.devkit.demo import generate
from pulse.listeners.landing import land_files
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.outreach.outbox_send import send_due
from pulse.outreach.surveys import queue_due_surveys
from pulse.outreach.tokens import verify
from pulse.outreach.transports.file import FileTransport
from pulse.sql.features import compute_features, load_features
from pulse.sql.schema import OutboxMessage, Survey, SurveyResponse

pytestmark = pytest.mark.slow

LINK = re.compile(r'href="(https?://[^"]+/s/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def public_base(monkeypatch: pytest.MonkeyPatch) -> str:
    """The address `pulse serve` will listen on; the emails' links point at it."""
    base = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("PULSE_PUBLIC_BASE_URL", base)
    get_settings(fresh=True)
    return base


@pytest.fixture
def pulse_serve(engine: Engine, public_base: str, tmp_path: Path) -> Iterator[str]:
    """`pulse serve` as a subprocess on the test's warehouse and PULSE_HOME (the environment
    the `engine` and `pulse_home` fixtures set), with its production settings."""
    port = public_base.rsplit(":", 1)[1]
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pulse.cli", "serve", "--host", "127.0.0.1", "--port", port,
             "--workers", "2"],
            env=dict(os.environ), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"pulse serve exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"pulse serve never answered:\n{log.read_text()}"
            try:
                if httpx.get(f"{public_base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield public_base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    banner = log.read_text()
    assert f"Pulse web app on http://127.0.0.1:{port} (2 workers" in banner, banner[:2000]


def _survey_mails(engine: Engine, public_base: str, tmp_path: Path) -> list[int]:
    """The demo world landed, due surveys queued and sent: the outbox ids of survey mails."""
    summary = generate(tmp_path / "demo", accounts=60, days=30, seed=5)
    land_files(engine, summary.files.values())
    now = datetime.now(UTC)
    report = queue_due_surveys(engine, now=now)
    assert report.queued > 0, report
    send_due(engine, FileTransport(), now=now)
    # quiet hours (21:00-08:00 in each contact's zone) hold some: 12 hours later they go
    send_due(engine, FileTransport(), now=now + timedelta(hours=12))
    with engine.connect() as conn:
        return list(conn.execute(
            select(OutboxMessage.message_id)
            .where(OutboxMessage.kind == "csat_survey", OutboxMessage.status == "sent")
            .order_by(OutboxMessage.message_id)).scalars())


def test_a_solved_ticket_to_a_rating_in_the_features(engine: Engine, public_base: str,
                                                     pulse_serve: str, tmp_path: Path) -> None:
    sent = _survey_mails(engine, public_base, tmp_path)
    assert sent, "no survey email was sent"
    eml = FileTransport().path(sent[0])
    msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
    html = msg.get_body(("html",)).get_content()
    links = {verify("survey", url.rsplit("/", 1)[1])["r"]: unescape(url)
             for url in LINK.findall(html)}
    assert sorted(links) == [1, 2, 3, 4, 5]
    rating_4 = links[4]
    assert rating_4.startswith(f"{pulse_serve}/s/")
    data = verify("survey", rating_4.rsplit("/", 1)[1])
    with engine.connect() as conn:
        survey = conn.execute(select(Survey.__table__).where(
            Survey.survey_id == data["s"])).one()
    assert survey.message_id == sent[0] and survey.contact_id == data["c"]
    assert survey.trigger == "ticket" and survey.ticket_id

    with httpx.Client(timeout=20, follow_redirects=True) as browser:
        page = browser.get(rating_4)  # what a click (or a mail scanner) does
        assert page.status_code == 200, page.text
        with engine.connect() as conn:  # a GET records nothing
            assert conn.execute(select(SurveyResponse.__table__)).first() is None
        form = re.search(r'<form method="post" action="([^"]+)">', page.text)
        button = re.search(r'<button type="submit" name="(\w+)" value="(\d)" class="primary">'
                           r"Confirm", page.text)
        assert form and button and button.group(2) == "4"
        done = browser.post(f"{pulse_serve}{unescape(form.group(1))}",
                            data={button.group(1): button.group(2)},
                            headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
        assert done.status_code == 200 and "Thank you!" in done.text
        assert browser.post(f"{pulse_serve}{unescape(form.group(1))}",  # a double click
                            data={"rating": "4"}).status_code == 200
        comment = re.search(r'<form method="post" action="([^"]+)">\s*<input type="hidden" '
                            r'name="csrf" value="([^"]+)">', done.text)
        assert comment
        noted = browser.post(f"{pulse_serve}{unescape(comment.group(1))}",
                             data={"csrf": comment.group(2), "comment": "Quick & kind <3"})
        assert noted.status_code == 200 and "Quick &amp; kind &lt;3" in noted.text

    with engine.connect() as conn:
        rows = conn.execute(select(SurveyResponse.__table__)).all()
    assert [(r.survey_id, r.account_id, r.contact_id, r.rating, r.rating_changes, r.comment)
            for r in rows] == [(survey.survey_id, survey.account_id, survey.contact_id, 4, 0,
                                "Quick & kind <3")]

    as_of = datetime.now(UTC).date()
    compute_features(engine, as_of, negative_terms=NEGATIVE_TERMS)
    features = load_features(engine, as_of).set_index("account_id")
    assert features.loc[survey.account_id, "csat_last"] == 4
    assert features.loc[survey.account_id, "csat_responses_90d"] == 1
    assert features.loc[survey.account_id, "csat_90d"] == 1.0  # one rating, a 4
    others = features.drop(index=survey.account_id)
    assert others["csat_last"].isna().all()
