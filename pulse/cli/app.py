"""The `pulse` Typer application and its root options; the command groups register on it."""
from __future__ import annotations

import logging
from typing import Annotated

import typer

from pulse.core.secrets import RedactingFilter

app = typer.Typer(
    name="pulse",
    help="Pulse: customer health, proactive outreach and feedback routing.\n\n"
    "Settings come from the environment (or .env): PULSE_DATABASE_URL (default "
    "sqlite:///var/pulse.db) and PULSE_HOME (default ./var).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # no secret reaches a log line
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
