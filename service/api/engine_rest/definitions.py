"""Process definitions: list, read, XML, start form, and starting instances (Camunda Modeler's Start button)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ContextDep, SessionDep
from service.api.engine_rest import shapes
from service.api.engine_rest.mapping import flag, invalid_request, paging, sort_order, typed_variables, variables_in
from service.api.engine_rest.support import CamundaRoute, Definitions, EnginePrincipal, base_url
from service.schemas import ProcessDefinitionOut
from service.services import definitions, instances

router = APIRouter(route_class=CamundaRoute)


class StartIn(BaseModel):
    """Camunda's StartProcessInstanceDto: what govflow reads of it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    business_key: str | None = Field(default=None, alias="businessKey", max_length=200)
    variables: dict[str, Any] | None = None
    with_variables_in_return: bool = Field(default=False, alias="withVariablesInReturn")
    start_instructions: list[Any] | None = Field(default=None, alias="startInstructions")


def _all_versions(session: Any) -> list[ProcessDefinitionOut]:
    return [d for latest in definitions.list_latest(session) for d in definitions.versions(session, latest.key)]


_SORTS = {"key": "key", "name": "name", "version": "version", "id": "id", "deploymentId": "deployment_id"}


def _query(session: Any, key: str | None, keys_in: str | None, definition_id: str | None, name: str | None,
           deployment_id: str | None, version: int | None, latest_version: str | None, sort_by: str | None,
           order: str | None) -> list[ProcessDefinitionOut]:
    rows = definitions.list_latest(session) if flag("latestVersion", latest_version) else _all_versions(session)
    keys = set(keys_in.split(",")) if keys_in else None
    rows = [d for d in rows if (key is None or d.key == key) and (keys is None or d.key in keys)
            and (definition_id is None or definition_id in (shapes.definition_ref(d), str(d.id)))
            and (name is None or d.name == name) and (deployment_id is None or str(d.deployment_id) == deployment_id)
            and (version is None or d.version == version)]
    column, descending = sort_order(sort_by, order, _SORTS)
    if column is not None:
        rows.sort(key=lambda d: (getattr(d, column) is None, getattr(d, column)), reverse=descending)
    return rows


@router.get("/process-definition")
def list_process_definitions(
    session: SessionDep, principal: EnginePrincipal, key: str | None = None,
    keys_in: Annotated[str | None, Query(alias="keysIn")] = None,
    definition_id: Annotated[str | None, Query(alias="processDefinitionId")] = None, name: str | None = None,
    deployment_id: Annotated[str | None, Query(alias="deploymentId")] = None, version: int | None = None,
    latest_version: Annotated[str | None, Query(alias="latestVersion")] = None,
    sort_by: Annotated[str | None, Query(alias="sortBy")] = None,
    order: Annotated[str | None, Query(alias="sortOrder")] = None,
    first_result: Annotated[int | None, Query(alias="firstResult")] = None,
    max_results: Annotated[int | None, Query(alias="maxResults")] = None,
) -> list[dict[str, Any]]:
    rows = _query(session, key, keys_in, definition_id, name, deployment_id, version, latest_version, sort_by, order)
    first, size = paging(first_result, max_results, 1000)
    return [shapes.process_definition(d) for d in rows[first:first + size]]


@router.get("/process-definition/count")
def count_process_definitions(
    session: SessionDep, principal: EnginePrincipal, key: str | None = None,
    keys_in: Annotated[str | None, Query(alias="keysIn")] = None,
    definition_id: Annotated[str | None, Query(alias="processDefinitionId")] = None, name: str | None = None,
    deployment_id: Annotated[str | None, Query(alias="deploymentId")] = None, version: int | None = None,
    latest_version: Annotated[str | None, Query(alias="latestVersion")] = None,
) -> dict[str, int]:
    """How many definitions the list with the same filters holds."""
    return {"count": len(_query(session, key, keys_in, definition_id, name, deployment_id, version, latest_version,
                                None, None))}


def _by_key(session: Any, key: str) -> ProcessDefinitionOut:
    return definitions.definition_out(definitions.latest(session, key), with_form=True)


def _by_id(session: Any, definition_id: str) -> ProcessDefinitionOut:
    found = Definitions(session).resolve(definition_id)
    return definitions.by_id(session, found.id, with_form=True)


def _xml(session: Any, d: ProcessDefinitionOut) -> dict[str, Any]:
    return {"id": shapes.definition_ref(d), "bpmn20Xml": definitions.xml(session, d.key, d.version)}


def _start(request: Request, ctx: Any, principal: Any, lookup: Any, ref: str,
           body: StartIn | None) -> dict[str, Any]:
    """The definition is read in its own short transaction; the start then runs with none held open."""
    with ctx.read() as session:
        d = lookup(session, ref)
    body = body or StartIn()
    if body.start_instructions:
        raise invalid_request("startInstructions are not supported: an instance starts at its start event")
    out = instances.start(ctx, principal, d.key, body.business_key, variables_in(body.variables), version=d.version)
    returned = None
    if body.with_variables_in_return:
        returned = typed_variables(out.variables, {f.id: f.type for f in d.start_form or []})
    return shapes.process_instance(base_url(request), out, shapes.definition_ref(d), returned)


@router.get("/process-definition/key/{key}")
def get_by_key(key: str, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    return shapes.process_definition(_by_key(session, key))


@router.get("/process-definition/key/{key}/xml")
def get_xml_by_key(key: str, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    return _xml(session, _by_key(session, key))


@router.get("/process-definition/key/{key}/form-variables")
def get_form_variables_by_key(key: str, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    """The start form's fields, each with its default value, typed the Camunda way."""
    return shapes.form_variables(_by_key(session, key).start_form or [], {})


@router.post("/process-definition/key/{key}/start")
def start_by_key(key: str, request: Request, ctx: ContextDep, principal: EnginePrincipal,
                 body: StartIn | None = None) -> dict[str, Any]:
    """Start the latest version; the variables are checked against the start form as in /api/v1."""
    return _start(request, ctx, principal, _by_key, key, body)


@router.post("/process-definition/key/{key}/submit-form")
def submit_start_form_by_key(key: str, request: Request, ctx: ContextDep, principal: EnginePrincipal,
                             body: StartIn | None = None) -> dict[str, Any]:
    return _start(request, ctx, principal, _by_key, key, body)


@router.get("/process-definition/{definition_id}")
def get_by_id(definition_id: str, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    """By Camunda's id (key:version:deploymentId) or govflow's numeric id."""
    return shapes.process_definition(_by_id(session, definition_id))


@router.get("/process-definition/{definition_id}/xml")
def get_xml_by_id(definition_id: str, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    return _xml(session, _by_id(session, definition_id))


@router.get("/process-definition/{definition_id}/form-variables")
def get_form_variables_by_id(definition_id: str, session: SessionDep, principal: EnginePrincipal) -> dict[str, Any]:
    return shapes.form_variables(_by_id(session, definition_id).start_form or [], {})


@router.post("/process-definition/{definition_id}/start")
def start_by_id(definition_id: str, request: Request, ctx: ContextDep, principal: EnginePrincipal,
                body: StartIn | None = None) -> dict[str, Any]:
    """Start this very version (Camunda Modeler starts the definition it has just deployed)."""
    return _start(request, ctx, principal, _by_id, definition_id, body)


@router.post("/process-definition/{definition_id}/submit-form")
def submit_start_form_by_id(definition_id: str, request: Request, ctx: ContextDep, principal: EnginePrincipal,
                            body: StartIn | None = None) -> dict[str, Any]:
    return _start(request, ctx, principal, _by_id, definition_id, body)
