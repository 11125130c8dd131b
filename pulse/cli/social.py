"""`pulse social listen | watermarks`: listen to X (or replay a file of mentions) and show
each query's `since_id` watermark."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from pulse.cli.common import Format, warehouse

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

