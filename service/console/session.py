"""Who is using the console: the token or API key entered once on the login page, kept in a session cookie.

The cookie holds the credential itself, as the API takes it, and every console request turns it into a principal
with the API's own resolution (service/api/deps.py: resolve_principal), so the console knows nobody the API would not.
The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), limited to /console,
Secure when the console is served over HTTPS, and has no expiry (it ends with the browser session; the token's own
expiry still applies). Every POST also carries a CSRF token derived from the credential and the service's secret.
"""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials

from service.api.deps import CONSOLE_COOKIE, resolve_principal
from service.auth import Principal
from service.errors import Unauthorized
from service.services.context import AppContext

COOKIE = CONSOLE_COOKIE
PREFIX = "/console"
MAX_CREDENTIAL = 4000


class LoginRequired(Exception):
    """No valid credential: the browser is sent to the login page (a POST is refused)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "login required")
        self.reason = reason


class CsrfRejected(Exception):
    """A POST without the form's CSRF token, or from another origin."""


def principal_for(request: Request, credential: str) -> Principal:
    """The principal of a token or API key, exactly as the API resolves an `Authorization: Bearer` header."""
    credential = credential.strip()
    if not credential or len(credential) > MAX_CREDENTIAL or any(c.isspace() for c in credential):
        raise Unauthorized("that is not a token or an API key")
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=credential)
    return resolve_principal(request.app.state.ctx, bearer, None)


def current(request: Request) -> tuple[Principal, str]:
    """The principal of the session cookie, and its CSRF token; LoginRequired without a valid one."""
    credential = request.cookies.get(COOKIE)
    if not credential:
        raise LoginRequired()
    try:
        principal = principal_for(request, credential)
    except Unauthorized as e:
        raise LoginRequired(e.detail) from None
    return principal, csrf_token(request.app.state.ctx, credential)


def csrf_token(ctx: AppContext, credential: str) -> str:
    return hmac.new(ctx.jwt_secret.encode(), b"console-csrf:" + credential.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, presented: str | None) -> None:
    """A state-changing console request must come from a console page: same origin, and the page's CSRF token."""
    credential = request.cookies.get(COOKIE) or ""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise CsrfRejected()
    if not presented or not credential or not hmac.compare_digest(
            presented.encode(), csrf_token(request.app.state.ctx, credential).encode()):
        raise CsrfRejected()


def set_cookie(request: Request, response: object, credential: str) -> None:
    response.set_cookie(  # type: ignore[attr-defined]
        COOKIE, credential.strip(), path=PREFIX, httponly=True, samesite="strict",
        secure=request.url.scheme == "https")


def clear_cookie(response: object) -> None:
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")  # type: ignore[attr-defined]


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a console path of this service (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target \
            and not target.startswith(PREFIX + "/login"):
        return target
    return PREFIX + "/inbox"


def login_url(request: Request, reason: str | None = None) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"{PREFIX}/login?next={quote(target, safe='')}"
    return url + ("&expired=1" if reason else "")
