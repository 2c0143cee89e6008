"""A subset of Camunda 7's REST API (engine-rest) on govflow's use cases: Camunda Modeler's Deploy and Start
buttons, and OA systems written for Camunda 7. See docs/camunda-rest.md."""
from __future__ import annotations

from fastapi import APIRouter, FastAPI

from service.api.engine_rest import definitions, deployment, history, instances, messages, tasks
from service.api.engine_rest.mapping import CamundaError
from service.api.engine_rest.support import PREFIX, CamundaRoute, EnginePrincipal

_unknown = APIRouter(route_class=CamundaRoute)


@_unknown.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
def not_supported(path: str, principal: EnginePrincipal) -> None:
    raise CamundaError(404, "RestException", f"/engine-rest/{path} is not part of govflow's Camunda 7 REST subset "
                       "(see docs/camunda-rest.md)")

TAG = "engine-rest (Camunda 7 REST subset)"


def include(app: APIRouter | FastAPI) -> None:
    """Mount the subset under /engine-rest. Each router is included with its prefix: FastAPI walks every route of a
    router included without one (to check no path ends up empty), which made each new app cost ~0.1 s of CPU."""
    for module in (deployment, definitions, instances, tasks, messages, history):
        app.include_router(module.router, prefix=PREFIX, tags=[TAG])
    app.include_router(_unknown, prefix=PREFIX, tags=[TAG])  # last: only what no route above answers
