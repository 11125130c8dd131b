"""Issue 15: response times against what customers expect.

The contract carries tickets' `first_response_at` and mentions' `conversation_id` and
`from_brand` (bad values are cleared, never the row); `pulse responses report` gives per
channel the median and p90 first-response time, the share answered within the expectation
and the trend; and on the real TWCS threads the figures match a direct computation on the raw
file. Tests touching the warehouse run on SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import typer
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from pulse.core.errors import ConfigError
from pulse.core.settings import env_flag
from pulse.listeners.landing import land_file
from pulse.listeners.x_listener import map_tweet
from pulse.models import responses
from pulse.sql.schema import Mention, QuarantineRow, Ticket

NOW = datetime(2026, 6, 20, tzinfo=UTC)


def _app() -> typer.Typer:
    """The `pulse` command line, as users run it."""
    from pulse.cli import app

    return app


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(folder: Path, rows: list[dict[str, object]]) -> Path:
    return _write(folder, "mentions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------- the contract


def test_bad_response_fields_are_cleared_and_the_rows_land(engine: Engine, tmp_path: Path
                                                           ) -> None:
    land_file(engine, _write(tmp_path, "accounts.csv", "account_id,name,mrr\nacc-1,Acme,10\n"),
              now=NOW)
    tickets = land_file(engine, _write(tmp_path, "tickets.csv", (
        "ticket_id,account_id,opened_at,channel,first_response_at\n"
        "t-1,acc-1,2026-06-01T10:00:00Z,email,2026-06-01T10:42:00Z\n"
        "t-2,acc-1,2026-06-01T10:00:00Z,email,soon\n"
        "t-3,acc-1,2026-06-01T10:00:00Z,chat,2026-06-01T09:00:00Z\n")), now=NOW)
    mentions = land_file(engine, _jsonl(tmp_path, [
        {"mention_id": "m-1", "created_at": "2026-06-01T10:00:00Z", "text": "export broken",
         "author_handle": "ana", "conversation_id": "m-1", "from_brand": False},
        {"mention_id": "m-2", "created_at": "2026-06-01T10:05:00Z", "text": "on it",
         "author_handle": "PulseDemoHQ", "in_reply_to_id": "m-1", "conversation_id": "m-1",
         "from_brand": "maybe"},
        {"mention_id": "m-3", "created_at": "2026-06-01T10:06:00Z", "text": "thanks",
         "author_handle": "ana", "conversation_id": "bad id", "from_brand": "no"},
    ]), now=NOW)
    assert (tickets.read, tickets.inserted, tickets.quarantined, tickets.fields_cleared) == (
        3, 3, 0, 2)
    assert (mentions.read, mentions.inserted, mentions.quarantined,
            mentions.fields_cleared) == (3, 3, 0, 2)
    q = QuarantineRow.__table__
    with engine.connect() as conn:
        firsts = dict(conn.execute(select(Ticket.ticket_id, Ticket.first_response_at)).all())
        posts = {r.mention_id: (r.conversation_id, r.from_brand)
                 for r in conn.execute(select(Mention))}
        cleared = sorted(conn.execute(select(q.c.row_key, q.c.field, q.c.code).where(
            q.c.kind == "field_cleared")).all())
    assert firsts["t-1"] == datetime(2026, 6, 1, 10, 42, tzinfo=UTC)
    assert firsts["t-2"] is None and firsts["t-3"] is None
    assert posts == {"m-1": ("m-1", False), "m-2": ("m-1", None), "m-3": (None, False)}
    assert cleared == [("m-2", "from_brand", "bad_bool"), ("m-3", "conversation_id", "bad_id"),
                       ("t-2", "first_response_at", "bad_timestamp"),
                       ("t-3", "first_response_at", "out_of_order")]


def test_the_x_mapping_carries_the_conversation_and_the_brand() -> None:
    users = {"1": {"id": "1", "username": "PulseDemoHQ"}, "2": {"id": "2", "username": "ana"}}
    reply = map_tweet({"id": "20", "author_id": "1", "text": "@ana on it",
                       "created_at": "2026-06-01T10:05:00Z", "conversation_id": "10",
                       "referenced_tweets": [{"type": "replied_to", "id": "10"}]}, users,
                      brand_handles=["@pulsedemohq"])
    post = map_tweet({"id": "10", "author_id": "2", "text": "broken",
                      "conversation_id": "10"}, users, brand_handles=["PulseDemoHQ"])
    assert (reply["from_brand"], reply["conversation_id"], reply["in_reply_to_id"]) == (
        True, "10", "10")
    assert (post["from_brand"], post["conversation_id"]) == (False, "10")


# --------------------------------------------------------------------------- the report


def _world(engine: Engine, tmp_path: Path) -> None:
    """Two weeks of tickets (email, chat) and X posts with known first-response times."""
    land_file(engine, _write(tmp_path, "accounts.csv", "account_id,name,mrr\nacc-1,Acme,10\n"),
              now=NOW)
    # email: 30, 50, 90, 240 minutes, and one never answered (week of June 1);
    # week of June 8: 10 and 20 minutes
    email = [("e1", "2026-06-01T09:00", 30), ("e2", "2026-06-02T09:00", 50),
             ("e3", "2026-06-03T09:00", 90), ("e4", "2026-06-04T09:00", 240),
             ("e5", "2026-06-05T09:00", None), ("e6", "2026-06-08T09:00", 10),
             ("e7", "2026-06-09T09:00", 20)]
    chat = [("c1", "2026-06-02T09:00", 0.5), ("c2", "2026-06-09T09:00", 3.0)]
    lines = ["ticket_id,account_id,opened_at,channel,first_response_at"]
    for channel, items in (("email", email), ("chat", chat)):
        for tid, opened, minutes in items:
            at = pd.Timestamp(opened, tz="UTC")
            first = "" if minutes is None else (at + pd.Timedelta(minutes=minutes)).isoformat()
            lines.append(f"{tid},acc-1,{at.isoformat()},{channel},{first}")
    land_file(engine, _write(tmp_path, "tickets.csv", "\n".join(lines) + "\n"), now=NOW)
    posts: list[dict[str, object]] = [
        {"mention_id": "p1", "created_at": "2026-06-01T10:00:00Z", "author_handle": "ana",
         "text": "@PulseDemoHQ exports are broken again, terrible", "from_brand": False,
         "url": "https://x.com/ana/status/p1"},
        {"mention_id": "r1", "created_at": "2026-06-01T10:12:00Z", "author_handle": "PulseDemoHQ",
         "text": "@ana sorry, we are on it", "in_reply_to_id": "p1", "from_brand": True},
        {"mention_id": "r1b", "created_at": "2026-06-01T10:40:00Z",
         "author_handle": "PulseDemoHQ", "text": "@ana fixed", "in_reply_to_id": "p1"},
        {"mention_id": "p2", "created_at": "2026-06-02T10:00:00Z", "author_handle": "bo",
         "text": "@PulseDemoHQ the dashboard is down, awful and useless", "from_brand": False},
        {"mention_id": "p3", "created_at": "2026-06-09T10:00:00Z", "author_handle": "cy",
         "text": "@PulseDemoHQ how do I export to CSV?"},
        # the flag is missing: the author is one of PULSE_BRAND_HANDLES
        {"mention_id": "r3", "created_at": "2026-06-09T11:00:00Z", "author_handle": "PulseDemoHQ",
         "text": "@cy Settings > Export", "in_reply_to_id": "p3"},
    ]
    land_file(engine, _jsonl(tmp_path, posts), now=NOW)


def test_report_per_channel_matches_the_times_put_in(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    result = responses.report(engine, period="week", now=NOW)
    overall = result["overall"].set_index("channel")
    email = pd.Series([30, 50, 90, 240, 10, 20], dtype=float)
    assert overall.loc["email", "asks"] == 7 and overall.loc["email", "answered"] == 6
    assert overall.loc["email", "median_min"] == pytest.approx(email.median())
    assert overall.loc["email", "p90_min"] == pytest.approx(email.quantile(0.9))
    # within 60 minutes: 30, 50, 10, 20 of 7 due asks (e5 is long overdue)
    assert overall.loc["email", "within_share"] == pytest.approx(4 / 7)
    assert overall.loc["chat", "within_share"] == pytest.approx(1 / 2)  # 0.5 of 0.8 min
    x = overall.loc["x"]
    assert (x["asks"], x["answered"], x["median_min"]) == (3, 2, pytest.approx(36.0))
    assert x["within_share"] == pytest.approx(1 / 3)  # p1 in 12 of 15 min; p3 in 60
    assert x["complaints_unanswered"] == 1  # p2: negative, never answered
    trend = result["trend"].set_index("channel")
    assert trend.loc["email", "median_min"] == pytest.approx(15.0)
    assert trend.loc["email", "median_change"] == pytest.approx(15.0 - 70.0)
    assert trend.loc["email", "within_change"] == pytest.approx(1.0 - 2 / 5)


def test_report_reads_only_its_last_periods(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    # NOW is Saturday 20 June: its week starts on Monday 15 June, its month on 1 June
    assert responses.report_start(NOW, "week", 1) == datetime(2026, 6, 15, tzinfo=UTC)
    assert responses.report_start(NOW, "week", 2) == datetime(2026, 6, 8, tzinfo=UTC)
    assert responses.report_start(NOW, "month", 3) == datetime(2026, 4, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="1 or more"):
        responses.report_start(NOW, "week", 0)
    with pytest.raises(ConfigError, match="invalid period"):
        responses.report_start(NOW, "day", 1)
    recent = responses.report(engine, period="week", now=NOW, periods=2)
    assert recent["since"] == datetime(2026, 6, 8, tzinfo=UTC)
    overall = recent["overall"].set_index("channel")
    # from 8 June: e6 (10 min) and e7 (20), c2 (3.0), and p3 answered in 60 minutes; the
    # unanswered complaint p2 (2 June) is before the window
    assert overall.loc["email", "asks"] == 2
    assert overall.loc["email", "median_min"] == pytest.approx(15.0)
    assert (overall.loc["chat", "asks"], overall.loc["x", "asks"]) == (1, 1)
    assert overall["complaints_unanswered"].sum() == 0
    assert set(recent["per_period"]["period"]) == {pd.Timestamp("2026-06-08")}
    every = responses.report(engine, period="week", now=NOW, periods=None)
    assert every["since"] is None
    assert every["overall"].set_index("channel").loc["email", "asks"] == 7


def test_a_past_report_reads_the_asks_and_answers_as_they_stood(engine: Engine,
                                                               tmp_path: Path) -> None:
    _world(engine, tmp_path)
    # 9 June 09:02: e7 and c2 were opened at 09:00 and answered at 09:20 and 09:03; p3 (10:00)
    # and its answer r3 (11:00) had not happened
    then = datetime(2026, 6, 9, 9, 2, tzinfo=UTC)
    overall = responses.report(engine, period="week", now=then)["overall"].set_index("channel")
    email, chat, x = overall.loc["email"], overall.loc["chat"], overall.loc["x"]
    assert (email["asks"], email["answered"], email["due"]) == (7, 5, 6)  # e7 not due yet
    assert email["median_min"] == pytest.approx(50.0)  # 30, 50, 90, 240, 10
    assert (chat["asks"], chat["answered"], chat["unanswered"]) == (2, 1, 1)  # c2 past 0.8 min
    assert (x["asks"], x["answered"]) == (2, 1)  # p1 and p2; p3 not yet posted
    assert x["complaints_unanswered"] == 1
    # the same report as of NOW sees every answer
    now = responses.report(engine, period="week", now=NOW)["overall"].set_index("channel")
    assert (now.loc["email", "answered"], now.loc["chat", "answered"],
            now.loc["x", "asks"]) == (6, 2, 3)


def test_trend_compares_the_last_two_periods_and_leaves_a_lone_one_unchanged() -> None:
    weeks = pd.to_datetime(["2026-06-01", "2026-06-08", "2026-06-15", "2026-06-15"])
    table = pd.DataFrame({"channel": ["email", "email", "email", "x"], "period": weeks,
                          "median_min": [90.0, 40.0, 25.0, 12.0],
                          "within_share": [0.2, 0.5, 0.75, 1.0]})
    trend = responses.trend(table.iloc[::-1]).set_index("channel")
    assert trend.loc["email", "period"] == weeks[2]
    assert trend.loc["email", "median_change"] == pytest.approx(25.0 - 40.0)
    assert trend.loc["email", "within_change"] == pytest.approx(0.75 - 0.5)
    assert trend.loc["x", "median_min"] == 12.0 and pd.isna(trend.loc["x", "median_change"])


def test_an_unanswered_ask_is_not_late_before_its_expectation(engine: Engine, tmp_path: Path
                                                              ) -> None:
    _world(engine, tmp_path)
    frame = responses.asks(engine)
    just_after = datetime(2026, 6, 2, 10, 5, tzinfo=UTC)  # p2 is 5 minutes old: not yet due
    marked = responses.mark(frame, responses.load_expectations(), now=just_after)
    p2 = marked.set_index("item_id").loc["p2"]
    assert (bool(p2["due"]), bool(p2["late_unanswered"])) == (False, False)
    later = responses.mark(frame, responses.load_expectations(),
                           now=datetime(2026, 6, 2, 10, 16, tzinfo=UTC))
    assert bool(later.set_index("item_id").loc["p2", "late_unanswered"])


def test_expectations_are_editable_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    from pulse.core.settings import get_settings

    assert responses.load_expectations() == {
        "x": 15.0, "facebook": 60.0, "email": 60.0, "chat": 0.8, "phone": 0.3, "web": 60.0,
        "social": 60.0, "default": 60.0}
    mine = _write(tmp_path, "mine.yaml", "email: 240\nX: 30\n")
    monkeypatch.setenv("PULSE_RESPONSES_EXPECTATIONS", str(mine))
    get_settings(fresh=True)
    assert responses.load_expectations() == {"email": 240.0, "x": 30.0, "default": 60.0}
    with pytest.raises(ConfigError, match="invalid value for 'email'"):
        responses.load_expectations(_write(tmp_path, "bad.yaml", "email: soon\n"))


def test_cli_report_json_and_chart(engine: Engine, tmp_path: Path) -> None:
    _world(engine, tmp_path)
    chart = tmp_path / "responses.png"
    result = CliRunner().invoke(_app(), ["responses", "report", "--period", "month", "--now",
                                         NOW.isoformat(), "--chart", str(chart),
                                         "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by = {c["channel"]: c for c in data["channels"]}
    assert by["email"]["median_min"] == 40.0 and by["x"]["complaints_unanswered"] == 1
    assert {p["period"] for p in data["per_period"]} == {"2026-06-01"}
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (data["since"], data["periods"]) == ("2025-07-01", 12)  # 12 months
    table = CliRunner().invoke(_app(), ["responses", "report", "--now", NOW.isoformat()])
    assert table.exit_code == 0 and "email" in table.output and "57%" in table.output
    assert "since 2026-03-30" in table.output  # 12 weeks, the current one included
    recent = CliRunner().invoke(_app(), ["responses", "report", "--now", NOW.isoformat(),
                                         "--periods", "2", "--format", "json"])
    assert recent.exit_code == 0, recent.output
    late = json.loads(recent.output)
    assert late["since"] == "2026-06-08"
    assert {c["channel"]: c["asks"] for c in late["channels"]} == {"email": 2, "chat": 1,
                                                                   "x": 1}
    none = CliRunner().invoke(_app(), ["responses", "report", "--now", NOW.isoformat(),
                                       "--periods", "0"])
    assert none.exit_code != 0 and "--periods" in none.output
    bad = CliRunner().invoke(_app(), ["responses", "report", "--period", "day"])
    assert bad.exit_code != 0 and "week" in bad.output


def test_accounts_with_late_answers_to_their_own_tickets_come_first(engine: Engine,
                                                                     tmp_path: Path) -> None:
    _world(engine, tmp_path)
    land_file(engine, _write(tmp_path, "accounts.csv", "account_id,name,mrr\nacc-2,Bolt,10\n"),
              now=NOW)
    land_file(engine, _write(tmp_path, "tickets.csv", (
        "ticket_id,account_id,opened_at,channel,first_response_at\n"
        "b1,acc-2,2026-06-10T09:00:00Z,email,2026-06-10T09:05:00Z\n"
        "b2,acc-2,2026-06-10T10:00:00Z,phone,2026-06-10T10:00:10Z\n")), now=NOW)
    result = CliRunner().invoke(_app(), ["responses", "accounts", "--now", NOW.isoformat(),
                                         "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["account_id"] for r in rows] == ["acc-1", "acc-2"]
    # acc-1: email 90 and 240 minutes late, e5 never answered, chat c2 in 3 of 0.8 minutes
    assert (rows[0]["asks"], rows[0]["late"], rows[0]["within_share"]) == (9, 4, round(5 / 9, 4))
    assert (rows[1]["late"], rows[1]["within_share"], rows[1]["median_min"]) == (0, 1.0, 2.5833)
    recent = CliRunner().invoke(_app(), ["responses", "accounts", "--now", NOW.isoformat(),
                                         "--days", "10", "--format", "json"])
    assert [r["account_id"] for r in json.loads(recent.output)] == ["acc-2"]


# --------------------------------------------------------------------------- alerts


def test_an_unanswered_complaint_alerts_the_social_team_once(engine: Engine, tmp_path: Path
                                                            ) -> None:
    from email import policy
    from email.parser import BytesParser

    from pulse.outreach.outbox_send import send_due
    from pulse.outreach.transports.file import FileTransport
    from pulse.sql.schema import OutboxMessage

    _world(engine, tmp_path)
    land_file(engine, _write(tmp_path, "contacts.csv", (
        "contact_id,account_id,email,x_handle\ncon-1,acc-1,bo@acme.example,bo\n")), now=NOW)
    hostile = {"mention_id": "p9", "created_at": "2026-06-02T10:00:00Z", "author_handle": "dee",
               "text": '@PulseDemoHQ <script>alert(1)</script> terrible, broken again',
               "url": "https://x.com/dee/status/p9", "from_brand": False}
    land_file(engine, _jsonl(tmp_path, [hostile]), now=NOW)
    early = datetime(2026, 6, 2, 10, 10, tzinfo=UTC)  # 10 minutes: within X's 15
    result = CliRunner().invoke(_app(), ["responses", "alerts", "--now", early.isoformat()])
    assert result.exit_code == 0 and "0 unanswered" in result.output, result.output
    later = datetime(2026, 6, 2, 10, 20, tzinfo=UTC)
    result = CliRunner().invoke(_app(), ["responses", "alerts", "--now", later.isoformat()])
    assert result.exit_code == 0 and "2 unanswered" in result.output, result.output
    again = CliRunner().invoke(_app(), ["responses", "alerts", "--now", later.isoformat()])
    assert "0 unanswered" in again.output  # once per post
    with engine.connect() as conn:
        rows = {r["idempotency_key"]: r for r in conn.execute(select(
            OutboxMessage.__table__).where(OutboxMessage.kind == "unanswered_post")).mappings()}
    assert set(rows) == {"unanswered_post:p2:social@pulse-demo.example",
                         "unanswered_post:p9:social@pulse-demo.example"}
    assert rows["unanswered_post:p2:social@pulse-demo.example"]["account_id"] == "acc-1"
    send_due(engine, FileTransport(), now=later)
    p9 = rows["unanswered_post:p9:social@pulse-demo.example"]
    msg = BytesParser(policy=policy.default).parse(
        (FileTransport().folder / f"{p9['message_id']}.eml").open("rb"))
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "https://x.com/dee/status/p9" in html and "@dee" in msg["Subject"]
    p2 = rows["unanswered_post:p2:social@pulse-demo.example"]
    text = (FileTransport().folder / f"{p2['message_id']}.eml").read_text(encoding="utf-8")
    assert "Acme" in text and "/accounts/acc-1?t=" in text


# --------------------------------------------------------------------------- real data (TWCS)


def _twcs_or_skip() -> Path:
    from pulse.devkit.bench.twcs import twcs_csv

    path = twcs_csv()
    if not path.is_file():
        if env_flag("CI"):
            pytest.fail(f"TWCS threads missing (required under CI=true): {path}")
        pytest.skip(f"the TWCS threads are not on this machine: {path}")
    return path


def _direct(path: Path) -> pd.DataFrame:
    """Per brand, straight from the raw file: each customer tweet's first brand reply."""
    raw = pd.read_csv(path, index_col=0, lineterminator="\n",
                      dtype={"tweet_id": str, "author_id": str})
    raw["at"] = pd.to_datetime(raw["created_at"], format="%a %b %d %H:%M:%S %z %Y", utc=True)
    raw["parent"] = raw["in_response_to_tweet_id"].astype("Int64").astype("string")
    inbound, brand = raw[raw["inbound"]], raw[~raw["inbound"]]
    first = (brand[brand["parent"].isin(inbound["tweet_id"])]
             .sort_values(["at", "author_id"]).drop_duplicates("parent"))
    pairs = inbound.merge(first[["parent", "at", "author_id"]], left_on="tweet_id",
                          right_on="parent", suffixes=("", "_reply"))
    pairs["minutes"] = ((pairs["at_reply"] - pairs["at"]).dt.total_seconds() / 60).clip(lower=0)
    g = pairs.groupby("author_id_reply")["minutes"]
    return pd.DataFrame({"answered": g.size(), "median": g.median(), "p90": g.quantile(0.9),
                         "within_15": g.apply(lambda m: (m <= 15).sum())})


