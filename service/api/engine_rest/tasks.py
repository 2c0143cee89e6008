"""User tasks the Camunda way: the inbox query, claim, complete with typed variables, forms, comments (审批意见)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api.deps import ContextDep, SessionDep, WriteSessionDep
from service.api.engine_rest import shapes
from service.api.engine_rest.mapping import (
    CamundaError,
    invalid_request,
    not_found,
    paging,
    query_date,
    sort_order,
    typed_variables,
    variables_in,
)
from service.api.engine_rest.support import CamundaRoute, Definitions, EnginePrincipal, base_url
from service.auth import Principal
from service.schemas import TaskDetail
from service.services import instances
from service.services import tasks as task_service
from service.services.context import AppContext

router = APIRouter(route_class=CamundaRoute)
LIST_CAP = 1000

_SORTS = {"created": "created", "dueDate": "due", "name": "name", "nameCaseInsensitive": "name_ci", "id": "id",
          "assignee": "assignee", "instanceId": "instance", "executionId": "instance", "priority": "created",
          "taskDefinitionKey": "element"}


class TaskQuery(BaseModel):
    """The filters of Camunda's task query that govflow answers (GET query parameters or POST body)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    process_instance_id: str | None = Field(default=None, alias="processInstanceId")
    business_key: str | None = Field(default=None, alias="processInstanceBusinessKey")
    process_key: str | None = Field(default=None, alias="processDefinitionKey")
    element_id: str | None = Field(default=None, alias="taskDefinitionKey")
    task_id: str | None = Field(default=None, alias="taskId")
    candidate_group: str | None = Field(default=None, alias="candidateGroup")
    candidate_groups: list[str] | str | None = Field(default=None, alias="candidateGroups")
    candidate_user: str | None = Field(default=None, alias="candidateUser")
    assignee: str | None = None
    unassigned: bool = False
    include_assigned: bool = Field(default=False, alias="includeAssignedTasks")
    due_before: str | None = Field(default=None, alias="dueBefore")
    due_after: str | None = Field(default=None, alias="dueAfter")
    active: bool = False
    suspended: bool = False
    sort_by: str | None = Field(default=None, alias="sortBy")
    sort_order: str | None = Field(default=None, alias="sortOrder")
    sorting: list[dict[str, Any]] | None = None


# parameters a client may send with their neutral value (pycamunda sends its defaults)
_NEUTRAL: tuple[Any, ...] = (None, "", False, "false", [], {})
# withoutTenantId: no task has a tenant, so it holds whatever its value. The candidate and tenant filters pycamunda
# sends (withCandidateGroups, tenantIdIn, …) pass with their neutral values and are refused with any other: ignored,
# they would change the answer without a word
_IGNORED = {"firstResult", "maxResults", "withoutTenantId", "assigned"}


def _parse(raw: dict[str, Any]) -> TaskQuery:
    try:
        query = TaskQuery.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in e.errors())
        raise invalid_request(f"Invalid task query: {problems}") from None
    unsupported = sorted(k for k, v in (query.model_extra or {}).items() if k not in _IGNORED and v not in _NEUTRAL)
    if unsupported:
        raise invalid_request(f"task query parameters not supported: {', '.join(unsupported)}")
    if raw.get("assigned") not in _NEUTRAL:
        raise invalid_request("task query parameters not supported: assigned")
    return query


def _filters(q: TaskQuery, principal: Principal) -> dict[str, Any]:
    groups = q.candidate_groups.split(",") if isinstance(q.candidate_groups, str) else q.candidate_groups
    by_candidate = bool(q.candidate_group or groups or q.candidate_user)
    return dict(
        candidate_group=q.candidate_group, assignee=q.assignee, process_key=q.process_key,
        business_key=q.business_key, process_instance_id=q.process_instance_id, status="open",
        due_before=query_date("dueBefore", q.due_before), overdue=None, candidate_groups=groups or None,
        candidate_user=q.candidate_user,
        # the groups of the caller are known; another user's groups are not (only tasks offered by name)
        candidate_user_groups=principal.groups if q.candidate_user == principal.user else (),
        # Camunda leaves assigned tasks out of a candidate query unless includeAssignedTasks is set
        unassigned=q.unassigned or (by_candidate and not q.include_assigned),
        element_id=q.element_id, due_after=query_date("dueAfter", q.due_after), task_id=q.task_id,
    )


