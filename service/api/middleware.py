"""Pure ASGI middleware: request body limits, metrics, and the last line of defence that turns any
unexpected error into a 500 problem response (the connection stays usable)."""
from __future__ import annotations

import asyncio
import contextlib
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


def problem_document(status: int, type_: str, title: str, detail: str, path: str | None = None) -> bytes:
    """An RFC 9457 problem as JSON, for answers sent before the application (and its handlers) sees a request."""
    problem: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if path is not None:
        problem["instance"] = path
    return json.dumps(problem, ensure_ascii=False).encode()


ENGINE_REST = "/engine-rest"


def is_engine_rest(path: str) -> bool:
    return path == ENGINE_REST or path.startswith(ENGINE_REST + "/")


def camunda_error(status: int, detail: str) -> tuple[int, dict[str, Any]]:
    """An error under /engine-rest as Camunda 7 answers it, {"type", "message"}, which Camunda clients (Modeler's
    log among them) read: a request's fault is a 400 InvalidRequestException, as Camunda has no 422."""
    if status in (400, 422):
        return 400, {"type": "InvalidRequestException", "message": detail}
    if status == 401:
        return 401, {"type": "AuthenticationException", "message": detail}
    return status, {"type": "RestException", "message": detail}


async def _problem(send: Send, status: int, type_: str, title: str, detail: str, path: str,
                   close: bool = False, retry_after: int | None = None) -> None:
    """A problem answer (Camunda's error body under /engine-rest); with close, the connection is closed after it
    (a body was left unread)."""
    if is_engine_rest(path):
        status, camunda = camunda_error(status, detail)
        body, content_type = json.dumps(camunda, ensure_ascii=False).encode(), b"application/json"
    else:
        body, content_type = problem_document(status, type_, title, detail, path), PROBLEM
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Read a request's whole body before anything else sees the request, within a size limit, a pace and a budget
    (and refuse a URL with a NUL character in it).

    A body larger than its limit is refused with 413: before it is read when Content-Length says so, else as soon
    as the streamed body passes the limit. A body has to keep coming: 408 when no byte of it arrives for `timeout`
    seconds, when it comes slower than MIN_RATE bytes a second on average after its first `timeout` seconds, or
    when it takes longer than `timeout` plus its limit at LIMIT_RATE (a 10 MiB deployment at 250 KB/s takes 40 s
    and is fine; one byte every few seconds is not, nor most of a body and then a byte now and then). Read here, outside
    WriteLimit and Admission (service/app.py), a body that comes slowly holds neither a slot for changes nor a
    request slot: before, a few clients that sent half a body and then waited stopped every change of every other
    client for as long as they liked. What all the bodies being read at once may hold together is bounded, so
    clients cannot fill the memory or the disk: beyond its budget a request is answered 503 with Retry-After. The
    bodies of requests that present a credential the service accepts (`credentialed`, asked before the body is
    read: service/api/deps.py, credentials_check) share `budget` bytes; those of requests without one share
    `anonymous_budget`, so clients without credentials cannot hold back the bodies of those with (before, one
    that sent 80 MiB and then trickled stopped every change for minutes). A body of at most SMALL_BODY bytes by
    its Content-Length that comes in one piece counts against neither, and its credentials are not asked for: it
    costs what a request head costs (h11 takes heads up to 16 KiB), and a console login, which has no credential
    yet, always gets through; one that does not come whole counts against its budget from its first piece. A
    client that goes away before its body ends has nothing of it run. A body that comes in one piece is passed on
    as it is; one in several pieces is kept in memory up to 64 KiB and in a temporary file beyond."""

    SPOOL_BYTES = 65_536
    MIN_RATE = 1024  # bytes a second, on average, once the first `timeout` seconds have passed
    # and a body may take no longer than `timeout` plus its path's limit at this rate (1 MiB: 32 s more; 10 MiB:
    # 320 s more): a client that sent most of a body at once and then a byte now and then kept its share of the
    # budget for hours (a 10 MiB deployment: 30 s + 10 MiB at 1 KB/s, nearly 3 hours)
    LIMIT_RATE = 32_768
    SMALL_BODY = 16_384

    def __init__(self, app: App, default_limit: int, limits: dict[str, int], timeout: float = 30.0,
                 budget: int | None = None, anonymous_budget: int | None = None,
                 credentialed: Callable[[Scope], Awaitable[bool]] | None = None) -> None:
        self.app, self.default_limit, self.limits, self.timeout = app, default_limit, limits, timeout
        # bytes of bodies being read or run, per budget (changed on the event loop only); without `credentialed`
        # every body counts against `budget`
        self.trusted = _Pool(budget if budget is not None else 8 * max(default_limit, *limits.values()))
        self.anonymous = _Pool(anonymous_budget if anonymous_budget is not None else default_limit)
        self.credentialed = credentialed

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
                           "send either Content-Length or Transfer-Encoding, not both", path, close=True)
            return
        declared = 0
        for value in lengths:
            try:
                declared = int(value)
            except ValueError:
                await _problem(send, 400, "/problems/bad-request", "Bad request", "Content-Length is not a number",
                               path, close=True)
                return
            if declared > limit:
                await _problem(send, 413, "/problems/too-large", "Request too large",
                               f"the request body may have at most {limit} bytes", path, close=True)
                return
        if not chunked and declared <= 0:
            await self.app(scope, receive, send)  # no body to wait for
            return
        small = not chunked and declared <= self.SMALL_BODY
        outcome, first, spool, seen, pool = await self._read(scope, receive, limit, small)
        try:
            if outcome == "gone":
                return  # the client went away before its body ended: nothing of it is run
            if outcome == "late":
                await _problem(send, 408, "/problems/request-timeout", "Request timeout",
                               f"the request body stopped coming (no byte for {self.timeout:g} s, less than "
                               f"{self.MIN_RATE} bytes a second, or longer than {self.timeout:g} s + "
                               f"{limit / self.LIMIT_RATE:g} s)", path, close=True)
                return
            if outcome == "large":
                await _problem(send, 413, "/problems/too-large", "Request too large",
                               f"the request body may have at most {limit} bytes", path, close=True)
                return
            if outcome == "busy":
                detail = ("too many request bodies are being received at once; retry shortly" if pool is self.trusted
                          else "too many request bodies without valid credentials are being received at once; "
                               "retry shortly, with a token or an API key")
                await _problem(send, 503, "/problems/busy", "Service busy", detail, path, close=True,
                               retry_after=5)
                return
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

            # the body's share is held until the request ends, its answer sent: the body (in memory or its
            # temporary file) is held as long (given back when the answer started, 150 requests whose answers their
            # client did not read held 150 MB beyond the budget); the answer's pace bounds that (service/serving.py)
            await self.app(scope, replay, send)
        finally:
            if pool is not None:
                pool.held -= seen
            if spool is not None:
                spool.close()

    async def _pool(self, scope: Scope) -> _Pool:
        """The budget a request's body counts against: by whether it presents a credential the service accepts."""
        trusted = self.credentialed is None or await self.credentialed(scope)
        return self.trusted if trusted else self.anonymous

    async def _read(self, scope: Scope, receive: Receive, limit: int, small: bool) -> tuple[
            str, bytes, tempfile.SpooledTemporaryFile[bytes] | None, int, _Pool | None]:
        """("ok", the body in one piece or b"", the spooled body rewound or None, its size, its budget), or why not
        ("gone", "late", "large", "busy") with what was received. What it received is added to its budget's `held`
        as it arrives; the caller takes it off when the request ends. A small body that comes in one piece counts
        against no budget (None); one that does not is counted from its first piece on."""
        loop = asyncio.get_running_loop()
        started = last = loop.time()
        longest = started + self.timeout + limit / self.LIMIT_RATE
        spool: tempfile.SpooledTemporaryFile[bytes] | None = None
        seen = 0
        outcome = "ok"
        pool: _Pool | None = None
        try:
            if not small:
                pool = await self._pool(scope)
            while True:
                deadline = min(last + self.timeout, started + self.timeout + seen / self.MIN_RATE, longest)
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    outcome = "late"
                    break
                if message["type"] != "http.request":
                    outcome = "gone"
                    break
                chunk = message.get("body", b"")
                if chunk:
                    last = loop.time()
                more = message.get("more_body", False)
                if small and pool is None and not more and not seen:
                    return outcome, chunk, None, len(chunk), None  # small and whole: what a request head costs
                if pool is None:
                    pool = await self._pool(scope)  # a small body that did not come whole
                seen += len(chunk)
                pool.held += len(chunk)
                if seen > limit:
                    outcome = "large"
                    break
                if pool.held > pool.budget:
                    outcome = "busy"
                    break
                if spool is None and not more and seen == len(chunk):
                    return outcome, chunk, None, seen, pool  # the whole body in one piece: passed on as it came
                if spool is None:
                    spool = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)  # noqa: SIM115
                spool.write(chunk)
                if not more:
                    spool.seek(0)
                    body, spool = spool, None
                    return outcome, b"", body, seen, pool
        except BaseException:  # cancelled (the service stops): nothing reaches the caller to take it off
            if pool is not None:
                pool.held -= seen
            raise
        finally:
            if spool is not None:  # refused or cancelled: nothing is passed on
                spool.close()
        return outcome, b"", None, seen, pool


