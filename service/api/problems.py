"""Every error leaves as an RFC 9457 application/problem+json response, mapped in one place."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.middleware import camunda_error, is_engine_rest
from service.errors import DomainError
from service.schemas import Problem
from service.text import NotStorable

log = logging.getLogger("govflow")
MEDIA_TYPE = "application/problem+json"


def _printable(value: Any) -> Any:
    """Texts that can be sent as UTF-8 (a problem may quote a client's invalid key or value)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def problem(status: int, type_: str, title: str, detail: str, request: Request, **extra: Any) -> JSONResponse:
    if is_engine_rest(request.url.path):  # an error that came past engine-rest's own answers: Camunda's body too
        status, camunda = camunda_error(status, detail)
        return JSONResponse(_printable(camunda), status_code=status,
                            headers={"Retry-After": "1"} if status == 503 else None)
    body = {"type": type_, "title": title, "status": status, "detail": detail, "instance": request.url.path}
    body.update({k: v for k, v in extra.items() if v is not None})
    body = _printable(body)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _is_conflict(exc: DBAPIError) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, IntegrityError) or "could not serialize" in text or "deadlock detected" in text


def _is_busy(exc: DBAPIError) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return ("database is locked" in text or "database table is locked" in text or "queuepool limit" in text
            or "lock timeout" in text)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.type, exc.title, exc.detail, request, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid_request(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}
        return problem(exc.status_code, f"/problems/http-{exc.status_code}", titles.get(exc.status_code, "Error"),
                       str(exc.detail), request)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        return problem(422, "/problems/invalid-input", "Invalid input", "a number in the request is out of range",
                       request, errors={"body": "a number is out of range"})

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        # every connection of this process's pool stayed in use for GOVFLOW_DB_POOL_TIMEOUT_SECONDS
        log.warning("database connection pool exhausted: %s", exc)
        return problem(503, "/problems/unavailable", "Service busy",
                       "every database connection of this service is in use; retry shortly", request)

    @app.exception_handler(StatementError)
    async def _statement(request: Request, exc: StatementError) -> JSONResponse:
        if isinstance(exc, DBAPIError):
            return await _database(request, exc)
        if isinstance(exc.orig, NotStorable):
            return problem(422, "/problems/invalid-input", "Invalid input", str(exc.orig), request)
        if isinstance(exc.orig, (OverflowError, ValueError)):
            # a value the database cannot take (a date-time that falls off the calendar in UTC)
            return problem(422, "/problems/invalid-input", "Invalid input",
                           "a value in the request is out of range", request)
        log.exception("statement error", exc_info=exc)
        return problem(500, "/problems/internal", "Internal error", "an unexpected error occurred", request)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, DataError):
            return problem(422, "/problems/invalid-input", "Invalid input",
                           "a value in the request does not fit (out of range or malformed)", request)
        if _is_busy(exc):
            return problem(503, "/problems/unavailable", "Service busy",
                           "the database is busy; retry shortly", request)
        if _is_conflict(exc):
            return problem(409, "/problems/conflict", "Conflict",
                           "a concurrent change got there first; reload and try again", request)
        log.exception("database error", exc_info=exc)
        return problem(503, "/problems/database-unavailable", "Database unavailable",
                       "the database could not complete the request", request)


# request bodies whose data goes under "variables": a field sent beside it is most likely meant to be inside it
_VARIABLES_BODIES = ("/process-instances", "/complete", "/messages")


def _position(document: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    offset = max(0, min(offset, len(document)))
    line = document.count("\n", 0, offset) + 1
    return line, offset - (document.rfind("\n", 0, offset) + 1) + 1


def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A 422 that names the real mistake: JSON syntax (with line and column), data sent beside "variables"
    instead of inside it, a body that is not JSON; otherwise each bad field."""
    found = exc.errors()
    for e in found:
        if e.get("type") == "json_invalid":
            loc = list(e.get("loc", []))
            offset = loc[-1] if loc and isinstance(loc[-1], int) else 0
            body = exc.body if isinstance(exc.body, str) else ""
            line, column = _position(body, offset)
            reason = (e.get("ctx") or {}).get("error") or "not JSON"
            message = f"{reason} at line {line}, column {column}"
            return problem(422, "/problems/invalid-json", "Invalid JSON", f"the request body is not valid JSON: "
                           f"{message}", request, errors={"body": message}, line=line, column=column)
    content_type = request.headers.get("content-type", "")
    if any(tuple(e.get("loc", ())) == ("body",) for e in found) and content_type \
            and "json" not in content_type.lower():
        return problem(422, "/problems/invalid-input", "Invalid input",
                       f"the body was sent as {content_type.split(';')[0]}; send JSON with the header "
                       "Content-Type: application/json", request, errors={"body": "expected a JSON object"})
    errors: dict[str, str] = {}
    unknown: list[str] = []
    for e in found:
        loc = [str(p) for p in e.get("loc", []) if p not in ("body", "query", "path")]
        name = ".".join(loc) or "body"
        if e.get("type") == "extra_forbidden" and e.get("loc", ())[:1] == ("body",) and len(loc) == 1:
            unknown.append(name)
            errors[name] = "is not a field of this request"
            continue
        errors[name] = e.get("msg", "invalid")
    detail = "the request does not fit the API"
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        detail = f"unknown field{'s' if len(unknown) > 1 else ''} {names} in the request body"
        if request.url.path.endswith(_VARIABLES_BODIES):
            example = ", ".join(f'"{n}": …' for n in unknown)
            detail += f"; data goes under \"variables\": {{\"variables\": {{{example}}}}}"
            for n in unknown:
                errors[n] = 'is not a field of this request; put it under "variables"'
    return problem(422, "/problems/invalid-input", "Invalid input", detail, request, errors=errors)


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid token"},
    403: {"model": Problem, "description": "Not allowed for this principal"},
    404: {"model": Problem, "description": "Not found"},
    409: {"model": Problem, "description": "Conflict with the current state"},
    422: {"model": Problem, "description": "Invalid input"},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: RESPONSES[c] for c in codes}
