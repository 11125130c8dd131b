"""A small, transparent lexicon that marks a social mention as negative.

A stop-gap until the sentiment model (a later issue) labels mentions: a mention counts as
negative when its text contains one of these terms. Matching ignores case and punctuation and
works on whole words; a term ending in `*` matches any word that starts with it ("frustrat*"
matches "frustrated" and "frustrating"); a term of several words matches them in that order.
Apostrophes are dropped before matching, so write "doesnt", not "doesn't".

English only, and blind to negation ("not bad" counts as negative); both are reasons the
sentiment model will replace it. Edit the list freely: it is read each time features are
computed, and every feature row records only counts, never which word matched.
"""
from __future__ import annotations

NEGATIVE_TERMS: tuple[str, ...] = (
    # it does not work
    "broken", "broke", "bug*", "buggy", "crash*", "fail*", "error*", "outage*", "is down",
    "went down", "not working", "doesnt work", "stopped working", "unusable", "unreliable",
    "unstable", "flaky", "lost data", "data loss", "slow", "laggy", "glitch*", "downtime",
    "timed out", "wont load", "cant log in", "cant login", "please fix", "fix this",
    # it costs too much or they are leaving
    "cancel*", "refund*", "overcharg*", "rip off", "ripoff", "scam", "switching to",
    "moving to", "leaving", "churn*", "not renewing", "too expensive",
    # how they feel about it
    "terrible", "awful", "horrible", "worst", "useless", "garbage", "hate", "sucks",
    "frustrat*", "disappoint*", "annoy*", "unacceptable", "ridiculous", "nightmare", "angry",
    "furious", "regret*", "waste", "fed up", "not great", "worse", "poor",
    # nobody answers
    "no response", "no answer", "still no", "still waiting", "ignored", "no reply",
)
