"""The timer scheduler: sleeps until the next due time read from the indexed waiting-timer table,
fires due timers one instance per transaction, and records what fired.

Exactly once across processes: an instance's due timers are leased (one conditional UPDATE) before the
engine fires them, outside any transaction, and the result is stored under the instance's optimistic
lock, so a second scheduler either finds the timers leased or loses the race and stores nothing. A
failure frees the lease with a back-off; a crash leaves the lease to expire (GOVFLOW_TIMER_LEASE_SECONDS).
On SQLite, one scheduler at a time holds a lease on the whole scan.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service import metrics
from service.db.models import SchedulerLock, WaitingEvent
from service.errors import Conflict, DomainError
from service.services import timers
from service.services.context import AppContext

log = logging.getLogger("govflow.scheduler")
LOCK_NAME = "timer-scheduler"


class Scheduler:
    def __init__(self, ctx: AppContext, owner: str | None = None) -> None:
        self.ctx = ctx
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_round: datetime | None = None  # when the sleeping loop will look again
        self.sqlite = ctx.sqlite
        self.wakes = 0

    # ---- thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.ctx.on_timer_written(self._timer_written)
        self._thread = threading.Thread(target=self._loop, name="govflow-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._release_lease()

    def wake(self) -> None:
        self._wake.set()

    def _timer_written(self, due_at: datetime) -> None:
        """A request of this process committed a timer: look again now if it is due before the next round."""
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
        cap = self.ctx.settings.scheduler_max_sleep_seconds
        with self.ctx.read() as session:
            nxt = session.scalar(select(WaitingEvent.due_at).where(WaitingEvent.kind == "timer",
                                                                   WaitingEvent.due_at.is_not(None))
                                 .order_by(WaitingEvent.due_at).limit(1))
        if nxt is None:
            return cap
        seconds = (nxt - self.ctx.clock.now()).total_seconds()
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

    def _due_instances(self, session: Session, now: datetime) -> list[str]:
        query = (select(WaitingEvent.instance_id, WaitingEvent.due_at)
                 .where(WaitingEvent.kind == "timer", WaitingEvent.due_at < now,
                        (WaitingEvent.lease_until.is_(None)) | (WaitingEvent.lease_until < now))
                 .order_by(WaitingEvent.due_at, WaitingEvent.id)
                 .limit(self.ctx.settings.scheduler_batch_size))
        seen: list[str] = []
        for instance_id, _due in session.execute(query):
            if instance_id not in seen:
                seen.append(instance_id)
        return seen

    def run_once(self) -> int:
        now = self.ctx.clock.now()
        with self.ctx.read() as session:
            candidates = self._due_instances(session, now)
        advanced = 0
        for instance_id in candidates:
            if self._stop.is_set():
                break
            if self._fire_instance(instance_id):
                advanced += 1
        return advanced

    def _fire_instance(self, instance_id: str) -> bool:
        now = self.ctx.clock.now()
        try:
            return timers.fire_due(self.ctx, instance_id, fired_by=self.owner) is not None
        except Exception as e:  # noqa: BLE001 - one instance's failure must not stop the other timers
            if not isinstance(e, (DomainError, DBAPIError)):
                log.exception("timer of instance %s failed unexpectedly", instance_id)
            self._record_failure(instance_id, now, e)
            return False

    def _record_failure(self, instance_id: str, now: datetime, error: Exception) -> None:
        log.warning("timer of instance %s failed: %s", instance_id, error)
        metrics.TIMER_FAILURES.inc()
        if isinstance(error, Conflict):
            return  # another request advanced the instance; its timers are re-read next round
        with self.ctx.write() as session:
            for w in session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance_id,
                                                                WaitingEvent.kind == "timer",
                                                                WaitingEvent.due_at < now)):
                w.attempts += 1
                w.last_error = str(error)[:2000]
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
