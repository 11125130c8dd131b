"""The CSM console's task page (`/tasks`): the tasks the playbooks created (models/playbooks.py).

`GET /tasks` shows the signed-in user's tasks (`?who=all`: everyone's; `?who=queue:NAME`: a
queue's): open ones first, overdue first, then done ones with their outcome and skipped ones
with their reason. `POST /tasks/{id}/done` (an outcome) and `POST /tasks/{id}/skip` (a reason)
need a signed-in admin or CSM with the session's CSRF token (`auth.acting`); a viewer is
refused. Each writes the audit log with what the user typed. Everything is escaped.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pulse.core.errors import TaskError
from pulse.web import auth
from pulse.web.console import render as _page

router = APIRouter()


@router.get("/tasks", response_class=HTMLResponse, tags=["console"],
            summary="The playbooks' tasks of one CSM (or everyone's)")
def tasks_page(request: Request,
               me: Annotated[auth.Identity, Depends(auth.signed_in)],
               who: Annotated[str, Query(max_length=254, description="'all', a CSM's email "
                                         "or queue:NAME (default: yours)")] = "") -> Response:
    from pulse.models.playbooks import list_tasks

    who = who.strip().lower() or me.email
    rows = list_tasks(request.app.state.engine, owner=None if who == "all" else who)
    return _page("tasks.html", tasks=rows, who=who, me=me, csrf=me.csrf_token)


def _close(request: Request, me: auth.Identity, task_id: int, state: str, text: str
           ) -> Response:
    from pulse.models.playbooks import close_task

    try:
        close_task(request.app.state.engine, task_id, state=state, text=text, actor=me.email,
                   address=auth.client_address(request))
    except TaskError as exc:
        return _page("console_error.html", exc.http_status, title="The task did not change",
                     message=str(exc))
    return RedirectResponse("/tasks", status_code=303)


@router.post("/tasks/{task_id}/done", tags=["console"],
             summary="Mark a task done with its outcome (admin or CSM, CSRF token)")
def task_done(request: Request, task_id: int,
              me: Annotated[auth.Identity, Depends(auth.acting)],
              outcome: Annotated[str, Form(max_length=2000)] = "") -> Response:
    from pulse.models.playbooks import DONE

    return _close(request, me, task_id, DONE, outcome)


@router.post("/tasks/{task_id}/skip", tags=["console"],
             summary="Skip a task with the reason (admin or CSM, CSRF token)")
def task_skip(request: Request, task_id: int,
              me: Annotated[auth.Identity, Depends(auth.acting)],
              reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    from pulse.models.playbooks import SKIPPED

    return _close(request, me, task_id, SKIPPED, reason)
