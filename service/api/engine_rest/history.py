"""History: process instances (running and ended), the activities they went through, and their tasks."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.api.deps import ContextDep, SessionDep
from service.api.engine_rest import shapes
from service.api.engine_rest.mapping import flag, invalid_request, not_found, paging, sort_order
from service.api.engine_rest.support import CamundaRoute, Definitions, EnginePrincipal
from service.auth import Principal
from service.errors import NotFound
from service.schemas import ProcessInstanceOut, TaskSummary
from service.services import instances
from service.services import tasks as task_service
from service.services.context import AppContext

router = APIRouter(route_class=CamundaRoute)
LIST_CAP = 1000


def _instance(ctx: AppContext, session: Any, principal: Principal, instance_id: str) -> ProcessInstanceOut:
    try:
        return instances.read(ctx, session, principal, instance_id)
    except NotFound:
        raise not_found(f"Historic process instance with id {instance_id} does not exist") from None


def _historic(session: Any, rows: list[ProcessInstanceOut]) -> list[dict[str, Any]]:
    refs = Definitions(session)
    return [shapes.historic_process_instance(i, refs.ref(i.process_key, i.definition_version),
                                             refs.name(i.process_key, i.definition_version)) for i in rows]


@router.get("/history/process-instance")
def list_historic_process_instances(
    ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
    instance_id: Annotated[str | None, Query(alias="processInstanceId")] = None,
    business_key: Annotated[str | None, Query(alias="processInstanceBusinessKey")] = None,
    definition_key: Annotated[str | None, Query(alias="processDefinitionKey")] = None,
    finished: str | None = None, unfinished: str | None = None, completed: str | None = None,
    sort_by: Annotated[str | None, Query(alias="sortBy")] = None,
    order: Annotated[str | None, Query(alias="sortOrder")] = None,
    first_result: Annotated[int | None, Query(alias="firstResult")] = None,
    max_results: Annotated[int | None, Query(alias="maxResults")] = None,
) -> list[dict[str, Any]]:
    """Instances running and ended (newest first unless sortBy=startTime and sortOrder say otherwise).
    Filters: processInstanceId, processInstanceBusinessKey, processDefinitionKey, finished, unfinished,
    completed; firstResult, maxResults (at most 1000)."""
    first, size = paging(first_result, max_results, LIST_CAP)
    column, descending = sort_order(sort_by, order, {"startTime": "started_at"})
    is_finished, is_unfinished, is_completed = (flag("finished", finished), flag("unfinished", unfinished),
                                                 flag("completed", completed))
    if instance_id:
        try:
            rows = [instances.read(ctx, session, principal, instance_id)]
        except NotFound:
            rows = []
        rows = [i for i in rows if business_key in (None, i.business_key) and definition_key in (None, i.process_key)]
    else:
        status = "completed" if is_completed else "running" if is_unfinished else None
        if not is_finished and (column is None or descending) and not (is_completed and is_unfinished):
            # newest first, as the use case pages
            page = instances.list_instances(ctx, session, principal, process_key=definition_key, status=status,
                                            business_key=business_key, limit=max(size, 1), cursor=None,
                                            offset=first)
            return _historic(session, page.items[:size])
        # oldest first, or finished ones (completed and cancelled): from the newest LIST_CAP instances
        rows = instances.list_instances(ctx, session, principal, process_key=definition_key, status=status,
                                        business_key=business_key, limit=LIST_CAP, cursor=None).items
    if is_finished:
        rows = [i for i in rows if i.status != "running"]
    if is_unfinished:
        rows = [i for i in rows if i.status == "running"]
    if is_completed:
        rows = [i for i in rows if i.status == "completed"]
    if column is not None and not descending:
        rows = list(reversed(rows))
    return _historic(session, rows[first:first + size])


@router.get("/history/process-instance/{instance_id}")
def get_historic_process_instance(instance_id: str, ctx: ContextDep, session: SessionDep,
                                  principal: EnginePrincipal) -> dict[str, Any]:
    return _historic(session, [_instance(ctx, session, principal, instance_id)])[0]


@router.get("/history/activity-instance")
def list_historic_activity_instances(
    ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
    instance_id: Annotated[str | None, Query(alias="processInstanceId")] = None,
    activity_type: Annotated[str | None, Query(alias="activityType")] = None,
    activity_id: Annotated[str | None, Query(alias="activityId")] = None,
    finished: str | None = None, unfinished: str | None = None,
    first_result: Annotated[int | None, Query(alias="firstResult")] = None,
    max_results: Annotated[int | None, Query(alias="maxResults")] = None,
) -> list[dict[str, Any]]:
    """The activities of one instance (processInstanceId is required), oldest first, read from its audit trail:
    user tasks, messages received, timers fired and the end event reached."""
    if not instance_id:
        raise invalid_request("processInstanceId is required: history is read one process instance at a time")
    first, size = paging(first_result, max_results, LIST_CAP)
    instance = _instance(ctx, session, principal, instance_id)
    events = instances.history(session, principal, instance_id, verify=False).events
    ref = Definitions(session).ref(instance.process_key, instance.definition_version)
    rows = shapes.historic_activities(instance, ref, events)
    rows = [a for a in rows if activity_type in (None, a["activityType"]) and activity_id in (None, a["activityId"])
            and not (flag("finished", finished) and a["endTime"] is None)
            and not (flag("unfinished", unfinished) and a["endTime"] is not None)]
    return rows[first:first + size]


@router.get("/history/task")
def list_historic_tasks(
    ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
    instance_id: Annotated[str | None, Query(alias="processInstanceId")] = None,
    business_key: Annotated[str | None, Query(alias="processInstanceBusinessKey")] = None,
    definition_key: Annotated[str | None, Query(alias="processDefinitionKey")] = None,
    task_id: Annotated[str | None, Query(alias="taskId")] = None,
    element_id: Annotated[str | None, Query(alias="taskDefinitionKey")] = None,
    assignee: Annotated[str | None, Query(alias="taskAssignee")] = None,
    finished: str | None = None, unfinished: str | None = None,
    first_result: Annotated[int | None, Query(alias="firstResult")] = None,
    max_results: Annotated[int | None, Query(alias="maxResults")] = None,
) -> list[dict[str, Any]]:
    """Tasks open, completed and cancelled, oldest first. Filters: processInstanceId,
    processInstanceBusinessKey, processDefinitionKey, taskId, taskDefinitionKey, taskAssignee, finished,
    unfinished; firstResult, maxResults (at most 1000)."""
    first, size = paging(first_result, max_results, LIST_CAP)
    rows: list[TaskSummary]
    if instance_id:
        try:
            rows = list(task_service.list_for_instance(session, principal, instance_id, LIST_CAP, None).items)
        except NotFound:
            rows = []
    else:
        rows = []
        for status in ("open", "completed", "cancelled"):
            rows += task_service.list_tasks(
                session, principal, candidate_group=None, assignee=assignee, process_key=definition_key,
                business_key=business_key, process_instance_id=None, status=status, due_before=None, overdue=None,
                now=ctx.clock.now(), limit=LIST_CAP, cursor=None, element_id=element_id).items
        rows.sort(key=lambda t: (t.created_at, t.id))
    rows = [t for t in rows if task_id in (None, t.id) and element_id in (None, t.element_id)
            and assignee in (None, t.assignee) and business_key in (None, t.business_key)
            and definition_key in (None, t.process_key)
            and not (flag("finished", finished) and t.status == "open")
            and not (flag("unfinished", unfinished) and t.status != "open")]
    refs = Definitions(session)
    return [shapes.historic_task(t, refs.ref_of(t.definition_id)) for t in rows[first:first + size]]
