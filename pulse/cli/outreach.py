"""`pulse outreach send|drafts`, `pulse outbox list`, `pulse suppress add|list` and `pulse serve`:
the outbox, the suppression list and the web app."""
from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pulse.cli.common import ListFormat, warehouse

out = Console()
err = Console(stderr=True)

outreach_app = typer.Typer(help="Send what the outbox holds.", no_args_is_help=True)
outbox_app = typer.Typer(help="Inspect the outbox: every message Pulse meant to send.",
                         no_args_is_help=True)
suppress_app = typer.Typer(help="The suppression list: addresses no automated email reaches.",
                           no_args_is_help=True)


class TransportName(str, Enum):
    file = "file"
    sendgrid = "sendgrid"


class Reason(str, Enum):
    manual = "manual"
    unsubscribe = "unsubscribe"
    bounce = "bounce"
    spamreport = "spamreport"


_engine = warehouse  # cli_feedback imports it from here


def _records(frame: Any) -> list[dict[str, Any]]:
    """A frame's rows as plain JSON-able dicts (None for missing values)."""
    import pandas as pd

    return [{k: (None if (not isinstance(v, list | dict) and pd.isna(v)) else
                 v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
            for row in frame.astype(object).to_dict("records")]


def _emit(rows: list[dict[str, Any]], columns: list[str], fmt: ListFormat, title: str) -> None:
    if fmt is ListFormat.json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if fmt is ListFormat.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(Text("" if r.get(c) is None else str(r[c])) for c in columns))
    out.print(table)


# --------------------------------------------------------------------------- outreach


@outreach_app.command("send")
def outreach_send(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Apply the rules and report; send and change nothing.")] = False,
    limit: Annotated[int | None, typer.Option(
        help="At most this many due messages.", min=1)] = None,
    transport: Annotated[TransportName | None, typer.Option(
        help="Where messages go (default: PULSE_TRANSPORT, else file).")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json.")]
    = ListFormat.table,
) -> None:
    """Send the due messages of the outbox, after the rules (opt-out, suppression list,
    churned account, quiet hours, frequency cap); reconcile what a crash left in doubt."""
    from pulse.outreach.outbox_send import send_due
    from pulse.outreach.transports import make_transport
    from pulse.outreach.transports.file import FileTransport

    engine = _engine()
    chosen = make_transport(transport.value if transport else None)
    if sys.stderr.isatty() and fmt is ListFormat.table:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("dry run" if dry_run else f"sending via {chosen.name}",
                                total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = send_due(engine, chosen, limit=limit, dry_run=dry_run, progress=tick)
    else:
        last = [0]

        def tick(done: int, total: int) -> None:
            if done - last[0] >= 5000 or done == total:
                last[0] = done
                print(f"{done:,}/{total:,} messages", file=sys.stderr)

        report = send_due(engine, chosen, limit=limit, dry_run=dry_run, progress=tick)
    if fmt is ListFormat.json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    o = report.outcomes
    head = "Dry run: nothing was sent or changed" if dry_run else f"Sent via {chosen.name}"
    out.print(Text(head, style="bold"))
    outcome_names = ("would_send",) if dry_run else ("sent", "retry", "failed", "in_doubt")
    out.print(f"considered {report.considered:,}; " + "; ".join(
        f"{name.replace('_', ' ')} {o[name]:,}" for name in
        (*outcome_names, "suppressed", "deferred")))
    if report.by_rule:
        out.print("by rule: " + ", ".join(f"{k} {v:,}" for k, v in sorted(
            report.by_rule.items())))
    rec = {k: v for k, v in report.reconciled.items() if v}
    if rec:
        out.print("reconciled after a crash: " + ", ".join(f"{k} {v:,}" for k, v in
                                                          rec.items()))
    if report.in_doubt_elsewhere:
        out.print(f"{report.in_doubt_elsewhere:,} messages claimed by another transport "
                  "remain in doubt (run with that transport to reconcile them)")
    if not dry_run and isinstance(chosen, FileTransport):
        out.print(f"see {chosen.folder / 'index.html'}")


# --------------------------------------------------------------------------- outbox

OUTBOX_COLUMNS = ["message_id", "status", "kind", "to_email", "subject", "rule", "rule_detail",
                  "queued_at", "not_before", "sent_at", "attempts", "provider_message_id"]
TABLE_COLUMNS = ["message_id", "status", "kind", "to_email", "subject", "rule", "queued_at",
                 "sent_at"]


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(
        help="Only this status: queued, sending, sent, suppressed, failed, delivered, "
        "bounced.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (outage_notice, ...).")]
    = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).", min=0)] = 50,
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List outbox messages, newest first, with the rule that stopped or deferred them."""
    from pulse.outreach.outbox import STATUSES, list_messages

    if status and status not in STATUSES:
        raise typer.BadParameter(f"expected one of {', '.join(STATUSES)} (not {status!r})",
                                 param_hint="--status")
    rows = _records(list_messages(_engine(), status=status, kind=kind, limit=limit or None))
    columns = TABLE_COLUMNS if fmt is ListFormat.table else (
        list(rows[0]) if rows else OUTBOX_COLUMNS)
    _emit(rows, columns, fmt, "Outbox" + (f" ({status})" if status else ""))


# --------------------------------------------------------------------------- suppressions


@suppress_app.command("add")
def suppress_add(
    email: Annotated[str, typer.Argument(help="The address to suppress.")],
    reason: Annotated[Reason, typer.Option(help="Why.")] = Reason.manual,
    detail: Annotated[str | None, typer.Option(help="A note for the record.")] = None,
) -> None:
    """Put an address on the suppression list (idempotent)."""
    from pulse.outreach.outbox import add_suppression

    new = add_suppression(_engine(), email, reason=reason.value, source="cli", detail=detail)
    out.print(f"{email.strip().lower()} " + ("suppressed" if new else "was already suppressed"))


@suppress_app.command("list")
def suppress_list(
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List the suppression list, newest first."""
    from pulse.outreach.outbox import list_suppressions

    rows = _records(list_suppressions(_engine()))
    _emit(rows, ["email", "reason", "source", "detail", "created_at"], fmt, "Suppressions")


# --------------------------------------------------------------------------- serve


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default PULSE_WEB_HOST).")]
    = None,
    port: Annotated[int | None, typer.Option(help="Port (default PULSE_WEB_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes (default: 1 on SQLite, whose writes are serialised anyway; "
             "min(4, CPUs) on PostgreSQL).", min=1)] = None,
    limit_concurrency: Annotated[int, typer.Option(
        help="Connections and tasks per worker before it answers 503.", min=1)] = 512,
    backlog: Annotated[int, typer.Option(help="Pending connections the socket queues.",
                                         min=1)] = 2048,
    timeout_keep_alive: Annotated[int, typer.Option(
        help="Seconds an idle keep-alive connection is kept.", min=1)] = 5,
    proxy_headers: Annotated[bool, typer.Option(
        help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (only behind a "
             "proxy you run: the client address drives rate limiting).")] = False,
    forwarded_allow_ips: Annotated[str, typer.Option(
        help="Proxies whose forwarded headers are trusted.")] = "127.0.0.1",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    rate_limit: Annotated[int | None, typer.Option(
        help="Requests per minute per client on the public pages and the console, shared "
             "by all workers (default PULSE_RATE_LIMIT_PER_MINUTE or 120; 0 turns it off).",
        min=0)] = None,
) -> None:
    """Run the web app (survey and unsubscribe pages, webhooks) with uvicorn, production
    settings: several workers, uvloop and httptools when installed, bounded concurrency,
    access log, proxy headers off unless asked for."""
    import os

    import uvicorn
    from sqlalchemy.engine import make_url

    from pulse.core.settings import get_settings

    settings = get_settings()
    engine = _engine()  # fails early, with a clear message, on an unmigrated warehouse
    sqlite = engine.dialect.name == "sqlite"
    engine.dispose()
    if workers is None:
        workers = 1 if sqlite else min(4, os.cpu_count() or 1)
    if rate_limit is not None:  # the workers read it when they build the app
        os.environ["PULSE_RATE_LIMIT_PER_MINUTE"] = str(rate_limit)
    host = host or settings.web_host
    port = port or settings.web_port
    shown = make_url(settings.resolved_database_url()).render_as_string(hide_password=True)
    bind = f"[{host}]" if ":" in host else host
    out.print(f"Pulse web app on [bold]http://{bind}:{port}[/] ({workers} worker"
              f"{'s' if workers != 1 else ''}, warehouse {shown}); public links use "
              f"{settings.public_base_url}. Ctrl+C stops it.", soft_wrap=True)
    sys.stdout.flush()
    http: Any = "h11"  # its limit: h11_max_incomplete_event_size
    try:  # httptools has no header limit of its own: ours answers 431 past it
        from pulse.web.serving import LimitedHttpToolsProtocol

        http = LimitedHttpToolsProtocol
    except ImportError:
        pass
    uvicorn.run("pulse.web.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=access_log, proxy_headers=proxy_headers,
                forwarded_allow_ips=forwarded_allow_ips if proxy_headers else None,
                limit_concurrency=limit_concurrency, backlog=backlog,
                timeout_keep_alive=timeout_keep_alive, server_header=False, http=http,
                h11_max_incomplete_event_size=settings.max_header_bytes)


