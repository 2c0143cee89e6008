"""Running process instances: list, read, variables, where they stand, and cancelling (DELETE)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.deps import ContextDep, SessionDep
from service.api.engine_rest import shapes
from service.api.engine_rest.mapping import CamundaError, flag, not_found, paging, typed_variables
from service.api.engine_rest.support import CamundaRoute, Definitions, EnginePrincipal, base_url
from service.auth import Principal
from service.errors import NotFound
from service.schemas import ProcessInstanceOut
from service.services import instances
from service.services.context import AppContext

router = APIRouter(route_class=CamundaRoute)
LIST_CAP = 1000


def _list(ctx: AppContext, session: Any, principal: Principal, business_key: str | None,
          definition_key: str | None, definition_id: str | None, ids: str | None, suspended: str | None,
          first: int, size: int) -> list[ProcessInstanceOut]:
    # the runtime view: running instances only (ended ones are under /history/process-instance)
    if flag("suspended", suspended) or size == 0:
        return []
    key, version = definition_key, None
    if definition_id:
        d = Definitions(session).resolve(definition_id)
        if definition_key not in (None, d.key):
            return []
        key, version = d.key, d.version
    wanted = set(ids.split(",")) if ids else None
    if version is None and wanted is None:
        return instances.list_instances(ctx, session, principal, process_key=key, status="running",
                                        business_key=business_key, limit=size, cursor=None, offset=first).items
    # a version or a list of ids: picked from the newest LIST_CAP running instances
    page = instances.list_instances(ctx, session, principal, process_key=key, status="running",
                                    business_key=business_key, limit=LIST_CAP, cursor=None)
    rows = [i for i in page.items if (version is None or i.definition_version == version)
            and (wanted is None or i.id in wanted)]
    return rows[first:first + size]


@router.get("/process-instance")
def list_process_instances(
    request: Request, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
    business_key: Annotated[str | None, Query(alias="businessKey")] = None,
    definition_key: Annotated[str | None, Query(alias="processDefinitionKey")] = None,
    definition_id: Annotated[str | None, Query(alias="processDefinitionId")] = None,
    ids: Annotated[str | None, Query(alias="processInstanceIds")] = None,
    active: str | None = None, suspended: str | None = None,
    first_result: Annotated[int | None, Query(alias="firstResult")] = None,
    max_results: Annotated[int | None, Query(alias="maxResults")] = None,
) -> list[dict[str, Any]]:
    """Running instances the caller may see, newest first (`active`: all running instances are active)."""
    flag("active", active)
    first, size = paging(first_result, max_results, LIST_CAP)
    rows = _list(ctx, session, principal, business_key, definition_key, definition_id, ids, suspended, first, size)
    refs = Definitions(session)
    base = base_url(request)
    return [shapes.process_instance(base, i, refs.ref(i.process_key, i.definition_version)) for i in rows]


@router.get("/process-instance/count")
def count_process_instances(
    ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
    business_key: Annotated[str | None, Query(alias="businessKey")] = None,
    definition_key: Annotated[str | None, Query(alias="processDefinitionKey")] = None,
    definition_id: Annotated[str | None, Query(alias="processDefinitionId")] = None,
    ids: Annotated[str | None, Query(alias="processInstanceIds")] = None,
    active: str | None = None, suspended: str | None = None,
) -> dict[str, int]:
    """How many instances the list with the same filters holds (a version or a list of ids: among the newest
    LIST_CAP running instances, as the list picks them)."""
    flag("active", active)
    if flag("suspended", suspended):
        return {"count": 0}
    if definition_id or ids:
        return {"count": len(_list(ctx, session, principal, business_key, definition_key, definition_id, ids,
                                   suspended, 0, LIST_CAP))}
    return {"count": instances.count_instances(session, principal, process_key=definition_key, status="running",
                                               business_key=business_key)}


def running(ctx: AppContext, session: Any, principal: Principal, instance_id: str) -> ProcessInstanceOut:
    """A running instance the caller may see; an ended one no longer exists for Camunda's runtime API."""
    try:
        out = instances.read(ctx, session, principal, instance_id)
    except NotFound:
        out = None
    if out is None or out.status != "running":
        raise not_found(f"Process instance with id {instance_id} does not exist")
    return out


@router.get("/process-instance/{instance_id}")
def get_process_instance(instance_id: str, request: Request, ctx: ContextDep, session: SessionDep,
                         principal: EnginePrincipal) -> dict[str, Any]:
    i = running(ctx, session, principal, instance_id)
    return shapes.process_instance(base_url(request), i, Definitions(session).ref(i.process_key, i.definition_version))


@router.delete("/process-instance/{instance_id}", status_code=204)
def delete_process_instance(
    instance_id: str, ctx: ContextDep, session: SessionDep, principal: EnginePrincipal,
    fail_if_not_exists: Annotated[str | None, Query(alias="failIfNotExists")] = None,
) -> Response:
    """Cancel a running instance (administrators only); it stays in the history as externally terminated."""
    try:
        running(ctx, session, principal, instance_id)
    except CamundaError:
        if fail_if_not_exists is not None and not flag("failIfNotExists", fail_if_not_exists):
            return Response(status_code=204)
        raise
    instances.cancel(ctx, principal, instance_id, f"deleted through /engine-rest by {principal.user}")
    return Response(status_code=204)


@router.get("/process-instance/{instance_id}/variables")
def get_variables(instance_id: str, ctx: ContextDep, session: SessionDep,
                  principal: EnginePrincipal) -> dict[str, Any]:
    return typed_variables(running(ctx, session, principal, instance_id).variables)


@router.get("/process-instance/{instance_id}/activity-instances")
def get_activity_instances(instance_id: str, ctx: ContextDep, session: SessionDep,
                           principal: EnginePrincipal) -> dict[str, Any]:
    """The process with its open user tasks and the messages and timers it waits for."""
    i = running(ctx, session, principal, instance_id)
    refs = Definitions(session)
    return shapes.activity_tree(i, refs.ref(i.process_key, i.definition_version),
                                refs.name(i.process_key, i.definition_version))
