"""The REST API's routes: a sync endpoint whose answer is its response model serialises it in its own thread.

FastAPI runs a sync endpoint in a thread, then validates its answer against the response model in a second hop to
a thread, and serialises it on the event loop. An answer that already is an instance of exactly the response model
needs no validation (pydantic returns such an instance as it is), so the endpoint's thread serialises it as FastAPI
would (`TypeAdapter(model).dump_json(answer, by_alias=True)`, the same bytes) and answers a Response: one hop to a
thread per request instead of two, and no serialising on the event loop. Any other answer (a dict, an ORM row, a
list) takes FastAPI's own path."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.datastructures import Default, DefaultPlaceholder
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

_FASTAPI_DEFAULTS = {"response_model_include": None, "response_model_exclude": None, "response_model_by_alias": True,
                     "response_model_exclude_unset": False, "response_model_exclude_defaults": False,
                     "response_model_exclude_none": False}


class Route(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], *, response_model: Any = Default(None),
                 **kwargs: Any) -> None:
        if _serialisable_in_thread(endpoint, response_model, kwargs):
            endpoint = _serialised(endpoint, response_model, kwargs.get("status_code"))
        super().__init__(path, endpoint, response_model=response_model, **kwargs)


def _serialisable_in_thread(endpoint: Callable[..., Any], model: Any, options: dict[str, Any]) -> bool:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    if inspect.iscoroutinefunction(endpoint) or inspect.isgeneratorfunction(endpoint):
        return False
    if any(options.get(name, default) != default for name, default in _FASTAPI_DEFAULTS.items()):
        return False
    response_class = options.get("response_class", Default(JSONResponse))
    if not isinstance(response_class, DefaultPlaceholder):
        return False
    # an endpoint that sets headers or a status on a Response parameter has them applied only on FastAPI's path
    return not any(p.annotation in (Response, "Response") for p in inspect.signature(endpoint).parameters.values())


def _serialised(endpoint: Callable[..., Any], model: type[BaseModel], status_code: int | None) -> Callable[..., Any]:
    serializer = model.__pydantic_serializer__

    @functools.wraps(endpoint)
    def answer(*args: Any, **kwargs: Any) -> Any:
        out = endpoint(*args, **kwargs)
        if type(out) is not model:
            return out
        return Response(serializer.to_json(out, by_alias=True), status_code=status_code or 200,
                        media_type="application/json")

    return answer
