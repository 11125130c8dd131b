"""Secrets never show: not on stderr, not in stored error texts, not in logs (issue 11, 4)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pulse.core.errors import ConfigError
from pulse.core.secrets import REDACTED, RedactingFilter, check_secret_shape, redact
from pulse.core.settings import get_settings
from pulse.devkit.sendgrid_double import fake_api_key

KEY = fake_api_key("secrets-test")


def test_a_key_holding_a_newline_is_refused_without_showing_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse.outreach.transports.sendgrid import SendGridTransport, resolve_api_key

    monkeypatch.setenv("PULSE_SENDGRID_API_KEY", KEY + "\nX-Injected: 1")
    get_settings(fresh=True)
    with pytest.raises(ConfigError) as caught:
        resolve_api_key()
    assert "malformed" in str(caught.value)
    assert KEY not in str(caught.value) and "Injected" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        SendGridTransport(api_key=KEY + "\nX-Injected: 1", host="http://127.0.0.1:9")
    assert KEY not in str(caught.value)


def test_the_cli_prints_a_refused_key_without_the_key(pulse_home: Path) -> None:
    env = {**os.environ, "PULSE_HOME": str(pulse_home), "PULSE_SENDGRID_API_KEY": KEY + "\nboom"}
    env.pop("PULSE_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "pulse.cli", "db", "upgrade"], env=env,
                   capture_output=True, text=True, check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "pulse.cli", "outreach", "send",
                           "--transport", "sendgrid"], env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 1
    assert "SendGrid API key is malformed" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout and "boom" not in proc.stderr + proc.stdout


def test_redact_hides_every_known_secret_and_key_shaped_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_X_BEARER_TOKEN", "AAAAbearer-token-value-1234")
    monkeypatch.setenv("PULSE_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("PULSE_DATABASE_URL", "postgresql+psycopg://pulse:hunter2pass@db/pulse")
    get_settings(fresh=True)
    text = ("HTTP 401 for Bearer AAAAbearer-token-value-1234; signing with " + "s" * 40
            + f"; db pulse:hunter2pass@db; other key {KEY}; Authorization: Basic dXNlcjpwdw==")
    out = redact(text)
    for secret in ("AAAAbearer-token-value-1234", "s" * 40, "hunter2pass", KEY, "dXNlcjpwdw=="):
        assert secret not in out
    assert out.count(REDACTED) >= 5
    assert redact("nothing secret here") == "nothing secret here"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("pulse.test.secrets")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        log.info("calling with %s", KEY)
    assert KEY not in caplog.text and REDACTED in caplog.text


def test_a_short_signing_key_is_refused_naming_the_setting_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_SECRET_KEY", "too-short-key")
    with pytest.raises(ConfigError) as caught:
        get_settings(fresh=True)
    assert "PULSE_SECRET_KEY must be at least 32 bytes" in str(caught.value)
    assert "too-short-key" not in str(caught.value)
    monkeypatch.setenv("PULSE_SECRET_KEY", "k" * 32)
    assert get_settings(fresh=True).secret_key == "k" * 32


def test_check_secret_shape_accepts_ordinary_keys() -> None:
    assert check_secret_shape(f"  {KEY} ", what="the key") == KEY
    with pytest.raises(ConfigError):
        check_secret_shape("has space inside", what="the key")
    with pytest.raises(ConfigError):
        check_secret_shape("tok\u00e9n", what="the key")


def test_x_watermark_errors_are_stored_redacted(engine: Engine,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from pulse.listeners import x_listener
    from pulse.sql.schema import XWatermark

    monkeypatch.setenv("PULSE_X_BEARER_TOKEN", "AAAAbearer-token-value-5678")
    get_settings(fresh=True)
    x_listener._save_watermark(engine, "q1", now=datetime(2026, 12, 1, tzinfo=UTC),
                               since_id=None, fetched=0,
                               error="401 Unauthorized for Bearer AAAAbearer-token-value-5678")
    with engine.connect() as conn:
        stored = conn.execute(select(XWatermark.last_error)).scalar_one()
    assert "AAAAbearer-token-value-5678" not in stored and REDACTED in stored
