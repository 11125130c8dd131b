"""Response times against what customers expect (issue 15).

Every question a customer asks is an *ask*: a ticket (answered at its `first_response_at`) or
a customer's post (answered by the brand's first post that replies to it: `from_brand`, or,
where the flag is missing, an author among `PULSE_BRAND_HANDLES`, with `in_reply_to_id`
naming the post). Its channel is the ticket's `channel` or the post's `platform`.

`asks(engine)` lists them with their first-response time; `summarise(frame, ...)` gives,
per channel (or brand, or account) and optionally per period, the median and 90th percentile
of the first-response time, the share answered within the channel's expectation
(`models/responses.yaml`, editable; `PULSE_RESPONSES_EXPECTATIONS` points at another copy)
and how many negative posts are still unanswered past it. Asks whose expectation has not yet
elapsed at `now` and that are still unanswered are not counted as late: they are `pending`.

The brand of a post is who answered it; an unanswered post's brand is the author of the post
it replies to, when that is a brand post, else the first brand handle it @-mentions.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from pulse.core.errors import ConfigError
from pulse.core.expectations import REPORT_PERIODS as REPORT_PERIODS
from pulse.core.expectations import load_expectations as load_expectations
from pulse.core.settings import own_handles
from pulse.core.times import utc_stamp
from pulse.sql.schema import Mention, Ticket

EXPECTATIONS_FILE = Path(__file__).with_name("responses.yaml")
PERIODS = ("week", "month")
_FREQ = {"week": "W-MON", "month": "MS"}

ASK_COLUMNS = ["kind", "item_id", "channel", "account_id", "author", "brand", "text", "url",
               "asked_at", "first_response_at", "minutes"]


def expected_minutes(channels: pd.Series, expectations: dict[str, float]) -> pd.Series:
    """The expectation of each channel (the `default` for channels it does not name)."""
    return channels.str.lower().map(expectations).fillna(expectations["default"]).astype(float)


def _instant(now: datetime | None) -> pd.Timestamp:
    """`now` (the current time when None) in UTC; a naive time is taken as UTC."""
    return utc_stamp(pd.Timestamp(now or datetime.now(UTC)))


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True)


def ticket_asks(engine: Engine, *, since: datetime | None = None,
                until: datetime | None = None) -> pd.DataFrame:
    """One row per ticket (opened between `since` and `until` when given): opened and first
    answered (NaT when not yet; with `until`, also when the answer came after it)."""
    t = Ticket.__table__
    q = select(t.c.ticket_id.label("item_id"), t.c.channel, t.c.account_id,
               t.c.contact_id.label("author"), t.c.subject.label("text"),
               t.c.opened_at.label("asked_at"), t.c.first_response_at)
    if since is not None:
        q = q.where(t.c.opened_at >= since)
    if until is not None:
        q = q.where(t.c.opened_at <= until)
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(q).mappings().all(),
                             columns=["item_id", "channel", "account_id", "author", "text",
                                      "asked_at", "first_response_at"])
    if until is not None:
        first = _utc(frame["first_response_at"])
        frame["first_response_at"] = first.where(first <= _instant(until))
    frame["kind"] = "ticket"
    frame["channel"] = frame["channel"].fillna("unknown")
    frame["brand"] = None
    frame["url"] = None
    return frame


def _brand_posts(frame: pd.DataFrame, handles: set[str]) -> pd.Series:
    """Whether each post is the brand's: its flag, else its author among `handles`."""
    by_handle = frame["author_handle"].str.lower().isin(handles)
    flag = frame["from_brand"].astype("boolean")
    return flag.fillna(by_handle).astype(bool)


