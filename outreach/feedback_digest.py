"""One feedback digest per product team per period (issue 6).

`build_digests(engine, period="week")` reads the period's `text_insights` (filled by
`models.feedback.refresh_insights`), groups each team's items into themes
(`models.feedback.themes_of`), compares them with the previous period, picks two or three
representative quotes with personal data scrubbed (`scrub`), links each theme to the pages of
the accounts behind it (`outreach.links.account_url`), and writes
`$PULSE_HOME/digests/{period_start}/{team}.html` and `.md`. `queue_digests` also queues one
email per team per period through the outbox (internal mail, kind `team_digest`, key
`team_digest:{team}:{period_start}`), so a re-run queues nothing new.

Items the router was unsure about (team `triage`) get their own digest, the `triage` team,
sent to `PULSE_FEEDBACK_DEFAULT_EMAIL` like every team without an address in
`PULSE_TEAM_EMAILS`.
"""
from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from pulse.core.errors import DigestError
from pulse.core.fx import reporting_currency, to_reporting
from pulse.core.settings import get_settings
from pulse.models.feedback import (
    assign_theme_keys,
    dropped_counts,
    match_previous,
    period_items,
    themes_of,
)
from pulse.outreach.links import account_url
from pulse.sql.schema import Contact

log = logging.getLogger(__name__)

KIND = TEMPLATE = "team_digest"
TRIAGE = "triage"
PERIODS = {"week": timedelta(days=7), "day": timedelta(days=1)}
TOP_THEMES = 8  # themes shown per digest; the rest are counted
LINKS_PER_THEME = 5  # account links per theme, largest MRR first
QUOTES = 3
QUOTE_CHARS = 280


