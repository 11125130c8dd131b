"""Outage chatter: spikes of negative social posts about one component, per 15-minute bucket.

A mention counts for a component when its text names one of the component's keywords (the
product taxonomy from `models.text.load_taxonomy()` when it is there, else the small map
below) and it complains: the sentiment model `models.text.sentiment()` labels it negative
(the negative-words lexicon when there is no working model), or it reports a problem in so
many words ("down", "errors", "failing": `PROBLEM_TERMS`), whatever its tone. Each author counts once per component and bucket,
so one person's angry thread is one voice, not a spike.

Each 15-minute bucket of each component is compared with the same component's buckets over
the `baseline_days` before it, with robust statistics so that past outages in the baseline do
not hide the next one:

* evidence: the voices in the window of 15 minutes, 1 hour and 2 hours ending with the
  bucket (whichever is most surprising), so a sudden burst and a slow build-up both show;
* centre: the largest of the median bucket, the median day (per bucket) and the median of
  the same time of day on the baseline days, never below one voice a day, ending 6 hours before the bucket (a running outage does not
  make itself normal);
* spread: a dispersion factor from the MADs of the same time of day and of days (at least 1) turns the
  count model from Poisson into a negative binomial when the component's chatter is bursty;
* score: the upper-tail probability of the window's count under that model, expressed as a
  z-score (4.0 means p = 3e-5). A spike needs `score >= z` and at least `min_count` voices.

Beside the score, a plain rule (`author_bursts`): `min_authors` (3) distinct people
complaining about one component within `author_window` (15 minutes, a sliding window over
the posts' own times, not the fixed buckets) raise a spike when the component is quiet, its
baseline under `quiet_baseline` (0.1) voices per 15 minutes and its voices in the 6 hours
before the window (the `GUARD` the baseline leaves out) as rare. On a quiet component three
strangers saying the same thing within minutes is an outage report, even when the tail
probability, after the allowance for burstiness, stays just short of `z`. The defaults come
from the settings `chatter_min_authors`, `chatter_author_window_minutes` and
`chatter_quiet_baseline`. Each raised row says which `rule` raised it: "score", "authors"
or "score+authors".

A spike with an open incident on that component (started before the bucket ends, not resolved
more than `aftermath_hours` before it starts) is `attached` to it; otherwise it is a
`suspected` incident. Rows are
upserted by (component, bucket_start): re-running over the same data changes nothing, and
`detected_at` keeps the first detection.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, or_, select

from pulse.core.errors import InvalidArgumentError, UnknownIncidentError
from pulse.core.times import as_utc, utc_or_now
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.db import dialect_insert
from pulse.sql.feature_sources import normalise_text, term_patterns
from pulse.sql.schema import Account, Contact, Incident, Mention, SuspectedIncident

log = logging.getLogger(__name__)

BUCKET = timedelta(minutes=15)
BUCKETS_PER_DAY = 96
#: Buckets of history a bucket needs before it is scored (one day).
MIN_HISTORY = BUCKETS_PER_DAY
#: The centre never drops below one voice a day: an empty baseline is not "impossible".
RATE_FLOOR = 1.0 / BUCKETS_PER_DAY
SAMPLES = 3
#: The default score (tail z) a spike needs: p = 3e-5.
Z = 4.0
#: Evidence windows, in buckets, ending with the bucket scored: 15 minutes, 1 hour, 2 hours.
#: Chatter about an outage trickles in over hours; a longer window catches a slow build-up
#: that no single 15-minute bucket shows, a short one catches a sudden burst early.
WINDOWS: tuple[int, ...] = (1, 4, 8)
#: Buckets left out between a bucket and its baseline (6 hours), so that an outage already
#: under way does not make itself look normal.
GUARD = 24

#: Fallback component keywords (whole words; a trailing `*` is a prefix), used when the
#: product taxonomy (`models.text.load_taxonomy()`) is not available.
COMPONENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "api": ("api", "apis", "webhook*", "endpoint*", "rest api", "graphql", "rate limit*"),
    "dashboard": ("dashboard*", "alert*", "chart*", "widget*"),
    "reports": ("report*", "export*", "csv"),
    "integrations": ("integration*", "slack", "salesforce", "hubspot", "zapier", "sync*",
                     "connector*"),
    "auth": ("login*", "log in", "logon", "sign in", "signin", "sso", "saml", "okta",
             "auth", "authentication", "password*", "2fa", "mfa", "login/sso"),
    "billing-portal": ("billing", "billing portal", "invoice*", "seat management",
                       "checkout", "payment page"),
}


#: Words that report a problem whatever the tone (same matching rules as the lexicon).
PROBLEM_TERMS: tuple[str, ...] = (
    "down", "is down", "outage*", "error*", "fail*", "broken", "broke", "not working",
    "stopped working", "doesnt work", "isnt working", "wont load", "not loading", "timed out",
    "timing out", "timeout*", "crash*", "unavailable", "unreachable", "degraded", "stuck",
    "500", "502", "503", "504", "cant log in", "cant login", "cant sign in", "cant access",
)


@dataclass
class ChatterReport:
    """What one `detect_chatter` run looked at and raised."""

    now: datetime
    since: datetime
    buckets_scored: int
    method: str  # how negativity was judged: a sentiment model's name or "lexicon"
    keywords: str  # "taxonomy" or "builtin"
    raised: pd.DataFrame = field(repr=False)

    @property
    def suspected(self) -> int:
        return int((self.raised["status"] == "suspected").sum()) if len(self.raised) else 0

    @property
    def attached(self) -> int:
        return int((self.raised["status"] == "attached").sum()) if len(self.raised) else 0


@dataclass(frozen=True)
class AuthorRule:
    """The distinct-authors rule: `min_authors` people within `window` on a quiet component
    (baseline, and the 6 hours before the window, under `quiet_baseline` voices per 15
    minutes)."""

    min_authors: int = 3
    window: timedelta = timedelta(minutes=15)
    quiet_baseline: float = 0.1

    @classmethod
    def from_settings(cls, *, min_authors: int | None = None,
                      window_minutes: float | None = None,
                      quiet_baseline: float | None = None) -> AuthorRule:
        """The rule with the settings' values wherever an argument is None."""
        from pulse.core.settings import get_settings

        s = get_settings()
        rule = cls(min_authors=s.chatter_min_authors if min_authors is None else min_authors,
                   window=timedelta(minutes=s.chatter_author_window_minutes
                                    if window_minutes is None else window_minutes),
                   quiet_baseline=s.chatter_quiet_baseline if quiet_baseline is None
                   else quiet_baseline)
        if rule.min_authors < 2:
            raise InvalidArgumentError(
                f"min_authors must be at least 2, not {rule.min_authors}")
        if not timedelta(0) < rule.window <= timedelta(hours=1):
            raise InvalidArgumentError("the author window must lie in (0, 60] minutes, not "
                                       f"{rule.window.total_seconds() / 60:g}")
        if rule.quiet_baseline < 0:
            raise InvalidArgumentError(
                f"quiet_baseline must not be negative, not {rule.quiet_baseline}")
        return rule


