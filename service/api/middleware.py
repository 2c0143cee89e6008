"""Pure ASGI middleware: request body limits, metrics, and the last line of defence that turns any
unexpected error into a 500 problem response (the connection stays usable)."""
from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service import metrics

log = logging.getLogger("govflow")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
PROBLEM = b"application/problem+json"


async def _problem(send: Send, status: int, type_: str, title: str, detail: str, path: str,
                   close: bool = False) -> None:
    """A problem answer; with close, the connection is closed after it (a body was left unread)."""
    body = json.dumps({"type": type_, "title": title, "status": status, "detail": detail, "instance": path},
                      ensure_ascii=False).encode()
    headers = [(b"content-type", PROBLEM), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Read a request's whole body before anything else sees the request, within a size limit and a deadline (and
    refuse a URL with a NUL character in it).

    A body larger than its limit is refused with 413: before it is read when Content-Length says so, else as soon
    as the streamed body passes the limit. A body that has not arrived `timeout` seconds after its head is
    answered 408. Read here, outside WriteLimit and Admission (service/app.py), a body that comes slowly holds
    neither a slot for changes nor a request slot: before, a few clients that sent half a body and then waited
    stopped every change of every other client for as long as they liked. A client that goes away before its
    body ends has nothing of it run. A body that comes in one piece is passed on as it is; one in several pieces
    is kept in memory up to 64 KiB and in a temporary file beyond, so slow clients cannot fill the memory."""

    SPOOL_BYTES = 65_536

    def __init__(self, app: App, default_limit: int, limits: dict[str, int], timeout: float = 30.0) -> None:
        self.app, self.default_limit, self.limits, self.timeout = app, default_limit, limits, timeout

    def _limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # PostgreSQL cannot hold it in text (a filter with it failed there and found nothing on SQLite): the
            # same answer on both, naming the character, before anything reads the URL
            await _problem(send, 422, "/problems/invalid-input", "Invalid input",
                           "the URL has a NUL character (%00); no name, key or id contains one",
                           path.replace("\x00", ""))
            return
        limit = self._limit(path)
        headers = scope.get("headers", [])
        lengths = [value for name, value in headers if name == b"content-length"]
        chunked = any(name == b"transfer-encoding" for name, _ in headers)
        if lengths and chunked:
            # both framings at once: which one a server reads is ambiguous (RFC 9112 §6.1); refuse it
            await _problem(send, 400, "/problems/bad-request", "Bad request",
                           "send either Content-Length or Transfer-Encoding, not both", path)
            return
        declared = 0
        for value in lengths:
            try:
                declared = int(value)
            except ValueError:
                await _problem(send, 400, "/problems/bad-request", "Bad request", "Content-Length is not a number",
                               path)
                return
            if declared > limit:
                await _problem(send, 413, "/problems/too-large", "Request too large",
                               f"the request body may have at most {limit} bytes", path, close=True)
                return
        if not chunked and declared <= 0:
            await self.app(scope, receive, send)  # no body to wait for
            return
        spool: tempfile.SpooledTemporaryFile[bytes] | None = None
        first = b""
        seen = 0
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    while True:
                        message = await receive()
                        if message["type"] != "http.request":
                            return  # the client went away before its body ended: nothing of it is run
                        chunk = message.get("body", b"")
                        seen += len(chunk)
                        if seen > limit:
                            break
                        more = message.get("more_body", False)
                        if spool is None and not more and seen == len(chunk):
                            first = chunk  # the whole body in one piece: passed on as it came
                            break
                        if spool is None:
                            spool = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)  # noqa: SIM115
                        spool.write(chunk)
                        if not more:
                            break
            except TimeoutError:
                await _problem(send, 408, "/problems/request-timeout", "Request timeout",
                               f"the request body did not arrive within {self.timeout:g} s of its head", path,
                               close=True)
                return
            if seen > limit:
                await _problem(send, 413, "/problems/too-large", "Request too large",
                               f"the request body may have at most {limit} bytes", path, close=True)
                return
            if spool is not None:
                spool.seek(0)
            pending = True

            async def replay() -> Message:
                nonlocal pending
                if not pending:
                    return await receive()
                if spool is None:
                    pending = False
                    return {"type": "http.request", "body": first, "more_body": False}
                chunk = spool.read(self.SPOOL_BYTES)
                pending = spool.tell() < seen
                return {"type": "http.request", "body": chunk, "more_body": pending}

            await self.app(scope, replay, send)
        finally:
            if spool is not None:
                spool.close()


class CatchAll:
    """An error nothing else handled is logged and answered with a 500 problem; the error is not raised on to
    the server (which would drop the connection)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _problem(send, 500, "/problems/internal", "Internal error", "an unexpected error occurred",
                               scope.get("path", ""))


class WriteLimit:
    """At most `limit` requests at once wait on changes (for an engine worker, the database's write lock, another
    request's Idempotency-Key): the other request threads always serve reads. Installed outside Admission, so a
    change over the limit waits here, on the event loop, holding neither an admission slot nor a thread; were it
    inside, queued changes would take every admission slot and reads would queue behind them."""

    def __init__(self, app: App, limit: int) -> None:
        self.app, self.limit = app, max(1, limit)
        self._semaphore: asyncio.Semaphore | None = None  # created in the event loop that serves

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            await self.app(scope, receive, send)


def write_share(request_threads: int, share: float = 0.75) -> int:
    """Requests that may work on changes at once: three quarters of the request threads, leaving at least one for
    reads whenever there are two threads or more."""
    return max(1, min(int(request_threads * share), request_threads - 1))


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Request counts and latencies per route (the route template, not the raw path)."""

    def __init__(self, app: App, api_prefix: str) -> None:
        self.app, self.api_prefix = app, api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if scope.get("path", "").startswith(self.api_prefix + "/") and not path.startswith(self.api_prefix):
                path = self.api_prefix + path
            method = scope.get("method", "")
            method = method if method in _METHODS else "OTHER"  # made-up methods must not add series without end
            metrics.REQUESTS.labels(method, path, str(status["code"])).inc()
            metrics.LATENCY.labels(method, path).observe(time.perf_counter() - started)
