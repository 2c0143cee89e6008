"""How the service is served: uvicorn with its h11 parser and asyncio loop, a deadline for every request head and a
pace for every answer.

uvicorn puts no time limit on a request's head: a connection that sends nothing, or a head one byte at a time,
stays open for as long as its client likes (its keep-alive timer only runs between answers, and any byte stops
it). Many such connections take the process's file descriptors. Here a head must be complete within
GOVFLOW_REQUEST_READ_TIMEOUT_SECONDS of the connection opening, or of the previous answer on a kept-alive
connection; else the connection is closed, with a 408 answer when part of a head had arrived (logged in uvicorn's
access log as the answers it sends are). The body has the same time after its head (service/api/middleware.py:
BodyLimit).

Nor does uvicorn put a limit on how long an answer takes to leave. What a client does not read stays in the
connection's buffer, and a request whose answer comes while that buffer is full waits in the application's `send`
until it empties: for good when the client reads nothing, in the slots the request holds (WriteLimit's for a
change, its body's share of BodyLimit's budget). A few clients that pipelined a large GET and a change and read
nothing stopped every change of every other client, each keeping its connection and megabytes of answers. So
while that buffer is too full to write to, or the connection is closing with bytes still in it, the client must
take at least BodyLimit.MIN_RATE bytes a second on average after the first GOVFLOW_REQUEST_READ_TIMEOUT_SECONDS, with
no pause longer than twice that; else the connection is dropped with what it held (logged, counted), and the request
waiting to write wakes up as if its client had gone and gives its slots back. When the service stops, an answer
still not taken a second before GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS runs out is dropped the same way (its request is
done). What a client has taken is seen as its system acknowledges it, in bursts of up to its receive buffer: a
client that reads more slowly than about its receive buffer in twice the timeout (128 KB in 60 s by default, some
2 KB/s) can be cut off although its average is above the pace."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter
from uvicorn.protocols.http.h11_impl import H11Protocol

from service import metrics
from service.api.middleware import BodyLimit, problem_document
from service.config import Settings

log = logging.getLogger("govflow")

if sys.platform == "linux":
    import fcntl
    import termios

    def _queued(sock: Any) -> int:
        """Bytes in the system's send queue of a TCP socket: not yet sent, or not yet acknowledged by the client."""
        try:
            return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
        except OSError:
            return 0
