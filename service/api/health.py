"""Liveness and readiness probes."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.route import Route
from service.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"], route_class=Route)


# the probes answer on the event loop (liveness) or on threads of their own (readiness): requests that wait for an
# engine worker or the database do not hold them up
_PROBES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="govflow-probe")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    ctx = request.app.state.ctx
    try:  # a read: it never waits for the write lock
        current = await asyncio.get_running_loop().run_in_executor(_PROBES, current_revision, ctx.read_engine)
    except Exception as e:
        return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(e).__name__}"}, 503)
    head = head_revision()
    if current != head:
        return JSONResponse({"status": "unavailable", "database": "reachable", "migration": current, "head": head},
                            503)
    return JSONResponse({"status": "ok", "database": "reachable", "migration": current})
