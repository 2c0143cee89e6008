"""What every use case needs besides the session: clock, engine runtime, parsed-spec cache."""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from service.clock import Clock
from service.config import Settings
from service.engine.calendar import BusinessCalendar
from service.engine.deployment import ModelError, reparse
from service.engine.runtime import ProcessModel, Runtime
from service.engine.serializer import load_spec

log = logging.getLogger("govflow")

_PENDING = "govflow_workflows_to_keep"
_TIMER_DUE = "govflow_earliest_new_timer"


@dataclass
class AppContext:
    settings: Settings
    clock: Clock
    runtime: Runtime
    session_factory: Any
    engine: Any
    jwt_secret: str
    _models: dict[int, ProcessModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workflows: OrderedDict[str, tuple[int, Any]] = field(default_factory=OrderedDict)
    _timer_listeners: list[Callable[[datetime], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.session_factory, "after_commit", self._keep_committed)
        event.listen(self.session_factory, "after_commit", self._announce_timers)
        event.listen(self.session_factory, "after_rollback", self._forget_pending)

    @staticmethod
    def _forget_pending(session: Session) -> None:
        session.info.pop(_PENDING, None)
        session.info.pop(_TIMER_DUE, None)

    # ---- timers written by a request: the scheduler of this process is told once they are committed ----
    def timer_written(self, session: Session, due_at: datetime) -> None:
        earliest = session.info.get(_TIMER_DUE)
        if earliest is None or due_at < earliest:
            session.info[_TIMER_DUE] = due_at

    def on_timer_written(self, listener: Callable[[datetime], None]) -> None:
        self._timer_listeners.append(listener)

    def _announce_timers(self, session: Session) -> None:
        due_at = session.info.pop(_TIMER_DUE, None)
        if due_at is None:
            return
        for listener in list(self._timer_listeners):
            listener(due_at)

    @property
    def calendar(self) -> BusinessCalendar:
        return self.runtime.calendar

    def model(self, session: Session, definition_id: int) -> ProcessModel:
        """The parsed spec of a definition version: restored once per process, never per request."""
        model = self._models.get(definition_id)
        if model is not None:
            return model
        from service.db.models import ProcessDefinition

        row = session.get(ProcessDefinition, definition_id)
        if row is None:
            raise KeyError(definition_id)
        try:
            spec, subs = reparse(row.key, row.resource_name, row.bpmn_xml, row.dmn_resources)
        except ModelError as e:
            # a diagram this version of the service no longer accepts: run it as it was parsed when deployed
            log.warning("definition %s version %s: %s; using the spec stored at deployment", row.key, row.version,
                        e.message)
            spec, subs = load_spec(row.spec_json)
        model = ProcessModel(definition_id=row.id, key=row.key, spec=spec, subprocess_specs=subs)
        with self._lock:
            self._models.setdefault(definition_id, model)
            return self._models[definition_id]

    # ---- restored workflows, kept between requests ----------------------------------------------
    # Restoring a long instance costs as much as storing it; a worker that handled the last change of
    # an instance keeps the workflow object and skips the restore when the stored version still matches.
    def workflow(self, instance: Any, model: ProcessModel) -> Any:
        with self._lock:
            cached = self._workflows.pop(instance.id, None)
        if cached is not None and cached[0] == instance.version:
            return cached[1]
        from sqlalchemy.orm import object_session

        from service.services import state

        session = object_session(instance)
        if session is None:
            raise RuntimeError("an instance's workflow is read within its session")
        return state.read(session, instance, model, self.runtime)

    def keep_after_commit(self, session: Session, instance_id: str, version: int, workflow: Any) -> None:
        session.info.setdefault(_PENDING, {})[instance_id] = (version, workflow)

    def _keep_committed(self, session: Session) -> None:
        pending = session.info.pop(_PENDING, None)
        size = self.settings.workflow_cache_size
        if not pending or size <= 0:
            return
        with self._lock:
            for instance_id, entry in pending.items():
                self._workflows[instance_id] = entry
                self._workflows.move_to_end(instance_id)
            while len(self._workflows) > size:
                self._workflows.popitem(last=False)

    def remember(self, model: ProcessModel) -> None:
        with self._lock:
            self._models[model.definition_id] = model
