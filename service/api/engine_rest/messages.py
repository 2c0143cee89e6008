"""Messages from OA systems (POST /message), correlated to the one instance that waits for them."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ContextDep
from service.api.engine_rest.mapping import CamundaError, from_domain, invalid_request, typed_variables, variables_in
from service.api.engine_rest.support import CamundaRoute, EnginePrincipal
from service.errors import ConcurrentChange, Conflict, NotFound
from service.services import instances, messages

router = APIRouter(route_class=CamundaRoute)


class CorrelationIn(BaseModel):
    """Camunda's CorrelationMessageDto: what govflow reads of it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    message_name: str = Field(alias="messageName", min_length=1, max_length=500)
    business_key: str | None = Field(default=None, alias="businessKey")
    process_instance_id: str | None = Field(default=None, alias="processInstanceId")
    tenant_id: str | None = Field(default=None, alias="tenantId")
    correlation_keys: dict[str, Any] | None = Field(default=None, alias="correlationKeys")
    local_correlation_keys: dict[str, Any] | None = Field(default=None, alias="localCorrelationKeys")
    process_variables: dict[str, Any] | None = Field(default=None, alias="processVariables")
    process_variables_local: dict[str, Any] | None = Field(default=None, alias="processVariablesLocal")
    all: bool = False
    result_enabled: bool = Field(default=False, alias="resultEnabled")
    variables_in_result_enabled: bool = Field(default=False, alias="variablesInResultEnabled")


def _unsupported(body: CorrelationIn) -> str | None:
    if body.tenant_id:
        return "tenantId (govflow has no tenants)"
    if body.correlation_keys or body.local_correlation_keys:
        return "correlationKeys (correlate by businessKey or processInstanceId)"
    if body.process_variables_local:
        return "processVariablesLocal (send processVariables)"
    if body.all:
        return "all=true (a message goes to the one instance waiting for it)"
    return None


@router.post("/message", status_code=204,
             responses={200: {"description": "the correlation results, when resultEnabled is true"}})
def correlate_message(body: CorrelationIn, ctx: ContextDep, principal: EnginePrincipal) -> Response:
    """Deliver a message to the instance (by businessKey or processInstanceId) that waits for it; its typed
    processVariables must fit the payload the process declares. No instance waits, or more than one:
    400 RestException, as Camunda answers."""
    problem = _unsupported(body)
    if problem:
        raise invalid_request(f"not supported: {problem}")
    if not body.business_key and not body.process_instance_id:
        raise invalid_request("a message needs a businessKey or a processInstanceId (message start events are "
                              "not supported)")
    variables = variables_in(body.process_variables)
    try:
        out = messages.correlate(ctx, principal, name=body.message_name, business_key=body.business_key,
                                 process_key=None, process_instance_id=body.process_instance_id,
                                 variables=variables)
    except ConcurrentChange as e:
        raise from_domain(e) from None  # a retry may correlate it
    except (NotFound, Conflict) as e:
        raise CamundaError(400, "RestException",
                           f"Cannot correlate message '{body.message_name}': {e.detail}") from None
    if not body.result_enabled:
        return Response(status_code=204)
    result: dict[str, Any] = {
        "resultType": "Execution", "processInstance": None,
        "execution": {"id": out.process_instance_id, "processInstanceId": out.process_instance_id,
                      "ended": out.status != "running", "tenantId": None},
    }
    if body.variables_in_result_enabled:
        with ctx.read() as session:
            instance = instances.read(ctx, session, principal, out.process_instance_id)
        result["variables"] = typed_variables(instance.variables)
    return JSONResponse([result])
