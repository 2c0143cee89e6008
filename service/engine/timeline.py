"""Routes SpiffWorkflow's notion of "now" through the service's Clock.

SpiffWorkflow's timer module calls ``datetime.now(timezone.utc)`` itself. We replace the module's
``datetime`` name once with a subclass whose ``now`` asks the clock bound to the current thread or
context, so every engine run sees the clock of the app that runs it (tests inject a FrozenClock).
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import UTC, datetime

import SpiffWorkflow.bpmn.specs.event_definitions.timer as spiff_timer

from service.clock import Clock

_current: contextvars.ContextVar[Clock | None] = contextvars.ContextVar("govflow_clock", default=None)


def current_now() -> datetime:
    """The time of the clock bound to the running engine step (the wall clock outside one)."""
    clock = _current.get()
    return clock.now() if clock is not None else datetime.now(UTC)


class _ClockDatetime(datetime):
    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        clock = _current.get()
        moment = clock.now() if clock is not None else datetime.now(UTC)
        return moment if tz is None else moment.astimezone(tz)


spiff_timer.datetime = _ClockDatetime  # type: ignore[misc]


@contextlib.contextmanager
def using_clock(clock: Clock) -> Iterator[None]:
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)
