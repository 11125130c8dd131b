"""Numbers, money and dates in emails follow the recipient's locale, through Babel (issue
13): the same outage notice sent for real (queued, rendered by the sender with the contact's
locale, written by the file transport) to contacts in en_US, de_DE and fr_FR reads each
locale's way, on SQLite and PostgreSQL; money always has its currency's decimals."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from email import policy
from email.parser import BytesParser

import numpy as np
import pytest
from sqlalchemy import Engine, insert, select

from pulse.core import locales
from pulse.core.settings import get_settings
from pulse.outreach.outbox import Draft, queue
from pulse.outreach.outbox_send import send_due
from pulse.outreach.render import Renderer
from pulse.outreach.transports.file import FileTransport
from pulse.sql.schema import Account, Contact, OutboxMessage

NOON = datetime(2026, 7, 6, 12, 0, tzinfo=UTC)
OUTBOX = OutboxMessage.__table__
NNBSP, NBSP = "\u202f", "\u00a0"
NOTICE = {"stage": "resolved", "incident_title": "Scheduled reports failing",
          "incident_status": "resolved", "what_happened": "Reports did not run.",
          "update_body": "A disk filled up.", "components": ["Scheduled reports"],
          "failed_requests": 1234, "total_requests": 5678, "affected_users": 12,
          "first_affected_at": "2026-07-01T10:00:00Z", "timezone": "Europe/Paris",
          "you_were_affected": True,
          "service_credit": {"month": "2026-07-01", "uptime": 99.866, "promised": 99.9,
                             "percent": 10.0, "amount": "969.70", "currency": "USD"}}


def _world(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Account.__table__).values(
            account_id="acc-1", name="Northwind", mrr=9697, currency="USD", landed_at=NOON,
            updated_at=NOON))
        conn.execute(insert(Contact.__table__), [
            {"contact_id": c, "account_id": "acc-1", "email": f"{c}@nw.example", "name": c,
             "timezone": "Europe/Paris", "locale": loc, "opted_out": False,
             "landed_at": NOON, "updated_at": NOON}
            for c, loc in (("us", "en-US"), ("de", "de-DE"), ("fr", "fr_FR"), ("xx", "zz-ZZ"),
                           ("none", None))])


def _sent(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        ids = {c: m for c, m in conn.execute(select(OUTBOX.c.contact_id,
                                                     OUTBOX.c.message_id))}
    out = {}
    for contact, mid in ids.items():
        eml = next(FileTransport().folder.glob(f"{mid}.eml"))
        msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
        out[contact] = (msg.get_body(("plain",)).get_content()
                        + msg.get_body(("html",)).get_content())
    return out


def test_one_notice_reads_the_way_of_each_recipients_locale(engine: Engine) -> None:
    _world(engine)
    queue(engine, [Draft(kind="outage_notice", idempotency_key=f"n:{c}",
                         template="outage_notice", to_email=f"{c}@nw.example", context=NOTICE,
                         account_id="acc-1", contact_id=c, urgent=True)
                   for c in ("us", "de", "fr", "xx", "none")], now=NOON)
    report = send_due(engine, FileTransport(), now=NOON)
    assert report.sent == 5
    mail = _sent(engine)
    us, de, fr = mail["us"], mail["de"], mail["fr"]
    # counts and shares
    assert "Failed requests: 1,234 of 5,678 (21.7%)" in us
    assert "Failed requests: 1.234 of 5.678 (21,7" + NBSP + "%)" in de
    assert f"Failed requests: 1{NNBSP}234 of 5{NNBSP}678 (21,7{NBSP}%)" in fr
    # money with its currency's two decimals, the locale's symbol and order
    assert "$969.70" in us and "969,70" + NBSP + "$" in de and "969,70" + NBSP + "$US" in fr
    # dates and times in the contact's zone (Paris, UTC+2 in July), the locale's words
    assert f"Wed, Jul 1, 2026, 12:00{NNBSP}PM CEST" in us
    assert "Mi., 1. Juli 2026, 12:00 MESZ" in de
    assert "mer. 1 juil. 2026, 12:00" in fr
    assert "July 2026 stands at 99.866%" in us and "Juli 2026 stands at 99,866" in de
    assert "juillet 2026" in fr and "10" + NBSP + "%" in fr
    # an unknown or missing locale falls back to the default (en_US)
    assert "$969.70" in mail["xx"] and "$969.70" in mail["none"]
    for text in mail.values():
        assert "969.7 USD" not in text and "Inc.." not in text


def test_the_default_locale_is_a_setting(engine: Engine, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("PULSE_DEFAULT_LOCALE", "de_DE")
    get_settings(fresh=True)
    row = {"message_id": 1, "kind": "outage_notice", "template": "outage_notice",
           "to_email": "a@x.example", "subject": "s", "context": NOTICE}
    assert "969,70" + NBSP + "$" in Renderer().outgoing(row).full_text()
    assert "$969.70" in Renderer().outgoing({**row, "locale": "en-US"}).full_text()


def test_a_month_reads_the_locales_way() -> None:
    """A bare "YYYY-MM" (a service credit's month) is a month, not left as the raw text."""
    us, de = locales.resolve("en_US"), locales.resolve("de_DE")
    assert locales.when("2026-12", de) == "Dezember 2026"
    assert locales.when("2026-07", us) == "July 2026"


def test_money_has_the_decimals_of_its_currency() -> None:
    us, de = locales.resolve("en_US"), locales.resolve("de-DE")
    assert locales.money(969.7, "USD", us) == "$969.70"  # never "969.7"
    assert locales.money(Decimal("591.54"), "usd", us) == "$591.54"
    assert locales.money(1234.4, "JPY", us) == "¥1,234"  # no decimals for yen
    assert locales.money("12.3456", "BHD", de).startswith("12,346")
    assert locales.money(5, None, us) == "5.00"  # no currency: the amount alone
    assert locales.money("USD 12.00", "USD", us) == "USD 12.00"  # old text shown as it was
    assert locales.number(12345.67, de) == "12.345,7" and locales.number(3, de) == "3"
    assert locales.money(np.float64(1000), "USD", us) == "$1,000.00"  # pandas' numbers too
    assert locales.number(np.int64(1234), us) == "1,234"
    assert locales.when("2026-07-20", de, style="long") == "20. Juli 2026"  # a date, unshifted
    assert locales.resolve("not a locale").language == "en"
