"""A sync endpoint whose answer is exactly its response model is serialised in its own thread (service/api/route.py):
the same status and the same bytes as FastAPI's own path, in one hop to a thread instead of two; any other answer,
a model that validates instances, and a route whose dependencies set headers or the status on FastAPI's Response
take FastAPI's path; an inclusion that would add such a dependency or another response class is named."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import fastapi
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response as StarletteResponse

from service.api.route import Route, serialised_routes_are_plain


class Inner(BaseModel):
    at: datetime
    amount: float


class Out(BaseModel):
    name: str
    kind: str = Field(alias="type")
    inner: list[Inner]
    extra: dict[str, Any] = {}
    note: str | None = None


class Always(BaseModel):
    model_config = ConfigDict(revalidate_instances="always", str_strip_whitespace=True)
    name: str


class Checked(BaseModel):
    name: str

    @model_validator(mode="after")
    def _not_bad(self) -> Checked:
        if self.name == "bad":
            raise ValueError("bad")
        return self


def _sets_header(response: Response) -> None:
    response.headers["X-From-Dep"] = "1"
    response.status_code = 202


def _out() -> Out:
    return Out(name="审批 \u2028 \"x\"", type="enum", inner=[Inner(at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                                                                  amount=1.5)], extra={"a": [1, None, "二"]})


def _call(app: FastAPI, method: str, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test") as client:
            return await client.request(method, path)

    return asyncio.run(call())


def _app(route_class: type) -> FastAPI:
    router = APIRouter(route_class=route_class)

    @router.get("/model", response_model=Out)
    def model() -> Out:
        return _out()

    @router.post("/created", response_model=Out, status_code=201)
    def created() -> Out:
        return _out()

    @router.get("/dict", response_model=Out)
    def as_dict() -> Any:
        return {"name": "n", "type": "t", "inner": [], "ignored": 1}

    @router.get("/excluding", response_model=Out, response_model_exclude_none=True)
    def excluding() -> Out:
        return _out()

    @router.get("/header", response_model=Out)
    def header(response: Response) -> Out:
        response.headers["X-Set"] = "yes"
        return _out()

    @router.get("/dep-header", response_model=Out)
    def dep_header(_: None = Depends(_sets_header)) -> Out:
        return _out()

    @router.get("/route-dependency", response_model=Out, dependencies=[Depends(_sets_header)])
    def route_dependency() -> Out:
        return _out()

    @router.get("/qualified", response_model=Out)
    def qualified(response: fastapi.Response) -> Out:
        response.headers["X-Q"] = "1"
        return _out()

    @router.get("/starlette", response_model=Out)
    def starlette(response: StarletteResponse) -> Out:
        response.headers["X-S"] = "1"
        return _out()

    @router.get("/revalidate", response_model=Always)
    def revalidate() -> Always:
        return Always.model_construct(name="  padded  ")

    @router.get("/after", response_model=Checked)
    def after() -> Checked:
        return Checked.model_construct(name="bad")

    app = FastAPI()
    app.include_router(router)
    return app


SAME_AS_FASTAPI = ["/model", "/created", "/dict", "/excluding", "/header", "/dep-header", "/route-dependency",
                   "/qualified", "/starlette", "/revalidate", "/after"]


@pytest.mark.parametrize("path", SAME_AS_FASTAPI)
def test_the_answer_is_fastapis_byte_for_byte(path: str) -> None:
    method = "post" if path == "/created" else "get"
    from fastapi.routing import APIRoute

    expected, got = _call(_app(APIRoute), method, path), _call(_app(Route), method, path)
    assert got.status_code == expected.status_code
    assert got.content == expected.content
    assert got.headers["content-type"] == expected.headers["content-type"]
    for header in ("x-set", "x-from-dep", "x-q", "x-s"):
        assert got.headers.get(header) == expected.headers.get(header)


@pytest.mark.parametrize("path,hops", [("/model", 1), ("/created", 1), ("/dict", 2), ("/excluding", 2),
                                       ("/header", 2), ("/dep-header", 2), ("/route-dependency", 2),
                                       ("/qualified", 2), ("/starlette", 2), ("/revalidate", 2), ("/after", 2)])
def test_an_answer_of_the_response_model_takes_one_hop_to_a_thread(monkeypatch: pytest.MonkeyPatch, path: str,
                                                                   hops: int) -> None:
    import fastapi.routing

    calls: list[object] = []
    original = fastapi.routing.run_in_threadpool

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "run_in_threadpool", counted)
    r = _call(_app(Route), "POST" if path == "/created" else "GET", path)
    assert r.status_code in (200, 201, 202, 500)
    assert len(calls) == hops


@pytest.mark.parametrize("inclusion", [{"dependencies": [Depends(_sets_header)]},
                                       {"default_response_class": PlainTextResponse}])
def test_an_inclusion_that_would_change_a_serialised_answer_is_named(inclusion: dict[str, Any]) -> None:
    router = APIRouter(route_class=Route)

    @router.get("/model", response_model=Out)
    def model() -> Out:
        return _out()

    @router.get("/dict", response_model=Out)
    def as_dict() -> Any:
        return {"name": "n", "type": "t", "inner": []}

    plain = APIRouter()
    plain.include_router(router, prefix="/plain")
    assert serialised_routes_are_plain(plain.routes) == []
    changed = APIRouter()
    changed.include_router(router, prefix="/changed", **inclusion)
    # the endpoint that may answer a dict is named too: which answer it gives is known only when it gives it
    assert serialised_routes_are_plain(changed.routes) == ["GET /changed/model", "GET /changed/dict"]


def test_the_services_routes_are_plain() -> None:
    from service.app import _api_routes

    routes = _api_routes()
    assert serialised_routes_are_plain(routes) == []
    serialised = [r for r in _effective_routes(routes) if hasattr(getattr(r, "endpoint", None),
                                                                  "__govflow_serialised_model__")]
    paths = {f"{','.join(sorted(r.methods))} {r.path}" for r in serialised}
    assert {"GET /api/v1/tasks", "POST /api/v1/tasks/{task_id}/claim", "GET /api/v1/tasks/{task_id}"} <= paths


def _effective_routes(routes: list[Any]) -> list[Any]:
    from service.api.route import _effective

    return list(_effective(routes))


def test_a_route_made_again_from_a_wrapped_endpoint_is_wrapped_once_and_keeps_other_decorators() -> None:
    import functools

    def model() -> Out:
        return _out()

    first = Route("/model", model, response_model=Out, methods=["GET"])
    again = Route("/model", first.endpoint, response_model=Out, methods=["GET"])
    assert again.endpoint.__wrapped__ is model  # type: ignore[attr-defined]
    seen: list[str] = []

    def noted(function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append("noted")
            return function(*args, **kwargs)
        return wrapper

    decorated = Route("/model", noted(first.endpoint), response_model=Out, methods=["GET"])
    answer = decorated.endpoint()
    assert seen == ["noted"] and isinstance(answer, Response) and answer.body == _out().model_dump_json(
        by_alias=True).encode()
