"""A sync endpoint whose answer is exactly its response model is serialised in its own thread (service/api/route.py):
the same status and the same bytes as FastAPI's own path, in one hop to a thread instead of two; any other answer
takes FastAPI's path."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel, Field

from service.api.route import Route


class Inner(BaseModel):
    at: datetime
    amount: float


class Out(BaseModel):
    name: str
    kind: str = Field(alias="type")
    inner: list[Inner]
    extra: dict[str, Any] = {}
    note: str | None = None


def _out() -> Out:
    return Out(name="审批 \u2028 \"x\"", type="enum", inner=[Inner(at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                                                                  amount=1.5)], extra={"a": [1, None, "二"]})


def _call(app: FastAPI, method: str, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
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

    app = FastAPI()
    app.include_router(router)
    return app


@pytest.mark.parametrize("path,method", [("/model", "get"), ("/created", "post"), ("/dict", "get"),
                                         ("/excluding", "get"), ("/header", "get")])
def test_the_answer_is_fastapis_byte_for_byte(path: str, method: str) -> None:
    from fastapi.routing import APIRoute

    expected, got = _call(_app(APIRoute), method, path), _call(_app(Route), method, path)
    assert got.status_code == expected.status_code
    assert got.content == expected.content
    assert got.headers["content-type"] == expected.headers["content-type"]
    assert got.headers.get("x-set") == expected.headers.get("x-set")


@pytest.mark.parametrize("path,hops", [("/model", 1), ("/created", 1), ("/dict", 2), ("/excluding", 2),
                                       ("/header", 2)])
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
    assert r.status_code in (200, 201)
    assert len(calls) == hops
