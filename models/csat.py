"""CSAT figures: surveys sent, responses, response rate, CSAT and the weekly trend.

* **sent**: a queued survey whose outbox message reached the provider (sent, delivered or
  bounced), or that was answered (an answer proves it arrived). Skipped surveys, and those the
  outbox suppressed (opt-out, cap, ...) or still holds, are not sent.
* **CSAT** = ratings of 4 or 5 / all responses; **response rate** = responses / surveys sent;
  **mean rating** over the responses. A response counts with its latest rating.
* Surveys are counted in the period they were **sent** (`sent_at`, else `created_at`), with
  their responses whenever those came: a week's response rate is that week's cohort.

`csat_report(engine, by=...)` groups by `account`, `csm`, `trigger`, `channel` or `week`
(the Monday of the send week); `csat_totals` gives the same figures for everything;
`weekly_trend_chart` draws the weekly CSAT and responses as a PNG; `survey_comments` lists the
comments for feedback routing.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from pulse.core.errors import InvalidArgumentError, NothingToShowError
from pulse.core.times import as_utc
from pulse.sql.db import result_frame
from pulse.sql.schema import LOW_RATING, Account, OutboxMessage, Survey, SurveyResponse

BY = ("account", "csm", "trigger", "channel", "week")
SENT_STATUSES = ("sent", "delivered", "bounced")
COLUMNS = ["surveys_sent", "responses", "response_rate", "csat", "mean_rating", "happy",
           "unhappy", "comments"]


def _instant(value: date | datetime | None, *, end: bool = False) -> datetime | None:
    """A bound as a UTC instant; a date means its midnight (`end`: the midnight after it)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def survey_facts(engine: Engine, *, since: date | datetime | None = None,
                 until: date | datetime | None = None) -> pd.DataFrame:
    """One row per sent survey: its trigger, channel, account, CSM, send time and response."""
    s, o, r, a = (Survey.__table__, OutboxMessage.__table__, SurveyResponse.__table__,
                  Account.__table__)
    q = (select(s.c.survey_id, s.c.trigger, s.c.channel, s.c.account_id,
                a.c.name.label("account_name"), a.c.csm_email, s.c.contact_id, s.c.ticket_id,
                s.c.created_at, o.c.status.label("outbox_status"), o.c.sent_at, r.c.rating,
                r.c.comment, r.c.rated_at)
         .select_from(s.outerjoin(o, o.c.message_id == s.c.message_id)
                      .outerjoin(r, r.c.survey_id == s.c.survey_id)
                      .outerjoin(a, a.c.account_id == s.c.account_id))
         .where(s.c.status == "queued"))
    with engine.connect() as conn:
        result = conn.execute(q)
        frame = result_frame(result)
    frame = frame[frame["outbox_status"].isin(SENT_STATUSES) | frame["rating"].notna()].copy()
    sent_at = pd.to_datetime(frame["sent_at"], utc=True)
    frame["sent_on"] = sent_at.fillna(pd.to_datetime(frame["created_at"], utc=True))
    lo, hi = _instant(since), _instant(until, end=True)
    if lo is not None:
        frame = frame[frame["sent_on"] >= pd.Timestamp(lo)]
    if hi is not None:
        frame = frame[frame["sent_on"] < pd.Timestamp(hi)]
    frame["csm"] = frame["csm_email"].fillna("").astype(str).str.strip().str.lower().replace(
        "", "(no CSM)")
    days = frame["sent_on"].dt.tz_convert("UTC").dt.normalize()
    frame["week"] = (days - pd.to_timedelta(days.dt.day_of_week, unit="D")).dt.date
    frame["account"] = frame["account_id"]
    frame["rating"] = pd.to_numeric(frame["rating"], errors="coerce")
    return frame.reset_index(drop=True)


def _figures(group: pd.DataFrame) -> pd.Series:
    rated = group["rating"].dropna()
    sent, n = len(group), len(rated)
    happy = int((rated >= 4).sum())
    comments = group["comment"].fillna("").astype(str).str.strip().ne("").sum()
    return pd.Series({
        "surveys_sent": sent, "responses": n,
        "response_rate": n / sent if sent else float("nan"),
        "csat": happy / n if n else float("nan"),
        "mean_rating": float(rated.mean()) if n else float("nan"),
        "happy": happy, "unhappy": int((rated <= LOW_RATING).sum()), "comments": int(comments),
    })


