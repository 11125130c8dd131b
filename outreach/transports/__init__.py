"""Transports: `file` (the embedded default, $PULSE_HOME/outbox/) and `sendgrid`."""
from __future__ import annotations

from pulse.core.errors import ConfigError
from pulse.outreach.message import Transport

NAMES = ("file", "sendgrid")


def make_transport(name: str | None = None) -> Transport:
    """The transport named, else the one in settings (`PULSE_TRANSPORT`)."""
    from pulse.core.settings import get_settings

    name = (name or get_settings().transport).strip().lower()
    if name == "file":
        from pulse.outreach.transports.file import FileTransport

        return FileTransport()
    if name == "sendgrid":
        from pulse.outreach.transports.sendgrid import SendGridTransport

        return SendGridTransport()
    raise ConfigError(f"invalid value for transport: expected one of {NAMES} (not {name!r})")
