"""Request dependencies: the database session (one transaction, committed before the response
is sent), the application context and the calling principal."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Annotated, Any

import anyio
from cachetools import TTLCache
from fastapi import Depends, Header, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.requests import cookie_parser

from service import policy
from service.auth import Principal, decode_token
from service.errors import Unauthorized
from service.services import apikeys, idempotency
from service.services.context import AppContext

_bearer = HTTPBearer(auto_error=False, description="JWT from `govflow token USER --groups a,b`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="a system's key from `govflow apikey create`")


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A read transaction for a read-only request (it never takes the database's write lock). Opened on the event
    loop — a session connects at its first statement, in the endpoint's thread — and ended in one hop to a thread:
    a sync dependency would hop to a thread to open it and again to end it (each hop about 0.25 ms)."""
    ctx: AppContext = request.app.state.ctx
    reading = ctx.read()
    session = reading.__enter__()
    try:
        yield session
    except BaseException as e:
        with anyio.CancelScope(shield=True):  # rolled back and closed even when the client went away
            swallowed = await run_in_threadpool(reading.__exit__, type(e), e, e.__traceback__)
        if not swallowed:
            raise
    else:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(reading.__exit__, None, None, None)


ANSWERED_AN_ERROR = "govflow.answered_an_error"


def answered_an_error(request: Request) -> None:
    """For a route class that answers an error itself (engine-rest's Camunda bodies): the request failed. Its write
    transaction is ended after the route class has answered, with no exception to see, so it reads this instead."""
    request.scope[ANSWERED_AN_ERROR] = True


def get_write_session(request: Request) -> Iterator[Session]:
    """A short write transaction for a request that changes rows without running the engine; committed
    before the response is sent, unless the request failed: rolled back when its exception comes through, or when
    its route class answered the error itself (answered_an_error)."""
    ctx: AppContext = request.app.state.ctx
    with ctx.write() as session:
        yield session
        if request.scope.get(ANSWERED_AN_ERROR):
            session.rollback()


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    ctx: AppContext = request.app.state.ctx
    if _presented_key(credentials, api_key) is not None:
        return await run_in_threadpool(resolve_principal, ctx, credentials, api_key)  # reads the database
    return resolve_principal(ctx, credentials, api_key)  # a token: no I/O, answered on the event loop


def _presented_key(credentials: HTTPAuthorizationCredentials | None, api_key: str | None) -> str | None:
    if api_key is not None:
        return api_key
    if credentials is not None and credentials.credentials.startswith(apikeys.PREFIX):
        return credentials.credentials
    return None


def resolve_principal(ctx: AppContext, credentials: HTTPAuthorizationCredentials | None,
                      api_key: str | None) -> Principal:
    """Who is calling, from a bearer token or an API key, with the processes granted to its groups."""
    presented = _presented_key(credentials, api_key)
    if presented is not None:
        principal = _authenticate_key(ctx, presented)
    elif credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send a bearer token in the Authorization header, or an X-API-Key")
    else:
        principal = decode_token(ctx.jwt_secret, credentials.credentials, ctx.settings.jwt_issuer)
    return policy.with_group_grants(principal, ctx.settings.group_process_grants)


def _authenticate_key(ctx: AppContext, presented: str) -> Principal:
    with ctx.read() as session:
        return apikeys.authenticate(session, presented)


CONSOLE_COOKIE = "govflow_console"  # the console's session cookie (service/console/session.py)
log = logging.getLogger("govflow")


def credentials_check(ctx: AppContext, remember_seconds: float = 60.0, lookups: int = 2, waiting: int = 32
                      ) -> Callable[[MutableMapping[str, Any]], Awaitable[bool]]:
    """Whether a request presents a credential the service accepts, asked before its body is read (BodyLimit: the
    bodies of requests without one share a small budget of their own, so clients without credentials cannot hold
    back the bodies of those with). The one credential a route would take counts (`_presented_secret`): a token or
    an API key as `Authorization: Bearer`, either as the password of `Authorization: Basic` (the engine REST API),
    `X-API-Key`, the console's session cookie.

    A token is checked on the event loop, as a route checks it (a good one is remembered, service/auth.py). An API
    key is looked up in a thread, once, and then remembered as good for `remember_seconds` (for this choice of
    budget only: what a request may do is decided by its route, which looks the key up again). These lookups come
    before the service's request slots, so they are bounded apart from them: at most `lookups` at once, beside the
    request threads' limit; and with `waiting` already waiting, a key is taken as no credential without a lookup
    (clients sending made-up keys cannot queue work without end, or slow the routes down)."""
    good_keys: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=remember_seconds)
    limiter = anyio.CapacityLimiter(lookups)
    warned = [float("-inf")]
    asked = [0]  # lookups at work or waiting for the limiter

    def valid_key(presented: str) -> bool:
        try:
            _authenticate_key(ctx, presented)
        except Unauthorized:
            return False
        return True

    async def accepted(secret: str) -> bool:
        if not secret.startswith(apikeys.PREFIX):
            try:
                decode_token(ctx.jwt_secret, secret, ctx.settings.jwt_issuer)
            except Unauthorized:
                return False
            return True
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if digest in good_keys:
            return True
        if asked[0] >= lookups + waiting:
            return False
        asked[0] += 1
        try:
            if not await anyio.to_thread.run_sync(valid_key, secret, limiter=limiter):
                return False
        finally:
            asked[0] -= 1
        good_keys[digest] = True
        return True

    async def check(scope: MutableMapping[str, Any]) -> bool:
        secret = _presented_secret(scope.get("headers", []))
        if not secret or len(secret) > 4096:
            return False
        try:
            return await accepted(secret)
        except Exception:  # the database is unreachable, say: the request is taken as one without credentials
            now = anyio.current_time()
            if now - warned[0] >= 60:  # once a minute: every request with a body would log it
                warned[0] = now
                log.warning("could not check a request's credentials before reading its body", exc_info=True)
            return False

    return check


