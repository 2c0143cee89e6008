"""A subset of Camunda 7's REST API (engine-rest) on govflow's use cases: Camunda Modeler's Deploy and Start
buttons, and OA systems written for Camunda 7. See docs/camunda-rest.md."""
from __future__ import annotations

from fastapi import APIRouter

from service.api.engine_rest import definitions, deployment, history, instances, messages, tasks
from service.api.engine_rest.support import PREFIX

TAG = "engine-rest (Camunda 7 REST subset)"


def build_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=[TAG])
    for module in (deployment, definitions, instances, tasks, messages, history):
        router.include_router(module.router)
    return router
