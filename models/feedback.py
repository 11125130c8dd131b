"""Feedback items and their themes (issue 6).

* `refresh_insights(engine)` collects customer text (X mentions, tickets: subject and body,
  CSAT survey comments) that `text_insights` does not hold yet, or holds with another text,
  classifies it in batches with `models.text` (sentiment, feedback kind, team routing) and
  upserts `text_insights` with bulk `INSERT ... ON CONFLICT DO UPDATE`.
* `themes(engine, team=..., since=..., until=...)` groups one team's items of a period:
  exact and near duplicates are merged first (normalised text, then TF-IDF cosine >=
  `DUPLICATE_SIMILARITY`), the distinct texts are clustered (agglomerative, average linkage
  on cosine distance, the number of clusters follows from `THEME_DISTANCE`), and each theme
  is labelled by its top terms, with its items, distinct accounts and the MRR behind it
  (each account counted once). `theme_key` is a hash of the sorted top terms, so a theme
  can be matched with the previous period's (`match_previous`).

Everything is deterministic: no random initialisation, ties broken by ids.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, tuple_

from pulse.core.fx import reporting_currency, to_reporting
from pulse.core.times import as_utc
from pulse.models.csat import survey_comments
from pulse.sql.db import dialect_insert, result_frame
from pulse.sql.schema import Account, Mention, TextInsight, Ticket

log = logging.getLogger(__name__)

INSIGHTS = TextInsight.__table__
ITEM_TYPES = ("mention", "ticket", "comment")
BATCH = 500  # rows per classification call and per upsert statement
DUPLICATE_SIMILARITY = 0.9  # TF-IDF cosine at or above which two texts are one item
THEME_DISTANCE = 0.8  # average cosine distance under which clusters merge into one theme
TOP_TERMS = 3
MAX_TEXTS = 4000  # distinct texts clustered per team and period (the most recent)

_URL = re.compile(r"https?://\S+|www\.\S+", re.I)
_HANDLE = re.compile(r"(?<![\w@])@\w{1,30}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NON_WORD = re.compile(r"[^\w\s]+")
_DIGITS = re.compile(r"\d+")
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_MONTHS_FULL = ("january|february|march|april|june|july|august|september|october|november|"
                "december")  # alone ("for March"); "may" only with a day ("May 3")
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
#: What varies between copies of one message and says nothing about its meaning, in the order
#: it is replaced: dates, times, ids (letters and digits mixed, or digits in groups), money,
#: percentages, then any other number.
_VARIABLE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}(?:[t ]\d{1,2}:\d{2}(?::\d{2})?\S*)?|"
                r"\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|"
                rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|"
                rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b|"
                rf"\b(?:{_MONTHS_FULL}|{_DAYS})\b", re.I), " _date_ "),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:am|pm)?\b|\b\d{1,2}\s*(?:am|pm)\b", re.I),
     " _time_ "),
    (re.compile(r"#?\b(?=[\w-]*\d)(?=[\w-]*[a-z])[a-z0-9]+(?:[-_][a-z0-9]+)+\b|"
                r"#?\b(?=\w*\d)(?=\w*[a-z])[a-z0-9]{6,}\b|#\d+\b|\b\d+(?:-\d+){2,}\b", re.I),
     " _id_ "),
    (re.compile(r"[$€£¥]\s?\d[\d,.]*\b|\b\d[\d,.]*\s?(?:usd|eur|gbp|chf|[$€£¥])", re.I),
     " _amount_ "),
    (re.compile(r"[~±]?\d+(?:[.,]\d+)?\s?(?:%|percent\b|pct\b)", re.I), " _pct_ "),
    (re.compile(r"[~±]?\b\d+(?:[.,]\d+)*[a-z]{0,3}\b", re.I), " _num_ "),
)
#: A last line of one to three capitalised words (a sign-off: "-- Maria", "Tom Baker").
_SIGNATURE = re.compile(r"\n[ \t]*(?:--?|—)?[ \t]*(?:[A-Z][\w'.-]*[ \t]*){1,3}[ \t]*$")


def _utc(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0, 0), tzinfo=UTC)
    return as_utc(value)


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return result_frame(result)


def name_pattern(names: Iterable[str] = ()) -> re.Pattern[str] | None:
    """One regular expression for people's names as written with a capital: each full name
    and each of its parts of three letters or more (contact names, say)."""
    parts = {p for n in names if n for p in re.split(r"[\s,.'-]+", str(n))
             if len(p) >= 3 and p[:1].isupper()}
    full = {" ".join(str(n).split()) for n in names if n and len(str(n).split()) > 1}
    words = sorted(parts | full, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<![\w@])(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+")
                                                 for w in words) + r")(?!\w)")


def normalise(text: str, *, names: re.Pattern[str] | None = None) -> str:
    """The text that decides whether two items say the same thing: lower case, with links,
    addresses and @handles removed, a closing signature line dropped, people's names
    (`names`, see `name_pattern`) as `_name_`, and dates, times, ids, amounts, percentages
    and other numbers as `_date_`, `_time_`, `_id_`, `_amount_`, `_pct_`, `_num_`, so that
    copies of one template ("differ from the export by about 12%" / "by about 30%") are one
    text; punctuation removed."""
    t = str(text or "").strip()
    t = _SIGNATURE.sub("", t)
    t = _EMAIL.sub(" ", _URL.sub(" ", t))
    t = _HANDLE.sub(" ", t)
    if names is not None:
        t = names.sub(" _name_ ", t)
    for rx, token in _VARIABLE:
        t = rx.sub(token, t)
    t = _NON_WORD.sub(" ", t.lower())
    return " ".join(t.split())


# --------------------------------------------------------------------------- items


def feedback_items(engine: Engine, *, since: date | datetime | None = None) -> pd.DataFrame:
    """Every feedback item: item_type, item_id, account_id, created_at, text (non-empty), and
    for mentions author_handle, from_brand, in_reply_to_id (what `models.relevance` reads)."""
    lo = _utc(since)
    m, t = Mention.__table__, Ticket.__table__
    qm = select(m.c.mention_id.label("item_id"), m.c.account_id, m.c.created_at, m.c.text,
                m.c.author_handle, m.c.from_brand, m.c.in_reply_to_id)
    qt = select(t.c.ticket_id.label("item_id"), t.c.account_id,
                t.c.opened_at.label("created_at"), t.c.subject, t.c.body)
    if lo is not None:
        qm, qt = qm.where(m.c.created_at >= lo), qt.where(t.c.opened_at >= lo)
    mentions = _frame(engine, qm).assign(item_type="mention")
    tickets = _frame(engine, qt)
    if not tickets.empty:
        subject = tickets["subject"].fillna("").astype(str).str.strip()
        body = tickets["body"].fillna("").astype(str).str.strip()
        tickets["text"] = (subject + "\n" + body).str.strip()
    tickets = tickets.drop(columns=["subject", "body"]).assign(item_type="ticket")
    comments = survey_comments(engine, since)
    comments = pd.DataFrame({
        "item_type": "comment", "item_id": comments["survey_id"].astype(str),
        "account_id": comments["account_id"], "created_at": comments["commented_at"],
        "text": comments["comment"]}) if not comments.empty else pd.DataFrame(
        columns=["item_type", "item_id", "account_id", "created_at", "text"])
    cols = ["item_type", "item_id", "account_id", "created_at", "text", "author_handle",
            "from_brand", "in_reply_to_id"]
    parts = [f.reindex(columns=cols) for f in (mentions, tickets, comments) if not f.empty]
    if not parts:
        return pd.DataFrame(columns=cols)
    items = pd.concat(parts, ignore_index=True)
    items["text"] = items["text"].fillna("").astype(str)
    items = items[items["text"].str.strip() != ""]
    items["item_id"] = items["item_id"].astype(str)
    items["created_at"] = pd.to_datetime(items["created_at"], utc=True)
    return items.sort_values(["created_at", "item_type", "item_id"]).reset_index(drop=True)


def _known(engine: Engine, since: datetime | None) -> pd.DataFrame:
    q = select(INSIGHTS.c.item_type, INSIGHTS.c.item_id, INSIGHTS.c.text,
               INSIGHTS.c.relevance, INSIGHTS.c.dropped)
    if since is not None:
        q = q.where(INSIGHTS.c.created_at >= since)
    return _frame(engine, q)


def classify(texts: Sequence[str]) -> pd.DataFrame:
    """Sentiment, kind and route of each text (models.text), one row per text."""
    from pulse.models import text as mt
    from pulse.models.text_routing import route

    texts = list(texts)
    s = mt.sentiment(texts).reset_index(drop=True)
    k = mt.feedback_kind(texts).reset_index(drop=True)
    r = route(texts).reset_index(drop=True)
    return pd.DataFrame({
        "sentiment": s["label"].astype(str), "sentiment_score": s["score"].astype(float),
        "sentiment_method": s["method"].astype(str),
        "kind": k["kind"].astype(str), "kind_confidence": k["confidence"].astype(float),
        "team": r["team"].fillna("triage").astype(str),
        "component": r["component"].astype(object).where(r["component"].notna(), None),
        "route_confidence": r["confidence"].astype(float),
        "route_method": r["method"].astype(str),
    })


#: The support-tone features read the texts of this many days before a date
#: (sql/feature_sources.py: `*_90d`): what the sentiment model must have read to score it.
TONE_WINDOW_DAYS = 90


@dataclass(frozen=True)
class ToneRefresh:
    """What `refresh_tone` did: how many texts the sentiment model read, or why it could not
    (the support-tone features then count those texts by the word list)."""

    classified: int | None
    error: str | None = None

    @property
    def words(self) -> str:
        if self.error is not None:
            return f"failed ({self.error}); the word list counts instead"
        return f"refreshed ({self.classified:,} texts classified)"


def refresh_tone(engine: Engine, *, since: date | datetime | None = None) -> ToneRefresh:
    """Let the sentiment model read the customer texts (created at or after `since`; None:
    all of them) that `text_insights` does not hold yet, before features are computed: the
    support-tone features read its verdicts and count a text it has not read by the word
    list. Idempotent (a second call reads nothing new: a fraction of a second for ten
    thousand texts). When the model cannot run, the reason is logged and returned, and
    nothing else changes."""
    from pulse.core.errors import PulseError

    try:
        return ToneRefresh(refresh_insights(engine, since=since))
    except PulseError as exc:
        log.warning("support tone falls back to the word list: the sentiment model could not "
                    "run (%s)", exc)
        return ToneRefresh(None, str(exc))


def refresh_insights(engine: Engine, *, since: date | datetime | None = None,
                     now: datetime | None = None) -> int:
    """Classify the feedback items (created at or after `since`) that are new or whose text
    changed, judge whether they are about the product (`models.relevance`: `relevance`,
    `dropped`), and upsert them into `text_insights`; the number of rows written.

    Posts classified before relevance existed (no relevance, not dropped) are judged too and
    only their two relevance columns are updated."""
    from pulse.models.relevance import judge

    at = _utc(now) or datetime.now(UTC)
    lo = _utc(since)
    items = feedback_items(engine, since=lo)
    if items.empty:
        return 0
    known = _known(engine, lo)
    legacy = pd.DataFrame(columns=["item_type", "item_id"])
    if not known.empty:
        known["item_id"] = known["item_id"].astype(str)
        merged = items.merge(known.rename(columns={"text": "_old"}),
                             on=["item_type", "item_id"], how="left")
        fresh = merged["_old"].isna() | (merged["_old"] != merged["text"])
        unjudged = (~fresh & (merged["item_type"] == "mention") & merged["relevance"].isna()
                    & merged["dropped"].isna())
        legacy = merged.loc[unjudged, ["item_type", "item_id"]]
        items_all = items
        items = items[fresh.to_numpy()].reset_index(drop=True)
    else:
        items_all = items
    if items.empty and legacy.empty:
        return 0
    verdict = judge(items_all).frame
    judged = pd.concat([items_all[["item_type", "item_id"]], verdict[["relevance", "dropped"]]],
                       axis=1)
    written = _update_relevance(engine, legacy.merge(judged, on=["item_type", "item_id"]))
    items = items.merge(judged, on=["item_type", "item_id"], how="left")
    cols = [c.name for c in INSIGHTS.columns]
    for start in range(0, len(items), BATCH):
        chunk = items.iloc[start:start + BATCH].reset_index(drop=True)
        labels = classify(chunk["text"].tolist())
        rows = pd.concat([chunk, labels], axis=1).assign(theme_key=None, computed_at=at)
        rows["created_at"] = [ts.to_pydatetime() for ts in rows["created_at"]]
        records = [{c: (None if (not isinstance(v, str) and v is not None and pd.isna(v))
                        else v) for c, v in r.items()}
                   for r in rows[cols].astype(object).to_dict("records")]
        stmt = dialect_insert(engine, INSIGHTS).values(records)
        update = {c: stmt.excluded[c] for c in cols if c not in ("item_type", "item_id")}
        stmt = stmt.on_conflict_do_update(index_elements=["item_type", "item_id"], set_=update)
        with engine.begin() as conn:
            conn.execute(stmt)
        written += len(records)
    log.info("classified %d feedback items", written)
    return written


def _update_relevance(engine: Engine, judged: pd.DataFrame) -> int:
    """Write `relevance` and `dropped` of already classified items (one executemany);
    items still without a verdict are left alone."""
    from sqlalchemy import and_, bindparam

    judged = judged[judged["relevance"].notna() | judged["dropped"].notna()]
    if judged.empty:
        return 0
    records = [{"t": t, "i": str(i), "r": None if r is None or pd.isna(r) else float(r),
                "d": d if isinstance(d, str) else None}
               for t, i, r, d in judged[["item_type", "item_id", "relevance", "dropped"]]
               .itertuples(index=False, name=None)]
    stmt = (INSIGHTS.update()
            .where(and_(INSIGHTS.c.item_type == bindparam("t"),
                        INSIGHTS.c.item_id == bindparam("i")))
            .values(relevance=bindparam("r"), dropped=bindparam("d")))
    with engine.begin() as conn:
        conn.execute(stmt, records)
    return len(records)


# --------------------------------------------------------------------------- themes

THEME_COLUMNS = ["theme_key", "label", "top_terms", "items", "distinct_texts",
                 "duplicates_merged", "accounts", "mrr", "currency", "negative",
                 "account_ids", "sample_item_ids", "item_refs"]


def period_items(engine: Engine, *, team: str | None, since: date | datetime,
                 until: date | datetime) -> pd.DataFrame:
    """The insights of `team` (all teams when None) created in [since, until), with their
    account's name, MRR and currency; items `models.relevance` dropped (not about the
    product, or the brand's own posts) are not feedback and are left out (`dropped_items`)."""
    lo, hi = _utc(since), _utc(until)
    i, a = INSIGHTS, Account.__table__
    q = (select(i.c.item_type, i.c.item_id, i.c.account_id, i.c.created_at, i.c.text,
                i.c.sentiment, i.c.kind, i.c.team, i.c.component,
                a.c.name.label("account_name"), a.c.mrr, a.c.currency)
         .select_from(i.outerjoin(a, a.c.account_id == i.c.account_id))
         .where(i.c.created_at >= lo, i.c.created_at < hi, i.c.dropped.is_(None))
         .order_by(i.c.created_at, i.c.item_type, i.c.item_id))
    if team is not None:
        q = q.where(i.c.team == team)
    frame = _frame(engine, q)
    if not frame.empty:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        frame["mrr"] = frame["mrr"].map(lambda v: None if v is None else float(v))
    return frame


