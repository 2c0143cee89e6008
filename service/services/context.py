"""What every use case needs besides the session: clock, engine runtime, parsed-spec cache."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from service.clock import Clock
from service.config import Settings
from service.engine.calendar import BusinessCalendar
from service.engine.runtime import ProcessModel, Runtime
from service.engine.serializer import load_spec


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
        spec, subs = load_spec(row.spec_json)
        model = ProcessModel(definition_id=row.id, key=row.key, spec=spec, subprocess_specs=subs)
        with self._lock:
            self._models.setdefault(definition_id, model)
            return self._models[definition_id]

    def remember(self, model: ProcessModel) -> None:
        with self._lock:
            self._models[model.definition_id] = model
