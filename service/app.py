"""create_app(settings) → the FastAPI application; start-up migrates, deploys bpmn/ and starts
the background workers."""
from __future__ import annotations

import gc
import hmac
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from starlette.routing import BaseRoute

from service.api import (
    admin,
    definitions,
    diagrams,
    engine_rest,
    health,
    instances,
    messages,
    operations,
    problems,
    tasks,
)
from service.api.admission import Admission
from service.api.deps import credentials_check
from service.api.middleware import BodyLimit, CatchAll, Metrics, WriteLimit, write_share
from service.api.route import serialised_routes_are_plain
from service.auth import Principal
from service.clock import Clock
from service.config import Settings
from service.console import router as console_router
from service.console.session import PREFIX as CONSOLE_PREFIX
from service.db.migrate import current_revision
from service.db.session import is_sqlite, make_engine, make_session_factory
from service.engine.calendar import BusinessCalendar
from service.replicas import limit_request_threads, prepare_database, request_threads
from service.services import definitions as definition_service
from service.services.calendar import recompute_provisional
from service.services.context import AppContext
from service.timer_wakeup import announce_timers_on_commit

log = logging.getLogger("govflow")
SYSTEM = Principal(user="system", is_admin=True, kind="system")
API_PREFIX = "/api/v1"


def build_context(settings: Settings, clock: Clock | None = None) -> AppContext:
    url = settings.resolved_database_url()
    def connect(read_only: bool = False) -> Engine:
        return make_engine(url, read_only=read_only, busy_timeout=settings.database_busy_timeout_seconds,
                           pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                           pool_timeout=settings.db_pool_timeout_seconds)

    engine = connect()
    reader = connect(read_only=True) if is_sqlite(engine) else engine
    ctx = AppContext(
        settings=settings, clock=clock or Clock(), calendar=BusinessCalendar.from_file(settings.calendar_file),
        session_factory=make_session_factory(engine), read_factory=make_session_factory(reader), engine=engine,
        jwt_secret=settings.resolved_jwt_secret(), sqlite=is_sqlite(engine), read_engine=reader,
    )
    announce_timers_on_commit(ctx)  # PostgreSQL: every process's scheduler hears of the timers this one writes
    return ctx


def deploy_directory(ctx: AppContext) -> None:
    directory = ctx.settings.bpmn_dir
    if not directory.is_dir():
        log.warning("BPMN directory %s does not exist; nothing deployed", directory)
        return
    files = definition_service.read_directory(directory)
    if not files:
        return
    result = definition_service.deploy(ctx, SYSTEM, files, source=f"directory:{directory.name}")
    for d in result.definitions:
        log.info("deployed %s version %s", d.key, d.version)
    for warning in result.warnings:
        log.warning("%s", warning)


def report_start(ctx: AppContext) -> None:
    """Say where this service keeps its state, so a second data directory is noticed at once."""
    settings = ctx.settings
    secret = "GOVFLOW_JWT_SECRET" if settings.jwt_secret else str(settings.secret_file)
    log.info("data directory %s (token secret: %s)", settings.data_dir, secret)
    log.info("database %s at migration %s", settings.database_description(), current_revision(ctx.engine))
    with ctx.session_factory() as session:
        deployed = definition_service.list_latest(session)
    log.info("processes deployed: %s", ", ".join(f"{d.key} v{d.version}" for d in deployed) or "none")