DROPPED_COLUMNS = ["item_type", "item_id", "created_at", "dropped", "relevance", "author",
                   "account_id", "text"]


def dropped_items(engine: Engine, *, since: date | datetime, until: date | datetime,
                  reason: str | None = None) -> pd.DataFrame:
    """The items created in [since, until) that are not feedback, newest first: `dropped`
    ("off_topic": not about the product, "brand": written by the brand), their `relevance`
    and their author (the post's handle)."""
    lo, hi = _utc(since), _utc(until)
    i, m = INSIGHTS, Mention.__table__
    q = (select(i.c.item_type, i.c.item_id, i.c.created_at, i.c.dropped, i.c.relevance,
                m.c.author_handle.label("author"), i.c.account_id, i.c.text)
         .select_from(i.outerjoin(m, (i.c.item_type == "mention")
                                  & (m.c.mention_id == i.c.item_id)))
         .where(i.c.created_at >= lo, i.c.created_at < hi, i.c.dropped.is_not(None))
         .order_by(i.c.created_at.desc(), i.c.item_id))
    if reason is not None:
        q = q.where(i.c.dropped == reason)
    frame = _frame(engine, q)
    return frame.reindex(columns=DROPPED_COLUMNS)


def other_language_items(engine: Engine, *, since: date | datetime,
                         until: date | datetime) -> pd.DataFrame:
    """The items of [since, until) in a language no sentiment model covers (sentiment
    `unknown`, models/text_language.py), newest first, with the language detected: kept as
    feedback (themes, routing), never guessed as negative."""
    from pulse.models.text import OTHER_LANGUAGE
    from pulse.models.text_language import detect

    i = INSIGHTS
    q = (select(i.c.item_type, i.c.item_id, i.c.created_at, i.c.team, i.c.account_id, i.c.text)
         .where(i.c.created_at >= _utc(since), i.c.created_at < _utc(until),
                i.c.sentiment_method == OTHER_LANGUAGE)
         .order_by(i.c.created_at.desc(), i.c.item_id))
    frame = _frame(engine, q)
    frame.insert(3, "language", detect(frame["text"]) if len(frame) else [])
    return frame


