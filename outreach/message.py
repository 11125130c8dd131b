"""What the outbox hands a transport, and what a transport answers.

A rendered message is split in two so that one provider request can carry many recipients:

* the **shared** part, identical for every recipient of one template and one shared context:
  `html` and `text` bodies with substitution tokens (`-p1h-`, `-p1t-`, ...) where the
  recipient's own values go;
* the **personal** part: `subject`, the `substitutions` (token -> value; HTML tokens carry
  values already escaped for HTML, text tokens the plain text), `headers` (for example
  `List-Unsubscribe`), and the recipient.

`body_key` (a hash of the template name and the shared bodies) says which messages may share
a request. `full_html()` and `full_text()` apply the substitutions: what the recipient sees.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    """One outbox row, rendered and ready for a transport."""

    message_id: int  # the outbox row
    kind: str
    template: str
    to_email: str
    to_name: str | None
    from_email: str
    from_name: str | None
    reply_to: str | None
    subject: str  # already personal (no tokens)
    html: str  # shared, with tokens
    text: str  # shared, with tokens
    body_key: str
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    custom_args: dict[str, str] = field(default_factory=dict)  # always has "outbox_id"

    def full_html(self) -> str:
        return _apply(self.html, self.substitutions)

    def full_text(self) -> str:
        return _apply(self.text, self.substitutions)


def _apply(body: str, subs: dict[str, str]) -> str:
    # Longest tokens first, so that -p1h- never eats part of -p10h-.
    for token in sorted(subs, key=len, reverse=True):
        body = body.replace(token, subs[token])
    return body


@dataclass(frozen=True)
class SendResult:
    """What happened to one message in one attempt."""

    message_id: int
    ok: bool
    provider_message_id: str | None = None
    error: str | None = None
    retryable: bool = False  # a later run may try again (429, 5xx, timeouts)


class Transport(Protocol):
    """Delivers rendered messages. Implementations: outreach.transports.file.FileTransport,
    outreach.transports.sendgrid.SendGridTransport."""

    name: str

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        """Send the messages (batching as the provider allows); one result per message."""
        ...

    def reconcile(self, messages: Sequence[Outgoing]) -> dict[int, str | None]:
        """For messages left in doubt by a crash (claimed, no answer recorded): the provider
        message id of those the provider did accept, None for those it never saw."""
        ...
