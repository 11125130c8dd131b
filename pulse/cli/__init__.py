"""The `pulse` command line: one module per command group, registered from one list."""
from __future__ import annotations

import sys

from pulse.cli import (
    bench,
    chatter,
    cluster,
    db,
    demo,
    feedback,
    health,
    ingest,
    model,
    outage,
    outreach,
    playbooks,
    quarantine,
    responses,
    rollup,
    social,
    surveys,
    text,
    user,
)
from pulse.cli.app import app
from pulse.core.errors import PulseError
from pulse.core.secrets import redact

COMMAND_GROUPS = (db, ingest, quarantine, demo, health, model, outage, outreach, surveys,
                  social, feedback, text, chatter, user, playbooks, responses, bench, cluster,
                  rollup)

for _group in COMMAND_GROUPS:
    _group.register(app)


def main() -> None:
    """Run the command line; a PulseError prints one line on stderr and exits 1."""
    try:
        app()
    except PulseError as exc:
        message = " ".join(redact(str(exc)).split())  # one line, whatever the terminal width
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


__all__ = ["COMMAND_GROUPS", "app", "main"]