def dropped_counts(engine: Engine, *, since: date | datetime,
                   until: date | datetime) -> dict[str, int]:
    """How many items of [since, until) were left out, per reason (every reason, 0 too)."""
    from sqlalchemy import func

    from pulse.models.relevance import REASONS

    i = INSIGHTS
    with engine.connect() as conn:
        rows = conn.execute(select(i.c.dropped, func.count())
                            .where(i.c.created_at >= _utc(since), i.c.created_at < _utc(until),
                                   i.c.dropped.is_not(None))
                            .group_by(i.c.dropped)).all()
    counts = {r: 0 for r in REASONS}
    counts.update({str(r): int(n) for r, n in rows})
    return counts


def _union_find(n: int, pairs: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return int(x)

    for a, b in pairs:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)])


def theme_key(terms: Sequence[str]) -> str:
    """A stable key of a theme: the hash of its sorted top terms."""
    return hashlib.sha1("|".join(sorted(terms)).encode()).hexdigest()[:16]


#: Added to English stop words: greetings, sign-offs and filler that say nothing about a theme
#: (without them, "Best," under every e-mail ends up in theme labels).
FILLER = frozenset({"hi", "hello", "hey", "dear", "thanks", "thank", "best", "regards",
                    "cheers", "sincerely", "kind", "please", "just", "really", "ok", "okay",
                    "guys", "folks", "asking", "wondering"})