# --------------------------------------------------------------------------- text


def _taxonomy_keywords(tax: Any) -> dict[str, list[str]]:
    """Component -> keywords from a taxonomy document of a few plausible shapes."""
    found: dict[str, list[str]] = {}

    def take(name: Any, node: Any) -> None:
        if isinstance(node, Mapping):
            kws = node.get("keywords")
        elif isinstance(node, list | tuple):
            kws = node
        else:
            return
        if name and isinstance(kws, list | tuple):
            found.setdefault(str(name), []).extend(str(k) for k in kws if str(k).strip())

    def components(node: Any) -> None:
        if isinstance(node, Mapping):
            for name, sub in node.items():
                take(name, sub)
        elif isinstance(node, list | tuple):
            for sub in node:
                if isinstance(sub, Mapping):
                    take(sub.get("name") or sub.get("id") or sub.get("component"), sub)
                elif hasattr(sub, "name") and hasattr(sub, "keywords"):
                    take(sub.name, list(sub.keywords))

    if hasattr(tax, "components") and not isinstance(tax, Mapping):
        components(tax.components)
    if isinstance(tax, Mapping):
        components(tax.get("components", {}))
        teams = tax.get("teams", {})
        for team in (teams.values() if isinstance(teams, Mapping) else teams or []):
            if isinstance(team, Mapping):
                components(team.get("components", {}))
    return {k: v for k, v in found.items() if v}


def component_keywords() -> tuple[dict[str, list[str]], str]:
    """Component -> keywords, and where they came from ("taxonomy" or "builtin")."""
    try:
        from pulse.models.text_routing import load_taxonomy  # type: ignore[attr-defined]

        found = _taxonomy_keywords(load_taxonomy())
        if found:
            return found, "taxonomy"
    except ImportError as exc:  # no taxonomy module: the built-in map still works
        log.debug("no component taxonomy (%s); using built-in keywords", exc)
    except Exception as exc:  # a taxonomy we cannot read must not stop detection
        log.warning("component taxonomy unreadable (%s); using built-in keywords", exc)
    return {c: list(k) for c, k in COMPONENT_KEYWORDS.items()}, "builtin"


def _regex(terms: Sequence[str]) -> re.Pattern[str] | None:
    pats = term_patterns(terms)
    return re.compile("|".join(f"(?:{p.regex})" for p in pats)) if pats else None


