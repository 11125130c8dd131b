"""Themes a PM can read and feedback that is about us (issue 15): template variants merge into
one theme labelled by their own subject line; posts that only share the brand's name and the
brand's own posts are dropped, counted and listed, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import product

import pandas as pd
import pytest
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from pulse.models.feedback import (
    dropped_counts,
    dropped_items,
    normalise,
    period_items,
    refresh_insights,
    themes_of,
)
from pulse.models.relevance import judge
from pulse.outreach.feedback_digest import build_digests
from pulse.sql.schema import Account, Contact, Mention, TextInsight, Ticket

WEEK = datetime(2026, 11, 16, tzinfo=UTC)
MONDAY = date(2026, 11, 23)
CONTACTS = ["Maria Lopez", "Tom Baker", "Ana Silva", "Kenji Sato", "Olga Ivanova"]


def _variant(n: int) -> str:
    """One copy of a template: the percentage, the team and the signature differ."""
    team = ("finance", "ops", "sales")[n % 3]
    first = CONTACTS[n % len(CONTACTS)].split()[0]
    return ("Numbers in reports don't match the export\nHi,\nthe totals shown in reports differ "
            f"from the CSV export by about {7 + 3 * n}%. Which one is right? Our {team} team is "
            f"asking, and we need this sorted before month-end.\n\nBest,\n{first}")


def test_normalise_removes_what_varies_between_copies() -> None:
    from pulse.models.feedback import name_pattern

    names = name_pattern(CONTACTS)
    assert normalise("Invoice INV-2026-0042 for March: $1,200.50 on 2026-11-20 at 10:30, "
                     "about 12% off, 3 seats. Thanks, Maria", names=names) == (
        "invoice _id_ for _date_ _amount_ on _date_ at _time_ about _pct_ off _num_ seats "
        "thanks _name_")
    # "may" the verb is not a month, a lower-case "will" not a name
    assert normalise("It may fail; we will see", names=name_pattern(["Will Smith"])) == (
        "it may fail we will see")


def test_template_variants_merge_into_one_theme_labelled_by_its_subject() -> None:
    texts = [_variant(n) for n in range(15)] + [
        "Feature request: dark mode for dashboards\nOur ops team lives in dashboards all day, "
        "dark mode would be hugely appreciated.",
        "Dark mode for the dashboards, please\nStaring at a white dashboard all night hurts.",
        "Any plans for dark mode on dashboards?\nOur night shift would love it.",
    ]
    items = pd.DataFrame({
        "item_type": "ticket", "item_id": [f"t{n}" for n in range(len(texts))],
        "account_id": [f"acc-{n % 6}" for n in range(len(texts))],
        "created_at": pd.Timestamp(WEEK), "text": texts, "sentiment": "neutral",
        "mrr": 100.0, "currency": "USD"})
    found = themes_of(items, names=CONTACTS)
    assert len(found) == 2
    export = found.iloc[0]
    # 15 raw items, one text once percentages, signatures and names are set aside (the team
    # word alone leaves them near-identical).
    assert (export["items"], export["distinct_texts"]) == (15, 1)
    assert export["label"] == "Numbers in reports don't match the export"
    dark = found.iloc[1]
    assert dark["items"] == 3 and "dark mode" in dark["label"].lower()
    # Without the contacts' names, the signatures still go (a closing line of a name).
    assert themes_of(items).iloc[0]["distinct_texts"] == 1


# --------------------------------------------------------------------------- relevance

BRAND = "AcmeHQ"
_SUBJECTS = ["CSV export of the usage report fails", "Invoice shows the wrong VAT number",
             "Dashboard widgets load slowly", "SSO sign-in loops back to the login page",
             "Webhook deliveries time out", "Scheduled report arrives empty"]
_BODIES = ["Since the last release the {s} for several people on our side.",
           "Could you look into it? Our finance team relies on the dashboard and the export.",
           "We checked the settings and the permissions, still the same error.",
           "This blocks our monthly invoice reconciliation and the board report."]
#: Posts that use the brand's name in its ordinary sense (acme: the highest point).
_OFF_TOPIC = ["Reached the acme of my climbing season this weekend, what a view",
              "That solo was the acme of the whole concert, goosebumps",
              "Grandma's lemon pie remains the acme of baking in our family",
              "Watching old cartoons, the Acme anvils never get old"]
_ON_TOPIC = ["Anyone else seeing the Acme dashboard widgets load slowly?",
             "Is the Acme CSV export of the usage report broken for everyone?"]


def _posts() -> list[dict[str, object]]:
    posts: list[dict[str, object]] = []
    known = [f"@{BRAND} the CSV export of the usage report fails again",
             f"@{BRAND} our invoice shows the wrong VAT number",
             f"@{BRAND} dashboard widgets load slowly this morning",
             f"@{BRAND} webhook deliveries time out since the release",
             f"@{BRAND} love the new scheduled report, thanks"]
    for n, text in enumerate(known * 6):
        posts.append({"id": f"k{n}", "author": f"customer{n}", "text": text})
    posts += [{"id": f"off{n}", "author": f"walker{n}", "text": t}
              for n, t in enumerate(_OFF_TOPIC)]
    posts += [{"id": f"on{n}", "author": f"user{n}", "text": t} for n, t in enumerate(_ON_TOPIC)]
    posts += [
        {"id": "b1", "author": BRAND, "text": "@customer0 Sorry about that, DM us the details",
         "reply": "k0"},
        {"id": "b2", "author": "acme_support", "text": "@customer1 We are on it", "brand": True,
         "reply": "k1"},
        {"id": "b3", "author": "acme_support", "text": "@customer2 Fixed, thanks for waiting"},
        # a customer replying to the brand: about us, whatever the words
        {"id": "r1", "author": "customer1", "text": "ok, will wait", "reply": "b2"},
    ]
    return posts


def _tickets() -> list[tuple[str, str]]:
    return [(s, b.format(s=s.lower())) for s, b in product(_SUBJECTS, _BODIES)] * 3


def test_judge_drops_brand_posts_and_posts_not_about_the_product() -> None:
    posts = _posts()
    mentions = pd.DataFrame({
        "item_type": "mention", "item_id": [p["id"] for p in posts],
        "text": [p["text"] for p in posts], "account_id": None,
        "author_handle": [p["author"] for p in posts],
        "from_brand": [p.get("brand") for p in posts],
        "in_reply_to_id": [p.get("reply") for p in posts]})
    tickets = pd.DataFrame({"item_type": "ticket",
                            "item_id": [f"t{n}" for n in range(len(_tickets()))],
                            "text": [f"{s}\n{b}" for s, b in _tickets()]})
    verdict = judge(pd.concat([mentions, tickets], ignore_index=True), brand_handles=[BRAND])
    frame = verdict.frame.assign(item_id=list(mentions["item_id"]) + list(tickets["item_id"]))
    dropped = dict(zip(frame["item_id"], frame["dropped"], strict=True))
    assert {i for i, d in dropped.items() if d == "brand"} == {"b1", "b2", "b3"}
    assert {i for i, d in dropped.items() if d == "off_topic"} == {
        f"off{n}" for n in range(len(_OFF_TOPIC))}
    assert all(pd.isna(dropped[f"on{n}"]) for n in range(len(_ON_TOPIC)))
    assert pd.isna(dropped["r1"])  # a reply to the brand is about us, whatever its words
    assert pd.isna(frame.set_index("item_id").loc["t0", "relevance"])  # tickets: not judged
    assert verdict.spies == 31  # the 30 posts addressed to the brand and the reply to it


def _land(engine: Engine) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    lineage = {"landed_at": now, "updated_at": now}
    with engine.begin() as conn:
        conn.execute(insert(Account), [{"account_id": "acc-a", "name": "Acme Foods",
                                        "mrr": Decimal("900"), "currency": "USD", **lineage}])
        conn.execute(insert(Contact), [{
            "contact_id": "con-1", "account_id": "acc-a", "email": "maria@foods.example",
            "name": "Maria Lopez", "timezone": "UTC", "opted_out": False, **lineage}])
        conn.execute(insert(Ticket), [
            {"ticket_id": f"t{n}", "opened_at": WEEK + timedelta(hours=n), "account_id": "acc-a",
             "subject": s, "body": b, **lineage} for n, (s, b) in enumerate(_tickets())])
        conn.execute(insert(Mention), [
            {"mention_id": p["id"], "created_at": WEEK + timedelta(days=1, minutes=n),
             "text": p["text"], "author_handle": p["author"], "platform": "x",
             "from_brand": p.get("brand"), "in_reply_to_id": p.get("reply"), **lineage}
            for n, p in enumerate(_posts())])


@pytest.fixture
def stream(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    from pulse.core.settings import get_settings

    monkeypatch.setenv("PULSE_BRAND_HANDLES", json.dumps([BRAND]))
    get_settings(fresh=True)
    _land(engine)
    refresh_insights(engine, now=datetime(2026, 11, 23, 6, tzinfo=UTC))
    return engine


def test_dropped_items_are_counted_listed_and_left_out_of_the_digests(
        stream: Engine, pulse_home: object) -> None:
    engine = stream
    end = WEEK + timedelta(days=7)
    assert dropped_counts(engine, since=WEEK, until=end) == {"off_topic": 4, "brand": 3}
    off = dropped_items(engine, since=WEEK, until=end, reason="off_topic")
    assert sorted(off["item_id"]) == ["off0", "off1", "off2", "off3"]
    assert set(off["author"]) == {"walker0", "walker1", "walker2", "walker3"}
    assert (off["relevance"] == 0).all()
    kept = period_items(engine, team=None, since=WEEK, until=end)
    assert not set(kept["item_id"]) & {"off0", "b1", "b2", "b3"}
    assert {"on0", "on1", "r1", "k0"} <= set(kept["item_id"])
    digests = build_digests(engine, period="week", period_end=MONDAY, write=False)
    assert digests and all((d.context["dropped_off_topic"], d.context["dropped_brand"]) == (4, 3)
                           for d in digests)
    assert refresh_insights(engine) == 0  # nothing new: nothing written

    # Rows classified before relevance existed are judged on the next refresh.
    with engine.begin() as conn:
        conn.execute(TextInsight.__table__.update().values(relevance=None, dropped=None))
    assert refresh_insights(engine) == len(_posts())
    assert dropped_counts(engine, since=WEEK, until=end) == {"off_topic": 4, "brand": 3}
    with engine.connect() as conn:
        judged = conn.execute(select(TextInsight.item_id).where(
            TextInsight.relevance.is_not(None))).scalars().all()
    assert len(judged) == len(_posts())


def test_cli_lists_dropped(stream: Engine, pulse_home: object) -> None:
    from pulse.cli import app
    from pulse.cli.feedback import register

    if not any(g.name == "feedback" for g in app.registered_groups):
        register(app)
    res = CliRunner().invoke(app, ["feedback", "dropped", "--reason", "brand", "--since",
                                   "2026-11-16", "--until", "2026-11-23", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert sorted(r["item_id"] for r in rows) == ["b1", "b2", "b3"]
    assert {r["dropped"] for r in rows} == {"brand"}