# --------------------------------------------------------------------------- scrubbing

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", re.I)
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().-]{6,}\d(?!\w)")
_HANDLE = re.compile(r"(?<![\w@.])@\w{1,30}")
_TOKENISH = re.compile(r"[A-Za-z0-9_-]{16,}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _url(match: re.Match[str]) -> str:
    raw = match.group(0)
    trail = ""
    while raw and raw[-1] in ".,;:!?)]":
        trail, raw = raw[-1] + trail, raw[:-1]
    parts = urlsplit(raw if "://" in raw else "https://" + raw)
    personal = bool(parts.query or parts.fragment or parts.username or parts.password
                    or _TOKENISH.search(parts.path) or "@" in raw)
    return ("[link]" if personal else raw) + trail


def _phone(match: re.Match[str]) -> str:
    raw = match.group(0)
    digits = sum(c.isdigit() for c in raw)
    if _ISO_DATE.match(raw.strip()) or digits < 8 or (digits < 10 and not raw.startswith("+")
                                                     and not re.search(r"[\s().-]", raw)):
        return raw  # a date, an order number, an amount: not a phone number
    return "[phone]"


def scrub(text: str, *, contact_names: Iterable[str] = (),
          handles: Iterable[str] = ()) -> str:
    """`text` without personal data: addresses -> [email], phone numbers -> [phone],
    @handles (and the bare `handles` given) -> [handle], links carrying a query, a fragment,
    credentials or a token-like path -> [link], contact names -> [name].

    A full contact name is matched in any case; its parts (first or last name, three letters
    or more) only as written with a capital, so that "Will" is replaced but "will" is not.
    """
    out = _URL.sub(_url, str(text or ""))
    out = _EMAIL.sub("[email]", out)
    out = _PHONE.sub(_phone, out)
    out = _HANDLE.sub("[handle]", out)
    bare = sorted({h.strip().lstrip("@") for h in handles if h and h.strip().lstrip("@")},
                  key=len, reverse=True)
    if bare:
        out = re.sub(r"(?<![\w\[])(?:" + "|".join(map(re.escape, bare)) + r")(?!\w)",
                     "[handle]", out, flags=re.I)
    names = sorted({" ".join(n.split()) for n in contact_names if n and n.strip()},
                   key=len, reverse=True)
    if names:
        out = re.sub(r"(?<!\w)(?:" + "|".join(re.escape(n).replace(r"\ ", r"\s+")
                                              for n in names) + r")(?!\w)",
                     "[name]", out, flags=re.I)
        parts = sorted({p for n in names for p in re.split(r"[\s,.'-]+", n)
                        if len(p) >= 3 and p[0].isupper()}, key=len, reverse=True)
        if parts:
            out = re.sub(r"(?<!\w)(?:" + "|".join(map(re.escape, parts)) + r")(?!\w)",
                         "[name]", out)
    return out


def _contacts(engine: Engine, account_ids: list[str]) -> tuple[list[str], list[str]]:
    """Names and X handles of the contacts of these accounts."""
    if not account_ids:
        return [], []
    c = Contact.__table__
    names: list[str] = []
    handles: list[str] = []
    with engine.connect() as conn:
        for start in range(0, len(account_ids), 500):
            part = account_ids[start:start + 500]
            for name, handle in conn.execute(select(c.c.name, c.c.x_handle)
                                             .where(c.c.account_id.in_(part))):
                if name:
                    names.append(str(name))
                if handle:
                    handles.append(str(handle))
    return names, handles


# --------------------------------------------------------------------------- periods


def period_bounds(period: str = "week", period_end: date | datetime | None = None, *,
                  now: datetime | None = None) -> tuple[date, date]:
    """[start, end) of the digest period that ends at `period_end` (exclusive; default the
    start of the current period, so the last complete one). Weeks run Monday to Sunday: an
    end that is not a Monday moves back to the Monday before it."""
    if period not in PERIODS:
        raise DigestError(f"invalid period {period!r}: expected one of {', '.join(PERIODS)}")
    if period_end is None:
        end = (now or datetime.now(UTC)).astimezone(UTC).date()
    elif isinstance(period_end, datetime):
        end = period_end.astimezone(UTC).date() if period_end.tzinfo else period_end.date()
    else:
        end = period_end
    if period == "week":
        end -= timedelta(days=end.weekday())
    return end - PERIODS[period], end


def digests_dir(period_start: date) -> Path:
    return get_settings().resolved_home() / "digests" / period_start.isoformat()


# --------------------------------------------------------------------------- digests


@dataclass
class TeamDigest:
    """One team's digest of one period: what it says, where it went."""

    team: str
    period: str
    period_start: date
    period_end: date
    to_email: str
    context: dict[str, Any]
    html_path: Path | None = None
    md_path: Path | None = None
    themes: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def idempotency_key(self) -> str:
        return f"{KIND}:{self.team}:{self.period_start.isoformat()}"

    def summary(self) -> dict[str, Any]:
        c = self.context
        return {"team": self.team, "period_start": self.period_start.isoformat(),
                "period_end": self.period_end.isoformat(), "to_email": self.to_email,
                "items": c["total_items"], "accounts": c["total_accounts"],
                "mrr": c["total_mrr"], "themes": len(self.themes),
                "new_themes": len(c["new_themes"]),
                "html": str(self.html_path) if self.html_path else None,
                "md": str(self.md_path) if self.md_path else None}


def team_email(team: str) -> str:
    s = get_settings()
    return (s.team_emails.get(team) or s.feedback_default_email).strip().lower()


def _team_title(team: str) -> str:
    return "Triage (unrouted feedback)" if team == TRIAGE else team.replace("_", " ").title()


def _period_label(period: str, start: date, end: date) -> str:
    if period == "day":
        return f"{start.isoformat()}"
    return f"week of {start.isoformat()} to {(end - timedelta(days=1)).isoformat()}"


def _source(item_type: str) -> str:
    return {"mention": "social post", "ticket": "support ticket",
            "comment": "survey comment"}.get(item_type, item_type)


def _shorten(text: str) -> str:
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 1].rstrip() + "…"