def stop_words() -> list[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return sorted(ENGLISH_STOP_WORDS | FILLER)


def cluster_items(items: pd.DataFrame, *, duplicate_similarity: float = DUPLICATE_SIMILARITY,
                  theme_distance: float = THEME_DISTANCE,
                  names: re.Pattern[str] | None = None) -> pd.DataFrame:
    """`items` (with `text`) plus `norm` (`normalise`d with `names`), `dup_group`
    (near-duplicates share it), `cluster` (theme number) and `centrality` (cosine to the
    theme's centroid); `attrs["terms"]` holds each theme's top terms and `attrs["labels"]`
    its label (`label_themes`)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    items = items.reset_index(drop=True).copy()
    items["norm"] = items["text"].map(lambda t: normalise(t, names=names))
    # 1. exact duplicates after normalisation, 2. near duplicates among the distinct texts.
    distinct = items.drop_duplicates("norm", keep="first")["norm"].tolist()[-MAX_TEXTS:]
    index = {t: n for n, t in enumerate(distinct)}
    items = items[items["norm"].isin(index)].reset_index(drop=True)
    vec = TfidfVectorizer(stop_words=stop_words(), sublinear_tf=True, min_df=1,
                          token_pattern=_TERM)
    try:
        x = vec.fit_transform(distinct)
    except ValueError:  # nothing but stop words
        items["dup_group"], items["cluster"], items["centrality"] = 0, 0, 1.0
        items.attrs["terms"], items.attrs["labels"] = {0: []}, {0: ""}
        return items
    sim = cosine_similarity(x)
    pairs = np.argwhere(np.triu(sim >= duplicate_similarity, k=1))
    group = _union_find(len(distinct), pairs)
    reps = sorted(set(group.tolist()))
    rep_index = {g: n for n, g in enumerate(reps)}
    # Each duplicate group is one point: the mean of its texts' vectors.
    members = np.array([rep_index[g] for g in group])
    weights = np.zeros((len(reps), len(distinct)))
    weights[members, np.arange(len(distinct))] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    points = weights @ x.toarray()
    if len(reps) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        empty = ~points.any(axis=1)
        points[empty] = 1e-9  # a text of stop words only: its own cluster
        labels = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average",
            distance_threshold=theme_distance).fit_predict(points)
    # Renumber clusters by first appearance, so numbers do not depend on sklearn internals.
    order: dict[int, int] = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    labels = np.array([order[int(lab)] for lab in labels])
    text_group = members
    items["dup_group"] = [int(text_group[index[t]]) for t in items["norm"]]
    items["cluster"] = [int(labels[g]) for g in items["dup_group"]]
    counts = items.groupby("dup_group").size()
    central = np.zeros(len(reps))
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        w = np.array([counts.get(i, 1) for i in idx], dtype=float)
        centroid = (points[idx] * w[:, None]).sum(axis=0)
        norm = np.linalg.norm(centroid) or 1.0
        pn = np.linalg.norm(points[idx], axis=1)
        pn[pn == 0] = 1.0
        central[idx] = (points[idx] @ centroid) / (pn * norm)
    items["centrality"] = [float(central[g]) for g in items["dup_group"]]
    top, named = label_themes(items, names=names)
    items.attrs["terms"], items.attrs["labels"] = top, named
    return items


#: Words of two letters or more (no digits, no `_placeholders_`).
_TERM = r"(?u)\b[^\W\d_][^\W\d_]+\b"
LABEL_WORDS = (2, 12)  # a label is a phrase of this many words, from the theme's own texts
LABEL_CHARS = 80
_SEGMENT_SPLIT = re.compile(r"\n+|(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?;…])\s+|\s+[-–—]\s+|"
                            r":\s+(?=[A-Z])")
_GREETING = re.compile(r"^(?:(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b[^,.!]*"
                       r"[,.!]\s*|(?:thanks|thank you|cheers|best|regards)[,.!]?\s*$)", re.I)
_EDGE = re.compile(r"^[\s\"'“”‘’(\[*#>,;:.!…-]+|[\s\"'“”‘’)\]*#,;:.!…-]+$")
_LEADING_HANDLES = re.compile(r"^(?:\s*@\w{1,30})+")
#: In a label, what differs from one item to the next is shown as "…".
_LABEL_VARIABLE = (_VARIABLE[0][0], _VARIABLE[2][0], _VARIABLE[3][0])


def _segments(text: str) -> list[tuple[str, float]]:
    """The phrases of a text a label can be, each with its prior: its lines and sentences (a
    ticket's subject, a post's opening sentence: the one its writer chose to sum it up, prior
    1; later ones 0.5; with a person's @handle cut out of its middle, half that), without
    links, addresses, @handles and greetings; ids, dates and amounts shown as "…"."""
    t = _EMAIL.sub(" ", _URL.sub(" ", str(text or "")))
    out: list[tuple[str, float]] = []
    for part in _SEGMENT_SPLIT.split(t):
        part = _LEADING_HANDLES.sub("", part)
        holed = bool(_HANDLE.search(part))
        part = _HANDLE.sub(" ", part)
        for rx in _LABEL_VARIABLE:
            part = rx.sub("…", part)
        part = _GREETING.sub("", " ".join(part.split()))
        part = _EDGE.sub("", part).strip()
        question = part.endswith("?")
        part = part.rstrip("?").rstrip()
        n = len(part.split())
        if LABEL_WORDS[0] <= n <= LABEL_WORDS[1] and len(part) <= LABEL_CHARS:
            prior = (1.0 if not out else 0.5) * (0.5 if holed else 1.0)
            out.append((part + ("?" if question else ""), prior))
        elif part and not out:
            out.append(("", 0.0))  # a subject too short or too long still comes first
    return [(p, w) for p, w in out if p]


def label_themes(items: pd.DataFrame, *, names: re.Pattern[str] | None = None
                 ) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Each theme's top terms and label, from `items` with `text`, `norm` and `cluster`.

    Terms are weighed by class-based TF-IDF (as BERTopic does): every theme is one document
    of all its items (duplicates included, so what many customers say weighs more), words and
    word pairs weigh by their frequency in the theme times log(1 + average theme length /
    their frequency over all themes). The label is the phrase (a line or sentence of 2 to 12
    words from the theme's texts) with the best product of: how close its terms are to the
    theme's weights (cosine), how much of its terms the theme's items hold on average, and
    its prior (`_segments`: a ticket's subject or a post's opening sentence first). Phrases
    naming a person are never labels. A theme without any usable phrase is labelled by its
    top terms."""
    from sklearn.feature_extraction.text import CountVectorizer

    clusters = sorted(items["cluster"].unique().tolist())
    vec = CountVectorizer(stop_words=stop_words(), ngram_range=(1, 2), token_pattern=_TERM)
    try:
        counts = vec.fit_transform(items["norm"])
    except ValueError:  # nothing but stop words
        return {int(c): [] for c in clusters}, {int(c): "" for c in clusters}
    import scipy.sparse as sp

    pos = {c: n for n, c in enumerate(clusters)}
    rows = items["cluster"].map(pos).to_numpy()
    member = sp.csr_matrix((np.ones(len(items)), (rows, np.arange(len(items)))),
                           shape=(len(clusters), len(items)))
    tf = np.asarray((member @ counts).todense(), dtype=float)
    sizes = tf.sum(axis=1, keepdims=True)
    sizes[sizes == 0] = 1.0
    avg = float(tf.sum() / max(len(clusters), 1))
    freq = tf.sum(axis=0)
    weights = (tf / sizes) * np.log1p(avg / np.where(freq > 0, freq, 1.0))
    terms = np.array(vec.get_feature_names_out())
    unigram = np.array([" " not in t for t in terms])
    top: dict[int, list[str]] = {}
    label: dict[int, str] = {}
    for c in clusters:
        w = weights[pos[c]]
        ranked = sorted(np.flatnonzero(unigram & (w > 0)).tolist(), key=lambda j: (-w[j], terms[j]))
        top[int(c)] = [str(terms[j]) for j in ranked[:TOP_TERMS]]
        mine = items[items["cluster"] == c]
        label[int(c)] = _best_phrase(mine, w, vec, names) or ", ".join(top[int(c)])
    return top, label


def _best_phrase(items: pd.DataFrame, weights: np.ndarray, vec: Any,
                 names: re.Pattern[str] | None) -> str:
    """The phrase of `items`' texts closest to the theme's term `weights`, weighted by how
    many of its items hold it (see `label_themes`)."""
    seen = items.drop_duplicates("norm")
    phrases: dict[str, list[str]] = {}  # normalised phrase -> its spellings, in order
    prior: dict[str, float] = {}
    for text in seen["text"]:
        for phrase, weight in _segments(text):
            if names is not None and names.search(phrase):
                continue
            key = normalise(phrase)
            if not key:
                continue
            phrases.setdefault(key, []).append(phrase)
            prior[key] = max(prior.get(key, 0.0), weight)
    if not phrases:
        return ""
    keys = sorted(phrases)
    x = vec.transform(keys)
    x.data[:] = 1.0
    nnz = np.asarray(x.getnnz(axis=1), dtype=float)
    norm = float(np.linalg.norm(weights)) or 1.0
    fit = np.asarray(x @ weights).ravel() / (np.sqrt(np.where(nnz > 0, nnz, 1.0)) * norm)
    # Coverage: the share of the phrase's terms an item holds, averaged over the items.
    held = vec.transform(items["norm"])
    held.data[:] = 1.0
    cover = np.asarray((held @ x.T).mean(axis=0)).ravel() / np.where(nnz > 0, nnz, 1.0)
    score = fit * cover * np.array([prior[k] for k in keys])
    best = min(range(len(keys)), key=lambda j: (-round(float(score[j]), 9),
                                                len(keys[j]), keys[j]))
    if score[best] <= 0:
        return ""
    spelling = pd.Series(phrases[keys[best]]).value_counts()
    text = str(spelling.index[0])
    return text[:1].upper() + text[1:]


def themes(engine: Engine, *, team: str | None, since: date | datetime,
           until: date | datetime) -> pd.DataFrame:
    """The themes of `team`'s feedback created in [since, until), biggest MRR first.

    Columns: theme_key, label (a phrase from the theme's texts, `label_themes`), top_terms
    (class-based TF-IDF), items (every raw item, duplicates
    included), distinct_texts (after merging near-duplicates), duplicates_merged, accounts
    (distinct), mrr (sum over the distinct accounts, each once), currency (the accounts'
    currency, "mixed" when they differ), negative (items with negative sentiment),
    account_ids (by MRR, largest first), sample_item_ids (most central first, one per
    near-duplicate group), item_refs (item_type:item_id of every item).
    """
    items = period_items(engine, team=team, since=since, until=until)
    ids = sorted(items["account_id"].dropna().astype(str).unique()) if not items.empty else []
    return themes_of(items, names=contact_names(engine, ids))


def contact_names(engine: Engine, account_ids: Sequence[str]) -> list[str]:
    """The names of the contacts of these accounts (what `normalise` treats as `_name_`)."""
    from pulse.sql.schema import Contact

    c = Contact.__table__
    names: list[str] = []
    with engine.connect() as conn:
        for start in range(0, len(account_ids), BATCH):
            part = list(account_ids[start:start + BATCH])
            names += [str(n) for n in conn.execute(select(c.c.name).where(
                c.c.account_id.in_(part), c.c.name.is_not(None))).scalars()]
    return sorted(set(names))


def themes_of(items: pd.DataFrame, *, names: Iterable[str] = ()) -> pd.DataFrame:
    """`themes` of an already loaded frame of `period_items`; `names` are people's names
    (the accounts' contacts) that do not make two texts different, nor appear in labels."""
    if items.empty:
        return pd.DataFrame(columns=THEME_COLUMNS)
    clustered = cluster_items(items, names=name_pattern(names))
    top, named = clustered.attrs["terms"], clustered.attrs["labels"]
    clustered.attrs = {}  # pandas deep-copies attrs on every operation below: costly
    rows = []
    for c, g in clustered.groupby("cluster", sort=True):
        terms = top.get(int(c), [])
        accounts = (g.dropna(subset=["account_id"])
                    .drop_duplicates("account_id")[["account_id", "mrr", "currency"]])
        accounts = accounts.assign(mrr=accounts["mrr"].fillna(0.0)).sort_values(
            ["mrr", "account_id"], ascending=[False, True])
        samples = (g.sort_values(["centrality", "created_at", "item_id"],
                                 ascending=[False, False, True])
                   .drop_duplicates("dup_group"))
        key_terms = terms or sorted(g["norm"].iloc[:1].tolist())
        rows.append({
            "theme_key": theme_key(key_terms),
            "label": named.get(int(c)) or (", ".join(terms) if terms else "(no words)"),
            "top_terms": terms,
            "items": int(len(g)),
            "distinct_texts": int(g["dup_group"].nunique()),
            "duplicates_merged": int(len(g) - g["dup_group"].nunique()),
            "accounts": int(len(accounts)),
            # accounts bill in their own currencies: summed in the reporting one (pulse/fx.py)
            "mrr": round(float(np.nansum(to_reporting(accounts["mrr"], accounts["currency"]))),
                         2),
            "currency": reporting_currency() if len(accounts) else None,
            "negative": int((g["sentiment"] == "negative").sum()) if "sentiment" in g else 0,
            "account_ids": accounts["account_id"].astype(str).tolist(),
            "sample_item_ids": [f"{t}:{i}" for t, i in
                                zip(samples["item_type"], samples["item_id"], strict=True)],
            "item_refs": [f"{t}:{i}" for t, i in zip(g["item_type"], g["item_id"], strict=True)],
        })
    out = pd.DataFrame(rows, columns=THEME_COLUMNS)
    return out.sort_values(["mrr", "items", "theme_key"], ascending=[False, False, True]
                           ).reset_index(drop=True)


def match_previous(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """`current` plus `previous_items` (0 when new), `trend` (items now minus then) and
    `new`: a theme matches the previous period's theme with the same key, else the one
    sharing the most top terms (at least two, or all when it has fewer)."""
    out = current.copy()
    prev_items, matched = [], []
    prev = previous.to_dict("records") if not previous.empty else []
    for row in out.to_dict("records"):
        found = next((p for p in prev if p["theme_key"] == row["theme_key"]), None)
        if found is None and prev:
            terms = set(row["top_terms"])
            need = min(2, len(terms)) or 1
            best = max(prev, key=lambda p: (len(terms & set(p["top_terms"])), p["items"]))
            if len(terms & set(best["top_terms"])) >= need:
                found = best
        prev_items.append(int(found["items"]) if found else 0)
        matched.append(found is not None)
    out["previous_items"] = prev_items
    out["trend"] = out["items"] - out["previous_items"]
    out["new"] = [not m for m in matched]
    return out


def assign_theme_keys(engine: Engine, keyed: pd.DataFrame) -> int:
    """Write each theme's key onto its items in `text_insights` (one statement per theme)."""
    n = 0
    with engine.begin() as conn:
        for row in keyed.itertuples(index=False):
            refs = [tuple(r.split(":", 1)) for r in row.item_refs]
            for start in range(0, len(refs), BATCH):
                part = refs[start:start + BATCH]
                conn.execute(INSIGHTS.update()
                             .where(tuple_(INSIGHTS.c.item_type, INSIGHTS.c.item_id).in_(part))
                             .values(theme_key=row.theme_key))
                n += len(part)
    return n


__all__ = ["DUPLICATE_SIMILARITY", "ITEM_TYPES", "THEME_COLUMNS", "THEME_DISTANCE",
           "assign_theme_keys", "classify", "cluster_items", "contact_names", "dropped_counts",
           "dropped_items", "label_themes", "name_pattern",
           "feedback_items", "match_previous",
           "normalise", "period_items", "refresh_insights", "theme_key", "themes", "themes_of"]