def csat_report(engine: Engine, *, by: str = "account", since: date | datetime | None = None,
                until: date | datetime | None = None) -> pd.DataFrame:
    """Surveys sent, responses, response rate, CSAT (share of 4-5) and mean rating per group.

    `since` / `until` bound the send time (dates are whole days, `until` inclusive). Groups
    are sorted by key (`week` ascending); `account` adds the account's name.
    """
    if by not in BY:
        raise InvalidArgumentError(f"invalid value for by: expected one of {', '.join(BY)} (not {by!r})")
    facts = survey_facts(engine, since=since, until=until)
    key = by
    if facts.empty:
        cols = [key] + (["account_name"] if by == "account" else []) + COLUMNS
        return pd.DataFrame(columns=cols)
    rows = []
    for value, group in facts.groupby(key, sort=True, dropna=False):
        figures = _figures(group)
        row: dict[str, Any] = {key: value}
        if by == "account":
            row["account_name"] = group["account_name"].iloc[0]
        row.update(figures.to_dict())
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("surveys_sent", "responses", "happy", "unhappy", "comments"):
        out[col] = out[col].astype(int)
    return out.reset_index(drop=True)


def csat_totals(engine: Engine, *, since: date | datetime | None = None,
                until: date | datetime | None = None) -> dict[str, Any]:
    """The report's figures over every sent survey in the period."""
    facts = survey_facts(engine, since=since, until=until)
    figures = _figures(facts) if not facts.empty else pd.Series(
        {"surveys_sent": 0, "responses": 0, "response_rate": float("nan"),
         "csat": float("nan"), "mean_rating": float("nan"), "happy": 0, "unhappy": 0,
         "comments": 0})
    return {k: (None if isinstance(v, float) and pd.isna(v) else
                int(v) if k in ("surveys_sent", "responses", "happy", "unhappy", "comments")
                else float(v)) for k, v in figures.items()}


def weekly_trend_chart(frame: pd.DataFrame, path: Path | str, *,
                       title: str = "CSAT by week") -> Path:
    """Write the weekly trend (from `csat_report(by='week')`): CSAT % as a line over the
    responses per week as bars; weeks without responses leave a gap in the line."""
    from pulse.models.charts import _pyplot, _save

    if frame.empty:
        raise NothingToShowError("no weeks to draw: no survey was sent in the period")
    table = frame.sort_values("week")
    weeks = [pd.Timestamp(w).strftime("%d %b %Y") for w in table["week"]]
    x = list(range(len(weeks)))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.6), dpi=110)
    try:
        bars = ax.twinx()
        bars.bar(x, table["responses"].astype(int), color="#c9d6ea", width=0.6,
                 label="responses")
        bars.set_ylabel("responses")
        bars.set_ylim(0, max(1, int(table["responses"].max())) * 1.25)
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot(x, 100.0 * table["csat"].astype(float), marker="o", color="#1f5fa8",
                linewidth=1.8, label="CSAT (share of 4 and 5)")
        ax.set_ylim(0, 105)
        ax.set_ylabel("CSAT %")
        ax.set_xticks(x)
        ax.set_xticklabels(weeks, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("week (starting Monday, by send date)")
        ax.set_title(title, fontsize=11)
        ax.grid(True, axis="y", alpha=0.3)
        handles = ax.get_legend_handles_labels()
        extra = bars.get_legend_handles_labels()
        ax.legend(handles[0] + extra[0], handles[1] + extra[1], loc="lower left", fontsize=8)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def survey_comments(engine: Engine, since: date | datetime | None = None) -> pd.DataFrame:
    """Every survey comment (for feedback routing), oldest first: survey_id, account_id,
    contact_id, rating, comment, commented_at, trigger, ticket_id; `since` bounds
    `commented_at`. Comments are raw customer text: escape them wherever they are shown."""
    s, r = Survey.__table__, SurveyResponse.__table__
    q = (select(r.c.survey_id, r.c.account_id, r.c.contact_id, r.c.rating, r.c.comment,
                r.c.commented_at, s.c.trigger, s.c.ticket_id)
         .select_from(r.join(s, s.c.survey_id == r.c.survey_id))
         .where(r.c.comment.is_not(None), r.c.comment != "")
         .order_by(r.c.commented_at, r.c.survey_id))
    lo = _instant(since)
    if lo is not None:
        q = q.where(r.c.commented_at >= lo)
    with engine.connect() as conn:
        result = conn.execute(q)
        return result_frame(result)


__all__ = ["BY", "csat_report", "csat_totals", "survey_comments", "survey_facts",
           "weekly_trend_chart"]