def _quotes(items: pd.DataFrame, shown: pd.DataFrame, names: list[str],
            handles: list[str]) -> list[dict[str, Any]]:
    """Two or three quotes: the most central item of each top theme (then the next ones)."""
    by_ref = items.set_index(items["item_type"] + ":" + items["item_id"].astype(str))
    pools = [list(r) for r in shown["sample_item_ids"]]
    labels = list(shown["label"])
    picked: list[dict[str, Any]] = []
    seen: set[str] = set()
    depth = 0
    while len(picked) < QUOTES and any(depth < len(p) for p in pools):
        for pool, label in zip(pools, labels, strict=True):
            if len(picked) >= QUOTES or depth >= len(pool):
                continue
            row = by_ref.loc[pool[depth]]
            text = _shorten(scrub(str(row["text"]), contact_names=names, handles=handles))
            if text in seen:
                continue
            seen.add(text)
            acc = row["account_id"] if isinstance(row["account_id"], str) else None
            picked.append({"text": text, "theme": label, "source": _source(row["item_type"]),
                           "account_id": acc, "account_name": row.get("account_name")
                           if acc else None, "url": account_url(acc) if acc else None})
        depth += 1
    return picked


def _build_one(engine: Engine, team: str, items: pd.DataFrame, previous: pd.DataFrame,
               period: str, start: date, end: date, *, keys: bool = True,
               dropped: dict[str, int] | None = None) -> TeamDigest:
    accounts = (items.dropna(subset=["account_id"]).drop_duplicates("account_id"))
    names, handles = _contacts(engine, sorted(set(accounts["account_id"].astype(str)) | set(
        previous["account_id"].dropna().astype(str) if not previous.empty else [])))
    current = themes_of(items, names=names)
    prev_themes = themes_of(previous, names=names)
    keyed = match_previous(current, prev_themes)
    # Labels are phrases of customers' texts: scrubbed like the quotes.
    keyed["label"] = [scrub(str(x), contact_names=names, handles=handles)
                      for x in keyed["label"]]
    if keys:
        assign_theme_keys(engine, keyed)
    names_by_id = dict(zip(accounts["account_id"], accounts["account_name"], strict=True))
    shown = keyed.head(TOP_THEMES)
    theme_rows = []
    mrr_by_id = dict(zip(accounts["account_id"], accounts["mrr"].fillna(0.0), strict=True))
    for t in shown.to_dict("records"):
        links = [{"account_id": a, "name": names_by_id.get(a), "mrr": mrr_by_id.get(a),
                  "url": account_url(a)} for a in t["account_ids"][:LINKS_PER_THEME]]
        theme_rows.append({k: t[k] for k in ("theme_key", "label", "items", "accounts", "mrr",
                                             "currency", "previous_items", "trend", "new",
                                             "duplicates_merged", "distinct_texts")}
                          | {"top_terms": list(t["top_terms"]), "links": links,
                             "items": int(t["items"]), "count": int(t["items"]), "accounts": int(t["accounts"]),
                             "previous_items": int(t["previous_items"]),
                             "trend": int(t["trend"]), "new": bool(t["new"]),
                             "duplicates_merged": int(t["duplicates_merged"]),
                             "distinct_texts": int(t["distinct_texts"]),
                             "mrr": float(t["mrr"]),
                             "currency": t["currency"] or reporting_currency()})
    dropped = dropped or {}
    context = {
        "team": team, "team_title": _team_title(team), "triage": team == TRIAGE,
        "period": period, "period_start": start.isoformat(), "period_end": end.isoformat(),
        "period_label": _period_label(period, start, end),
        "total_items": int(len(items)), "total_accounts": int(len(accounts)),
        "total_mrr": round(float(np.nansum(to_reporting(accounts["mrr"].fillna(0.0),
                                                        accounts["currency"]))), 2),
        "currency": reporting_currency() if len(accounts) else None,
        "previous_items": int(len(previous)),
        "themes": theme_rows, "more_themes": max(0, len(keyed) - len(shown)),
        "new_themes": [t["label"] for t in theme_rows if t["new"]],
        "quotes": _quotes(items, shown, names, handles),
        # items of the period that are not feedback (models.relevance), every team alike
        "dropped_off_topic": int(dropped.get("off_topic", 0)),
        "dropped_brand": int(dropped.get("brand", 0)),
    }
    return TeamDigest(team=team, period=period, period_start=start, period_end=end,
                      to_email=team_email(team), context=context, themes=keyed)


