"""`pulse user`: the CSM console's users (add, list, disable).

The password is read from stdin (twice, unechoed, at a terminal; the first line of a pipe
otherwise), never from the command line, where other users of the machine and the shell's
history would see it.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pulse.cli.common import ListFormat, out, warehouse
from pulse.core.errors import ConsoleUserError

user_app = typer.Typer(help="The CSM console's users: add, list, disable.",
                       no_args_is_help=True)


class Role(str, Enum):
    admin = "admin"
    csm = "csm"
    viewer = "viewer"


def _actor() -> str:
    """Who ran the command, for the audit log."""
    try:
        name = getpass.getuser()
    except Exception:  # no user name in this environment
        name = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{name}"


def read_password() -> str:
    """The new password from stdin: prompted twice at a terminal, else the first line."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            raise ConsoleUserError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The user's email (their sign-in name).")],
    role: Annotated[Role, typer.Option(help="admin, csm or viewer (reads, never acts).")],
    sso: Annotated[bool, typer.Option(
        "--sso", help="No password: signs in only through the SSO proxy's trusted header "
                      "(PULSE_AUTH_HEADER).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
) -> None:
    """Add a console user; the password is read from stdin (prompted at a terminal)."""
    from pulse.web.auth import add_user

    password = None if sso else read_password()
    add_user(warehouse(), email, role.value, password, actor=_actor(), reason=reason)
    out.print(f"added {email.strip().lower()} ({role.value}"
              f"{', single sign-on only' if sso else ''})")


@user_app.command("list")
def user_list(fmt: Annotated[ListFormat, typer.Option("--format")] = ListFormat.table) -> None:
    """Every console user: role, how they sign in, active or disabled, last sign-in."""
    from pulse.web.auth import list_users

    users = list_users(warehouse())
    if fmt is ListFormat.json:
        print(json.dumps(users, indent=2, default=str))
        return
    if fmt is ListFormat.csv:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=["email", "role", "sign_in", "status",
                                                   "created_at", "last_sign_in_at"])
        w.writeheader()
        w.writerows(users)
        return
    table = Table(title="Console users", title_justify="left")
    for col in ("email", "role", "sign-in", "status", "last sign-in (UTC)"):
        table.add_column(col, overflow="fold")
    for u in users:
        last = u["last_sign_in_at"].strftime("%Y-%m-%d %H:%M") if u["last_sign_in_at"] else ""
        table.add_row(*(Text(str(v)) for v in (u["email"], u["role"], u["sign_in"],
                                                u["status"], last)))
    out.print(table)
    if not users:
        out.print("no users yet: `pulse user add EMAIL --role admin` adds the first")


@user_app.command("disable")
def user_disable(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
) -> None:
    """Disable a user: they cannot sign in any more, and their sessions end now."""
    from pulse.web.auth import disable_user

    changed = disable_user(warehouse(), email, actor=_actor(), reason=reason)
    out.print(f"disabled {email.strip().lower()}" if changed
              else f"{email.strip().lower()} was disabled already")


def register(app: typer.Typer) -> None:
    """Add `user`."""
    app.add_typer(user_app, name="user")
