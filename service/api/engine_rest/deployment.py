"""Deployments as Camunda Modeler's Deploy dialog makes them, and the engine version it asks for."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile

from service.api.deps import ContextDep, SessionDep
from service.api.engine_rest import shapes
from service.api.engine_rest.mapping import (
    ENGINE_VERSION,
    decisions_in,
    definition_id,
    flag,
    format_date,
    invalid_request,
    paging,
)
from service.api.engine_rest.support import CamundaRoute, EnginePrincipal, base_url
from service.services import definitions

router = APIRouter(route_class=CamundaRoute)
MAX_FILES = 50
MAX_FIELDS = 50


@dataclass
class Upload:
    """A multipart deployment: the text parts, and one file part per resource (named by its file name)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


async def read_upload(request: Request) -> Upload:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid_request("a deployment is sent as multipart/form-data")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except Exception:
        raise invalid_request("the multipart body could not be read") from None
    upload = Upload()
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            # Camunda Modeler names each part after its file; other clients name the part anything
            file_name = (value.filename or name).replace("\\", "/").rsplit("/", 1)[-1]
            if not file_name:
                raise invalid_request(f"the file part '{name}' has no file name")
            if file_name in upload.files:
                raise invalid_request(f"the file {file_name} was sent twice")
            upload.files[file_name] = await value.read()
        else:
            upload.fields[name] = value
    return upload


@router.get("/version")
def version(principal: EnginePrincipal) -> dict[str, str]:
    """The Camunda 7 version whose REST API this subset follows (Camunda Modeler picks its lint rules by it)."""
    return {"version": ENGINE_VERSION}


def _deployments(session: Any) -> list[dict[str, Any]]:
    by_id: dict[int, Any] = {}
    for latest in definitions.list_latest(session):
        for d in definitions.versions(session, latest.key):
            if d.deployment_id not in by_id or d.created_at < by_id[d.deployment_id].created_at:
                by_id[d.deployment_id] = d
    return [{"links": [], "id": str(i), "name": None, "source": None, "tenantId": None,
             "deploymentTime": format_date(d.created_at)} for i, d in sorted(by_id.items())]


@router.get("/deployment")
def list_deployments(session: SessionDep, principal: EnginePrincipal,
                     first_result: Annotated[int | None, Query(alias="firstResult")] = None,
                     max_results: Annotated[int | None, Query(alias="maxResults")] = None) -> list[dict[str, Any]]:
    """The deployments that hold process definitions (Camunda Modeler checks the connection with maxResults=0)."""
    first, size = paging(first_result, max_results, 1000)
    if size == 0:
        return []
    return _deployments(session)[first:first + size]


@router.get("/deployment/count")
def count_deployments(session: SessionDep, principal: EnginePrincipal) -> dict[str, int]:
    return {"count": len(_deployments(session))}


@router.post("/deployment/create")
def create_deployment(request: Request, ctx: ContextDep, principal: EnginePrincipal,
                      upload: Annotated[Upload, Depends(read_upload)]) -> dict[str, Any]:
    """Deploy .bpmn and .dmn files (admins only). Content already deployed is not a new version, whatever
    enable-duplicate-filtering and deploy-changed-only say: the answer then lists the versions that have it."""
    text = upload.fields
    if text.get("tenant-id"):
        raise invalid_request("govflow has no tenants; leave tenant-id empty")
    for name in ("enable-duplicate-filtering", "deploy-changed-only"):
        flag(name, text.get(name))
    if not upload.files:
        raise invalid_request("No deployment resources contained in the form upload.")
    source = (text.get("deployment-source") or "engine-rest")[:200]
    out = definitions.deploy(ctx, principal, upload.files, source=source)
    deployed = [*out.definitions, *out.unchanged_definitions]
    deployment_id = str(out.deployment_id if out.deployment_id is not None
                        else min(d.deployment_id for d in deployed))
    version_number = max((d.version for d in deployed), default=1)
    decisions = {
        definition_id(key, version_number, deployment_id):
            shapes.decision_definition(key, name, resource, version_number, deployment_id)
        for key, name, resource in decisions_in(upload.files)
    }
    return shapes.deployment(base_url(request), deployment_id, text.get("deployment-name"),
                             text.get("deployment-source"), deployed, decisions)
