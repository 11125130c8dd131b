"""`pulse feedback refresh|themes|dropped|languages|digest`: classified feedback, its themes, team digests."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console

from pulse.cli.outreach import ListFormat, TransportName, _emit, _engine, _records
from pulse.core.formats import Format

out = Console()

feedback_app = typer.Typer(help="Customer feedback: classify and route it, group it into "
                           "themes, send one digest per team per period.",
                           no_args_is_help=True)


class Period(str, Enum):
    week = "week"
    day = "day"


def _day(value: str | None, what: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise typer.BadParameter(f"expected an ISO date like 2026-11-23 (not {value!r})",
                                 param_hint=what) from None


@feedback_app.command("refresh")
def feedback_refresh(
    since: Annotated[str | None, typer.Option(
        help="Only items created on or after this date (ISO).")] = None,
) -> None:
    """Classify (sentiment, kind, team) the feedback items that are new or changed."""
    from pulse.models.feedback import refresh_insights

    n = refresh_insights(_engine(), since=_day(since, "--since"))
    out.print(f"classified {n} feedback item{'' if n == 1 else 's'}")


@feedback_app.command("themes")
def feedback_themes(
    team: Annotated[str | None, typer.Option(help="One team (default: every team).")] = None,
    since: Annotated[str | None, typer.Option(
        help="From this date (ISO; default: 7 days before --until).")] = None,
    until: Annotated[str | None, typer.Option(
        help="Up to this date, exclusive (ISO; default: tomorrow).")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table, csv or json.")]
    = ListFormat.table,
) -> None:
    """The themes of each team's feedback: items, distinct accounts, MRR behind them."""
    import pandas as pd

    from pulse.models.feedback import period_items, themes_of

    hi = _day(until, "--until") or (datetime.now(UTC).date() + timedelta(days=1))
    lo = _day(since, "--since") or hi - timedelta(days=7)
    items = period_items(_engine(), team=team, since=lo, until=hi)
    frames = []
    for name in sorted(set(items["team"])) if not items.empty else []:
        t = themes_of(items[items["team"] == name].reset_index(drop=True))
        frames.append(t.assign(team=name))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["team", "theme_key", "label", "items", "accounts", "mrr"])
    rows = _records(frame.drop(columns=["item_refs"], errors="ignore"))
    for r in rows:
        for k in ("top_terms", "account_ids", "sample_item_ids"):
            if isinstance(r.get(k), list) and fmt is not ListFormat.json:
                r[k] = " ".join(r[k])
    _emit(rows, ["team", "label", "items", "distinct_texts", "accounts", "mrr", "currency",
                 "theme_key"], fmt, f"Feedback themes {lo} to {hi}")


class Reason(str, Enum):
    off_topic = "off_topic"
    brand = "brand"


@feedback_app.command("dropped")
def feedback_dropped(
    reason: Annotated[Reason | None, typer.Option(
        help="off_topic (not about the product) or brand (the brand's own posts); default "
        "both.")] = None,
    since: Annotated[str | None, typer.Option(
        help="From this date (ISO; default: 7 days before --until).")] = None,
    until: Annotated[str | None, typer.Option(
        help="Up to this date, exclusive (ISO; default: tomorrow).")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table, csv or json.")]
    = ListFormat.table,
) -> None:
    """The items left out of the feedback (never deleted): posts not about the product and
    the brand's own posts, newest first, with their relevance (models/relevance.py)."""
    from pulse.models.feedback import dropped_items

    hi = _day(until, "--until") or (datetime.now(UTC).date() + timedelta(days=1))
    lo = _day(since, "--since") or hi - timedelta(days=7)
    frame = dropped_items(_engine(), since=lo, until=hi,
                          reason=reason.value if reason else None)
    counts = frame["dropped"].value_counts().to_dict()
    _emit(_records(frame), ["created_at", "dropped", "relevance", "author", "item_id", "text"],
          fmt, f"Not feedback {lo} to {hi}: " + ", ".join(
              f"{counts.get(r.value, 0)} {r.value}" for r in Reason
              if reason is None or r is reason))


@feedback_app.command("languages")
def feedback_languages(
    since: Annotated[str | None, typer.Option(
        help="From this date (ISO; default: 7 days before --until).")] = None,
    until: Annotated[str | None, typer.Option(
        help="Up to this date, exclusive (ISO; default: tomorrow).")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table, csv or json.")]
    = ListFormat.table,
) -> None:
    """The items in a language no sentiment model covers (sentiment `unknown`), counted per
    language and listed: kept as feedback, never guessed as negative."""
    from pulse.models.feedback import other_language_items

    hi = _day(until, "--until") or (datetime.now(UTC).date() + timedelta(days=1))
    lo = _day(since, "--since") or hi - timedelta(days=7)
    frame = other_language_items(_engine(), since=lo, until=hi)
    counts = frame["language"].value_counts().to_dict() if len(frame) else {}
    summary = ", ".join(f"{n} {lang}" for lang, n in sorted(counts.items())) or "none"
    _emit(_records(frame), ["created_at", "language", "item_type", "item_id", "team", "text"],
          fmt, f"Sentiment unknown (a language no model covers) {lo} to {hi}: {summary}")


@feedback_app.command("digest")
def feedback_digest(
    team: Annotated[str | None, typer.Option(help="One team (default: every team).")] = None,
    period: Annotated[Period, typer.Option(help="week (Monday to Sunday) or day.")]
    = Period.week,
    end: Annotated[str | None, typer.Option(
        help="The period ends before this date (ISO; default: the last complete period).")]
    = None,
    send: Annotated[bool, typer.Option(
        "--send", help="Queue one email per team and send what is due.")] = False,
    transport: Annotated[TransportName | None, typer.Option(
        help="With --send: file or sendgrid (default PULSE_TRANSPORT).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")]
    = Format.table,
) -> None:
    """Write each team's digest to $PULSE_HOME/digests/ (HTML and Markdown); --send also
    emails it, once per team per period."""
    from pulse.outreach.feedback_digest import build_digests, queue_digests

    engine = _engine()
    period_end = _day(end, "--end")
    result: dict[str, Any]
    if send:
        from pulse.outreach.outbox_send import send_due
        from pulse.outreach.transports import make_transport

        run = queue_digests(engine, period=period.value, period_end=period_end, team=team)
        report = send_due(engine, make_transport(transport.value if transport else None))
        result = run.to_dict() | {"sent": int(report.outcomes.get("sent", 0))}
    else:
        digests = build_digests(engine, period=period.value, period_end=period_end, team=team)
        result = {"digests": [d.summary() for d in digests]}
    if fmt is Format.json:
        print(json.dumps(result, indent=2, default=str))
        return
    if not result["digests"]:
        out.print("no feedback in that period: no digest written")
    _emit(result["digests"], ["team", "period_start", "items", "accounts", "mrr", "themes",
                              "new_themes", "to_email", "html", "md"],
          ListFormat.table, "Feedback digests")
    if send:
        out.print(f"queued {result['queued']} ({result['duplicates']} already queued), "
                  f"sent {result['sent']}")


def register(app: typer.Typer) -> None:
    """Add `feedback` to the `pulse` app."""
    app.add_typer(feedback_app, name="feedback")
