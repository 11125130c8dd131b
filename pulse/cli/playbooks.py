"""`pulse playbooks check|run` and `pulse tasks list|done|skip`: the playbooks' rules and the
tasks they create (models/playbooks.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from pulse.cli.common import err, out, parse_day, warehouse
from pulse.cli.user import _actor

playbooks_app = typer.Typer(help="Check and run the playbooks (rules that create tasks).",
                            no_args_is_help=True)
tasks_app = typer.Typer(help="The playbooks' tasks: list, mark done, skip.",
                        no_args_is_help=True)


@playbooks_app.command("check")
def playbooks_check(
    path: Annotated[Path | None, typer.Argument(
        help="Playbooks YAML (default: the built-in models/playbooks.yaml).")] = None,
) -> None:
    """Check a playbooks file; name each bad rule with its line."""
    from pulse.core.errors import PlaybookError
    from pulse.models.playbooks import load_playbooks

    try:
        books = load_playbooks(path)
    except PlaybookError as exc:
        for line in exc.lines():
            err.print(Text(f"error: {line}"), soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(Text.assemble((books.source, "bold"),
                            f": ok (version {books.version}; {len(books.rules)} rules)"))
    table = Table(title_justify="left")
    for col in ("rule", "title", "owner", "due"):
        table.add_column(col)
    for r in books.rules:
        due = f"{r.due_days} {'business ' if r.business_days else ''}days"
        table.add_row(Text(r.name), Text(r.title), Text(r.owner), due)
    out.print(table)


@playbooks_app.command("run")
def playbooks_run(
    as_of: Annotated[str | None, typer.Option("--as-of", help="The scored date "
                                              "(default: today, UTC).")] = None,
    path: Annotated[Path | None, typer.Option("--playbooks", help="Playbooks YAML.")] = None,
) -> None:
    """Create the tasks of a scored date (once per account per episode)."""
    from pulse.models.playbooks import load_playbooks, run_playbooks

    books = load_playbooks(path)
    out.print(str(run_playbooks(warehouse(), parse_day(as_of), books)))


@playbooks_app.command("outcomes")
def playbooks_outcomes(
    days: Annotated[int, typer.Option(help="Days after a task's episode began to read the "
                                      "account's health and churn risk.", min=1)] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Which plays work: by rule and state (done, skipped, open), the tasks, how many have
    reached their later day, and the account's mean health change, health and churn
    probability then."""
    from pulse.cli.outreach import _records
    from pulse.models.playbooks import later_outcomes, play_summary

    rows = _records(play_summary(later_outcomes(warehouse(), days=days)))
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"Plays and the accounts {days} days later", title_justify="left")
    for col in ("rule", "state", "tasks", "measured", "health change", "health then",
                "churn risk then"):
        table.add_column(col, justify="left" if col in ("rule", "state") else "right")

    def num(v: object, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        table.add_row(Text(str(r["rule"])), r["state"], str(r["tasks"]), str(r["measured"]),
                      num(r["health_change"], "+.1f"), num(r["health_after"], ".1f"),
                      num(r["churn_after"], ".0%"))
    out.print(table)
    if not rows:
        out.print("No tasks yet: `pulse playbooks run` creates them.")
    elif not any(r["measured"] for r in rows):
        out.print(f"No task is {days} days old yet (or scored since): nothing to measure.")


@tasks_app.command("list")
def tasks_list(
    owner: Annotated[str | None, typer.Option(help="A CSM's email or queue:NAME "
                                              "(default: everyone's).")] = None,
    state: Annotated[str | None, typer.Option(help="open, done or skipped.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Tasks, open ones first (overdue first), then closed ones."""
    from pulse.models.playbooks import list_tasks

    rows = list_tasks(warehouse(), owner=owner, state=state)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="Tasks", title_justify="left")
    for col in ("id", "due", "state", "account", "task", "owner", "outcome or reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        due = str(r["due_date"]) + (" (overdue)" if r["overdue"] else "")
        table.add_row(str(r["task_id"]), due, r["state"],
                      Text(f"{r['account_name'] or ''} ({r['account_id']})"), Text(r["title"]),
                      Text(r["owner"]), Text(r["outcome"] or r["skip_reason"] or ""))
    out.print(table)


@tasks_app.command("done")
def tasks_done(
    task_id: Annotated[int, typer.Argument(help="The task's id (`pulse tasks list`).")],
    outcome: Annotated[str, typer.Option(help="What happened.")],
) -> None:
    """Mark a task done, with its outcome (audited)."""
    from pulse.models.playbooks import DONE, close_task

    close_task(warehouse(), task_id, state=DONE, text=outcome, actor=_actor())
    out.print(f"task {task_id}: done")


@tasks_app.command("skip")
def tasks_skip(
    task_id: Annotated[int, typer.Argument(help="The task's id (`pulse tasks list`).")],
    reason: Annotated[str, typer.Option(help="Why it is skipped.")],
) -> None:
    """Skip a task, with the reason (audited)."""
    from pulse.models.playbooks import SKIPPED, close_task

    close_task(warehouse(), task_id, state=SKIPPED, text=reason, actor=_actor())
    out.print(f"task {task_id}: skipped")


def register(app: typer.Typer) -> None:
    """Add `playbooks` and `tasks`."""
    app.add_typer(playbooks_app, name="playbooks")
    app.add_typer(tasks_app, name="tasks")
