"""Is it about us? Which social posts are feedback on the product (issue 15).

A listener that searches X for the brand's name also hears posts that only share the word
("my pulse after the stairs"), and it hears the brand's own replies. Neither is feedback.
`judge(items)` decides, for every item, whether it is kept or `dropped`, and why:

* **brand**: a post the brand wrote: `mentions.from_brand`, else (flag unknown) an author
  among the brand's handles (`PULSE_BRAND_HANDLES`, and any author of a post flagged as the
  brand's), the same rule as the response-time report (models/responses.py).
* **off_topic**: a post that names nothing of the product. Every post gets a `relevance`: the
  evidence, in nats, that its words belong to the product's own language rather than to
  social chatter at large:

  - *the product's texts*: support tickets and survey comments of the window (customers
    writing to us about the product) and the taxonomy's teams, components and keywords;
  - *the stream*: every post the listener heard (known to be about us or not).

  A word's weight is log P(word | product texts) - log P(word | stream), from document
  frequencies smoothed towards the pooled frequency (`SMOOTHING`); only words found in at
  least `MIN_SUPPORT` product texts and more common there than in the stream count, so a
  post's relevance is the sum of its positive weights: "seats", "export", "invoice" weigh;
  "today", "new", "thanks" (as common on social media as in tickets) do not. Posts count by
  near-duplicate group (binary word cosine at least `GROUP_SIMILARITY`: retweets, copies,
  template variants), and a post's own group is left out when that post is judged, so that a
  repeated post cannot vouch for or against itself.

  Posts *known* to be about us (addressed to a brand handle, replying to a brand post,
  answered by the brand, or written by a known customer account) are never dropped. Any
  other post is dropped as off-topic when its relevance is 0: not a single one of its words
  is more typical of the product's texts than of social chatter. (A threshold learnt from the
  known posts, the "spy" rule of positive-unlabelled learning, was tried: known posts are
  richer in product words than the short unaddressed ones, so it dropped real feedback.)
  With fewer than `MIN_PRODUCT_TEXTS` product texts nothing is judged off-topic (too little
  to know the product's language). A post in a language the product's texts are not written
  in (models/text_language.py: under 5% of them) cannot show our words, so it is never
  called off-topic: it is kept, its sentiment `unknown`, and counted by
  `pulse feedback languages`.

Tickets and survey comments come through the product's own channels: they are always about
it, and not judged (`relevance` None). Nothing is deleted: dropped items stay in
`text_insights` with their reason, are counted in every digest and listed by
`pulse feedback dropped`.

Nothing here knows any particular off-topic subject: the same method works for a brand whose
name is a fruit, a verb or a city.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pulse.core.settings import own_handles
from pulse.models.text_language import covered, unsupported

REASONS = ("off_topic", "brand")
MIN_SUPPORT = 2  # product texts a word must appear in before it counts as evidence
MIN_PRODUCT_TEXTS = 50  # tickets, comments and taxonomy texts needed to judge relevance
GROUP_SIMILARITY = 0.7  # binary word cosine at or above which two posts are near-duplicates
SMOOTHING = 10.0  # texts of prior (the pooled frequency) in each side's word frequency
MAX_GROUPED = 30000  # posts compared pairwise for near-duplicates; above it, exact copies only

_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HANDLE = re.compile(r"(?<![\w@])@(\w{1,30})")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Verdict:
    """What `judge` decided for a batch: one row per item, and the threshold it used."""

    frame: pd.DataFrame  # relevance, dropped, known (index aligned with the items)
    threshold: float  # relevance at or below which an unknown post is off-topic
    spies: int  # posts known to be about us


def _clean(texts: pd.Series) -> pd.Series:
    """Words only: links, addresses, @handles and digits removed."""
    t = texts.fillna("").astype(str)
    t = t.str.replace(_URL, " ", regex=True).str.replace(_EMAIL, " ", regex=True)
    t = t.str.replace(_HANDLE, " ", regex=True).str.replace(_DIGITS, " ", regex=True)
    return t.str.lower()


def _handles_of(texts: pd.Series) -> pd.Series:
    """The lower-case @handles each text names, as a set."""
    found = texts.fillna("").astype(str).str.findall(_HANDLE)
    return found.map(lambda hs: {h.lower() for h in hs})


def brand_posts(mentions: pd.DataFrame, handles: Iterable[str]) -> pd.Series:
    """Whether each post is the brand's: its `from_brand` flag, else its author among
    `handles` or among the authors of posts flagged as the brand's."""
    from pulse.models.responses import _brand_posts

    own = own_handles(handles)
    flag = mentions["from_brand"].astype("boolean")
    own |= set(mentions.loc[flag.fillna(False).astype(bool), "author_handle"]
               .dropna().astype(str).str.lower())
    frame = mentions.assign(author_handle=mentions["author_handle"].fillna("").astype(str))
    return _brand_posts(frame, own).reindex(mentions.index).astype(bool)


