"""Timer wake-up across processes. On PostgreSQL a transaction that writes a timer sends a NOTIFY when it
commits, and every scheduler LISTENs on its own connection: a sleeping scheduler wakes for a timer due before its
next round whichever process wrote it. SQLite has no such channel: there the scheduler polls, sleeping at most
GOVFLOW_SCHEDULER_MAX_SLEEP_SECONDS (and is woken directly by the timers its own process writes)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from service.background import LoopThread
from service.services.context import AppContext

log = logging.getLogger("govflow.scheduler")
CHANNEL = "govflow_timer"


def announce_timers_on_commit(ctx: AppContext) -> None:
    """PostgreSQL: a write transaction that wrote timers notifies CHANNEL with the earliest due time. NOTIFY is
    transactional: listeners hear it when (and only if) the transaction commits."""
    if ctx.sqlite:
        return

    def _notify(session: Session) -> None:
        due_at = ctx.pending_timer(session)
        if due_at is not None:
            session.execute(text("SELECT pg_notify(:channel, :due_at)"),
                            {"channel": CHANNEL, "due_at": due_at.isoformat()})

    event.listen(ctx.session_factory, "before_commit", _notify)


def parse_due(payload: str) -> datetime | None:
    try:
        due_at = datetime.fromisoformat(payload)
    except ValueError:
        return None
    return due_at if due_at.tzinfo is not None else due_at.replace(tzinfo=UTC)


class TimerListener(LoopThread):
    """A thread with its own PostgreSQL connection (outside the pool) that LISTENs on CHANNEL and passes each
    announced due time to on_timer. After every (re)connection it calls on_connected: timers written while it
    was not listening are then looked for. A lost connection is retried with back-off; meanwhile the scheduler
    still polls."""

    thread_name = "govflow-timer-listener"

    def __init__(self, url: URL, on_timer: Callable[[datetime], None], on_connected: Callable[[], None],
                 poll_seconds: float = 0.5) -> None:
        super().__init__()
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_timer, self.on_connected = on_timer, on_connected
        self.poll_seconds = poll_seconds
        self.listening = threading.Event()
        self.heard = 0

    def _loop(self) -> None:
        import psycopg

        backoff = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 1.0
                    self.on_connected()
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=self.poll_seconds):
                            due_at = parse_due(notice.payload)
                            if due_at is not None:
                                self.heard += 1
                                self.on_timer(due_at)
            except Exception as e:  # a lost or refused connection: poll meanwhile, and connect again
                if not self._stop.is_set():
                    log.warning("timer wake-up: LISTEN connection failed (%s); retrying in %.0fs", e, backoff)
            finally:
                self.listening.clear()
            self._stop.wait(backoff)
            backoff = min(30.0, backoff * 2)