class _Pool:
    """A budget of body bytes and what the bodies counted against it hold now."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: int) -> None:
        self.budget, self.held = budget, 0


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
        except asyncio.CancelledError:
            # the service stopped before the request was done (GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS passed): its
            # thread may still commit what it was doing, so the answer says to retry, with the same Idempotency-Key
            if not started:
                with contextlib.suppress(Exception):
                    await _problem(send, 503, "/problems/shutting-down", "Service stopping",
                                   "the service stopped before the request was done; what it changed may still be "
                                   "stored: retry with the same Idempotency-Key", scope.get("path", ""),
                                   close=True, retry_after=5)
            # the request ends here, answered (or its answer cut short, which uvicorn logs in a line): raised on,
            # the cancellation made uvicorn log "Exception in ASGI application" with a traceback for each request
            # the stop cut short
            log.warning("%s %s was still at work when the service stopped", scope.get("method"), scope.get("path"))


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
        # the change is done (committed before the answer starts): its slot is free while the answer is sent. Held
        # until the answer had left, a client that pipelined a large GET and a change and read nothing kept a slot
        # for changes with each connection (as long as its answers took to leave)
        await hold_until_answered(self._semaphore, self.app, scope, receive, send)


async def hold_until_answered(slots: asyncio.Semaphore, app: App, scope: Scope, receive: Receive,
                              send: Send) -> None:
    """Run the request in one of `slots` (an asyncio semaphore), given back when its answer starts (the
    request's sessions are closed and its changes committed by then: the answer may take as long as its client
    likes to leave), or when it ends without one."""
    await slots.acquire()
    held = True

    def release() -> None:
        nonlocal held
        if held:
            held = False
            slots.release()

    async def watched_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            release()
        await send(message)

    try:
        await app(scope, receive, watched_send)
    finally:
        release()


def write_share(request_threads: int, share: float = 0.75) -> int:
    """Requests that may work on changes at once: three quarters of the request threads, leaving at least one for
    reads whenever there are two threads or more."""
    return max(1, min(int(request_threads * share), request_threads - 1))


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Request counts and latencies per route (the route template, not the raw path). Installed outside BodyLimit,
    so its refusals (408, 413, 503, a NUL's 422) are counted too, under the route "unmatched"; a request whose
    client went away before any answer is counted as 499 (nginx's "client closed request")."""

    def __init__(self, app: App, api_prefix: str) -> None:
        self.app, self.api_prefix = app, api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 499}

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except BaseException as e:
            if status["code"] == 499:  # not answered yet: CatchAll answers it, 503 when cancelled, else 500
                status["code"] = 503 if isinstance(e, asyncio.CancelledError) else 500
            raise
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if (route is not None and scope.get("path", "").startswith(self.api_prefix + "/")
                    and not path.startswith(self.api_prefix)):
                path = self.api_prefix + path
            method = scope.get("method", "")
            method = method if method in _METHODS else "OTHER"  # made-up methods must not add series without end
            metrics.REQUESTS.labels(method, path, str(status["code"])).inc()
            metrics.LATENCY.labels(method, path).observe(time.perf_counter() - started)