def register(app: typer.Typer) -> None:
    """Add `outreach`, `outbox`, `suppress` and `serve` to the `pulse` app."""
    app.add_typer(outreach_app, name="outreach")
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(suppress_app, name="suppress")
    app.command("serve")(serve)


# --------------------------------------------------------------------------- drafts

drafts_app = typer.Typer(help="Check-ins waiting for their CSM's approval (PULSE_CHECKINS="
                         "approve, the default): list, show, edit, approve.",
                         no_args_is_help=True)
outreach_app.add_typer(drafts_app, name="drafts")


@drafts_app.command("list")
def drafts_list(
    csm: Annotated[str | None, typer.Option(help="Only this CSM's drafts (their address).")]
    = None,
    fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table,
) -> None:
    """List the check-ins waiting for approval, oldest first."""
    from pulse.outreach.drafts import list_drafts

    rows = _records(list_drafts(_engine(), csm_email=csm))
    _emit(rows, ["message_id", "account_id", "to_email", "from_email", "subject", "queued_at"],
          fmt, "Check-in drafts")


def _print_message(message: Any) -> None:
    out.print(Text(f"From: {message.from_name} <{message.from_email}>"))
    out.print(Text(f"To: {message.to_name or ''} <{message.to_email}>"))
    out.print(Text(f"Subject: {message.subject}"), end="\n\n")
    out.print(Text(message.full_text()))