def _matches(texts: Sequence[str], terms: Sequence[str]) -> np.ndarray:
    rx = _regex(terms)
    if rx is None:
        return np.zeros(len(texts), dtype=bool)
    norm = pd.Series([normalise_text(t or "") for t in texts], dtype=object)
    return norm.str.contains(rx, regex=True).to_numpy(dtype=bool)


def negative_mask(texts: Sequence[str]) -> tuple[np.ndarray, str]:
    """Which texts complain, and how that was judged.

    A text complains when the sentiment model labels it negative (the negative-words lexicon
    when there is no working model) or when it reports a problem in so many words
    (`PROBLEM_TERMS`): "anyone else seeing API failures?" is neutral in tone but is exactly
    the chatter an outage makes.
    """
    if not len(texts):
        return np.zeros(0, dtype=bool), "none"
    problem = _matches(texts, PROBLEM_TERMS)
    try:
        from pulse.models.text import sentiment  # type: ignore[attr-defined]

        frame = sentiment(list(texts))
        labels = frame["label"].astype(str).str.lower().to_numpy()
        methods = frame["method"].astype(str).unique().tolist() if "method" in frame else []
        name = "+".join(sorted(methods)) or "sentiment"
        return (labels == "negative") | problem, f"{name}+problem-terms"
    except ImportError as exc:  # not installed: the lexicon still works
        log.debug("no sentiment model (%s); using the lexicon", exc)
    except Exception as exc:  # a model that fails must not stop detection
        log.warning("sentiment model failed (%s); using the lexicon", exc)
    return _matches(texts, NEGATIVE_TERMS) | problem, "lexicon+problem-terms"


# --------------------------------------------------------------------------- buckets


def _floor(ts: datetime) -> datetime:
    ts = as_utc(ts)
    return ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)


def _negative_component_mentions(engine: Engine, since: datetime, until: datetime
                                 ) -> tuple[pd.DataFrame, str, str]:
    """One row per (negative mention, component it names) created in [since, until)."""
    m = Mention.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(m.c.mention_id, m.c.created_at, m.c.text, m.c.author_handle)
                            .where(m.c.created_at >= since, m.c.created_at < until)).all()
    keywords, kw_source = component_keywords()
    cols = ["component", "mention_id", "created_at", "author_handle"]
    if not rows:
        return pd.DataFrame(columns=cols), "none", kw_source
    frame = pd.DataFrame(rows, columns=["mention_id", "created_at", "text", "author_handle"])
    norm = frame["text"].fillna("").map(normalise_text)
    hits = []
    for comp, kws in keywords.items():
        rx = _regex(kws)
        if rx is not None:
            hit = frame.loc[norm.str.contains(rx, regex=True), ["mention_id"]]
            hits.append(hit.assign(component=comp))
    pairs = pd.concat(hits, ignore_index=True) if hits else pd.DataFrame(
        columns=["mention_id", "component"])
    named = frame[frame["mention_id"].isin(pairs["mention_id"])]
    neg, method = negative_mask(named["text"].fillna("").tolist())
    negative = named.loc[neg, ["mention_id", "created_at", "author_handle"]]
    out = pairs.merge(negative, on="mention_id")
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    out["author_handle"] = out["author_handle"].fillna("").str.lower().str.lstrip("@")
    return out[cols], method, kw_source


