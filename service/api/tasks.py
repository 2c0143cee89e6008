"""User tasks: inbox, detail with form, claim, unclaim, complete."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.api.deps import ContextDep, IdempotencyDep, PrincipalDep, SessionDep, WriteSessionDep
from service.api.problems import responses
from service.api.route import Route
from service.schemas import CommentIn, CommentOut, CompleteTaskIn, CompletionOut, TaskDetail, TaskPage
from service.services import tasks

router = APIRouter(tags=["tasks"], route_class=Route)


@router.get("/tasks", response_model=TaskPage, responses=responses(401, 422))
def list_tasks(ctx: ContextDep, principal: PrincipalDep,
               candidate_group: str | None = None, assignee: str | None = None, process_key: str | None = None,
               business_key: str | None = None, process_instance_id: str | None = None,
               status: str | None = None, due_before: datetime | None = None, overdue: bool | None = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> TaskPage:
    # the reading opened here, not by a dependency: one hop to a thread per request
    return tasks.inbox(ctx, principal, candidate_group=candidate_group, assignee=assignee, process_key=process_key,
                       business_key=business_key, process_instance_id=process_instance_id, status=status,
                       due_before=due_before, overdue=overdue, limit=limit, cursor=cursor)


@router.get("/tasks/{task_id}", response_model=TaskDetail, responses=responses(401, 403, 404))
def get_task(task_id: str, ctx: ContextDep, principal: PrincipalDep) -> TaskDetail:
    with ctx.read() as session:
        return tasks.get(ctx, session, principal, task_id)


@router.post("/tasks/{task_id}/claim", response_model=TaskDetail, responses=responses(401, 403, 404, 409))
def claim_task(task_id: str, ctx: ContextDep, principal: PrincipalDep) -> TaskDetail:
    with ctx.write() as session:
        return tasks.claim(ctx, session, principal, task_id)


@router.post("/tasks/{task_id}/unclaim", response_model=TaskDetail, responses=responses(401, 403, 404, 409))
def unclaim_task(task_id: str, ctx: ContextDep, session: WriteSessionDep, principal: PrincipalDep) -> TaskDetail:
    return tasks.unclaim(ctx, session, principal, task_id)


@router.post("/tasks/{task_id}/complete", response_model=CompletionOut, responses=responses(401, 403, 404, 409, 422))
def complete_task(task_id: str, ctx: ContextDep, principal: PrincipalDep, idem: IdempotencyDep,
                  body: CompleteTaskIn | None = None) -> Response:
    if idem.replay:
        return idem.replayed()
    body = body or CompleteTaskIn()
    out = tasks.complete(ctx, principal, task_id, body.variables, body.comment, idem=idem)
    return idem.respond(200, out)


@router.post("/tasks/{task_id}/comments", response_model=CommentOut, status_code=201,
             responses=responses(401, 403, 404, 422))
def add_comment(task_id: str, body: CommentIn, ctx: ContextDep, session: WriteSessionDep,
                principal: PrincipalDep) -> CommentOut:
    """Add an opinion (审批意见) to a task, open or completed; it is kept in the audit trail."""
    return tasks.add_comment(ctx, session, principal, task_id, body.message)


@router.get("/tasks/{task_id}/comments", response_model=list[CommentOut], responses=responses(401, 403, 404))
def list_comments(task_id: str, session: SessionDep, principal: PrincipalDep) -> list[CommentOut]:
    """The opinion given on completion and the comments added, oldest first."""
    return tasks.comments(session, principal, task_id)
