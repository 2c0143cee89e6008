"""The REST API's routes: a sync endpoint whose answer is its response model serialises it in its own thread.

FastAPI runs a sync endpoint in a thread, then validates its answer against the response model in a second hop to
a thread, and serialises it on the event loop. An answer that already is an instance of exactly the response model
needs no validation when the model validates nothing of an instance (no model validator, instances not revalidated:
pydantic then returns such an instance as it is), so the endpoint's thread serialises it as FastAPI would
(`TypeAdapter(model).dump_json(answer, by_alias=True)`, the same bytes) and answers a Response: one hop to a thread
per request instead of two, and no serialising on the event loop. Any other answer (a dict, an ORM row, a list, a
subclass) takes FastAPI's own path.

FastAPI copies onto the answers it builds the headers and status a dependency sets on its `Response` parameter,
and answers with the response class an inclusion may set; a Response the endpoint returns gets neither. So a route
whose own dependencies take a `Response` is not changed, and `serialised_routes_are_plain` checks the routes as an
app includes them (where an inclusion may add dependencies and a response class): the app refuses to start
otherwise (service/app.py)."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.datastructures import Default, DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, get_parameterless_sub_dependant
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import compile_path

_FASTAPI_DEFAULTS = {"response_model_include": None, "response_model_exclude": None, "response_model_by_alias": True,
                     "response_model_exclude_unset": False, "response_model_exclude_defaults": False,
                     "response_model_exclude_none": False}
_MODEL = "__govflow_serialised_model__"  # on a wrapped endpoint: the response model it serialises


class Route(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], *, response_model: Any = Default(None),
                 **kwargs: Any) -> None:
        # included again (a route made from a wrapped endpoint): wrapped once; only this module's wrapper is taken
        # off (a decorator over it copies its attributes by functools.wraps, so the code tells it apart)
        while getattr(endpoint, "__code__", None) is _ANSWER_CODE:
            endpoint = endpoint.__wrapped__  # type: ignore[attr-defined]
        if _serialisable_in_thread(path, endpoint, response_model, kwargs):
            endpoint = _serialised(endpoint, response_model, kwargs.get("status_code"))
        super().__init__(path, endpoint, response_model=response_model, **kwargs)


def _validates_instances(model: type[BaseModel]) -> bool:
    """Whether validating an instance of exactly the model does more than return it."""
    return (model.model_config.get("revalidate_instances", "never") != "never"
            or bool(model.__pydantic_decorators__.model_validators))


def _serialisable_in_thread(path: str, endpoint: Callable[..., Any], model: Any, options: dict[str, Any]) -> bool:
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or _validates_instances(model):
        return False
    if inspect.iscoroutinefunction(endpoint) or inspect.isgeneratorfunction(endpoint):
        return False
    if any(options.get(name, default) != default for name, default in _FASTAPI_DEFAULTS.items()):
        return False
    if not isinstance(options.get("response_class", Default(JSONResponse)), DefaultPlaceholder):
        return False
    path_format = compile_path(path)[1]
    dependant = get_dependant(path=path_format, call=endpoint)
    dependant.dependencies.extend(get_parameterless_sub_dependant(depends=d, path=path_format)
                                  for d in options.get("dependencies") or ())
    return not _sets_response(dependant)


def _sets_response(dependant: Dependant) -> bool:
    """Whether the endpoint or any of its dependencies takes FastAPI's `Response` parameter (to set headers or the
    status on the answer)."""
    return any(d.response_param_name for d in _tree(dependant))


def _tree(dependant: Dependant) -> Iterator[Dependant]:
    todo = [dependant]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(current.dependencies)


def _serialised(endpoint: Callable[..., Any], model: type[BaseModel], status_code: int | None) -> Callable[..., Any]:
    serializer = model.__pydantic_serializer__

    @functools.wraps(endpoint)
    def answer(*args: Any, **kwargs: Any) -> Any:
        out = endpoint(*args, **kwargs)
        if type(out) is not model:
            return out
        return Response(serializer.to_json(out, by_alias=True), status_code=status_code or 200,
                        media_type="application/json")

    setattr(answer, _MODEL, model)
    return answer


_ANSWER_CODE = _serialised(lambda: None, BaseModel, None).__code__


def serialised_routes_are_plain(routes: list[Any]) -> list[str]:
    """The routes, as an app includes them, whose endpoint serialises its answer although the inclusion gave it a
    dependency that takes a `Response`, another response class or another response model: each such route is named
    (method and path); none should be."""
    wrong = []
    for route in _effective(routes):
        model = getattr(getattr(route, "endpoint", None), _MODEL, None)
        if model is None:
            continue
        if (_sets_response(route.dependant) or not isinstance(route.response_class, DefaultPlaceholder)
                or route.response_model is not model):
            wrong.append(f"{','.join(sorted(route.methods))} {route.path}")
    return wrong


def _effective(routes: list[Any]) -> Iterator[Any]:
    """Every route as included: FastAPI keeps an included router's routes behind one entry, each with the
    inclusion's prefix, dependencies and response class applied (its effective candidates)."""
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):
            yield from _effective(candidates())
        else:
            yield route
