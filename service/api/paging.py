"""The next page of a list answered as a bare JSON array: a `Link` header (RFC 8288) with `rel="next"`, the
request's own path and query with its `cursor` replaced, present only when there is a next page."""
from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

CURSOR = 'the next page: the cursor in the `Link` header (rel="next") of the page before'
# the 200 answer's documented header
PAGED: dict[int | str, dict[str, Any]] = {200: {"headers": {"Link": {
    "description": '`<path?query>; rel="next"`: the next page\'s request; absent on the last page',
    "schema": {"type": "string"}}}}}


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    if cursor is None:
        return
    url = request.url.include_query_params(cursor=cursor)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