def mention_asks(engine: Engine, *, brand_handles: list[str] | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """One row per customer post: when the brand first replied (NaT when not) and who.

    With `since`, only the posts created from then on are read (and so only the replies among
    them: a reply comes after its post); with `until`, only those created by then (a reply
    after it is not read, and its post counts as unanswered)."""
    m = Mention.__table__
    q = select(m.c.mention_id, m.c.created_at, m.c.text, m.c.author_handle, m.c.platform,
               m.c.url, m.c.in_reply_to_id, m.c.account_id, m.c.from_brand)
    if since is not None:
        q = q.where(m.c.created_at >= since)
    if until is not None:
        q = q.where(m.c.created_at <= until)
    with engine.connect() as conn:
        posts = pd.DataFrame(conn.execute(q).mappings().all(),
                             columns=["mention_id", "created_at", "text", "author_handle",
                                      "platform", "url", "in_reply_to_id", "account_id",
                                      "from_brand"])
    posts["created_at"] = _utc(posts["created_at"])
    handles = own_handles(brand_handles)
    ours = _brand_posts(posts, handles)
    handles |= set(posts.loc[ours, "author_handle"].str.lower())
    replies = (posts.loc[ours & posts["in_reply_to_id"].notna(),
                         ["in_reply_to_id", "created_at", "author_handle"]]
               .sort_values(["created_at", "author_handle"], kind="stable")
               .drop_duplicates("in_reply_to_id")
               .rename(columns={"in_reply_to_id": "mention_id", "created_at": "first_response_at",
                                "author_handle": "answered_by"}))
    asks = posts.loc[~ours].merge(replies, on="mention_id", how="left")
    # a reply that comes before its post (clock skew) is taken as immediate
    asks["first_response_at"] = asks[["first_response_at", "created_at"]].max(axis=1).where(
        asks["first_response_at"].notna())
    # the brand addressed: who answered; else the author of the brand post it replies to;
    # else the first brand handle it @-mentions
    authors = posts.loc[ours].set_index("mention_id")["author_handle"]
    parent = asks["in_reply_to_id"].map(authors)
    tags = asks["text"].str.extractall(r"@(\w{1,15})")[0].str.lower()
    tags = tags[tags.isin(handles)].groupby(level=0).first()
    asks["brand"] = (asks["answered_by"].fillna(parent).fillna(tags)
                     .str.lower().where(lambda s: s.notna(), None))
    return pd.DataFrame({
        "kind": "mention", "item_id": asks["mention_id"], "channel": asks["platform"],
        "account_id": asks["account_id"], "author": asks["author_handle"],
        "brand": asks["brand"], "text": asks["text"], "url": asks["url"],
        "asked_at": asks["created_at"], "first_response_at": asks["first_response_at"]})


def asks(engine: Engine, *, brand_handles: list[str] | None = None,
         since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """Tickets and customers' posts (asked from `since` and by `until`, when given), each with
    its first-response time in minutes (an answer after `until` is not yet one)."""
    return _timed(pd.concat([ticket_asks(engine, since=since, until=until),
                             mention_asks(engine, brand_handles=brand_handles, since=since,
                                          until=until)],
                            ignore_index=True))


def post_asks(engine: Engine, *, since: datetime | None = None,
              brand_handles: list[str] | None = None) -> pd.DataFrame:
    """Customers' posts (created from `since`, when given), each with its first-response
    time in minutes."""
    return _timed(mention_asks(engine, brand_handles=brand_handles, since=since))


def _timed(frame: pd.DataFrame) -> pd.DataFrame:
    """The asks with UTC times and their first-response `minutes`, in ASK_COLUMNS order."""
    frame["asked_at"] = _utc(frame["asked_at"])
    frame["first_response_at"] = _utc(frame["first_response_at"])
    frame["minutes"] = (frame["first_response_at"] - frame["asked_at"]).dt.total_seconds() / 60
    return frame[ASK_COLUMNS]


def mark(frame: pd.DataFrame, expectations: dict[str, float], *,
         now: datetime | None = None) -> pd.DataFrame:
    """Add each ask's `expected` minutes, `due` (its expectation has elapsed by `now`),
    `on_time` and `late_unanswered`."""
    now_ts = _instant(now)
    out = frame.copy()
    out["expected"] = expected_minutes(out["channel"], expectations)
    deadline = out["asked_at"] + pd.to_timedelta(out["expected"], unit="min")
    answered = out["first_response_at"].notna()
    out["on_time"] = answered & (out["minutes"] <= out["expected"])
    out["due"] = out["on_time"] | (deadline <= now_ts)
    out["late_unanswered"] = ~answered & (deadline <= now_ts)
    return out


def summarise(frame: pd.DataFrame, expectations: dict[str, float], *,
              by: str | list[str] = "channel", period: str | None = None,
              negative: pd.Series | None = None, now: datetime | None = None) -> pd.DataFrame:
    """Per group (and `period`: week or month): asks, answered, median and p90 minutes, the
    expectation, the share of due asks answered within it, and the unanswered complaints
    (`negative`, aligned with `frame`, marks the complaints; none when not given)."""
    keys = [by] if isinstance(by, str) else list(by)
    marked = mark(frame, expectations, now=now)
    marked["complaint_unanswered"] = marked["late_unanswered"] & (
        negative.reindex(marked.index).fillna(False).astype(bool) if negative is not None
        else False)
    if period is not None:
        if period not in PERIODS:
            raise ConfigError(f'invalid period: expected "week" or "month" (not {period!r})')
        marked["period"] = (marked["asked_at"].dt.tz_localize(None)
                            .dt.to_period("W" if period == "week" else "M").dt.start_time)
        keys = keys + ["period"]
    g = marked.groupby(keys, dropna=False, sort=True)
    table = pd.DataFrame({
        "asks": g.size(),
        "answered": g["first_response_at"].count(),
        "median_min": g["minutes"].median(),
        "p90_min": g["minutes"].quantile(0.9),
        "expected_min": g["expected"].first(),
        "due": g["due"].sum(),
        "on_time": g["on_time"].sum(),
        "unanswered": g["late_unanswered"].sum(),
        "complaints_unanswered": g["complaint_unanswered"].sum(),
    })
    table["within_share"] = (table["on_time"] / table["due"].where(table["due"] > 0)).astype(float)
    return table.reset_index()


def trend(table: pd.DataFrame, *, by: str = "channel") -> pd.DataFrame:
    """Per group: the last period's median and share within the expectation beside the
    period before (the change in each)."""
    if "period" not in table:
        raise ConfigError("trend needs a table summarised per period")
    g = table.sort_values([by, "period"]).groupby(by, sort=True)
    last, prev = g.nth(-1).set_index(by), g.nth(-2).set_index(by)  # no prev: a single period
    out = pd.DataFrame({
        "period": last["period"],
        "median_min": last["median_min"],
        "median_change": last["median_min"] - prev["median_min"].reindex(last.index),
        "within_share": last["within_share"],
        "within_change": last["within_share"] - prev["within_share"].reindex(last.index),
    })
    return out.reset_index()


def account_responses(engine: Engine, *, now: datetime | None = None, days: int = 90,
                      expectations: dict[str, float] | None = None) -> pd.DataFrame:
    """Per account, its own tickets opened in the `days` before `now`: asks, answered, median
    and p90 first-response minutes, `late` (answered after the channel's expectation, or
    still unanswered past it) and the share of due tickets answered within it; the accounts
    with the most late answers first."""
    now = _instant(now).to_pydatetime()
    frame = _timed(ticket_asks(engine, since=now - timedelta(days=days), until=now))
    table = summarise(frame, expectations or load_expectations(), by="account_id", now=now)
    table["late"] = table["due"] - table["on_time"]
    table = table.drop(columns=["expected_min", "complaints_unanswered"])
    return table.sort_values(["late", "within_share", "account_id"],
                             ascending=[False, True, True]).reset_index(drop=True)


def complaints(texts: pd.Series) -> pd.Series:
    """Whether each text is negative (the sentiment model of models/text.py)."""
    from pulse.models.text import sentiment

    if texts.empty:
        return pd.Series(dtype=bool, index=texts.index)
    labels = sentiment(texts.fillna("").tolist())["label"].to_numpy()
    return pd.Series(labels == "negative", index=texts.index)


def report_start(now: datetime | None, period: str, periods: int) -> datetime:
    """The start (UTC) of the period `periods - 1` before the one holding `now`: the report's
    window is the last `periods` weeks (from Monday) or months, the current one included."""
    if period not in PERIODS:
        raise ConfigError(f'invalid period: expected "week" or "month" (not {period!r})')
    if periods < 1:
        raise ConfigError(f"invalid number of periods: expected 1 or more (not {periods})")
    freq = "W" if period == "week" else "M"
    first = _instant(now).tz_localize(None).to_period(freq) - (periods - 1)
    return first.start_time.tz_localize(UTC).to_pydatetime()


def report(engine: Engine, *, period: str = "week", now: datetime | None = None,
           expectations: dict[str, float] | None = None,
           brand_handles: list[str] | None = None,
           periods: int | None = REPORT_PERIODS) -> dict[str, Any]:
    """`pulse responses report`: per channel overall, per channel and period, and the trend,
    over the asks of the last `periods` periods (None: all history) up to `now`, as they
    stood then (an answer given later counts as none yet). Only those are read, and only
    their unanswered posts go through the sentiment model, so a report costs the same
    whatever the length of the history."""
    exp = expectations or load_expectations()
    since = None if periods is None else report_start(now, period, periods)
    until = None if now is None else _instant(now).to_pydatetime()
    frame = asks(engine, brand_handles=brand_handles, since=since, until=until)
    negative = pd.Series(False, index=frame.index)
    posts = frame["kind"].eq("mention") & frame["first_response_at"].isna()
    if posts.any():
        negative[posts] = complaints(frame.loc[posts, "text"])
    overall = summarise(frame, exp, negative=negative, now=now)
    per_period = summarise(frame, exp, period=period, negative=negative, now=now)
    return {"overall": overall, "per_period": per_period,
            "trend": trend(per_period) if len(per_period) else per_period,
            "expectations": exp, "period": period, "since": since}


def response_chart(per_period: pd.DataFrame, path: Path | str, *,
                   title: str = "First response against what customers expect",
                   last: int = 12, min_asks: int = 5) -> Path:
    """PNG: per channel, the median first-response time per period (log scale) with its
    expectation as a dashed line, beside the share answered within it; the `last` periods,
    each channel's points only where it had at least `min_asks` asks."""
    from pulse.core.errors import NothingToShowError
    from pulse.models.charts import _pyplot, _save

    data = per_period.dropna(subset=["period"])
    keep = sorted(data["period"].unique())[-last:]
    data = data[data["period"].isin(keep) & (data["asks"] >= min_asks)]
    if data.empty:
        raise NothingToShowError("no first responses to draw")
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (channel, rows) in enumerate(data.groupby("channel", sort=True)):
            c = colours[i % len(colours)]
            left.plot(rows["period"], rows["median_min"], marker="o", color=c,
                      label=str(channel))
            left.axhline(float(rows["expected_min"].iloc[0]), color=c, linestyle="--",
                         linewidth=0.9)
            right.plot(rows["period"], rows["within_share"] * 100, marker="o", color=c,
                       label=str(channel))
        left.set_yscale("log")
        left.set_ylabel("median minutes to first response (dashed: expected)")
        right.set_ylabel("% answered within the expectation")
        right.set_ylim(0, 100)
        for ax in (left, right):
            ax.legend(fontsize=8)
            ax.tick_params(axis="x", labelrotation=30)
        fig.suptitle(title)
        return _save(fig, path)
    finally:
        plt.close(fig)


__all__ = ["account_responses", "asks", "complaints", "load_expectations", "mark", "post_asks",
           "report", "response_chart", "summarise", "trend"]
