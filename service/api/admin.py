"""Administration: webhook subscriptions and deliveries, API keys for systems."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ContextDep, PrincipalDep, SessionDep, WriteSessionDep
from service.api.paging import CURSOR, PAGED, link_next
from service.api.problems import responses
from service.api.route import Route
from service.services import apikeys, webhooks
from service.services.targets import Allowance

router = APIRouter(tags=["administration"], route_class=Route)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str]
    secret: str = Field(max_length=500, description="HMAC-SHA256 key for X-Govflow-Signature")


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_by: str
    created_at: datetime


class DeliveryOut(BaseModel):
    id: int
    subscription_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    groups: list[str] = Field(default_factory=list, description="candidate groups the system acts in")
    processes: list[str] = Field(default_factory=list, description="process keys granted: the key reads every "
                                 "instance and task of these, starts them and sends them messages")
    admin: bool = False


class ApiKeyOut(BaseModel):
    id: str
    name: str
    groups: list[str]
    processes: list[str] = []
    admin: bool
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = Field(default=None, description="shown once, at creation")


@router.post("/webhooks", response_model=WebhookOut, status_code=201, responses=responses(401, 403, 422))
def create_webhook(body: WebhookIn, ctx: ContextDep, session: WriteSessionDep, principal: PrincipalDep) -> Any:
    return webhooks.create(session, principal, ctx.clock.now(), body.url, body.events, body.secret,
                           Allowance.parse(ctx.settings.webhook_allow_private))


@router.get("/webhooks", response_model=list[WebhookOut], responses=responses(401, 403))
def list_webhooks(session: SessionDep, principal: PrincipalDep) -> Any:
    return webhooks.list_subscriptions(session, principal)


@router.delete("/webhooks/{subscription_id}", status_code=204, responses=responses(401, 403, 404))
def delete_webhook(subscription_id: str, ctx: ContextDep, session: WriteSessionDep,
                   principal: PrincipalDep) -> Response:
    webhooks.delete(session, principal, ctx.clock.now(), subscription_id)
    return Response(status_code=204)


@router.get("/webhooks/deliveries", response_model=list[DeliveryOut], responses=responses(401, 403, 422) | PAGED)
def list_deliveries(request: Request, response: Response, session: SessionDep, principal: PrincipalDep,
                    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    cursor: Annotated[str | None, Query(description=CURSOR)] = None) -> Any:
    """Deliveries, the newest first. When there are more, the `Link` header's `rel="next"` is the next page."""
    items, next_cursor = webhooks.list_deliveries(session, principal, status, limit, cursor)
    link_next(request, response, next_cursor)
    return items


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryOut,
             responses=responses(401, 403, 404, 409))
def retry_delivery(delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], ctx: ContextDep, session: WriteSessionDep,
                   principal: PrincipalDep) -> Any:
    return webhooks.retry(session, principal, ctx.clock.now(), delivery_id)


@router.post("/api-keys", response_model=ApiKeyOut, status_code=201, responses=responses(401, 403, 409, 422))
def create_api_key(body: ApiKeyIn, ctx: ContextDep, session: WriteSessionDep, principal: PrincipalDep) -> Any:
    return apikeys.create(session, principal, ctx.clock.now(), body.name, body.groups, body.admin, body.processes)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=responses(401, 403))
def list_api_keys(session: SessionDep, principal: PrincipalDep) -> Any:
    return apikeys.list_keys(session, principal)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, responses=responses(401, 403, 404))
def revoke_api_key(key_id: str, ctx: ContextDep, session: WriteSessionDep, principal: PrincipalDep) -> Any:
    return apikeys.revoke(session, principal, ctx.clock.now(), key_id)
