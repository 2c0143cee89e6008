"""What every /engine-rest route shares: Camunda's error bodies, who is calling, definition ids."""
from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import policy
from service.api.deps import answered_an_error
from service.api.engine_rest.mapping import CamundaError, from_domain, not_found, parse_definition_id
from service.api.engine_rest.shapes import definition_ref
from service.api.problems import _is_conflict, _printable
from service.auth import Principal, decode_token
from service.errors import DomainError, NotFound, Unauthorized
from service.schemas import ProcessDefinitionOut
from service.services import apikeys, definitions
from service.services.context import AppContext
from service.text import NotStorable

log = logging.getLogger("govflow")
PREFIX = "/engine-rest"


def error_response(err: CamundaError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="govflow"'} if err.status == 401 else None
    # a message may quote a client's name or value that is not UTF-8 (a lone surrogate): escaped, as problems are
    return JSONResponse(_printable(err.body()), status_code=err.status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", []) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


class CamundaRoute(APIRoute):
    """Answers errors as Camunda 7 does, {"type", "message"}, instead of govflow's problem documents."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as e:
                answered_an_error(request)  # its write transaction, ended after this, is rolled back
                response = _answer(e)
                if response is None:
                    raise
                return response

        return route


def _answer(e: Exception) -> Response | None:
    """A route's error as Camunda answers it; None for an error of another kind."""
    if isinstance(e, CamundaError):
        return error_response(e)
    if isinstance(e, DomainError):
        return error_response(from_domain(e))
    if isinstance(e, RequestValidationError):
        return error_response(CamundaError(400, "InvalidRequestException", _validation_message(e)))
    if isinstance(e, StarletteHTTPException):
        kind = "AuthenticationException" if e.status_code == 401 else "RestException"
        return error_response(CamundaError(e.status_code, kind, str(e.detail)))
    if isinstance(e, DBAPIError):
        if not _is_conflict(e):
            return None
        return error_response(CamundaError(409, "OptimisticLockingException",
                                           "a concurrent change got there first; reload and try again", code=1))
    if isinstance(e, StatementError):
        # a value its column cannot take (too long, NUL; a date-time off the calendar): the request's fault
        if not isinstance(e.orig, (NotStorable, OverflowError, ValueError)):
            return None
        message = str(e.orig) if isinstance(e.orig, NotStorable) else "a value in the request is out of range"
        return error_response(CamundaError(400, "InvalidRequestException", message))
    return None


# ---- who is calling ----------------------------------------------------------------------------------
_basic = HTTPBasic(auto_error=False, realm="govflow",
                   description="user name and, as the password, an API key (gfk_…) or a token from `govflow token`")
_bearer = HTTPBearer(auto_error=False, description="a token from `govflow token`, or an API key (gfk_…)")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="a system's key from `govflow apikey create`")


def _authenticate(ctx: AppContext, secret: str) -> Principal:
    """The same principal, with the same grants, as /api/v1 would see (read in a read transaction)."""
    if secret.startswith(apikeys.PREFIX):
        with ctx.read() as session:
            principal = apikeys.authenticate(session, secret)
    else:
        principal = decode_token(ctx.jwt_secret, secret, ctx.settings.jwt_issuer)
    return policy.with_group_grants(principal, ctx.settings.group_process_grants)


def engine_principal(
    request: Request,
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Basic (a user name with an API key or a token as the password), Bearer (a token or an API key), or
    X-API-Key; the same principals, with the same rights, as /api/v1."""
    ctx: AppContext = request.app.state.ctx
    if api_key is not None:
        return _authenticate(ctx, api_key)
    if bearer is not None:
        return _authenticate(ctx, bearer.credentials)
    if basic is not None:
        if not basic.password:
            raise Unauthorized("send an API key or a token as the password; govflow has no user passwords")
        principal = _authenticate(ctx, basic.password)
        if basic.username and basic.username != principal.user:
            raise Unauthorized(f"the user name '{basic.username}' does not match the credentials")
        return principal
    raise Unauthorized("authenticate with Basic (user and API key or token) or a Bearer token")


EnginePrincipal = Annotated[Principal, Depends(engine_principal)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


# ---- process definition ids --------------------------------------------------------------------------
class Definitions:
    """Process definition versions read once per request, to give each task and instance its definition id."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._versions: dict[str, list[ProcessDefinitionOut]] = {}
        self._numbers: dict[int, ProcessDefinitionOut] = {}

    def versions(self, key: str) -> list[ProcessDefinitionOut]:
        if key not in self._versions:
            try:
                self._versions[key] = definitions.versions(self.session, key)
            except NotFound:
                self._versions[key] = []
            for d in self._versions[key]:
                self._numbers[d.id] = d
        return self._versions[key]

    def version(self, key: str, number: int) -> ProcessDefinitionOut | None:
        return next((d for d in self.versions(key) if d.version == number), None)

    def by_number(self, number: int | None) -> ProcessDefinitionOut | None:
        if number is None:
            return None
        if number not in self._numbers:
            try:
                d = definitions.by_id(self.session, number)
            except NotFound:
                return None
            self.versions(d.key)
        return self._numbers.get(number)

    def ref(self, key: str, number: int) -> str:
        d = self.version(key, number)
        return definition_ref(d) if d is not None else f"{key}:{number}:"

    def name(self, key: str, number: int) -> str | None:
        d = self.version(key, number)
        return d.name if d is not None else None

    def ref_of(self, number: int | None) -> str | None:
        d = self.by_number(number)
        return definition_ref(d) if d is not None else None

    def resolve(self, text: str) -> ProcessDefinitionOut:
        """A definition id as sent: govflow's number or Camunda's key:version:deploymentId."""
        ref = parse_definition_id(text)
        found = (self.by_number(ref.number) if ref.number is not None
                 else self.version(ref.key or "", ref.version or 0))
        if found is None or (ref.deployment_id not in (None, "", str(found.deployment_id))):
            raise not_found(f"No matching definition with id {text}")
        return found
