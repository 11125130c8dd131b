"""`pulse bench send`: the outbox through the SendGrid transport to the local API double,
batched (one request per shared body and up to 1,000 recipients) beside one request per
message.

Each run gets a fresh SQLite warehouse in a temporary PULSE_HOME, queues N synthetic outage
notices (urgent, so quiet hours and the cap let them all through), and times `send_due`
end to end: rules, claims, rendering, HTTP to the double (which validates every body against
SendGrid's published schema), and recording the answers.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pulse.core.formats import Format


@dataclass
class SendFigure:
    mode: str  # batched, one per message
    messages: int
    sent: int
    seconds: float
    http_requests: int
    accepted: int  # personalizations the double accepted

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "messages_per_second": round(self.rate, 1)}


def _drafts(n: int, per_body: int) -> list[Any]:
    from pulse.outreach.outbox import Draft

    drafts = []
    for i in range(n):
        group = i // per_body
        shared = {
            "incident_id": f"INC-{group:05d}",
            "incident_title": f"Elevated API errors (#{group})", "stage": "started",
            "what_happened": "Some API requests failed with server errors.",
            "incident_status": "investigating", "incident_impact": "major",
            "update_body": "We are investigating elevated error rates.",
            "status_page_url": "https://status.pulse-demo.example",
        }
        drafts.append(Draft(
            kind="outage_notice", idempotency_key=f"bench:{i}", template="outage_notice",
            to_email=f"contact{i}@bench.example", to_name=f"Contact {i}",
            account_id=f"ACC{i % 997:04d}", contact_id=f"C{i:06d}",
            incident_id=shared["incident_id"], urgent=True, automated=True,
            context={**shared, "account_name": f"Account {i % 997}",
                     "timezone": "Europe/Berlin", "failed_requests": 120.0 + i % 50,
                     "total_requests": 4000.0, "affected_users": 3 + i % 7,
                     "components": ["api"], "regions": ["eu"],
                     "first_affected_at": "2025-01-06T10:02:00+00:00",
                     "last_affected_at": "2025-01-06T10:40:00+00:00"},
        ))
    return drafts


def _one_run(mode: str, *, batch: bool, messages: int, per_body: int, folder: Path,
             console: Console) -> SendFigure:
    from pulse.core.settings import get_settings
    from pulse.devkit.sendgrid_double import SendGridDouble
    from pulse.outreach.outbox import queue
    from pulse.outreach.outbox_send import send_due
    from pulse.outreach.transports.sendgrid import SendGridTransport
    from pulse.sql.db import make_engine, upgrade

    home = folder / mode.replace(" ", "-")
    home.mkdir()
    os.environ["PULSE_HOME"] = str(home)
    os.environ.pop("PULSE_DATABASE_URL", None)
    get_settings(fresh=True)
    engine = make_engine(f"sqlite:///{home / 'pulse.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    queued = queue(engine, _drafts(messages, per_body), now=now)
    if queued.queued != messages:
        raise AssertionError(f"expected {messages} queued, got {queued.to_dict()}")
    with SendGridDouble() as api:
        transport = SendGridTransport(api_key=api.api_key, host=api.url, batch=batch)
        from rich.progress import Progress

        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"{mode}: sending", total=messages)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            t = time.perf_counter()
            report = send_due(engine, transport, now=now, batch_size=1000, send_chunk=1000,
                              progress=tick)
            seconds = time.perf_counter() - t
        accepted = len(api.accepted)
        if api.rejected:
            raise AssertionError(f"the double rejected requests: {api.rejected[:1]}")
    engine.dispose()
    if report.sent != messages or accepted != messages:
        raise AssertionError(f"{mode}: sent {report.sent}, accepted {accepted}, "
                             f"expected {messages}: {report.to_dict()['outcomes']}")
    console.print(f"{mode}: {messages:,} messages in {seconds:.1f} s, "
                  f"{transport.requests:,} HTTP requests")
    return SendFigure(mode, messages, report.sent, seconds, transport.requests, accepted)


def run_send_bench(*, messages: int, per_body: int | None, fmt: str,
                   console: Console) -> list[SendFigure]:
    per_body = per_body or messages
    saved = {k: os.environ.get(k) for k in ("PULSE_HOME", "PULSE_DATABASE_URL")}
    figures: list[SendFigure] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pulse-bench-send-") as tmp:
            for mode, batch in (("batched", True), ("one per message", False)):
                figures.append(_one_run(mode, batch=batch, messages=messages,
                                        per_body=per_body, folder=Path(tmp), console=console))
    finally:
        from pulse.core.settings import get_settings

        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings(fresh=True)
    batched, single = figures
    ratio = {"requests": single.http_requests / max(batched.http_requests, 1),
             "speed": batched.rate / single.rate if single.rate else 0.0}
    if fmt == "json":
        print(json.dumps({"messages": messages, "recipients_per_body": per_body,
                          "runs": [f.to_dict() for f in figures],
                          "ratio": {k: round(v, 1) for k, v in ratio.items()}}, indent=2))
        return figures
    table = Table(title=f"pulse bench send: {messages:,} messages via SendGrid (local double), "
                  f"{per_body:,} recipients per body", title_justify="left")
    for col in ("mode", "messages/s", "HTTP requests", "seconds", "sent"):
        table.add_column(col, justify="right")
    for f in figures:
        table.add_row(f.mode, f"{f.rate:,.0f}", f"{f.http_requests:,}", f"{f.seconds:.1f}",
                      f"{f.sent:,}")
    table.add_row("ratio", f"{ratio['speed']:.1f}x faster",
                  f"{ratio['requests']:.0f}x fewer", "", "")
    console.print(table)
    console.print("Both runs: fresh SQLite warehouse, `send_due` end to end (rules, claims, "
                  "rendering, HTTP, recording) with the real sendgrid client; the double "
                  "validates every request against SendGrid's published schema.")
    return figures


def bench_send(
    messages: Annotated[int, typer.Option(help="Messages to queue and send.", min=1)] = 10_000,
    recipients_per_body: Annotated[int | None, typer.Option(
        help="Recipients sharing one body (one incident); default: all of them.",
        min=1)] = None,
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The SendGrid transport batched against one request per message: messages/s, HTTP
    requests and the ratio."""
    console = Console(stderr=fmt is Format.json)  # JSON alone on stdout
    run_send_bench(messages=messages, per_body=recipients_per_body, fmt=fmt.value,
                   console=console)
