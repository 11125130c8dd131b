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
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, tuple_

from pulse.core.fx import reporting_currency, to_reporting
from pulse.models.csat import survey_comments
from pulse.sql.db import dialect_insert
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


def _utc(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0, 0), tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _frame(engine: Engine, query: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def normalise(text: str) -> str:
    """Lower case, without links, handles, addresses, digits and punctuation: the text that
    decides whether two items say the same thing."""
    t = _EMAIL.sub(" ", _URL.sub(" ", str(text or "")))
    t = _HANDLE.sub(" ", t).lower()
    t = _DIGITS.sub(" ", _NON_WORD.sub(" ", t))
    return " ".join(t.split())


# --------------------------------------------------------------------------- items


def feedback_items(engine: Engine, *, since: date | datetime | None = None) -> pd.DataFrame:
    """Every feedback item: item_type, item_id, account_id, created_at, text (non-empty)."""
    lo = _utc(since)
    m, t = Mention.__table__, Ticket.__table__
    qm = select(m.c.mention_id.label("item_id"), m.c.account_id, m.c.created_at, m.c.text)
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
    cols = ["item_type", "item_id", "account_id", "created_at", "text"]
    parts = [f[cols] for f in (mentions, tickets, comments) if not f.empty]
    if not parts:
        return pd.DataFrame(columns=cols)
    items = pd.concat(parts, ignore_index=True)
    items["text"] = items["text"].fillna("").astype(str)
    items = items[items["text"].str.strip() != ""]
    items["item_id"] = items["item_id"].astype(str)
    items["created_at"] = pd.to_datetime(items["created_at"], utc=True)
    return items.sort_values(["created_at", "item_type", "item_id"]).reset_index(drop=True)


def _known(engine: Engine, since: datetime | None) -> pd.DataFrame:
    q = select(INSIGHTS.c.item_type, INSIGHTS.c.item_id, INSIGHTS.c.text)
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


def refresh_insights(engine: Engine, *, since: date | datetime | None = None,
                     now: datetime | None = None) -> int:
    """Classify the feedback items (created at or after `since`) that are new or whose text
    changed, and upsert them into `text_insights`; the number of rows written."""
    at = _utc(now) or datetime.now(UTC)
    lo = _utc(since)
    items = feedback_items(engine, since=lo)
    if items.empty:
        return 0
    known = _known(engine, lo)
    if not known.empty:
        known["item_id"] = known["item_id"].astype(str)
        merged = items.merge(known.rename(columns={"text": "_old"}),
                             on=["item_type", "item_id"], how="left")
        items = merged[merged["_old"].isna() | (merged["_old"] != merged["text"])
                       ].drop(columns="_old").reset_index(drop=True)
    written = 0
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


# --------------------------------------------------------------------------- themes

THEME_COLUMNS = ["theme_key", "label", "top_terms", "items", "distinct_texts",
                 "duplicates_merged", "accounts", "mrr", "currency", "negative",
                 "account_ids", "sample_item_ids", "item_refs"]


def period_items(engine: Engine, *, team: str | None, since: date | datetime,
                 until: date | datetime) -> pd.DataFrame:
    """The insights of `team` (all teams when None) created in [since, until), with their
    account's name, MRR and currency."""
    lo, hi = _utc(since), _utc(until)
    i, a = INSIGHTS, Account.__table__
    q = (select(i.c.item_type, i.c.item_id, i.c.account_id, i.c.created_at, i.c.text,
                i.c.sentiment, i.c.kind, i.c.team, i.c.component,
                a.c.name.label("account_name"), a.c.mrr, a.c.currency)
         .select_from(i.outerjoin(a, a.c.account_id == i.c.account_id))
         .where(i.c.created_at >= lo, i.c.created_at < hi)
         .order_by(i.c.created_at, i.c.item_type, i.c.item_id))
    if team is not None:
        q = q.where(i.c.team == team)
    frame = _frame(engine, q)
    if not frame.empty:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        frame["mrr"] = frame["mrr"].map(lambda v: None if v is None else float(v))
    return frame


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
                  theme_distance: float = THEME_DISTANCE) -> pd.DataFrame:
    """`items` (with `text`) plus `dup_group` (near-duplicates share it), `cluster` (theme
    number) and `centrality` (cosine to the theme's centroid)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    items = items.reset_index(drop=True).copy()
    items["norm"] = items["text"].map(normalise)
    # 1. exact duplicates after normalisation, 2. near duplicates among the distinct texts.
    distinct = items.drop_duplicates("norm", keep="first")["norm"].tolist()[-MAX_TEXTS:]
    index = {t: n for n, t in enumerate(distinct)}
    items = items[items["norm"].isin(index)].reset_index(drop=True)
    vec = TfidfVectorizer(stop_words=stop_words(), sublinear_tf=True, min_df=1,
                          token_pattern=r"(?u)\b[a-z][a-z]+\b")
    try:
        x = vec.fit_transform(distinct)
    except ValueError:  # nothing but stop words
        items["dup_group"], items["cluster"], items["centrality"] = 0, 0, 1.0
        items.attrs["terms"] = {0: []}
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
    terms = np.array(vec.get_feature_names_out())
    counts = items.groupby("dup_group").size()
    top: dict[int, list[str]] = {}
    central = np.zeros(len(reps))
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        w = np.array([counts.get(i, 1) for i in idx], dtype=float)
        centroid = (points[idx] * w[:, None]).sum(axis=0)
        ranked = sorted(range(len(terms)), key=lambda j: (-centroid[j], terms[j]))
        top[c] = [str(terms[j]) for j in ranked[:TOP_TERMS] if centroid[j] > 0]
        norm = np.linalg.norm(centroid) or 1.0
        pn = np.linalg.norm(points[idx], axis=1)
        pn[pn == 0] = 1.0
        central[idx] = (points[idx] @ centroid) / (pn * norm)
    items["centrality"] = [float(central[g]) for g in items["dup_group"]]
    items.attrs["terms"] = top
    return items


def themes(engine: Engine, *, team: str | None, since: date | datetime,
           until: date | datetime) -> pd.DataFrame:
    """The themes of `team`'s feedback created in [since, until), biggest MRR first.

    Columns: theme_key, label (top terms joined), top_terms, items (every item, duplicates
    included), distinct_texts (after merging near-duplicates), duplicates_merged, accounts
    (distinct), mrr (sum over the distinct accounts, each once), currency (the accounts'
    currency, "mixed" when they differ), negative (items with negative sentiment),
    account_ids (by MRR, largest first), sample_item_ids (most central first, one per
    near-duplicate group), item_refs (item_type:item_id of every item).
    """
    items = period_items(engine, team=team, since=since, until=until)
    return themes_of(items)


def themes_of(items: pd.DataFrame) -> pd.DataFrame:
    """`themes` of an already loaded frame of `period_items`."""
    if items.empty:
        return pd.DataFrame(columns=THEME_COLUMNS)
    clustered = cluster_items(items)
    top = clustered.attrs["terms"]
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
            "label": ", ".join(terms) if terms else "(no words)",
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
           "assign_theme_keys", "classify", "cluster_items", "feedback_items", "match_previous",
           "normalise", "period_items", "refresh_insights", "theme_key", "themes", "themes_of"]
