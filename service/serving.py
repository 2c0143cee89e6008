"""How the service is served: uvicorn with its h11 parser and asyncio loop, and a deadline for every request head.

uvicorn puts no time limit on a request's head: a connection that sends nothing, or a head one byte at a time,
stays open for as long as its client likes (its keep-alive timer only runs between answers, and any byte stops
it). Many such connections take the process's file descriptors. Here a head must be complete within
GOVFLOW_REQUEST_READ_TIMEOUT_SECONDS of the connection opening, or of the previous answer on a kept-alive
connection; else the connection is closed, with a 408 answer when part of a head had arrived. The body has the
same time after its head (service/api/middleware.py: BodyLimit)."""
from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service import metrics
from service.api.middleware import problem_document
from service.config import Settings


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (head_timeout seconds)."""

    head_timeout: float = 30.0
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # bytes received since the deadline was armed: a head was begun

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        self._head_bytes += len(data)
        super().data_received(data)

    def on_response_complete(self) -> None:
        # armed before uvicorn goes on to a pipelined request, which is then on this deadline too
        self._await_head()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The service is stopping. A request whose body is still coming has done nothing yet (BodyLimit reads a
        body whole before anything runs): it is ended as if its client had gone, instead of being waited for."""
        cycle = self.cycle
        if (cycle is not None and not cycle.response_started and self.conn.their_state is h11.SEND_BODY
                and not self.transport.is_closing()):
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        super().shutdown()

    def _await_head(self) -> None:
        self._disarm()
        self._head_bytes = len(self.conn.trailing_data[0])  # a pipelined head may have begun already
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # still at a request; on_response_complete arms the deadline again
        if self.conn.their_state is not h11.IDLE:
            # answered, and its client still sending a body nothing reads: no reason to keep the connection
            self.transport.close()
            return
        if self._head_bytes:
            metrics.HEAD_TIMEOUTS.inc()
            body = problem_document(408, "/problems/request-timeout", "Request timeout",
                                    f"the request's head did not arrive within {self.head_timeout:g} s")
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
                                 + body)
        self.transport.close()


def protocol(head_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn builds a connection's protocol from, with this deadline for its heads."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"head_timeout": head_timeout})


def config(app: Any, settings: Settings, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the app: h11 and asyncio, named rather than left to uvicorn's "auto", which
    takes httptools and uvloop when installed (httptools puts no limit on a request's headers, so one client grows
    the process's memory without end, where h11 answers 400 past 16 KiB; uvloop logs a client that goes away
    mid-answer as an error); a deadline for each request head; and on SIGTERM, requests still at work after
    GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS are cancelled, so a client that never finishes cannot keep the service up."""
    return uvicorn.Config(app, host=host, port=port, http=protocol(settings.request_read_timeout_seconds),
                          loop="asyncio", timeout_graceful_shutdown=settings.shutdown_timeout_seconds, **options)
