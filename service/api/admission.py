"""Admission: a service process works on at most as many requests at once as it has request threads, which is
no more than its database connection pool can serve (service/replicas.py: request_threads). The others wait
their turn in the event loop, holding neither a thread nor a connection.

A thread limit alone is not enough: a request keeps its read session (and connection) until its response has
been serialised, which FastAPI does in the thread pool too; with every thread taken by newer requests waiting for
a connection, the older ones could not finish and the newer would be refused once GOVFLOW_DB_POOL_TIMEOUT_SECONDS
passed. Admitted requests always find a thread and a connection; a connection pool that is exhausted anyway (a
connection held elsewhere) is answered 503 with Retry-After (service/api/problems.py)."""
from __future__ import annotations

import asyncio

from service.api.middleware import App, Receive, Scope, Send, hold_until_answered


class Admission:
    def __init__(self, app: App, limit: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt
        self._slots: asyncio.Semaphore | None = None  # created in the event loop that serves

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # probes that use no database (liveness, metrics) are never held back behind busy requests
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            # asyncio's, not anyio's: a free slot is taken without a round of the event loop (anyio's semaphore
            # yields once per acquire)
            self._slots = asyncio.Semaphore(self.limit)
        await hold_until_answered(self._slots, self.app, scope, receive, send)
