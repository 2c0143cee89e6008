"""Domain errors; the API maps each once to an RFC 9457 problem response."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    type = "about:blank"
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(DomainError):
    status, type, title = 401, "/problems/unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, type, title = 403, "/problems/forbidden", "Not allowed"


class NotFound(DomainError):
    status, type, title = 404, "/problems/not-found", "Not found"


class Conflict(DomainError):
    status, type, title = 409, "/problems/conflict", "Conflict"


class ConcurrentChange(Conflict):
    """Another request changed the same instance first: nothing was written; the same request may be retried
    (Camunda's OptimisticLockingException)."""


class Unavailable(DomainError):
    """The service cannot take the request now (the database is busy); the client should retry."""

    status, type, title = 503, "/problems/unavailable", "Service busy"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InvalidInput(DomainError):
    """Submitted data does not fit; `errors` names each bad field."""

    status, type, title = 422, "/problems/invalid-input", "Invalid input"

    def __init__(self, detail: str, errors: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if errors is not None:
            self.extra["errors"] = errors


class InvalidModel(DomainError):
    """A diagram or decision table that cannot be deployed."""

    status, type, title = 422, "/problems/invalid-model", "Invalid process model"

    def __init__(self, detail: str, *, file: str | None, element_id: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(detail, file=file, element_id=element_id, line=line)


class ProcessError(DomainError):
    """The process could not advance with the given input; nothing was changed."""

    status, type, title = 422, "/problems/process-error", "The process could not advance"
