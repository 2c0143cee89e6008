"""Messages from OA systems (a contract was signed, construction finished...)."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.api.deps import ContextDep, IdempotencyDep, PrincipalDep
from service.api.problems import responses
from service.api.route import Route
from service.schemas import MessageIn, MessageOut
from service.services import messages

router = APIRouter(tags=["messages"], route_class=Route)


@router.post("/messages", response_model=MessageOut, responses=responses(401, 404, 409, 422))
def send_message(body: MessageIn, ctx: ContextDep, principal: PrincipalDep, idem: IdempotencyDep) -> Response:
    if idem.replay:
        return idem.replayed()
    out = messages.correlate(ctx, principal, name=body.name, business_key=body.business_key,
                             process_key=body.process_key, process_instance_id=body.process_instance_id,
                             variables=body.variables, idem=idem)
    return idem.respond(200, out)
