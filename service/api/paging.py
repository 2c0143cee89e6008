"""The next page of a list answered as a bare JSON array: a `Link` header (RFC 8288) with `rel="next"`, the
request's own path and query with its `cursor` replaced, present only when there is a next page."""
from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

CURSOR = 'the next page: the cursor in the `Link` header (rel="next") of the page before'


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    if cursor is None:
        return
    url = request.url.include_query_params(cursor=cursor)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
