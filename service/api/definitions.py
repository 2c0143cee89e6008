"""Process definitions and deployments."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import Response

from service.api.deps import ContextDep, IdempotencyDep, PrincipalDep, SessionDep
from service.api.problems import responses
from service.api.route import Route
from service.errors import InvalidInput
from service.schemas import DeploymentOut, GroupOut, ProcessDefinitionOut
from service.services import definitions

router = APIRouter(tags=["definitions"], route_class=Route)


@router.get("/process-definitions", response_model=list[ProcessDefinitionOut], responses=responses(401))
def list_definitions(session: SessionDep, principal: PrincipalDep) -> list[ProcessDefinitionOut]:
    return definitions.list_latest(session)


@router.get("/process-definitions/{key}", response_model=ProcessDefinitionOut, responses=responses(401, 404))
def get_definition(key: str, ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> ProcessDefinitionOut:
    """The latest version, with its start form in the same schema as a task's form, the candidate groups its user
    tasks are offered to (with their lanes and tasks) and the messages it waits for."""
    return definitions.get_latest(ctx, session, key)


@router.get("/groups", response_model=list[GroupOut], responses=responses(401))
def list_groups(ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> list[GroupOut]:
    """Every candidate group used by the latest version of a deployed process: the tasks offered to it and the
    processes it may start."""
    return definitions.groups(ctx, session)


@router.get("/process-definitions/{key}/versions", response_model=list[ProcessDefinitionOut],
            responses=responses(401, 404))
def list_versions(key: str, session: SessionDep, principal: PrincipalDep) -> list[ProcessDefinitionOut]:
    return definitions.versions(session, key)


@router.get("/process-definitions/{key}/xml", responses={200: {"content": {"application/xml": {}}},
                                                          **responses(401, 404)})
def get_xml(key: str, session: SessionDep, principal: PrincipalDep,
            version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    return Response(definitions.xml(session, key, version), media_type="application/xml")


@router.post("/deployments", response_model=DeploymentOut, status_code=201, responses=responses(401, 403, 422))
def deploy(ctx: ContextDep, principal: PrincipalDep, idem: IdempotencyDep,
           files: list[UploadFile] = File(..., description=".bpmn and .dmn files")) -> Response:
    if idem.replay:
        return idem.replayed()
    contents: dict[str, bytes] = {}
    for f in files:
        name = (f.filename or "").rsplit("/", 1)[-1]
        if not name:
            raise InvalidInput("every uploaded file needs a file name", {"files": "missing file name"})
        if name in contents:
            raise InvalidInput(f"file {name} was uploaded twice", {"files": f"duplicate {name}"})
        contents[name] = f.file.read()
    return idem.respond(201, definitions.deploy(ctx, principal, contents, idem=idem))
