"""An instance's diagram with where it stands: the BPMN plus a state per element, for a viewer such as bpmn-js."""
from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ContextDep, PrincipalDep, SessionDep
from service.api.problems import responses
from service.api.route import Route
from service.schemas import InstanceDiagramOut
from service.services import diagrams

router = APIRouter(tags=["process instances"], route_class=Route)


@router.get("/process-instances/{instance_id}/diagram", response_model=InstanceDiagramOut,
            responses=responses(401, 404))
def get_diagram(instance_id: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> InstanceDiagramOut:
    """The definition version's BPMN XML and, per element id, its state: `completed` (with `completed_count` and
    `last_completed_at`), `active` (with the open `task_ids`), `waiting` (a timer with `due_at`, a message, a join
    waiting for its other branches) or `failed` (a timer whose firing failed, with `failed_attempts`)."""
    return diagrams.instance_diagram(ctx, session, principal, instance_id)
