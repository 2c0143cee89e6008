"""Request dependencies: the database session (one transaction, committed before the response
is sent), the application context and the calling principal."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.auth import Principal, decode_token
from service.errors import Unauthorized
from service.services.context import AppContext

_bearer = HTTPBearer(auto_error=False, description="JWT from `govflow token USER --groups a,b`")


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_session(request: Request) -> Iterator[Session]:
    ctx: AppContext = request.app.state.ctx
    session: Session = ctx.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send a bearer token in the Authorization header")
    ctx: AppContext = request.app.state.ctx
    return decode_token(ctx.jwt_secret, credentials.credentials, ctx.settings.jwt_issuer)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ContextDep = Annotated[AppContext, Depends(get_context)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
