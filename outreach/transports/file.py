"""`FileTransport`: the embedded default. Each message becomes `<message_id>.eml` (a real
RFC 5322 message, text and HTML alternatives) under `$PULSE_HOME/outbox/`, next to an
`index.html` listing everything sent (open it in a browser, open an .eml in a mail client).

Writing is idempotent and atomic: a temporary file renamed over `<message_id>.eml`, so the
same message written twice is one file, and a crash never leaves half a message. A message
was accepted iff its file exists, which is what `reconcile` answers. A kill between writing
and renaming leaves a `.<id>.eml.<pid>.<random>.tmp` behind: the first `send` of a transport removes
those older than a lease (`PULSE_OUTBOX_LEASE_SECONDS`; no live writer keeps one that long).
Every write is also appended to `index.jsonl`, one `os.write` per call so that concurrent
senders never interleave their lines.
"""
from __future__ import annotations

import html
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, cast

from pulse.core.errors import HeaderInjectionError
from pulse.core.settings import get_settings
from pulse.outreach.message import Outgoing, SendResult

log = logging.getLogger(__name__)

MANIFEST = "index.jsonl"
_WRITE = policy.compat32.clone(max_line_length=998)  # fold only what RFC 5322 must


def provider_id(message_id: int) -> str:
    return f"file-{message_id}"


def _check(name: str, value: str) -> str:
    if any(ch in value for ch in "\r\n\x00\u2028\u2029\x85"):
        raise HeaderInjectionError(f"header {name} contains a line break")
    return value


def _address(name: str | None, email: str, what: str) -> str:
    """`"Name" <addr>`, the name RFC 2047-encoded when it is not ASCII."""
    _check(what, email)
    if not name:
        return email
    _check(what, name)
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        name = Header(name, "utf-8").encode()
    return formataddr((name, email))


def to_email_message(message: Outgoing, *, now: datetime | None = None) -> Message:
    """The message as RFC 5322 (multipart/alternative, text then HTML).

    Built with the `compat32` classes (the default policy's header objects cost milliseconds
    per message); every header value is checked for line breaks here, whatever the caller did.
    """
    msg = MIMEMultipart("alternative")
    msg["From"] = _address(message.from_name, message.from_email, "From")
    msg["To"] = _address(message.to_name, message.to_email, "To")
    if message.reply_to:
        msg["Reply-To"] = _address(None, message.reply_to, "Reply-To")
    subject = _check("Subject", message.subject)
    try:
        subject.encode("ascii")
        msg["Subject"] = subject
    except UnicodeEncodeError:
        # email.message.Message takes Header values (the generator folds them); typeshed's
        # MIMEMultipart (Message[str, str]) admits only str
        msg["Subject"] = cast(str, Header(subject, "utf-8"))
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    domain = message.from_email.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = f"<pulse-outbox-{message.message_id}@{domain}>"
    for name, value in message.headers.items():
        msg[_check("header name", name)] = _check(name, value)
    msg["X-Pulse-Outbox-Id"] = str(message.message_id)
    msg["X-Pulse-Kind"] = _check("X-Pulse-Kind", message.kind)
    if message.categories:
        msg["X-Pulse-Categories"] = _check("X-Pulse-Categories", ", ".join(message.categories))
    utf8 = Charset("utf-8")
    utf8.body_encoding = QP
    for body, subtype in ((message.full_text(), "plain"), (message.full_html(), "html")):
        msg.attach(MIMEText(body, subtype, utf8))  # type: ignore[arg-type]
    return msg


def _atomic_write(path: Path, data: bytes) -> None:
    # unique per writer, threads of one process included
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append(path: Path, data: bytes) -> None:
    """Append in one write (O_APPEND): another process's lines never land inside ours."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


class FileTransport:
    """Writes messages to a folder instead of sending them."""

    name = "file"

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder else get_settings().resolved_home() / "outbox"
        self._swept = False

    def path(self, message_id: int) -> Path:
        return self.folder / f"{int(message_id)}.eml"

    def sweep_orphans(self, *, older_than: float | None = None) -> int:
        """Remove the temporary files a killed writer left behind, if older than
        `older_than` seconds (default: the outbox lease); returns how many."""
        age = get_settings().outbox_lease_seconds if older_than is None else older_than
        cutoff = time.time() - age
        removed = 0
        for tmp in self.folder.glob(".*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:  # renamed or removed by its writer meanwhile
                continue
        if removed:
            log.info("removed %d orphan temporary files from %s", removed, self.folder)
        return removed

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self.sweep_orphans()
            self._swept = True
        results: list[SendResult] = []
        entries: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for message in messages:
            try:
                data = to_email_message(message, now=now).as_bytes(policy=_WRITE)
            except (ValueError, TypeError) as exc:  # a header the email package refuses
                results.append(SendResult(message.message_id, ok=False,
                                          error=f"cannot build the message: {exc}"))
                continue
            _atomic_write(self.path(message.message_id), data)
            results.append(SendResult(message.message_id, ok=True,
                                      provider_message_id=provider_id(message.message_id)))
            entries.append({"id": message.message_id, "kind": message.kind,
                            "to": message.to_email, "to_name": message.to_name,
                            "subject": message.subject, "date": now.isoformat(timespec="seconds")})
        if entries:
            _append(self.folder / MANIFEST,
                    "".join(json.dumps(e) + "\n" for e in entries).encode("utf-8"))
        self.write_index()
        log.info("wrote %d messages to %s", len(entries), self.folder)
        return results

    def reconcile(self, messages: Sequence[Outgoing]) -> dict[int, str | None]:
        return {m.message_id: provider_id(m.message_id) if self.path(m.message_id).exists()
                else None for m in messages}

    # -- the index

    def entries(self) -> list[dict[str, Any]]:
        """Every message in the folder, newest first (from the manifest, else the file)."""
        known: dict[int, dict[str, Any]] = {}
        manifest = self.folder / MANIFEST
        if manifest.exists():
            for line in manifest.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    known[int(entry["id"])] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash
        on_disk = {int(p.stem): p for p in self.folder.glob("*.eml") if p.stem.isdigit()}
        for message_id in on_disk.keys() - known.keys():  # written, crash before the manifest
            with on_disk[message_id].open("rb") as fh:
                head = BytesHeaderParser(policy=policy.default).parse(fh)
            known[message_id] = {"id": message_id, "kind": str(head.get("X-Pulse-Kind", "")),
                                 "to": str(head.get("To", "")), "to_name": None,
                                 "subject": str(head.get("Subject", "")),
                                 "date": str(head.get("Date", ""))}
        return [known[i] for i in sorted(known.keys() & on_disk.keys(), reverse=True)]

    def write_index(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        entries = self.entries()
        rows = "\n".join(
            "<tr><td>{date}</td><td>{kind}</td><td>{to}</td><td>"
            '<a href="{file}">{subject}</a></td></tr>'.format(
                date=html.escape(str(e.get("date", ""))),
                kind=html.escape(str(e.get("kind", ""))),
                to=html.escape(f"{e['to_name']} <{e['to']}>" if e.get("to_name")
                               else str(e.get("to", ""))),
                file=html.escape(f"{int(e['id'])}.eml"),
                subject=html.escape(str(e.get("subject", ""))),
            )
            for e in entries)
        company = html.escape(get_settings().company_name)
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{company} outbox</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f5f7}}</style></head>
<body><h1>{company} outbox</h1><p>{len(entries)} messages written by the file transport.</p>
<table><thead><tr><th>written</th><th>kind</th><th>to</th><th>subject</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
        path = self.folder / "index.html"
        _atomic_write(path, page.encode("utf-8"))
        return path