def _metrics_allowed(settings: Settings, request: Request) -> bool:
    if not settings.metrics_token:
        return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(),
                                                               settings.metrics_token.encode())


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    ctx = build_context(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_database(ctx)
        if settings.deploy_on_start:
            deploy_directory(ctx)
        recompute_provisional(ctx)
        report_start(ctx)
        threads = app.state.request_threads = limit_request_threads(settings)
        log.info("database connections: pool %d + overflow %d, wait at most %gs; request threads %d",
                 settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds, threads)
        workers = []
        from service.workers import start_workers

        workers = start_workers(ctx)
        app.state.workers = workers
        # what start-up built (the libraries, routes, parsed processes) lives as long as the process: frozen out of
        # the garbage collector's full collections, which otherwise walk it all again every half minute or so of
        # load and stop every request for about 100 ms. Not collected first: start-up leaves next to no garbage
        # (a few hundred objects), and a collection here would cost a test process, which starts a service per
        # test, a full walk of its heap each time
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # a process that goes on (the tests) collects what this service left behind
            for w in workers:
                w.stop()
            ctx.dispose()

    # the API documentation's assets are served by the service itself: government networks are often offline
    app = FastAPIOffline(
        title="govflow",
        version="0.1.0",
        description="BPMN workflow orchestration for government IT project lifecycles.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)

    # innermost first: no more requests at work than the connection pool serves (the others wait, their wait
    # counted in the latency); changes beyond three quarters of those wait before they take a slot, so reads
    # always find one; the body limit reads the whole body (or refuses it) before any of these, so a client that
    # sends slowly holds no slot; metrics see the status that is sent, the body limit's refusals included; the
    # catch-all answers whatever escaped the exception handlers
    app.add_middleware(Admission, limit=request_threads(settings), exempt=("/healthz", "/metrics"))
    app.add_middleware(WriteLimit, limit=write_share(request_threads(settings)))
    app.add_middleware(BodyLimit, default_limit=settings.max_request_bytes,
                       limits={f"{API_PREFIX}/deployments": settings.max_deployment_bytes,
                               "/engine-rest/deployment/create": settings.max_deployment_bytes},
                       timeout=settings.request_read_timeout_seconds, credentialed=credentials_check(ctx))
    app.add_middleware(Metrics, api_prefix=API_PREFIX)
    app.add_middleware(CatchAll)

    @app.get("/metrics", include_in_schema=False)
    def _metrics(request: Request) -> Response:
        """Prometheus metrics; with GOVFLOW_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
        if not _metrics_allowed(settings, request):
            return problems.problem(401, "/problems/unauthorized", "Authentication required",
                                    "/metrics needs Authorization: Bearer <GOVFLOW_METRICS_TOKEN>", request)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.dependency_overrides = _NoOverrides()
    app.router.routes.extend(_api_routes())
    app.router._mark_routes_changed()  # FastAPI's cache key of the routes it has prepared
    return app


def _include_routers(app: APIRouter) -> None:
    app.include_router(health.router)
    for router in (definitions.router, instances.router, tasks.router, messages.router, admin.router,
                   operations.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(diagrams.router, prefix=API_PREFIX)
    engine_rest.include(app)
    app.include_router(console_router, prefix=CONSOLE_PREFIX, include_in_schema=False)  # the web console


class _NoOverrides(dict[Any, Any]):
    """An app's dependency overrides: none, and none can be set (the routes are shared by every app of the
    process, see _api_routes)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("govflow's apps share their routes within a process: FastAPI dependency overrides do not "
                        "apply to them; configure the app through Settings instead")

    __setitem__ = update = setdefault = _refuse  # type: ignore[assignment]


_SHARED_ROUTES: list[BaseRoute] = []
_SHARED_ROUTES_LOCK = threading.Lock()


def _api_routes() -> list[BaseRoute]:
    """The routes of every router, included once per process and shared by each app created in it. FastAPI prepares
    an included route (its parameters, body and answer models) on the first request that passes it, and keeps that
    in the inclusion: for a new inclusion that cost ~0.2 s of CPU per app (the test suite creates hundreds). The
    routes depend on nothing an app holds: each request finds its context through `request.app`. So an app's
    `dependency_overrides` could not reach them: setting one fails loudly instead (`_NoOverrides`)."""
    with _SHARED_ROUTES_LOCK:
        if not _SHARED_ROUTES:
            holder = APIRouter()  # not an app: no app's dependency overrides apply to the shared routes
            _include_routers(holder)
            wrong = serialised_routes_are_plain(holder.routes)
            if wrong:  # service/api/route.py: their answers would lose what the inclusion adds
                raise RuntimeError(f"routes that serialise their answers are included with a Response dependency "
                                   f"or another response class or model: {', '.join(wrong)}")
            _SHARED_ROUTES.extend(holder.routes)
        return _SHARED_ROUTES
