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
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from pulse.core.errors import InvalidArgumentError
from pulse.models.negative_words import NEGATIVE_TERMS
from pulse.sql.db import dialect_insert
from pulse.sql.feature_sources import normalise_text, term_patterns
from pulse.sql.schema import Incident, Mention, SuspectedIncident

log = logging.getLogger(__name__)

BUCKET = timedelta(minutes=15)
BUCKETS_PER_DAY = 96
#: Buckets of history a bucket needs before it is scored (one day).
MIN_HISTORY = BUCKETS_PER_DAY
#: The centre never drops below one voice a day: an empty baseline is not "impossible".
RATE_FLOOR = 1.0 / BUCKETS_PER_DAY
SAMPLES = 3
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


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _floor(ts: datetime) -> datetime:
    ts = _utc(ts)
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
    pairs, _, _ = _negative_component_mentions(engine, _utc(since), _utc(until))
    return _bucketise(pairs)


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
                history_start: datetime, baseline_days: int, min_count: int, z: float
                ) -> tuple[pd.DataFrame, int]:
    """Spikes among the buckets starting in [start, end), and how many buckets were scored.

    `buckets` are the non-empty buckets from `chatter_buckets` from `history_start` on;
    every other bucket from `history_start` counts zero, and buckets before it are unknown.
    """
    cols = ["component", "bucket_start", "negative_mentions", "baseline", "score",
            "sample_mention_ids"]
    first = pd.Timestamp(_floor(history_start))
    grid = pd.date_range(first, pd.Timestamp(_utc(end)), freq="15min", inclusive="left")
    history = baseline_days * BUCKETS_PER_DAY
    in_window = grid >= pd.Timestamp(_utc(start))
    found, scored = [], 0
    for comp, rows in buckets.groupby("component", sort=True):
        series = rows.set_index("bucket_start")["negative_mentions"].astype(float)
        counts = series.reindex(grid, fill_value=0.0).to_numpy(dtype=float)
        best = np.full(len(grid), -np.inf)
        best_count = np.zeros(len(grid))
        best_base = np.full(len(grid), np.nan)
        best_span = np.ones(len(grid), dtype=int)
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
        hit = in_window & (best >= z)
        if hit.any():
            samples = rows.set_index("bucket_start")["sample_mention_ids"].to_dict()
            idx = np.flatnonzero(hit)
            found.append(pd.DataFrame({
                "component": comp, "bucket_start": grid[idx],
                "negative_mentions": best_count[idx].astype(int), "baseline": best_base[idx],
                "score": best[idx], "sample_mention_ids": [
                    [m for k in range(int(best_span[i])) if i - k >= 0
                     for m in samples.get(grid[i - k], [])][:SAMPLES] for i in idx]}))
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
                   baseline_days: int = 7, min_count: int = 3, z: float = 4.0,
                   aftermath_hours: float = 2.0) -> ChatterReport:
    """Score each component's buckets of the last `lookback_hours` before `now`; upsert spikes.

    Only mentions created before `now` are read, so a re-run "as of" a past time gives that
    time's answer. A spike is attached to an incident on its component that was open during
    the bucket or resolved less than `aftermath_hours` before it (people keep posting for a
    while after a fix). Returns the spikes raised by this run (new or already stored).
    """
    if min_count < 1:
        raise InvalidArgumentError(f"min_count must be at least 1, not {min_count}")
    if baseline_days < 1:
        raise InvalidArgumentError(f"baseline_days must be at least 1, not {baseline_days}")
    now = _utc(now or datetime.now(UTC))
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
                                 min_count=min_count, z=z)
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
    pairs, _, _ = _negative_component_mentions(engine, _utc(since), _utc(until))
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    pairs = pairs.assign(bucket_start=pairs["created_at"].dt.floor("15min"))
    linked = _attach(pairs, _open_incidents(engine, _utc(until)),
                     timedelta(hours=aftermath_hours))
    linked = linked[linked["status"] == "attached"]
    linked = linked.sort_values(["created_at", "mention_id"]).drop_duplicates(
        ["incident_id", "mention_id"])
    return linked[cols].reset_index(drop=True)


def suspected_incidents(engine: Engine, *, status: str | None = None,
                        since: datetime | None = None) -> pd.DataFrame:
    """Stored spikes, newest first, with the sample posts' texts (for digests)."""
    if status is not None and status not in ("suspected", "attached"):
        raise InvalidArgumentError(f'expected status "suspected" or "attached" (not {status!r})')
    t = SuspectedIncident.__table__
    q = select(t).order_by(t.c.bucket_start.desc(), t.c.component)
    if status:
        q = q.where(t.c.status == status)
    if since is not None:
        q = q.where(t.c.bucket_start >= _utc(since))
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])
        ids = sorted({str(i) for v in frame["sample_mention_ids"] for i in (v or [])})
        texts = _texts(conn, ids)
    frame["sample_mention_ids"] = frame["sample_mention_ids"].map(lambda v: list(v or []))
    frame["sample_texts"] = frame["sample_mention_ids"].map(
        lambda v: [texts[i] for i in v if i in texts])
    return frame


def _texts(conn: Any, ids: Iterable[str]) -> dict[str, str]:
    m = Mention.__table__
    out: dict[str, str] = {}
    id_list = list(ids)
    for i in range(0, len(id_list), 500):
        out.update({str(r.mention_id): str(r.text) for r in conn.execute(
            select(m.c.mention_id, m.c.text).where(m.c.mention_id.in_(id_list[i:i + 500])))})
    return out
