"""`pulse db`: create, upgrade and inspect the warehouse schema."""
from __future__ import annotations

from typing import Annotated

import typer

from pulse.cli.common import open_engine, out

db_app = typer.Typer(help="Create or upgrade the warehouse schema.", no_args_is_help=True)



@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create the schema, or upgrade it to the latest migration (SQLite or PostgreSQL)."""
    from pulse.sql.db import upgrade

    engine = open_engine()
    rev = upgrade(engine, revision)
    out.print(f"warehouse {engine.url.render_as_string(hide_password=True)} at revision {rev}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the warehouse."""
    from pulse.sql.db import current_revision

    out.print(current_revision(open_engine()) or "(no schema: run `pulse db upgrade`)")


def register(app: typer.Typer) -> None:
    """Add `db`."""
    app.add_typer(db_app, name="db")