def _sort(q: TaskQuery) -> tuple[str, bool]:
    by, order = q.sort_by, q.sort_order
    if q.sorting:
        if len(q.sorting) > 1:
            raise invalid_request("sorting by more than one property is not supported")
        by, order = q.sorting[0].get("sortBy"), q.sorting[0].get("sortOrder")
    column, descending = sort_order(by, order, _SORTS)
    return column or "created", descending


def _list(request: Request, ctx: AppContext, session: Any, principal: Principal, raw: dict[str, Any],
          first_result: int | None, max_results: int | None) -> list[dict[str, Any]]:
    q = _parse(raw)
    if q.suspended:
        return []
    first, size = paging(first_result, max_results, LIST_CAP)
    if size == 0:
        return []
    column, descending = _sort(q)
    page = task_service.list_tasks(session, principal, now=ctx.clock.now(), limit=size, cursor=None,
                                   sort_by=column, descending=descending, offset=first, **_filters(q, principal))
    refs = Definitions(session)
    return [shapes.task(t, refs.ref_of(t.definition_id)) for t in page.items]


def _count(ctx: AppContext, session: Any, principal: Principal, raw: dict[str, Any]) -> dict[str, int]:
    q = _parse(raw)
    if q.suspended:
        return {"count": 0}
    return {"count": task_service.count_tasks(session, principal, now=ctx.clock.now(), **_filters(q, principal))}


def _query_params(request: Request) -> dict[str, Any]:
    """The query's filters. candidateGroups may come once per group (pycamunda sends a list so); any other filter
    given twice with different values is refused, not read as the last one."""
    params: dict[str, Any] = {}
    for k in request.query_params:
        if k in ("firstResult", "maxResults"):
            continue
        values = request.query_params.getlist(k)
        if k == "candidateGroups":
            params[k] = ",".join(values)
        elif len(set(values)) > 1:
            raise invalid_request(f"{k} is given more than once with different values")
        else:
            params[k] = values[0]
    return params


@router.get("/task")
def list_tasks(request: Request, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
               first_result: Annotated[int | None, Query(alias="firstResult")] = None,
               max_results: Annotated[int | None, Query(alias="maxResults")] = None) -> list[dict[str, Any]]:
    """Open tasks the caller may see. Filters: processInstanceId, processInstanceBusinessKey,
    processDefinitionKey, taskDefinitionKey, taskId, candidateGroup, candidateGroups (comma-separated),
    candidateUser, assignee, unassigned, includeAssignedTasks, dueBefore, dueAfter; sortBy (created, dueDate,
    name, id, assignee, instanceId, taskDefinitionKey) with sortOrder; firstResult, maxResults (at most 1000)."""
    return _list(request, ctx, session, principal, _query_params(request), first_result, max_results)


@router.post("/task")
def query_tasks(request: Request, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
                body: Annotated[dict[str, Any] | None, Body()] = None,
                first_result: Annotated[int | None, Query(alias="firstResult")] = None,
                max_results: Annotated[int | None, Query(alias="maxResults")] = None) -> list[dict[str, Any]]:
    """The same query as a JSON body (candidateGroups as a list; sorting as [{sortBy, sortOrder}])."""
    return _list(request, ctx, session, principal, body or {}, first_result, max_results)


@router.get("/task/count")
def count_tasks(request: Request, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal) -> dict[str, int]:
    return _count(ctx, session, principal, _query_params(request))


@router.post("/task/count")
def count_tasks_by_body(ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
                        body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, int]:
    return _count(ctx, session, principal, body or {})


def _open_task(ctx: AppContext, session: Any, principal: Principal, task_id: str) -> TaskDetail:
    """An open task; a completed or cancelled one no longer exists for Camunda's runtime API."""
    detail = task_service.get(ctx, session, principal, task_id)
    if detail.status != "open":
        raise not_found(f"No matching task with id {task_id}")
    return detail


