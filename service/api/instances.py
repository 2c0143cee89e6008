"""Process instances: start, read, list, history, cancel, fire a timer."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.api.deps import ContextDep, IdempotencyDep, PrincipalDep, SessionDep
from service.api.problems import responses
from service.api.route import Route
from service.schemas import (
    CancelIn,
    HistoryOut,
    ProcessInstanceOut,
    ProcessInstancePage,
    StartInstanceIn,
    TaskRecordPage,
)
from service.services import instances, timers
from service.services import tasks as task_service

router = APIRouter(tags=["process instances"], route_class=Route)


@router.post("/process-instances", response_model=ProcessInstanceOut, status_code=201,
             responses=responses(401, 403, 404, 409, 422))
def start_instance(body: StartInstanceIn, ctx: ContextDep, principal: PrincipalDep,
                   idem: IdempotencyDep) -> Response:
    if idem.replay:
        return idem.replayed()
    out = instances.start(ctx, principal, body.process_key, body.business_key, body.variables, idem=idem)
    return idem.respond(201, out)


@router.get("/process-instances", response_model=ProcessInstancePage, responses=responses(401, 422))
def list_instances(ctx: ContextDep, session: SessionDep, principal: PrincipalDep,
                   process_key: str | None = None, status: str | None = None, business_key: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> ProcessInstancePage:
    return instances.list_instances(ctx, session, principal, process_key=process_key, status=status,
                                    business_key=business_key, limit=limit, cursor=cursor)


@router.get("/process-instances/{instance_id}", response_model=ProcessInstanceOut, responses=responses(401, 404))
def get_instance(instance_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> ProcessInstanceOut:
    return instances.read(ctx, session, principal, instance_id)


@router.get("/process-instances/{instance_id}/tasks", response_model=TaskRecordPage, responses=responses(401, 404))
def list_instance_tasks(instance_id: str, session: SessionDep, principal: PrincipalDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 200, cursor: str | None = None) -> TaskRecordPage:
    """The instance's tasks, open and completed, oldest first, with what was submitted on each (its record)."""
    return task_service.list_for_instance(session, principal, instance_id, limit, cursor)


@router.get("/process-instances/{instance_id}/history", response_model=HistoryOut, responses=responses(401, 404))
def get_history(instance_id: str, session: SessionDep, principal: PrincipalDep, verify: bool = False) -> HistoryOut:
    return instances.history(session, principal, instance_id, verify)


@router.post("/process-instances/{instance_id}/cancel", response_model=ProcessInstanceOut,
             responses=responses(401, 403, 404, 409, 422))
def cancel_instance(instance_id: str, body: CancelIn, ctx: ContextDep, principal: PrincipalDep,
                    idem: IdempotencyDep) -> Response:
    if idem.replay:
        return idem.replayed()
    return idem.respond(200, instances.cancel(ctx, principal, instance_id, body.reason, idem=idem))


@router.post("/process-instances/{instance_id}/timers/{element_id}/fire", response_model=ProcessInstanceOut,
             responses=responses(401, 403, 404, 409, 422))
def fire_timer(instance_id: str, element_id: str, ctx: ContextDep, principal: PrincipalDep) -> ProcessInstanceOut:
    """Fire a waiting timer now (like Camunda's "execute job")."""
    return timers.fire_now(ctx, principal, instance_id, element_id)
