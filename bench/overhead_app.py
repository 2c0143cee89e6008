"""govflow's app, as `govflow serve` serves it, with one more route that does no work of its own: the middleware,
the routing among every route, the principal from a token, one hop to a thread and a response model. It exists only
here, for `python -m bench overhead`; the service has no such route.

    GOVFLOW_DATA_DIR=… GOVFLOW_JWT_SECRET=… .venv/bin/python -m bench.overhead_app PORT
"""
from __future__ import annotations

import sys

import uvicorn
from pydantic import BaseModel

from service import serving
from service.api.deps import ContextDep, PrincipalDep
from service.api.route import Route
from service.app import create_app
from service.config import Settings


class Noop(BaseModel):
    user: str
    groups: list[str]


def noop(ctx: ContextDep, principal: PrincipalDep) -> Noop:
    return Noop(user=principal.user, groups=sorted(principal.groups))


def main(port: int) -> None:
    settings = Settings()
    app = create_app(settings)
    app.router.routes.append(Route("/api/v1/noop", noop, methods=["GET"], response_model=Noop))  # matched last
    uvicorn.Server(serving.config(app, settings, "127.0.0.1", port, log_level="info")).run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
