"""What every use case needs besides its input: the clock, the database's read and write transactions, the
engine workers, and the parsed definitions (for their forms and contracts; the engine runs in the workers)."""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cachetools import LRUCache
from sqlalchemy import Connection, event, or_, select
from sqlalchemy.orm import Session

from service.clock import Clock
from service.config import Settings
from service.engine.calendar import BusinessCalendar
from service.engine.deployment import ModelError, reparse
from service.engine.runtime import ProcessModel
from service.engine.sandbox import EngineFailure, EnginePool, EngineResult, shared_pool
from service.engine.serializer import load_spec
from service.errors import Conflict, InvalidInput, ProcessError, Unavailable

log = logging.getLogger("govflow")
_TIMER_DUE = "govflow_earliest_new_timer"


@dataclass
class AppContext:
    settings: Settings
    clock: Clock
    calendar: BusinessCalendar
    session_factory: Any  # write transactions (BEGIN IMMEDIATE on SQLite)
    read_factory: Any  # read transactions (deferred on SQLite)
    engine: Any
    jwt_secret: str
    sqlite: bool = False
    read_engine: Any = None  # the engine of read transactions (the write engine too, on PostgreSQL)
    # parsed definitions and their files, by definition id: the model_cache_size most recently used (read and
    # changed under _lock: a read changes the order)
    _models: LRUCache[int, ProcessModel] = field(init=False)
    _files: LRUCache[int, dict[str, Any]] = field(init=False)
    # what a list of instances needs of each definition (its message contracts: small), for many more versions
    # than are kept parsed: a page of instances over more versions than _models holds would parse each again
    _messages: LRUCache[int, dict[str, Any]] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _writer: threading.Lock | None = None
    _pool: EnginePool | None = None
    _timer_listeners: list[Callable[[datetime], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._models = LRUCache(self.settings.model_cache_size)
        self._files = LRUCache(self.settings.model_cache_size)
        self._messages = LRUCache(max(4096, self.settings.model_cache_size))
        if self.read_engine is None:
            self.read_engine = self.read_factory.kw.get("bind", self.engine)
        if self.sqlite:
            # one writer at a time inside the process, instead of a pile-up on the database file's lock
            self._writer = threading.Lock()
        from service.services import audit, outbox

        audit.install(self.session_factory)
        outbox.install(self.session_factory)
        event.listen(self.session_factory, "after_commit", self._announce_timers)
        event.listen(self.session_factory, "after_rollback", self._forget_timers)

    # ---- transactions ----------------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read transaction: it never takes the database's write lock."""
        session: Session = self.read_factory()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A connection for a read of one prepared statement (service/db/prepared.py), without an ORM session: the
        session's begin and commit cost more than a small read. No transaction is begun on SQLite (the statement
        reads one snapshot by itself); PostgreSQL's implicit one ends when the connection goes back to the pool."""
        with self.read_engine.connect() as connection:
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed when the block ends. Keep it short: no engine work inside."""
        lock = self._writer
        if lock is not None and not lock.acquire(timeout=self.settings.database_busy_timeout_seconds):
            raise Unavailable("the database is busy; retry shortly")
        try:
            session: Session = self.session_factory()
            try:
                with session.begin():
                    yield session
                    if self.settings.verify_state_storage and session.in_transaction():  # not rolled back
                        _check_candidates(session)
            finally:
                session.close()
        finally:
            if lock is not None:
                lock.release()

    # ---- timers written by a request: the scheduler of this process is told once they are committed ----
    def timer_written(self, session: Session, due_at: datetime) -> None:
        earliest = session.info.get(_TIMER_DUE)
        if earliest is None or due_at < earliest:
            session.info[_TIMER_DUE] = due_at

    @staticmethod
    def pending_timer(session: Session) -> datetime | None:
        """The earliest due time of the timers this transaction wrote (None if it wrote none)."""
        due_at: datetime | None = session.info.get(_TIMER_DUE)
        return due_at

    def on_timer_written(self, listener: Callable[[datetime], None]) -> None:
        self._timer_listeners.append(listener)

    @staticmethod
    def _forget_timers(session: Session) -> None:
        session.info.pop(_TIMER_DUE, None)

    def _announce_timers(self, session: Session) -> None:
        due_at = session.info.pop(_TIMER_DUE, None)
        if due_at is None:
            return
        for listener in list(self._timer_listeners):
            listener(due_at)

    # ---- definitions -------------------------------------------------------------------------------------
    def _cached(self, cache: LRUCache[int, Any], definition_id: int, make: Callable[[], Any]) -> Any:
        """What the cache holds for a definition, else made (outside the lock: parsing takes a while) and kept; a
        value another thread kept meanwhile wins, so every caller gets the same object."""
        with self._lock:
            found = cache.get(definition_id)
        if found is not None:
            return found
        made = make()
        with self._lock:
            cache[definition_id] = found = cache.get(definition_id, made)
        return found

    def model(self, session: Session | Connection, definition_id: int) -> ProcessModel:
        """The parsed spec of a definition version (its forms, contracts, elements): parsed once per process (read
        in a session or on a plain connection: a version's files never change)."""
        def parse() -> ProcessModel:
            files = self.model_files(session, definition_id)
            try:
                spec, subs = reparse(files["key"], files["resource_name"], files["bpmn_xml"], files["dmn_resources"])
            except ModelError as e:
                # a diagram this version of the service no longer accepts: run it as it was parsed when deployed
                log.warning("definition %s: %s; using the spec stored at deployment", files["key"], e.message)
                spec, subs = load_spec(files["spec_json"])
            return ProcessModel(definition_id=definition_id, key=files["key"], spec=spec, subprocess_specs=subs)

        model: ProcessModel = self._cached(self._models, definition_id, parse)
        return model

    def messages(self, session: Session, definition_id: int) -> dict[str, Any]:
        """The message contracts of a definition version (ProcessModel.messages), kept apart from the parsed model."""
        contracts: dict[str, Any] = self._cached(self._messages, definition_id,
                                                 lambda: self.model(session, definition_id).messages)
        return contracts

    def model_files(self, session: Session | Connection, definition_id: int) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            from service.db.models import ProcessDefinition

            row = session.execute(select(
                ProcessDefinition.key, ProcessDefinition.content_hash, ProcessDefinition.resource_name,
                ProcessDefinition.bpmn_xml, ProcessDefinition.dmn_resources, ProcessDefinition.spec_json,
            ).where(ProcessDefinition.id == definition_id)).first()
            if row is None:
                raise KeyError(definition_id)
            return {"key": row.key, "hash": row.content_hash, "resource_name": row.resource_name,
                    "bpmn_xml": row.bpmn_xml, "dmn_resources": row.dmn_resources, "spec_json": row.spec_json}

        files: dict[str, Any] = self._cached(self._files, definition_id, read)
        return files

    def remember(self, model: ProcessModel) -> None:
        with self._lock:
            self._models[model.definition_id] = model

    # ---- the engine --------------------------------------------------------------------------------------
    @property
    def pool(self) -> EnginePool:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    s = self.settings
                    config = {
                        "step_time_limit": s.script_step_time_limit_seconds,
                        "memory_limit_mb": s.engine_memory_limit_mb,
                        "calendar_file": str(s.calendar_file) if s.calendar_file else None,
                        "cache_size": max(16, s.workflow_cache_size),
                        "model_cache_size": s.model_cache_size,
                    }
                    self._pool = shared_pool(s.engine_workers, config, s.engine_command_time_limit_seconds)
        return self._pool

    def close(self) -> None:
        """The engine workers stay for the next app of this process with the same settings (closed at exit)."""
        self._pool = None

    def dispose(self) -> None:
        """Close the context and its database connections (on SQLite the last one to close copies the write-ahead
        log into the database file)."""
        self.close()
        self.engine.dispose()
        if self.read_engine is not None and self.read_engine is not self.engine:
            self.read_engine.dispose()  # SQLite's read-only connections, a pool of their own

    def run_engine(self, op: str, definition_id: int, files: dict[str, Any], *,
                   instance: tuple[str, str | None] | None = None, **arguments: Any) -> tuple[EngineResult, str]:
        """Run one engine command for a definition (and an instance: its id and stored state token).
        Returns the result and the state token to store with it. Engine refusals become domain errors."""
        new_token = uuid.uuid4().hex
        command: dict[str, Any] = {
            "op": op, "now": self.clock.now(), "new_token": new_token,
            "model": {"id": definition_id, "hash": files["hash"], "key": files["key"]}, **arguments,
        }
        load_state = None
        if instance is not None:
            command["instance"] = {"id": instance[0], "token": instance[1]}
            instance_id = instance[0]

            def load_state() -> dict[str, Any]:
                from service.services import state

                with self.read() as session:
                    return state.load(session, instance_id)

        try:
            result = self.pool.run(command, model_files=lambda: files, load_state=load_state)
        except EngineFailure as e:
            raise engine_error(e) from None
        assert isinstance(result, EngineResult)
        return result, new_token


def engine_error(e: EngineFailure) -> Exception:
    if e.kind == "conflict":
        return Conflict(e.message)
    if e.kind == "invalid":
        return InvalidInput(e.message, e.errors, element_id=e.element_id)
    if e.kind in ("engine", "timeout", "memory", "crashed"):
        return ProcessError(e.message, element_id=e.element_id)
    return RuntimeError(f"engine: {e.kind}: {e.message}")


def _check_candidates(session: Session) -> None:
    """Every task_candidate row has its task's status, creation time, due date and whether it is claimed (a
    test-suite setting: a statement that closes, claims or releases a task without services.store.tasks_closed or
    task_claimed would leave the task in the wrong inboxes)."""
    from service.db.models import HumanTask, TaskCandidate

    stale = session.execute(select(TaskCandidate.task_id, TaskCandidate.status, HumanTask.status,
                                   TaskCandidate.claimed, HumanTask.assignee, TaskCandidate.due_at, HumanTask.due_at)
                            .join(HumanTask, HumanTask.id == TaskCandidate.task_id)
                            .where(or_(TaskCandidate.status != HumanTask.status,
                                       TaskCandidate.created_at != HumanTask.created_at,
                                       TaskCandidate.due_at.is_distinct_from(HumanTask.due_at),
                                       TaskCandidate.claimed != HumanTask.assignee.is_not(None))).limit(5)).all()
    if stale:
        raise AssertionError(f"task_candidate rows out of step with their tasks (task, kept, actual): {stale}")
