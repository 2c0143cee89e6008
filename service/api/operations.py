"""Operating long-lived instances: send back and withdraw tasks; migrate, modify and set the variables of
instances; list and retry incidents."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from service.api.deps import ContextDep, IdempotencyDep, PrincipalDep, SessionDep
from service.api.paging import CURSOR, PAGED, link_next
from service.api.problems import responses
from service.api.route import Route
from service.schemas import (
    IncidentOut,
    MigrationIn,
    MigrationOut,
    ModifyIn,
    ProcessInstanceOut,
    ReturnOut,
    SendBackIn,
    SetVariablesIn,
    WithdrawIn,
)
from service.services import incidents, migrations, operations

router = APIRouter(route_class=Route)


@router.post("/tasks/{task_id}/send-back", response_model=ReturnOut, tags=["tasks"],
             responses=responses(401, 403, 404, 409, 422))
def send_back(task_id: str, body: SendBackIn, ctx: ContextDep, principal: PrincipalDep,
              idem: IdempotencyDep) -> Response:
    """Send the instance back from this open task to an earlier step the diagram allows (驳回/退回): the step opens
    again as a new task showing who sent it back and why. For a candidate of the task."""
    if idem.replay:
        return idem.replayed()
    out = operations.send_back(ctx, principal, task_id, body.to_element_id, body.comment, idem=idem)
    return idem.respond(200, out)


@router.post("/tasks/{task_id}/withdraw", response_model=ReturnOut, tags=["tasks"],
             responses=responses(401, 403, 404, 409, 422))
def withdraw(task_id: str, ctx: ContextDep, principal: PrincipalDep, idem: IdempotencyDep,
             body: WithdrawIn | None = None) -> Response:
    """Take back a task you completed (撤回) while the tasks it led to are not yet claimed: they are cancelled and
    the task opens again, assigned to you. 409 once the next step has been claimed or has completed."""
    if idem.replay:
        return idem.replayed()
    out = operations.withdraw(ctx, principal, task_id, (body or WithdrawIn()).comment, idem=idem)
    return idem.respond(200, out)


@router.post("/process-instances/migrations", response_model=MigrationOut, tags=["process instances"],
             responses=responses(401, 403, 404, 422))
def migrate_instances(body: MigrationIn, ctx: ContextDep, principal: PrincipalDep) -> MigrationOut:
    """Move running instances from one version of a process to another (administrators). `dry_run` reports, per
    instance, whether it can move and why not; a real run moves each in its own transaction and lists those it
    left where they were."""
    return migrations.migrate(ctx, principal, body)


@router.post("/process-instances/{instance_id}/modify", response_model=ProcessInstanceOut,
             tags=["process instances"], responses=responses(401, 403, 404, 409, 422))
def modify_instance(instance_id: str, body: ModifyIn, ctx: ContextDep, principal: PrincipalDep,
                    idem: IdempotencyDep) -> Response:
    """Move tokens (administrators): `cancel` an element's active tokens (or one task), `start_before` an element,
    in the order given, with a reason kept in the audit trail."""
    if idem.replay:
        return idem.replayed()
    out = operations.modify(ctx, principal, instance_id, [i.model_dump() for i in body.instructions], body.reason,
                            idem=idem)
    return idem.respond(200, out)


@router.post("/process-instances/{instance_id}/variables", response_model=ProcessInstanceOut,
             tags=["process instances"], responses=responses(401, 403, 404, 409, 422))
def set_variables(instance_id: str, body: SetVariablesIn, ctx: ContextDep, principal: PrincipalDep,
                  idem: IdempotencyDep) -> Response:
    """Set process variables (administrators), with a reason kept in the audit trail."""
    if idem.replay:
        return idem.replayed()
    out = operations.set_variables(ctx, principal, instance_id, body.variables, body.reason, idem=idem)
    return idem.respond(200, out)


@router.get("/incidents", response_model=list[IncidentOut], tags=["administration"],
            responses=responses(401, 403, 422) | PAGED)
def list_incidents(request: Request, response: Response, session: SessionDep, principal: PrincipalDep,
                   process_key: str | None = None, process_instance_id: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   cursor: Annotated[str | None, Query(description=CURSOR)] = None) -> list[IncidentOut]:
    """What failed and can be retried: timers whose firing failed, with the error each one hit, the most overdue
    first. When there are more, the `Link` header's `rel="next"` is the next page."""
    items, next_cursor = incidents.list_incidents(session, principal, process_key=process_key,
                                                  process_instance_id=process_instance_id, limit=limit, cursor=cursor)
    link_next(request, response, next_cursor)
    return items


@router.post("/incidents/{incident_id}/retry", response_model=ProcessInstanceOut, tags=["administration"],
             responses=responses(401, 403, 404, 409, 422))
def retry_incident(incident_id: Annotated[int, Path(ge=1, le=2**31 - 1)], ctx: ContextDep,
                   principal: PrincipalDep) -> ProcessInstanceOut:
    """Fire the failed timer again now."""
    return incidents.retry(ctx, principal, incident_id)