def test_twcs_first_responses_match_the_raw_file(engine: Engine, tmp_path: Path) -> None:
    """Measured: 5,000 tweets land with nothing quarantined; 2,083 customer tweets answered
    by 76 brands (2,188 brand replies); the whole test takes about 3 s per dialect."""
    path = _twcs_or_skip()
    from pulse.devkit.bench.twcs import land_twcs

    landed = land_twcs(engine, tmp_path, path)
    assert (landed.read, landed.inserted, landed.quarantined) == (5000, 5000, 0)
    frame = responses.asks(engine, brand_handles=[])
    exp = responses.load_expectations()
    per_brand = responses.summarise(frame, exp, by="brand", now=NOW).set_index("brand")
    direct = _direct(path)
    direct.index = direct.index.str.lower()
    answered = per_brand[per_brand["answered"] > 0]
    assert len(direct) == 76 and int(direct["answered"].sum()) == 2083
    assert sorted(answered.index) == sorted(direct.index)
    d = direct.loc[answered.index]
    assert answered["answered"].tolist() == d["answered"].tolist()
    assert answered["median_min"].to_numpy() == pytest.approx(d["median"].to_numpy())
    assert answered["p90_min"].to_numpy() == pytest.approx(d["p90"].to_numpy())
    # X expects 15 minutes: the on-time replies per brand
    assert answered["on_time"].astype(int).tolist() == d["within_15"].astype(int).tolist()

    # complaints left unanswered: negative customer tweets no brand answered in the file,
    # per brand addressed (the brand tweet it replies to, else the first brand it @-mentions)
    negative = pd.Series(False, index=frame.index)
    open_ = frame["first_response_at"].isna()
    negative[open_] = responses.complaints(frame.loc[open_, "text"])
    with_neg = responses.summarise(frame, exp, by="brand", negative=negative, now=NOW)
    got = with_neg.set_index("brand")["complaints_unanswered"]
    got = got[(got > 0) & got.index.notna()].sort_index()

    raw = pd.read_csv(path, index_col=0, lineterminator="\n",
                      dtype={"tweet_id": str, "author_id": str})
    raw["parent"] = raw["in_response_to_tweet_id"].astype("Int64").astype("string")
    brands = raw.loc[~raw["inbound"], "author_id"].str.lower()
    answered_ids = set(raw.loc[~raw["inbound"], "parent"].dropna())
    lonely = raw[raw["inbound"] & ~raw["tweet_id"].isin(answered_ids)].copy()
    parent_author = raw.set_index("tweet_id")["author_id"].str.lower()
    lonely["to"] = lonely["parent"].map(parent_author)
    lonely.loc[~lonely["to"].isin(set(brands)), "to"] = None
    tags = lonely["text"].str.findall(r"@(\w{1,15})").map(
        lambda ts: next((t.lower() for t in ts if t.lower() in set(brands)), None))
    lonely["to"] = lonely["to"].fillna(tags)
    labels = responses.complaints(lonely["text"].reset_index(drop=True)).to_numpy()
    expected = lonely[labels].groupby("to").size().sort_index()
    assert got.to_dict() == expected.to_dict()
    assert expected.sum() > 50  # the file holds many unanswered complaints


def test_the_brand_handles_are_read_one_way_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """`own_handles`: what the X listener, the response times and relevance call the brand's
    own accounts, from PULSE_BRAND_HANDLES or as given."""
    from pulse.core.settings import get_settings, own_handles

    assert own_handles([" @Acme_Support ", "", "  ", "acme"]) == {"acme_support", "acme"}
    monkeypatch.setenv("PULSE_BRAND_HANDLES", '["@AcmeHQ", " acme_help "]')
    get_settings(fresh=True)
    assert own_handles() == {"acmehq", "acme_help"}
    from pulse.listeners.x_listener import map_tweet

    users = {"1": {"id": "1", "username": "ACME_help"}, "2": {"id": "2", "username": "dana"}}
    ours = map_tweet({"id": "10", "author_id": "1", "text": "on it",
                      "created_at": "2026-06-01T10:00:00Z"}, users)
    theirs = map_tweet({"id": "11", "author_id": "2", "text": "down again",
                        "created_at": "2026-06-01T09:00:00Z"}, users)
    assert ours["from_brand"] is True and theirs["from_brand"] is False