def _bucketise(pairs: pd.DataFrame) -> pd.DataFrame:
    cols = ["component", "bucket_start", "negative_mentions", "mentions",
            "sample_mention_ids"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    p = pairs.assign(bucket_start=pairs["created_at"].dt.floor("15min"))
    p = p.sort_values(["created_at", "mention_id"], ascending=False)
    g = p.groupby(["component", "bucket_start"], sort=True)
    out = pd.DataFrame({
        "negative_mentions": g["author_handle"].nunique(),
        "mentions": g.size(),
        "sample_mention_ids": g["mention_id"].agg(lambda s: [str(x) for x in s[:SAMPLES]]),
    }).reset_index()
    return out[cols]


def chatter_buckets(engine: Engine, *, since: datetime, until: datetime) -> pd.DataFrame:
    """Negative mentions naming each component per 15-minute UTC bucket in [since, until).

    Columns: component, bucket_start, negative_mentions (distinct authors), mentions (posts),
    sample_mention_ids (up to three, most recent first). Only non-empty buckets are listed.
    """
    pairs, _, _ = _negative_component_mentions(engine, as_utc(since), as_utc(until))
    return _bucketise(pairs)


def author_bursts(pairs: pd.DataFrame, *, window: timedelta) -> pd.DataFrame:
    """The most distinct authors complaining about each component within any `window`.

    `pairs` are the (component, mention) rows of `_negative_component_mentions`. Every post
    ends one sliding window: the posts about its component from `window` before it up to it
    (inclusive), and the window counts the distinct authors in it. Per component and
    15-minute bucket of the window's end, the largest count is kept, with the window's posts
    (each author's latest, most recent first) as samples.

    Columns: component, bucket_start, authors, window_start, sample_mention_ids. Vectorised:
    each post is compared only with the posts that can share its window.
    """
    cols = ["component", "bucket_start", "authors", "window_start", "sample_mention_ids"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    p = pairs.sort_values(["component", "created_at", "mention_id"]).reset_index(drop=True)
    comp = pd.factorize(p["component"], sort=True)[0].astype(np.int64)
    us = (p["created_at"].astype("datetime64[ns, UTC]").astype("int64") // 1000).to_numpy()
    span = 10 ** 16  # microseconds: keeps components apart in one sorted key
    key = comp * span + (us - us.min())
    width = int(window / timedelta(microseconds=1))
    # The author's next post about the same component (as a key), or never.
    never = np.iinfo(np.int64).max
    after = pd.Series(key).groupby([p["component"], p["author_handle"]]).shift(
        -1, fill_value=never).to_numpy(dtype=np.int64)
    start = np.searchsorted(key, key - width, side="left")
    n = len(p)
    reach = int((np.arange(n) - start).max()) + 1
    idx = np.arange(n)[:, None] - np.arange(reach)[None, :]
    inside = idx >= start[:, None]
    safe = np.where(inside, idx, 0)
    # A post is its author's last in the window when the author's next post lies after it.
    last = inside & (after[safe] > key[:, None])
    authors = last.sum(axis=1)
    ids = p["mention_id"].astype(str).to_numpy()
    out = pd.DataFrame({
        "component": p["component"].to_numpy(),
        "bucket_start": p["created_at"].dt.floor("15min").to_numpy(),
        "authors": authors,
        "window_start": p["created_at"].to_numpy() - window,
        "_row": np.arange(n),
    })
    out = out.sort_values(["component", "bucket_start", "authors", "_row"]).drop_duplicates(
        ["component", "bucket_start"], keep="last")
    rows = out["_row"].to_numpy()
    out["sample_mention_ids"] = [ids[safe[r][last[r]]][:SAMPLES].tolist() for r in rows]
    out["bucket_start"] = pd.to_datetime(out["bucket_start"], utc=True)
    out["window_start"] = pd.to_datetime(out["window_start"], utc=True)
    return out[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- scoring


def score_counts(counts: np.ndarray, *, history: int, guard: int = 0, span: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(baseline, score) of every bucket of `counts` against `history` buckets before it.

    `counts` is a float array with NaN where nothing is known yet (before the data starts);
    `history` is a whole number of days of buckets; `span` is how many buckets each value
    sums (the floor of one voice a day scales with it). Bucket t is compared with buckets
    t-guard-history .. t-guard-1, so an outage in progress does not raise its own baseline.
    Buckets with less than a day of known history get NaN. Vectorised over all buckets at
    once; nothing after bucket t is read (no look-ahead).

    Everything is median-based, so past outages in the baseline do not hide the next one:
    the rate is the largest of the median bucket, the median day (per bucket) and the median
    of the same time of day (+/- 30 minutes) on the baseline days, at least one voice a day; over-dispersion (a bursty component) comes from the MADs of buckets and
    of days and turns the Poisson tail into a negative binomial one of the same mean.
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.stats import nbinom, norm, poisson

    n = len(counts)
    baseline = np.full(n, np.nan)
    score = np.full(n, np.nan)
    if n == 0 or history < BUCKETS_PER_DAY:
        return baseline, score
    days = history // BUCKETS_PER_DAY
    history = days * BUCKETS_PER_DAY
    padded = np.concatenate([np.full(history + guard, np.nan), counts])
    win = sliding_window_view(padded, history)[:n]  # row t: t-guard-history .. t-guard-1
    known = (~np.isnan(win)).sum(axis=1)
    ok = (known >= MIN_HISTORY) & ~np.isnan(counts)
    if not ok.any():
        return baseline, score
    w = win[ok]
    with np.errstate(all="ignore"):
        med = np.nanmedian(w, axis=1)
        per_day = w.reshape(len(w), days, BUCKETS_PER_DAY)
        full = (~np.isnan(per_day)).sum(axis=2) >= BUCKETS_PER_DAY // 2
        daily = np.where(full, np.nansum(per_day, axis=2), np.nan)
        day_med = np.nanmedian(daily, axis=1)
        day_mad = 1.4826 * np.nanmedian(np.abs(daily - day_med[:, None]), axis=1)
    day_med = np.nan_to_num(day_med, nan=0.0)
    day_mad = np.nan_to_num(day_mad, nan=0.0)
    # The same time of day (give or take 30 minutes) on each baseline day: chatter has a
    # daily rhythm, and a busy hour must not look like a spike against the day's average.
    near = np.arange(-2, 3)
    lags = (np.arange(1, days + 1)[:, None] * BUCKETS_PER_DAY - near[None, :]).ravel()
    padded2 = np.concatenate([np.full(history + 2, np.nan), counts])
    rows = np.flatnonzero(ok)[:, None] + history + 2 - lags[None, :]
    slot = padded2[rows]
    with np.errstate(all="ignore"):
        same_time = np.nanmedian(slot, axis=1)
        slot_mad = 1.4826 * np.nanmedian(np.abs(slot - same_time[:, None]), axis=1)
    same_time = np.nan_to_num(same_time, nan=0.0)
    slot_mad = np.nan_to_num(slot_mad, nan=0.0)
    lam = np.maximum.reduce([med, day_med / BUCKETS_PER_DAY, same_time,
                             np.full(len(w), span * RATE_FLOOR)])
    # Spread at the same time of day (a daily rhythm is not burstiness) and from day to day.
    phi = np.maximum.reduce([np.ones(len(w)), slot_mad ** 2 / lam,
                             day_mad ** 2 / np.maximum(day_med, 1.0)])
    phi = np.clip(phi, 1.0, 50.0)
    c = counts[ok]
    tail = poisson.sf(c - 1, lam)  # P(X >= c)
    over = phi > 1.0 + 1e-9
    if over.any():
        r = lam[over] / (phi[over] - 1.0)
        tail[over] = nbinom.sf(c[over] - 1, r, 1.0 / phi[over])
    baseline[ok] = lam
    score[ok] = np.clip(norm.isf(np.clip(tail, 1e-300, 1.0)), -10.0, 40.0)
    return baseline, score


def _open_incidents(engine: Engine, until: datetime) -> pd.DataFrame:
    i = Incident.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(i.c.incident_id, i.c.started_at, i.c.resolved_at,
                                   i.c.components).where(i.c.started_at < until)).all()
    frame = pd.DataFrame(rows, columns=["incident_id", "started_at", "resolved_at",
                                        "components"])
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    frame["resolved_at"] = pd.to_datetime(frame["resolved_at"], utc=True)
    return frame


def _attach(spikes: pd.DataFrame, incidents: pd.DataFrame, aftermath: timedelta
            ) -> pd.DataFrame:
    """status/incident_id: the latest-started incident on the component that was open during
    the bucket, or resolved less than `aftermath` before it started (chatter lags)."""
    spikes = spikes.assign(status="suspected", incident_id=None)
    if spikes.empty or incidents.empty:
        return spikes
    inc = incidents.assign(component=incidents["components"].map(
        lambda v: [str(x) for x in (v or [])])).explode("component").dropna(subset=["component"])
    m = spikes[["component", "bucket_start"]].reset_index().merge(
        inc[["component", "incident_id", "started_at", "resolved_at"]], on="component")
    end = m["bucket_start"] + BUCKET
    cover = (m["started_at"] < end) & (m["resolved_at"].isna() | (
        m["resolved_at"] + aftermath >= m["bucket_start"]))
    m = m[cover].sort_values(["started_at", "incident_id"]).drop_duplicates("index", keep="last")
    spikes.loc[m["index"].to_numpy(), "status"] = "attached"
    spikes.loc[m["index"].to_numpy(), "incident_id"] = m["incident_id"].to_numpy()
    return spikes


def find_spikes(buckets: pd.DataFrame, *, start: datetime, end: datetime,
                history_start: datetime, baseline_days: int, min_count: int, z: float,
                bursts: pd.DataFrame | None = None, rule: AuthorRule | None = None
                ) -> tuple[pd.DataFrame, int]:
    """Spikes among the buckets starting in [start, end), and how many buckets were scored.

    `buckets` are the non-empty buckets from `chatter_buckets` from `history_start` on;
    every other bucket from `history_start` counts zero, and buckets before it are unknown.
    With `bursts` (from `author_bursts`) and a `rule`, a bucket is also a spike when a
    window ending in it holds `rule.min_authors` distinct authors and the bucket's baseline
    (per 15 minutes, as the score sees it) is under `rule.quiet_baseline`. The `rule` column
    says which test raised each spike: "score", "authors" or "score+authors".
    """
    cols = ["component", "bucket_start", "negative_mentions", "baseline", "score",
            "sample_mention_ids", "rule"]
    first = pd.Timestamp(_floor(history_start))
    grid = pd.date_range(first, pd.Timestamp(as_utc(end)), freq="15min", inclusive="left")
    history = baseline_days * BUCKETS_PER_DAY
    in_window = grid >= pd.Timestamp(as_utc(start))
    found, scored = [], 0
    for comp, rows in buckets.groupby("component", sort=True):
        series = rows.set_index("bucket_start")["negative_mentions"].astype(float)
        counts = series.reindex(grid, fill_value=0.0).to_numpy(dtype=float)
        best = np.full(len(grid), -np.inf)
        best_count = np.zeros(len(grid))
        best_base = np.full(len(grid), np.nan)
        best_span = np.ones(len(grid), dtype=int)
        base1 = score1 = np.full(len(grid), np.nan)
        for span in WINDOWS:
            summed = pd.Series(counts).rolling(span, min_periods=span).sum().to_numpy()
            baseline, score = score_counts(summed, history=history, guard=GUARD,
                                           span=span)
            better = (summed >= min_count) & (np.nan_to_num(score, nan=-np.inf) > best)
            best = np.where(better, score, best)
            best_count = np.where(better, summed, best_count)
            best_base = np.where(better, baseline, best_base)
            best_span = np.where(better, span, best_span)
            if span == 1:
                scored += int((in_window & ~np.isnan(score)).sum())
                base1, score1 = baseline, score
        by_score = in_window & (best >= z)
        # The distinct-authors rule, on buckets whose own (15-minute) baseline is quiet.
        # Quiet means quiet over the baseline days and in the hours just before the window
        # (the `GUARD` the baseline leaves out): chatter that goes on after a fix, or that
        # has been building for hours, is not a new outage on a quiet component.
        authors = np.zeros(len(grid))
        recent = np.full(len(grid), np.inf)
        burst_ids: dict[Any, list[str]] = {}
        if bursts is not None and rule is not None and len(bursts):
            mine = bursts[bursts["component"] == comp].set_index("bucket_start")
            authors = mine["authors"].astype(float).reindex(grid, fill_value=0.0).to_numpy()
            burst_ids = mine["sample_mention_ids"].to_dict()
            starts = mine["window_start"].reindex(grid)
            ws = np.searchsorted(grid, starts.dt.floor("15min").fillna(grid[0]), side="left")
            total = np.concatenate([[0.0], np.cumsum(counts)])
            recent = (total[ws] - total[np.maximum(ws - GUARD, 0)]) / GUARD
            recent[ws < GUARD] = np.inf  # too little known before the window
        quiet = rule.quiet_baseline if rule else -np.inf
        by_authors = (in_window & (authors >= (rule.min_authors if rule else np.inf))
                      & (np.nan_to_num(base1, nan=np.inf) < quiet) & (recent < quiet))
        hit = by_score | by_authors
        if hit.any():
            samples = rows.set_index("bucket_start")["sample_mention_ids"].to_dict()
            idx = np.flatnonzero(hit)
            only = ~by_score[idx]  # raised by the authors rule alone: its window's figures
            found.append(pd.DataFrame({
                "component": comp, "bucket_start": grid[idx],
                "negative_mentions": np.where(only, authors[idx], best_count[idx]).astype(int),
                "baseline": np.where(only, base1[idx], best_base[idx]),
                "score": np.where(only & ~np.isfinite(best[idx]),
                                  np.nan_to_num(score1[idx], nan=0.0), best[idx]),
                "sample_mention_ids": [
                    list(burst_ids.get(grid[i], []))[:SAMPLES] if o else
                    [m for k in range(int(best_span[i])) if i - k >= 0
                     for m in samples.get(grid[i - k], [])][:SAMPLES]
                    for i, o in zip(idx, only, strict=True)],
                "rule": np.where(by_score[idx] & by_authors[idx], "score+authors",
                                 np.where(only, "authors", "score"))}))
    spikes = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=cols)
    return spikes[cols], scored


# --------------------------------------------------------------------------- the step


def _upsert(engine: Engine, raised: pd.DataFrame, now: datetime) -> None:
    if raised.empty:
        return
    t = SuspectedIncident.__table__
    rows = [{"component": str(r.component), "bucket_start": r.bucket_start.to_pydatetime(),
             "negative_mentions": int(r.negative_mentions), "baseline": float(r.baseline),
             "score": float(r.score), "status": str(r.status),
             "incident_id": None if r.incident_id is None else str(r.incident_id),
             "sample_mention_ids": list(r.sample_mention_ids), "detected_at": now}
            for r in raised.itertuples(index=False)]
    stmt = dialect_insert(engine, t)
    stmt = stmt.on_conflict_do_update(
        index_elements=["component", "bucket_start"],
        set_={c: stmt.excluded[c] for c in ("negative_mentions", "baseline", "score", "status",
                                            "incident_id", "sample_mention_ids")})
    with engine.begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(stmt, rows[i:i + 1000])


def detect_chatter(engine: Engine, *, now: datetime | None = None, lookback_hours: float = 6,
                   baseline_days: int = 7, min_count: int = 3, z: float = Z,
                   aftermath_hours: float = 2.0, min_authors: int | None = None,
                   author_window_minutes: float | None = None,
                   quiet_baseline: float | None = None) -> ChatterReport:
    """Score each component's buckets of the last `lookback_hours` before `now`; upsert spikes.

    Only mentions created before `now` are read, so a re-run "as of" a past time gives that
    time's answer. A spike is raised by the score (`z`, `min_count`) or by the
    distinct-authors rule (`min_authors` people within `author_window_minutes` on a component
    whose baseline is under `quiet_baseline`; None takes the settings' value). A spike is
    attached to an incident on its component that was open during the bucket or resolved
    less than `aftermath_hours` before it (people keep posting for a while after a fix).
    Returns the spikes raised by this run (new or already stored).
    """
    rule = AuthorRule.from_settings(min_authors=min_authors,
                                    window_minutes=author_window_minutes,
                                    quiet_baseline=quiet_baseline)
    if min_count < 1:
        raise InvalidArgumentError(f"min_count must be at least 1, not {min_count}")
    if baseline_days < 1:
        raise InvalidArgumentError(f"baseline_days must be at least 1, not {baseline_days}")
    now = utc_or_now(now)
    start = _floor(now - timedelta(hours=lookback_hours))
    history_start = start - timedelta(days=baseline_days)
    m = Mention.__table__
    with engine.connect() as conn:
        earliest = conn.execute(select(m.c.created_at).order_by(m.c.created_at).limit(1)
                                ).scalar()
    if earliest is not None:
        history_start = max(history_start, _floor(earliest))
    pairs, method, kw_source = _negative_component_mentions(engine, history_start, now)
    spikes, scored = find_spikes(_bucketise(pairs), start=start, end=now,
                                 history_start=history_start, baseline_days=baseline_days,
                                 min_count=min_count, z=z,
                                 bursts=author_bursts(pairs, window=rule.window), rule=rule)
    raised = _attach(spikes, _open_incidents(engine, now), timedelta(hours=aftermath_hours))
    _upsert(engine, raised, now)
    log.info("chatter: scored %d buckets, raised %d (%d suspected, %d attached)",
             scored, len(raised), int((raised["status"] == "suspected").sum()),
             int((raised["status"] == "attached").sum()))
    return ChatterReport(now=now, since=start, buckets_scored=scored, method=method,
                         keywords=kw_source, raised=raised.reset_index(drop=True))


def incident_complaints(engine: Engine, *, since: datetime, until: datetime,
                        aftermath_hours: float = 2.0) -> pd.DataFrame:
    """The public complaints attached to incidents: every negative mention created in
    [since, until) that names a component of an incident open during its 15-minute bucket
    (or resolved less than `aftermath_hours` before it), by the rule that attaches spikes.

    Columns: incident_id, mention_id, component, created_at, author_handle; one row per
    (incident, mention), earliest first.
    """
    cols = ["incident_id", "mention_id", "component", "created_at", "author_handle"]
    pairs, _, _ = _negative_component_mentions(engine, as_utc(since), as_utc(until))
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    pairs = pairs.assign(bucket_start=pairs["created_at"].dt.floor("15min"))
    linked = _attach(pairs, _open_incidents(engine, as_utc(until)),
                     timedelta(hours=aftermath_hours))
    linked = linked[linked["status"] == "attached"]
    linked = linked.sort_values(["created_at", "mention_id"]).drop_duplicates(
        ["incident_id", "mention_id"])
    return linked[cols].reset_index(drop=True)


def link_accounts(engine: Engine, mention_ids: Sequence[str]) -> pd.DataFrame:
    """The account behind each post, where it is known: the mention's own account, else the
    account or the contact whose X handle wrote it.

    Columns: mention_id, text, author_handle, account_id, name, csm_email; one row per
    mention (account columns None when unknown).
    """
    m, a, c = Mention.__table__, Account.__table__, Contact.__table__
    cols = ["mention_id", "text", "author_handle", "account_id", "name", "csm_email"]
    ids = [str(i) for i in dict.fromkeys(mention_ids)]
    if not ids:
        return pd.DataFrame(columns=cols)
    via_contact = (select(c.c.account_id).where(c.c.x_handle == m.c.author_handle)
                   .limit(1).scalar_subquery())
    q = (select(m.c.mention_id, m.c.text, m.c.author_handle, a.c.account_id, a.c.name,
                a.c.csm_email, (a.c.account_id == m.c.account_id).label("own"))
         .select_from(m.outerjoin(a, or_(a.c.account_id == m.c.account_id,
                                         a.c.x_handle == m.c.author_handle,
                                         a.c.account_id == via_contact))))
    frames = []
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            rows = conn.execute(q.where(m.c.mention_id.in_(ids[i:i + 500]))).all()
            frames.append(pd.DataFrame(rows, columns=[*cols, "own"]))
    frame = pd.concat(frames, ignore_index=True)
    # The mention's own account first, when a handle also matches another account.
    frame["own"] = frame["own"].fillna(False).astype(bool)
    frame = frame.sort_values(["mention_id", "own", "account_id"], ascending=[True, False, True],
                              na_position="last").drop_duplicates("mention_id")
    return frame[cols].reset_index(drop=True)


def incident_chatter(engine: Engine, incident_id: str, *, now: datetime | None = None,
                     aftermath_hours: float = 2.0) -> pd.DataFrame:
    """The public complaints attached to one incident, with the accounts behind them.

    The complaints are those of `incident_complaints` (negative posts naming one of the
    incident's components while it was open, or less than `aftermath_hours` after it was
    resolved), created before `now`. Columns: mention_id, component, created_at,
    author_handle, text, account_id, account_name, csm_email; earliest first.
    """
    cols = ["mention_id", "component", "created_at", "author_handle", "text", "account_id",
            "account_name", "csm_email"]
    i = Incident.__table__
    with engine.connect() as conn:
        row = conn.execute(select(i.c.started_at, i.c.resolved_at)
                           .where(i.c.incident_id == incident_id)).one_or_none()
    if row is None:
        raise UnknownIncidentError(f"no incident {incident_id!r}")
    now = utc_or_now(now)
    until = now if row.resolved_at is None else min(
        now, as_utc(row.resolved_at) + timedelta(hours=aftermath_hours) + BUCKET)
    found = incident_complaints(engine, since=_floor(row.started_at), until=until,
                                aftermath_hours=aftermath_hours)
    found = found[found["incident_id"] == incident_id].drop_duplicates("mention_id")
    return with_accounts(engine, found)[cols]


def with_accounts(engine: Engine, found: pd.DataFrame) -> pd.DataFrame:
    """`incident_complaints` rows with the post's text and the account behind it
    (account_id, account_name, csm_email: None where unknown), earliest first."""
    if found.empty:
        return found.reindex(columns=[*found.columns, "text", "account_id", "account_name",
                                      "csm_email"])
    linked = link_accounts(engine, found["mention_id"].astype(str).tolist())
    out = found.astype({"mention_id": str}).merge(
        linked.drop(columns=["author_handle"]).astype({"mention_id": str}), on="mention_id",
        how="left").rename(columns={"name": "account_name"})
    for col in ("account_id", "account_name", "csm_email"):  # None where unknown, not NaN
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out.sort_values(["created_at", "mention_id"]).reset_index(drop=True)


def suspected_incidents(engine: Engine, *, status: str | None = None,
                        since: datetime | None = None) -> pd.DataFrame:
    """Stored spikes, newest first, with the sample posts' texts (for digests).

    `rule` says what raised each one, as judged with the default `Z`: "score" when its score
    reaches it, else "authors" (the distinct-authors rule); the table does not store it.
    """
    if status is not None and status not in ("suspected", "attached"):
        raise InvalidArgumentError(f'expected status "suspected" or "attached" (not {status!r})')
    t = SuspectedIncident.__table__
    q = select(t).order_by(t.c.bucket_start.desc(), t.c.component)
    if status:
        q = q.where(t.c.status == status)
    if since is not None:
        q = q.where(t.c.bucket_start >= as_utc(since))
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])
        ids = sorted({str(i) for v in frame["sample_mention_ids"] for i in (v or [])})
        texts = _texts(conn, ids)
    frame["sample_mention_ids"] = frame["sample_mention_ids"].map(lambda v: list(v or []))
    frame["sample_texts"] = frame["sample_mention_ids"].map(
        lambda v: [texts[i] for i in v if i in texts])
    frame["rule"] = np.where(frame["score"].astype(float) >= Z, "score", "authors")
    return frame


def _texts(conn: Any, ids: Iterable[str]) -> dict[str, str]:
    m = Mention.__table__
    out: dict[str, str] = {}
    id_list = list(ids)
    for i in range(0, len(id_list), 500):
        out.update({str(r.mention_id): str(r.text) for r in conn.execute(
            select(m.c.mention_id, m.c.text).where(m.c.mention_id.in_(id_list[i:i + 500])))})
    return out