def _taxonomy_docs(taxonomy: Any) -> list[str]:
    """One text per component: its team's description, its name and its keywords."""
    if taxonomy is None:
        return []
    docs = []
    for comp in taxonomy.components:
        words = " ".join(k.replace("*", "") for k in comp.keywords)
        docs.append(f"{taxonomy.teams.get(comp.team, '')} {comp.name} {words}")
    for team, words in getattr(taxonomy, "team_keywords", {}).items():
        docs.append(f"{taxonomy.teams.get(team, '')} " + " ".join(
            k.replace("*", "") for k in words))
    return docs


def _groups(x: Any) -> np.ndarray:
    """Near-duplicate groups of the rows of a binary document-term matrix (cosine >=
    GROUP_SIMILARITY, connected components); exact copies only past MAX_GROUPED rows."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.preprocessing import normalize

    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=int)
    if n > MAX_GROUPED:
        keys = [tuple(row.indices) for row in x]
        return pd.factorize(pd.Series(keys, dtype=object))[0]
    xn = normalize(x.astype(float), norm="l2")
    sim = (xn @ xn.T).tocsr()
    sim.data[sim.data < GROUP_SIMILARITY - 1e-9] = 0.0
    sim.eliminate_zeros()
    _, labels = connected_components(sim, directed=False)
    return np.asarray(labels)


def judge(items: pd.DataFrame, *, corpus: pd.DataFrame | None = None,
          brand_handles: Sequence[str] | None = None, taxonomy: Any = None) -> Verdict:
    """Relevance and drop reason of each of `items` (item_type, item_id, text, account_id
    and, for mentions, author_handle, from_brand, in_reply_to_id).

    `corpus` (same columns; default `items`) is the window the evidence is counted in: the
    product's texts and the stream. Returns a `Verdict` whose frame has, per item,
    `relevance` (None for tickets and comments), `dropped` ("brand", "off_topic" or None)
    and `known` (a post known to be about us, so never off-topic).
    """
    from sklearn.feature_extraction.text import CountVectorizer

    from pulse.models.feedback import stop_words

    if taxonomy is None:
        from pulse.models.text_routing import load_taxonomy

        taxonomy = load_taxonomy()
    items = items.reset_index(drop=True)
    out = pd.DataFrame({"relevance": pd.Series([None] * len(items), dtype=object),
                        "dropped": pd.Series([None] * len(items), dtype=object),
                        "known": False})
    corpus = items if corpus is None else corpus.reset_index(drop=True)
    corpus = pd.concat([corpus, items], ignore_index=True).drop_duplicates(
        ["item_type", "item_id"], keep="last").reset_index(drop=True)
    for col in ("author_handle", "from_brand", "in_reply_to_id", "account_id"):
        if col not in corpus:
            corpus[col] = None
    mentions = corpus[corpus["item_type"] == "mention"].reset_index(drop=True)
    others = corpus.loc[corpus["item_type"] != "mention", "text"]
    if mentions.empty:
        return Verdict(out, 0.0, 0)
    mentions["item_id"] = mentions["item_id"].astype(str)
    own = own_handles(brand_handles)
    brand = brand_posts(mentions, own).to_numpy()
    own |= set(mentions.loc[brand, "author_handle"].dropna().astype(str).str.lower())
    brand_ids = set(mentions.loc[brand, "item_id"])
    answered = set(mentions.loc[brand, "in_reply_to_id"].dropna().astype(str))
    known = (_handles_of(mentions["text"]).map(lambda hs: bool(hs & own)).to_numpy()
             | mentions["account_id"].notna().to_numpy()
             | mentions["in_reply_to_id"].astype(str).isin(brand_ids).to_numpy()
             | mentions["item_id"].isin(answered).to_numpy()) & ~brand
    stream = ~known & ~brand

    vec = CountVectorizer(binary=True, lowercase=False, stop_words=stop_words(),
                          token_pattern=r"(?u)\b[^\W\d_]{2,}\b")
    texts = _clean(mentions["text"])
    product = pd.concat([_clean(others), pd.Series(_taxonomy_docs(taxonomy), dtype=object)
                         .str.lower()], ignore_index=True)
    try:
        vec.fit(pd.concat([texts, product], ignore_index=True))
    except ValueError:  # no words at all
        score = np.zeros(len(mentions))
    else:
        score = _evidence(vec.transform(texts).tocsr(), vec.transform(product).tocsr(),
                          known, stream)
    reason = pd.Series([None] * len(mentions), dtype=object)
    if len(product) < MIN_PRODUCT_TEXTS:  # too little of the product's language: keep all
        verdict = pd.DataFrame({"item_id": mentions["item_id"], "relevance": None,
                                "known": known, "dropped": reason.mask(brand, "brand")})
        return _aligned(items, out, verdict, 0.0, int(known.sum()))
    threshold = 0.0
    off = stream & (score <= threshold + 1e-12)
    # a post in a language the product's own texts are not written in cannot show our words:
    # it is kept (and its sentiment is `unknown`), never called off-topic
    ours = covered(pd.concat([others, mentions.loc[known, "text"]], ignore_index=True).tolist())
    if ours:
        off &= ~unsupported(mentions["text"].tolist(), ours)
    verdict = pd.DataFrame({
        "item_id": mentions["item_id"], "relevance": np.round(score, 4), "known": known,
        "dropped": reason.mask(off, "off_topic").mask(brand, "brand")})
    return _aligned(items, out, verdict, threshold, int(known.sum()))


def _aligned(items: pd.DataFrame, out: pd.DataFrame, verdict: pd.DataFrame, threshold: float,
             spies: int) -> Verdict:
    """`verdict` (per mention of the corpus) onto the rows of `items`."""
    is_mention = (items["item_type"] == "mention").to_numpy()
    mine = items.loc[is_mention, "item_id"].astype(str).to_frame().merge(
        verdict, on="item_id", how="left")
    out.loc[is_mention, "relevance"] = mine["relevance"].astype(object).to_numpy()
    out.loc[is_mention, "dropped"] = mine["dropped"].astype(object).to_numpy()
    out.loc[is_mention, "known"] = mine["known"].fillna(False).astype(bool).to_numpy()
    out["relevance"] = out["relevance"].map(lambda v: None if v is None or pd.isna(v)
                                            else float(v))
    out["dropped"] = out["dropped"].map(lambda v: v if isinstance(v, str) else None)
    return Verdict(out, threshold, spies)


def _evidence(x: Any, product: Any, known: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """Each post's relevance: the sum, over its words seen in at least MIN_SUPPORT of the
    product's texts, of the positive part of log P(w | product) - log P(w | stream).

    Posts count by near-duplicate group (a template repeated 100 times is one text), and a
    post's own group is left out of both counts when that post is judged. Probabilities are
    document frequencies smoothed towards the pooled frequency (a Dirichlet prior of
    `SMOOTHING` texts), so a word the stream has not seen yet is not evidence by itself."""
    import scipy.sparse as sp

    n, _ = x.shape
    group = _groups(x)
    n_groups = int(group.max()) + 1 if n else 0

    def by_group(mask: np.ndarray) -> tuple[Any, np.ndarray]:
        member = sp.csr_matrix((mask.astype(float), (group, np.arange(n))),
                               shape=(n_groups, n))
        words = (member @ x).tocsr()
        words.data[:] = 1.0  # a group has a word when any of its posts has it
        has = np.bincount(group, weights=mask.astype(float), minlength=n_groups) > 0
        return words, has

    k_words, k_has = by_group(known)
    s_words, s_has = by_group(known | stream)
    df_product = np.asarray(product.sum(axis=0)).ravel() + np.asarray(
        k_words.sum(axis=0)).ravel()
    df_stream = np.asarray(s_words.sum(axis=0)).ravel()
    n_product = product.shape[0] + int(k_has.sum())
    n_stream = int(s_has.sum())

    coo = x.tocoo()
    rows, cols = coo.row, coo.col
    g = group[rows]
    dp = df_product[cols] - np.asarray(k_words[g, cols]).ravel()
    ds = df_stream[cols] - np.asarray(s_words[g, cols]).ravel()
    npr = n_product - k_has[g]
    nst = n_stream - s_has[g]
    pooled = (dp + ds + 1.0) / (npr + nst + 2.0)
    p_product = (dp + SMOOTHING * pooled) / (npr + SMOOTHING)
    p_stream = (ds + SMOOTHING * pooled) / (nst + SMOOTHING)
    weight = np.where(dp >= MIN_SUPPORT, np.clip(np.log(p_product / p_stream), 0.0, None), 0.0)
    return np.bincount(rows, weights=weight, minlength=n)


__all__ = ["GROUP_SIMILARITY", "MIN_PRODUCT_TEXTS", "MIN_SUPPORT", "REASONS",
           "Verdict", "brand_posts", "judge"]