@router.get("/task/{task_id}")
def get_task(task_id: str, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    t = _open_task(ctx, session, principal, task_id)
    return shapes.task(t, Definitions(session).ref_of(t.definition_id), description=t.documentation,
                       form_key=t.form_key)


class ClaimIn(BaseModel):
    user_id: str | None = Field(default=None, alias="userId")


@router.post("/task/{task_id}/claim", status_code=204)
def claim_task(task_id: str, ctx: ContextDep, session: WriteSessionDep, principal: EnginePrincipal,
               body: ClaimIn | None = None) -> Response:
    """Claim for the calling user: userId must be that user (a claim for someone else is not supported).
    Claimed by another user: 409 TaskAlreadyClaimedException (Camunda answers 500)."""
    if body is not None and body.user_id not in (None, principal.user):
        raise invalid_request(f"a task is claimed by the authenticated user; userId must be '{principal.user}'")
    task_service.claim(ctx, session, principal, task_id)
    return Response(status_code=204)


@router.post("/task/{task_id}/unclaim", status_code=204)
def unclaim_task(task_id: str, ctx: ContextDep, session: WriteSessionDep, principal: EnginePrincipal) -> Response:
    task_service.unclaim(ctx, session, principal, task_id)
    return Response(status_code=204)


class CompleteIn(BaseModel):
    variables: dict[str, Any] | None = None
    with_variables_in_return: bool = Field(default=False, alias="withVariablesInReturn")


def _complete(task_id: str, ctx: AppContext, session: Any, principal: Principal, body: CompleteIn | None) -> Response:
    body = body or CompleteIn()
    variables = variables_in(body.variables)
    out = task_service.complete(ctx, principal, task_id, variables)
    if not body.with_variables_in_return:
        return Response(status_code=204)
    instance = instances.read(ctx, session, principal, out.process_instance_id)
    return JSONResponse(typed_variables(instance.variables))


@router.post("/task/{task_id}/complete", status_code=204,
             responses={200: {"description": "the process variables, when withVariablesInReturn is true"}})
def complete_task(task_id: str, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
                  body: CompleteIn | None = None) -> Response:
    """Complete with typed variables, checked against the task's form as in /api/v1. A completed task, or one
    claimed by another user: 409 (Camunda answers 500)."""
    return _complete(task_id, ctx, session, principal, body)


@router.post("/task/{task_id}/submit-form", status_code=204,
             responses={200: {"description": "the process variables, when withVariablesInReturn is true"}})
def submit_task_form(task_id: str, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
                     body: CompleteIn | None = None) -> Response:
    return _complete(task_id, ctx, session, principal, body)


@router.get("/task/{task_id}/form-variables")
def get_form_variables(task_id: str, ctx: ContextDep, session: SessionDep,
                       principal: EnginePrincipal) -> dict[str, Any]:
    """The task's form fields, each with the current value of its variable or its default."""
    t = _open_task(ctx, session, principal, task_id)
    return shapes.form_variables(t.form, t.variables)


@router.get("/task/{task_id}/identity-links")
def get_identity_links(task_id: str, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
                       type: str | None = None) -> list[dict[str, Any]]:
    links = shapes.identity_links(_open_task(ctx, session, principal, task_id))
    return [link for link in links if type is None or link["type"] == type]


class CommentCreateIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    process_instance_id: str | None = Field(default=None, alias="processInstanceId")


@router.post("/task/{task_id}/comment/create")
def create_comment(task_id: str, request: Request, ctx: ContextDep, session: WriteSessionDep,
                   principal: EnginePrincipal, body: CommentCreateIn) -> dict[str, Any]:
    """Add an opinion (审批意见) to a task, open or completed."""
    comment = task_service.add_comment(ctx, session, principal, task_id, body.message)
    if body.process_instance_id not in (None, comment.process_instance_id):
        raise invalid_request("processInstanceId is not the task's process instance")
    return shapes.comment(base_url(request), comment)


@router.get("/task/{task_id}/comment")
def list_comments(task_id: str, request: Request, session: SessionDep,
                  principal: EnginePrincipal) -> list[dict[str, Any]]:
    """The opinion given on completion and the comments added, oldest first."""
    base = base_url(request)
    return [shapes.comment(base, c) for c in task_service.comments(session, principal, task_id)]


@router.get("/task/{task_id}/comment/{comment_id}")
def get_comment(task_id: str, comment_id: str, request: Request, session: SessionDep,
                principal: EnginePrincipal) -> dict[str, Any]:
    for c in task_service.comments(session, principal, task_id):
        if c.id == comment_id:
            return shapes.comment(base_url(request), c)
    raise CamundaError(404, "InvalidRequestException", f"No comment {comment_id} for task {task_id}")