def _draft(d: TeamDigest) -> Any:
    from pulse.outreach.outbox import Draft

    return Draft(kind=KIND, idempotency_key=d.idempotency_key, template=TEMPLATE,
                 to_email=d.to_email, to_name=f"{_team_title(d.team)} team",
                 context=d.context, automated=False, urgent=False)


def _md_escape(value: Any) -> str:
    text = html.escape("" if value is None else str(value), quote=False)
    return re.sub(r"([\\`*_\[\]|#!])", r"\\\1", text)


def render_files(d: TeamDigest) -> tuple[str, str]:
    """The HTML (exactly the email's body, autoescaped) and Markdown of a digest."""
    from jinja2 import Environment, FileSystemLoader

    from pulse.outreach.render import TEMPLATE_DIR, Renderer, _money, _number, _safe_url

    renderer = Renderer()
    subject = renderer.subject(TEMPLATE, d.context)
    row = {"message_id": 0, "kind": KIND, "template": TEMPLATE, "to_email": d.to_email,
           "to_name": None, "subject": subject, "context": d.context, "automated": False}
    page = renderer.outgoing(row).full_html()
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(md=_md_escape, number=_number, money=_money, safe_url=_safe_url)
    md = env.get_template(f"{TEMPLATE}.md").render(d.context)
    return page, re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_digests(engine: Engine, *, period: str = "week",
                  period_end: date | datetime | None = None, team: str | None = None,
                  now: datetime | None = None, write: bool = True) -> list[TeamDigest]:
    """One digest per team with feedback in the period (only `team` when given), each
    written to `$PULSE_HOME/digests/{period_start}/{team}.html` and `.md`, and its theme
    keys onto `text_insights` (`write=False`: nothing is written, as the console's
    `/feedback` page reads them). Teams in alphabetical order, `triage` last."""
    start, end = period_bounds(period, period_end, now=now)
    length = end - start
    items = period_items(engine, team=team, since=start, until=end)
    before = period_items(engine, team=team, since=start - length, until=start)
    teams = sorted(set(items["team"]) if not items.empty else set(),
                   key=lambda t: (t == TRIAGE, t))
    dropped = dropped_counts(engine, since=start, until=end) if teams else {}
    digests = []
    for name in teams:
        mine = items[items["team"] == name].reset_index(drop=True)
        prev = (before[before["team"] == name].reset_index(drop=True) if not before.empty
                else before)
        d = _build_one(engine, str(name), mine, prev, period, start, end, keys=write,
                       dropped=dropped)
        if write:
            page, md = render_files(d)
            folder = digests_dir(start)
            safe = re.sub(r"[^\w.-]+", "_", d.team)
            d.html_path, d.md_path = folder / f"{safe}.html", folder / f"{safe}.md"
            _write(d.html_path, page)
            _write(d.md_path, md)
        digests.append(d)
    log.info("built %d feedback digests for %s", len(digests), start.isoformat())
    return digests


@dataclass
class DigestRun:
    digests: list[TeamDigest]
    queued: int = 0
    duplicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"digests": [d.summary() for d in self.digests], "queued": self.queued,
                "duplicates": self.duplicates}


def queue_digests(engine: Engine, *, period: str = "week",
                  period_end: date | datetime | None = None, team: str | None = None,
                  now: datetime | None = None) -> DigestRun:
    """Build (and write) the period's digests and queue one email per team; a team's digest
    of a period is queued once (`team_digest:{team}:{period_start}`)."""
    from pulse.outreach.outbox import queue

    digests = build_digests(engine, period=period, period_end=period_end, team=team, now=now)
    run = DigestRun(digests)
    if digests:
        report = queue(engine, [_draft(d) for d in digests], now=now)
        run.queued, run.duplicates = report.queued, report.duplicates
    return run


__all__ = ["KIND", "PERIODS", "TRIAGE", "DigestError", "DigestRun", "TeamDigest",
           "build_digests", "digests_dir", "period_bounds", "queue_digests", "render_files",
           "scrub", "team_email"]