def _presented_secret(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The secret a route would take from the request's headers: the first X-API-Key, else the first
    Authorization (Bearer, or Basic's password), else the console's cookie."""
    found: dict[bytes, str] = {}
    for name, raw in headers:
        if name in (b"x-api-key", b"authorization") and name not in found:
            found[name] = raw.decode("latin-1")
        elif name == b"cookie" and b"cookie" not in found and CONSOLE_COOKIE.encode() in raw:
            cookie = cookie_parser(raw.decode("latin-1")).get(CONSOLE_COOKIE)  # as Request.cookies reads it
            if cookie:
                found[name] = cookie
    if b"x-api-key" in found:
        return found[b"x-api-key"].strip()
    if b"authorization" in found:
        scheme, _, rest = found[b"authorization"].strip().partition(" ")
        if scheme.lower() == "bearer":
            return rest.strip()
        if scheme.lower() == "basic":
            try:  # as the engine REST API's HTTPBasic decodes it
                decoded = base64.b64decode(rest).decode("ascii")
            except (ValueError, UnicodeDecodeError, binascii.Error):
                return None
            return decoded.partition(":")[2].strip()
        return None
    return found.get(b"cookie", "").strip() or None


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]
ContextDep = Annotated[AppContext, Depends(get_context)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


class Idempotency:
    """A POST's Idempotency-Key: reserved before the work starts; the use case stores its answer in the
    transaction of the change (`store`); a retry replays it (`replay`)."""

    def __init__(self, ctx: AppContext, principal: Principal, key: str | None, method: str, path: str,
                 request_hash: str) -> None:
        self.ctx, self.principal, self.key = ctx, principal, key
        self.method, self.path, self.request_hash = method, path, request_hash
        self.replay: idempotency.Replay | None = None
        self.reservation: idempotency.Reservation | None = None
        self.stored = False
        self.body: str | None = None

    def begin(self) -> None:
        if self.key is None:
            return
        outcome = idempotency.reserve(self.ctx, self.principal.user, self.key, self.method, self.path,
                                      self.request_hash)
        if isinstance(outcome, idempotency.Replay):
            self.replay = outcome
        else:
            self.reservation = outcome

    def store(self, session: Session, status_code: int, model: BaseModel) -> None:
        """Called by the use case inside its write transaction, with the response it is about to return."""
        self.body = model.model_dump_json()
        if self.reservation is not None:
            idempotency.store(session, self.reservation, status_code, self.body)
            self.stored = True

    def end(self) -> None:
        if self.reservation is not None and not self.stored:
            idempotency.release(self.ctx, self.reservation)

    def replayed(self) -> Response:
        assert self.replay is not None
        return Response(self.replay.body, status_code=self.replay.status_code, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})

    def respond(self, status_code: int, model: BaseModel) -> Response:
        body = self.body if self.body is not None else model.model_dump_json()
        return Response(body, status_code=status_code, media_type="application/json")


async def _request_fingerprint(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        parts: list[list[str | None]] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                await value.seek(0)
                parts.append([name, value.filename, hashlib.sha256(data).hexdigest()])
            else:
                parts.append([name, None, str(value)])
        body: object = sorted(parts, key=lambda p: (p[0], p[1] or ""))
    else:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
    return idempotency.fingerprint(request.method, request.url.path, body)


_KEY_DOC = "retry safely: the same key with the same body returns the first response"


async def get_fingerprint(request: Request) -> str | None:
    if request.headers.get("Idempotency-Key") is None:
        return None
    return await _request_fingerprint(request)


async def get_idempotency(
    request: Request, ctx: ContextDep, principal: PrincipalDep,
    fingerprint: Annotated[str | None, Depends(get_fingerprint)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", description=_KEY_DOC)] = None,
) -> AsyncIterator[Idempotency]:
    idem = Idempotency(ctx, principal, idempotency_key, request.method, request.url.path, fingerprint or "")
    if idempotency_key is None:
        yield idem  # nothing to reserve or release: no database work, no hop to a thread
        return
    await run_in_threadpool(idem.begin)
    try:
        yield idem
    finally:
        with anyio.CancelScope(shield=True):  # a reservation is released even when the client went away
            await run_in_threadpool(idem.end)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency, scope="function")]