else:
    def _queued(sock: Any) -> int:
        return 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head and a pace for answers to leave (head_timeout
    seconds)."""

    head_timeout: float = 30.0
    min_rate = BodyLimit.MIN_RATE  # bytes a second an answer must leave at on average, after its first head_timeout
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # bytes received since the deadline was armed: a head was begun
    # while writes are held back: since when, when bytes were last seen leaving, how many were left then, and how
    # many have left in all (nothing more is written meanwhile, so the buffer only shrinks as the client reads)
    _write_timer: asyncio.TimerHandle | None = None
    _write_since = 0.0
    _write_moved = 0.0
    _write_left = 0
    _write_sent = 0
    shutdown_timeout: float = 25.0
    _stop_timer: asyncio.TimerHandle | None = None

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
        if self.transport.is_closing():  # an answer with `connection: close`: what is left of it must leave too
            self._watch_writes()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unwatch_writes()
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._watch_writes()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.transport.is_closing():  # closing, the rest of the buffer is watched until it has left
            self._unwatch_writes()

    def shutdown(self) -> None:
        """The service is stopping. A request whose body is still coming has done nothing yet (BodyLimit reads a
        body whole before anything runs): it is ended as if its client had gone, instead of being waited for."""
        # answers still not taken when the shutdown time has nearly run out are dropped (their requests are done),
        # so a request waiting to write one ends as if its client had gone instead of being cancelled when the time
        # is up (which logged a traceback for each); looked for until the connection is gone
        self._stop_timer = self.loop.call_later(max(self.shutdown_timeout / 2, self.shutdown_timeout - 1),
                                                self._stop_overdue)
        cycle = self.cycle
        if (cycle is not None and not cycle.response_started and self.conn.their_state is h11.SEND_BODY
                and not self.transport.is_closing()):
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        super().shutdown()
        if self.transport.is_closing():
            self._watch_writes()

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
            self._watch_writes()  # closed by uvicorn (its keep-alive timeout, a 400) with an answer still unread
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # still at a request; on_response_complete arms the deadline again
        if self.conn.their_state is not h11.IDLE:
            # answered, and its client still sending a body nothing reads: no reason to keep the connection
            self.transport.close()
            self._watch_writes()
            return
        if self._head_bytes:
            metrics.HEAD_TIMEOUTS.inc()
            if self.access_log:  # as uvicorn logs the answers it sends; of the request, nothing is known for sure
                self.access_logger.info('%s - "%s %s HTTP/%s" %d', self._client_address(), "-", "-", "-", 408)
            body = problem_document(408, "/problems/request-timeout", "Request timeout",
                                    f"the request's head did not arrive within {self.head_timeout:g} s")
            answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
                      b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            watched = self._write_timer is not None
            self.transport.write(answer)
            if watched:  # behind a previous answer still unread: bytes added, not bytes gone
                self._write_left += len(answer)
        self.transport.close()
        self._watch_writes()

    def _client_address(self) -> str:
        """host:port, as uvicorn's access log names a client ("" when the transport does not know it)."""
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""

    def _unsent(self) -> int:
        """Bytes written that the client has not taken yet: in the transport's buffer, and in the system's send
        queue (Linux). The system's queue takes more from the transport only once about half of it is free again,
        and holds up to megabytes on loopback: the transport's buffer alone shows a client that reads slowly as one
        that reads nothing until it has read that half."""
        sock = self.transport.get_extra_info("socket")
        return self.transport.get_write_buffer_size() + (_queued(sock) if sock is not None else 0)

    def _watch_writes(self) -> None:
        """Writes are held back (the transport's buffer is above its high-water mark), or the connection is closing
        with bytes still in that buffer: from now on nothing more is written, and what is there must keep leaving."""
        if self._write_timer is not None or not self.transport.get_write_buffer_size():
            return
        now = self.loop.time()
        self._write_since = self._write_moved = now
        self._write_left, self._write_sent = self._unsent(), 0
        self._write_timer = self.loop.call_at(now + self.head_timeout / 4, self._writes_overdue)

    def _unwatch_writes(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _stop_overdue(self) -> None:
        left = self.transport.get_write_buffer_size()
        if left:  # answers not taken (uvicorn would wait for them, or for the connection to close, to the end)
            self._stop_timer = None
            self._drop("not taken when the service stopped", left)
        else:  # an answer may still come (a request at work): looked for again
            self._stop_timer = self.loop.call_later(0.2, self._stop_overdue)

    def _writes_overdue(self) -> None:
        self._write_timer = None
        if not self.transport.get_write_buffer_size():
            return  # closing, and the transport closes the socket itself now (the system sends the rest)
        left, now = self._unsent(), self.loop.time()
        if left < self._write_left:
            self._write_sent += self._write_left - left
            self._write_moved = now
        self._write_left = left
        # as BodyLimit paces a body: min_rate on average after the first `head_timeout` (a client that took nothing
        # by then is dropped), and no pause longer than twice `head_timeout` (a client's system takes back what its
        # program reads only once a good part of its receive buffer is free again, often tens of kilobytes, so a
        # client reading a few kilobytes a second shows no progress here for many seconds at a time). Looked at
        # four times a `head_timeout`: the client's first bytes are taken right after writes are held back, and
        # seen only at the next look
        still = self._write_moved + 2 * self.head_timeout
        slow = self._write_since + self.head_timeout + self._write_sent / self.min_rate
        if now < min(still, slow):
            self._write_timer = self.loop.call_at(min(still, slow, now + self.head_timeout / 4), self._writes_overdue)
            return
        if not self._write_sent:
            reason = f"none for {self.head_timeout:g} s"
        elif now >= still:
            reason = f"none for {2 * self.head_timeout:g} s"
        else:
            reason = f"under {self.min_rate} bytes a second"
        self._drop(reason, left)

    def _drop(self, reason: str, left: int) -> None:
        metrics.WRITE_TIMEOUTS.inc()
        taking = self.loop.time() - self._write_since if self._write_since else 0.0
        log.info("closed the connection of %s, whose client did not take its answers in time (%s): %d bytes taken in "
                 "%.1f s, %d left", self._client_address() or "a client", reason, self._write_sent, taking, left)
        # close() would wait for the buffer to be sent; abort() drops it, and connection_lost marks the request at
        # work as disconnected and wakes its send, which returns, so the request ends and its slots are released.
        # A reset rather than a FIN: the system drops what it still holds to send too, and the client learns that
        # its answer was cut short
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def protocol(head_timeout: float, shutdown_timeout: float = 25.0) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn builds a connection's protocol from, with this deadline for its heads (and for
    its answers to begin leaving)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"head_timeout": head_timeout,
                                                              "shutdown_timeout": shutdown_timeout})


class AccessFormatter(UvicornAccessFormatter):
    """uvicorn's access line, the same text, written without copying each record and looking its status up: that
    took a twentieth of a request's time. With colours, or another format, uvicorn's own formatting is used."""

    _ACCESS = LOGGING_CONFIG["formatters"]["access"]["fmt"]
    _STATUS = {int(s): f"{int(s)} {s.phrase}" for s in HTTPStatus}

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self.use_colors or self._fmt != self._ACCESS or not isinstance(record.args, tuple) or len(record.args) != 5:
            return super().formatMessage(record)
        client_addr, method, full_path, http_version, status_code = record.args
        code = int(status_code)  # type: ignore[call-overload]
        status = self._STATUS.get(code) or f"{code} "
        prefix = record.levelname + ":" + " " * (8 - len(record.levelname))
        return f'{prefix} {client_addr} - "{method} {full_path} HTTP/{http_version}" {status}'


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, with the access line written by AccessFormatter."""
    formatters = {**LOGGING_CONFIG["formatters"],
                  "access": {**LOGGING_CONFIG["formatters"]["access"], "()": f"{__name__}.AccessFormatter"}}
    return {**LOGGING_CONFIG, "formatters": formatters}


def config(app: Any, settings: Settings, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the app: h11 and asyncio, named rather than left to uvicorn's "auto", which
    takes httptools and uvloop when installed (httptools puts no limit on a request's headers, so one client grows
    the process's memory without end, where h11 answers 400 past 16 KiB; uvloop logs a client that goes away
    mid-answer as an error); a deadline for each request head, and a pace for each answer; and on SIGTERM,
    requests still at work after GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS are cancelled, so a client that never finishes
    cannot keep the service up."""
    http = protocol(settings.request_read_timeout_seconds, settings.shutdown_timeout_seconds)
    options.setdefault("log_config", log_config())
    return uvicorn.Config(app, host=host, port=port, http=http,
                          loop="asyncio", timeout_graceful_shutdown=settings.shutdown_timeout_seconds, **options)
