"""Liveness and readiness probes."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ctx = request.app.state.ctx
    try:
        current = current_revision(ctx.engine)
    except Exception as e:
        return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(e).__name__}"}, 503)
    head = head_revision()
    if current != head:
        return JSONResponse({"status": "unavailable", "database": "reachable", "migration": current, "head": head},
                            503)
    return JSONResponse({"status": "ok", "database": "reachable", "migration": current})