@drafts_app.command("show")
def drafts_show(message_id: Annotated[int, typer.Argument(help="The draft's message id.")]
                ) -> None:
    """Show a draft exactly as the customer would read it (text part)."""
    from pulse.outreach.drafts import show_draft

    _print_message(show_draft(_engine(), message_id))


@drafts_app.command("edit")
def drafts_edit(
    message_id: Annotated[int, typer.Argument(help="The draft's message id.")],
    note: Annotated[str | None, typer.Option(
        help="A personal paragraph of yours, shown above the suggestions ('' removes it).")]
    = None,
    drop_feature: Annotated[list[str] | None, typer.Option(
        "--drop-feature", help="Do not suggest this feature (id or label); repeatable.")]
    = None,
    drop_renewal: Annotated[bool, typer.Option(
        "--drop-renewal", help="Do not mention the renewal date.")] = False,
    subject: Annotated[str | None, typer.Option(help="A new subject line.")] = None,
) -> None:
    """Edit a draft within what a customer may read; prints it as it now reads."""
    from pulse.outreach.drafts import edit_draft

    _print_message(edit_draft(_engine(), message_id, note=note,
                              drop_features=drop_feature or (), drop_renewal=drop_renewal,
                              subject=subject))


@drafts_app.command("approve")
def drafts_approve(
    message_ids: Annotated[list[int], typer.Argument(help="The drafts' message ids.")],
) -> None:
    """Approve drafts: they are queued and sent by the next `pulse outreach send` (after the
    outbox's rules: opt-out, suppression list, quiet hours, cap)."""
    from pulse.outreach.drafts import approve_drafts

    done = approve_drafts(_engine(), message_ids)
    skipped = sorted(set(message_ids) - set(done))
    out.print(f"approved {len(done)}: " + (", ".join(map(str, done)) or "none")
              + (f"; not drafts: {', '.join(map(str, skipped))}" if skipped else ""))
