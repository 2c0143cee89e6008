"""The timer scheduler: sleeps until the next due time read from the indexed waiting-timer table,
fires due timers one instance per transaction, and records what fired.

Exactly once across processes: a scheduler claims a batch of due instances by leasing their due timers (one
transaction; on PostgreSQL rows another scheduler is claiming are skipped, so schedulers share the due list
instead of each working through all of it), the engine fires them outside any transaction, and the result is
stored under the instance's optimistic lock, so a second scheduler either finds the timers leased or loses the
race and stores nothing. A failure frees the lease with a back-off; a crash leaves the lease to expire
(GOVFLOW_TIMER_LEASE_SECONDS). On SQLite, one scheduler at a time holds a lease on the whole scan.

Waking: a sleeping scheduler is woken by the timers its own process commits and, on PostgreSQL, by those any
process commits (LISTEN/NOTIFY, service/timer_wakeup.py); on SQLite it polls.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, StatementError

from service import metrics
from service.background import LoopThread
from service.db.models import SchedulerLock, WaitingEvent
from service.errors import Conflict, DomainError
from service.services import timers
from service.services.context import AppContext
from service.text import NotStorable, storable_text
from service.timer_wakeup import TimerListener

log = logging.getLogger("govflow.scheduler")
LOCK_NAME = "timer-scheduler"


def error_text(error: Exception) -> str:
    """What a timer's failure says, as its waiting row keeps it: the error, without the SQL and the parameters that
    SQLAlchemy adds to a database error's text (they may hold the instance's data)."""
    if isinstance(error, StatementError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {error.orig}"
    return str(error)


class Scheduler(LoopThread):
    thread_name = "govflow-scheduler"

    def __init__(self, ctx: AppContext, owner: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._next_round: datetime | None = None  # when the sleeping loop will look again
        self.sqlite = ctx.sqlite
        self.wakes = 0
        self.listener: TimerListener | None = None

    # ---- thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.ctx.on_timer_written(self._timer_written)
        if not self.sqlite:
            self.listener = TimerListener(self.ctx.engine.url, self._timer_written, self.wake)
            self.listener.start()
        super().start()

    def stop(self) -> None:
        self._stop.set()  # before the wake-up: the woken loop must see it
        self._wake.set()
        if self.listener is not None:
            self.listener.stop()
        super().stop()
        self._release_lease()

    def wake(self) -> None:
        self._wake.set()

    def _timer_written(self, due_at: datetime) -> None:
        """A request committed a timer (in this process, or in any process on PostgreSQL): look again now if it
        is due before the next round."""
        planned = self._next_round
        if planned is None or due_at < planned:
            self.wakes += 1
            self.wake()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._next_round = None  # a round is running: any timer written now is seen by it or woken for
            try:
                self.run_until_idle()
                delay = self._seconds_until_next_due()
            except Exception:
                log.exception("scheduler round failed")
                delay = 5.0
            self._next_round = self.ctx.clock.now() + timedelta(seconds=delay)
            self._wake.wait(timeout=delay)
            self._wake.clear()

    def _seconds_until_next_due(self) -> float:
        """Until the next timer falls due, or a lease on a due one ends (another scheduler is firing it, or its
        firing failed and backs off): a timer someone holds is not looked at again before its lease ends."""
        cap = self.ctx.settings.scheduler_max_sleep_seconds
        now = self.ctx.clock.now()
        timer = WaitingEvent.kind == "timer"
        with self.ctx.read() as session:  # both read ranges of the (kind, due_at) index
            upcoming = session.scalar(select(func.min(WaitingEvent.due_at)).where(timer, WaitingEvent.due_at >= now))
            free = session.scalar(select(WaitingEvent.id).where(
                timer, WaitingEvent.due_at < now,
                (WaitingEvent.lease_until.is_(None)) | (WaitingEvent.lease_until < now)).limit(1)) is not None
            held_until = session.scalar(select(func.min(WaitingEvent.lease_until)).where(
                timer, WaitingEvent.due_at < now, WaitingEvent.lease_until >= now))
        if free:
            return 0.05  # due and free (claimed by nobody, or a lost race): the next round takes it
        nxt = min((t for t in (upcoming, held_until) if t is not None), default=None)
        if nxt is None:
            return cap
        seconds = (nxt - now).total_seconds()
        return max(0.05, min(cap, seconds + 0.01))

    # ---- work ---------------------------------------------------------------------------------------
    def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Fire every timer that is due now, earliest first. Returns how many instances advanced."""
        if self.sqlite and not self._hold_lease():
            return 0
        total = 0
        for _ in range(max_rounds):
            fired = self.run_once()
            total += fired
            if fired == 0:
                break
        return total

    def run_once(self) -> int:
        """Claim a batch of due instances and fire them; returns how many advanced."""
        claim = timers.claim_due(self.ctx, self.ctx.settings.scheduler_batch_size)
        advanced = 0
        for position, instance_id in enumerate(claim.instance_ids):
            if self._stop.is_set():
                timers.release(self.ctx, claim, claim.instance_ids[position:])
                break
            if self._fire_instance(instance_id):
                advanced += 1
        return advanced

    def _fire_instance(self, instance_id: str) -> bool:
        now = self.ctx.clock.now()
        try:
            return timers.fire_due(self.ctx, instance_id, fired_by=self.owner, leased=True) is not None
        except Exception as e:  # noqa: BLE001 - one instance's failure must not stop the other timers
            refused = isinstance(e, StatementError) and isinstance(e.orig, NotStorable)  # a text it cannot keep
            if not isinstance(e, (DomainError, DBAPIError)) and not refused:
                log.exception("timer of instance %s failed unexpectedly", instance_id)
            self._record_failure(instance_id, now, e)
            return False

    def _record_failure(self, instance_id: str, now: datetime, error: Exception) -> None:
        log.warning("timer of instance %s failed: %s", instance_id, error_text(error))
        metrics.TIMER_FAILURES.inc()
        if isinstance(error, Conflict):
            return  # another request advanced the instance; its timers are re-read next round
        with self.ctx.write() as session:
            for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance_id,
                                                                WaitingEvent.kind == "timer",
                                                                WaitingEvent.due_at < now)):
                w.attempts += 1
                w.last_error = storable_text(error_text(error), 2000)
                w.lease_until = now + timedelta(seconds=min(3600, 30 * 2 ** min(w.attempts, 7)))

    # ---- SQLite: one scheduler at a time ----------------------------------------------------------
    def _hold_lease(self) -> bool:
        now = self.ctx.clock.now()
        until = now + timedelta(seconds=self.ctx.settings.timer_lease_seconds)
        with self.ctx.write() as session:
            row = session.get(SchedulerLock, LOCK_NAME)
            if row is None:
                session.add(SchedulerLock(name=LOCK_NAME, owner=self.owner, lease_until=until))
                return True
            if row.owner == self.owner or row.lease_until is None or row.lease_until < now:
                row.owner, row.lease_until = self.owner, until
                return True
            return False

    def _release_lease(self) -> None:
        try:
            with self.ctx.write() as session:
                session.execute(update(SchedulerLock).where(SchedulerLock.name == LOCK_NAME,
                                                            SchedulerLock.owner == self.owner)
                                .values(owner=None, lease_until=None))
        except Exception:
            log.debug("could not release the scheduler lease", exc_info=True)
