"""`pulse social listen | watermarks | post | replies`: listen to X (or replay a file of
mentions) and show each query's `since_id` watermark; post incident updates; review replies
to the complaints attached to an incident (`replies draft | list | show | approve |
discard`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli.common import Format, ListFormat, warehouse

if TYPE_CHECKING:
    from sqlalchemy import Engine

out = Console()
err = Console(stderr=True)

social_app = typer.Typer(help="Social listening: X mentions landed through the contract.",
                         no_args_is_help=True)


def _engine() -> Engine:
    return cast("Engine", warehouse())


@social_app.command("listen")
def listen_cmd(
    query: Annotated[list[str] | None, typer.Option(
        "--query", "-q", help="A recent-search query (repeatable); default PULSE_X_QUERIES")
    ] = None,
    replay: Annotated[Path | None, typer.Option(
        "--replay", help="Land this JSON Lines file of mentions instead of asking X")] = None,
    max_pages: Annotated[int | None, typer.Option(
        "--max-pages", min=1, help="Pages of 100 tweets per query at most")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Fetch what is new for every query since its watermark and land it; without a bearer
    token, replay a file of mentions. Exits 1 when a query failed (its watermark stays)."""
    from pulse.listeners.x_listener import listen

    report = listen(_engine(), queries=query or None, replay=replay, max_pages=max_pages)
    if fmt is Format.json:
        out.print_json(json.dumps(report.to_dict()))
    elif report.mode == "replay":
        out.print(str(report))
    else:
        table = Table("query", "tweets", "pages", "landed", "since_id", "error")
        for q in report.queries:
            land = q.landing
            landed = "-" if land is None else (f"{land.inserted} new, {land.unchanged} "
                                               f"unchanged, {land.quarantined} quarantined")
            table.add_row(q.query, str(q.tweets), str(q.pages), landed,
                          f"{q.since_id or '-'} -> {q.newest_id or '-'}", q.error or "")
        out.print(table)
    for message in report.errors:
        err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    if report.errors:
        raise typer.Exit(1)


@social_app.command("watermarks")
def watermarks_cmd(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table
                   ) -> None:
    """Each query's watermark: the newest tweet id fetched, how many in all, the last error."""
    from pulse.listeners.x_listener import watermarks

    rows = watermarks(_engine())
    if fmt is Format.json:
        out.print_json(json.dumps([
            {"query": w.query, "since_id": w.since_id, "fetched": w.fetched,
             "updated_at": w.updated_at.isoformat() if w.updated_at else None,
             "last_error": w.last_error} for w in rows]))
        return
    if not rows:
        out.print("no watermarks yet: `pulse social listen` starts them")
        return
    table = Table("query", "since_id", "fetched", "updated_at", "last_error")
    for w in rows:
        table.add_row(w.query, w.since_id or "-", str(w.fetched),
                      w.updated_at.isoformat() if w.updated_at else "-", w.last_error or "")
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add `social listen` and `social watermarks` to the `pulse` app."""
    app.add_typer(social_app, name="social")


@social_app.command("post")
def post() -> None:
    """Post the confirmed incidents' public updates on X, each at most once (needs
    PULSE_X_POST=on and the brand account's keys: PULSE_X_API_KEY, PULSE_X_API_SECRET,
    PULSE_X_ACCESS_TOKEN, PULSE_X_ACCESS_TOKEN_SECRET)."""
    from pulse.outreach.x_posts import run

    report = run(_engine())
    if report is None:
        out.print("X posting is off: set PULSE_X_POST=on to post incident updates.")
        return
    out.print(f"X posts: {report}")
    if report.stopped:
        raise typer.Exit(1)



# --------------------------------------------------------------------------- replies

replies_app = typer.Typer(help="Replies to the public complaints attached to an incident: "
                          "drafts a person approves before anything is posted.",
                          no_args_is_help=True)
social_app.add_typer(replies_app, name="replies")


@replies_app.command("draft")
def replies_draft() -> None:
    """Draft a reply to each recent complaint on X attached to a confirmed incident (one per
    author and incident); drafts not yet approved follow the incident's status."""
    from pulse.outreach.x_replies import plan_reply_drafts

    out.print(f"X replies: {plan_reply_drafts(_engine())}")


@replies_app.command("list")
def replies_list(
    status: Annotated[str, typer.Option(
        help="draft, queued, posting, posted, failed, discarded, or all")] = "draft",
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List replies (drafts by default), oldest first, with the complaint each answers."""
    from pulse.cli.outreach import _emit, _records
    from pulse.outreach.x_replies import list_replies

    rows = _records(list_replies(_engine(), status=None if status == "all" else status))
    _emit(rows, ["post_id", "incident_id", "status", "author_handle", "complaint", "text"],
          fmt, "Replies on X")


@replies_app.command("show")
def replies_show(post_id: Annotated[int, typer.Argument(help="The reply's post id.")]) -> None:
    """Show one reply exactly as it would be posted, under the complaint it answers."""
    from pulse.outreach.x_posts import x_length
    from pulse.outreach.x_replies import show_reply

    r = show_reply(_engine(), post_id)
    out.print(Text(f"Reply {r['post_id']} ({r['status']}) on incident {r['incident_id']}"))
    out.print(Text(f"To @{r['author_handle']}: {r['complaint'] or '(complaint no longer known)'}"),
              end="\n\n")
    out.print(Text(str(r["text"])))
    out.print(Text(f"\n{x_length(str(r['text']))} of 280 characters as X counts them"))


def _review(result: object, verb: str) -> None:
    done, refused = result.done, result.refused  # type: ignore[attr-defined]
    out.print(f"{verb} {len(done)}: " + (", ".join(map(str, done)) or "none"))
    for pid, why in refused.items():
        err.print(Text(f"not {verb}: {pid}: {why}"))
    if refused:
        raise typer.Exit(1)


@replies_app.command("approve")
def replies_approve(
    post_ids: Annotated[list[int], typer.Argument(help="The replies' post ids.")],
) -> None:
    """Approve drafts: each is checked again (no account, no other handle, 280 characters)
    and posted once by the next `pulse social post` (or the pulse_outage DAG)."""
    from pulse.outreach.x_replies import approve_replies

    _review(approve_replies(_engine(), post_ids), "approved")


@replies_app.command("discard")
def replies_discard(
    post_ids: Annotated[list[int], typer.Argument(help="The replies' post ids.")],
) -> None:
    """Discard drafts: never posted, never drafted again."""
    from pulse.outreach.x_replies import discard_replies

    _review(discard_replies(_engine(), post_ids), "discarded")
