"""The service's side of the engine workers: a small pool of worker processes (service/engine/worker.py),
each running one command at a time under a hard time limit (the process is killed and replaced when a command
overruns) and a memory cap. Nothing of a diagram's code runs in the service's own process.
"""
from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.engine.runtime import OpenTask, Snapshot, Waiting

log = logging.getLogger("govflow.engine")
_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()
_PRELOAD = ["service.engine.worker"]


def preload(*modules: str) -> None:
    """Modules the fork server imports besides the engine, before it forks the first worker (every worker starts
    with what they load); for the fork server not started yet."""
    with _CONTEXT_LOCK:
        _PRELOAD.extend(m for m in modules if m not in _PRELOAD)


def _mp_context() -> Any:
    """A fork server with the engine preloaded: workers start in milliseconds, from a process without threads."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(_PRELOAD))
            _CONTEXT = context
        return _CONTEXT


class EngineFailure(Exception):
    """A command the engine refused or could not finish. `kind`: engine (the process could not advance),
    conflict (the instance changed), invalid (data that cannot be stored), timeout, memory, crashed,
    internal."""

    def __init__(self, kind: str, message: str, element_id: str | None = None,
                 errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.element_id, self.errors = kind, message, element_id, errors


@dataclass
class EngineResult:
    header: str
    inserts: list[list[Any]]
    updates: list[list[Any]]
    deletes: list[str]
    snapshot: Snapshot
    extra: dict[str, Any] = field(default_factory=dict)
    worker: int = 0  # the worker that holds the workflow now


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _snapshot(d: dict[str, Any]) -> Snapshot:
    return Snapshot(
        status=d["status"], end_event=d["end_event"], variables=d["variables"],
        open_tasks=[OpenTask(**{**t, "due_at": _when(t["due_at"])}) for t in d["open_tasks"]],
        waiting=[Waiting(**{**w, "due_at": _when(w["due_at"])}) for w in d["waiting"]],
    )


class _Worker:
    def __init__(self, pool: EnginePool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.lock = threading.Lock()
        self.process: Any = None
        self.conn: Any = None
        self.progress: Any = None

    def ensure(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        self.close()
        context = _mp_context()
        parent, child = context.Pipe()
        self.progress = context.Array("c", 256, lock=False)
        from service.engine import worker

        self.process = context.Process(target=worker.main, args=(child, self.pool.config, self.progress),
                                       name=f"govflow-engine-{self.index}", daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        self.pool.known.discard_worker(self.index)

    def close(self, kill: bool = False) -> None:
        if self.process is not None:
            if kill or self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.ensure()
        try:
            self.conn.send(command)
            if not self.conn.poll(timeout):
                element = self.progress.value.decode("utf-8", "replace") or None
                log.warning("engine command %s ran past %.1f s (element %s): worker %d replaced", command.get("op"),
                            timeout, element, self.index)
                self.close(kill=True)
                raise EngineFailure("timeout", f"the process's code did not finish within {timeout:g} s", element)
            raw = self.conn.recv_bytes()
        except (EOFError, OSError, BrokenPipeError):
            element = self.progress.value.decode("utf-8", "replace") if self.progress is not None else ""
            self.close(kill=True)
            raise EngineFailure("crashed", "the engine stopped while running the process's code",
                                element or None) from None
        reply: dict[str, Any] = json.loads(raw)
        if not reply.get("ok") and reply.get("error") == "memory":
            self.close(kill=True)
        return reply


class _Known:
    """Which worker holds which instance (at which state token), so commands go where the workflow is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.where: dict[str, tuple[int, str]] = {}
        self.models: dict[int, set[str]] = {}

    def holder(self, instance_id: str | None) -> int | None:
        if instance_id is None:
            return None
        with self.lock:
            found = self.where.get(instance_id)
        return found[0] if found else None

    def has_model(self, index: int, model_hash: str) -> bool:
        with self.lock:
            return model_hash in self.models.get(index, set())

    def note(self, index: int, instance_id: str | None, token: str | None, model_hash: str | None) -> None:
        with self.lock:
            if instance_id is not None:
                if token is None:
                    self.where.pop(instance_id, None)
                else:
                    self.where[instance_id] = (index, token)
                if len(self.where) > 100_000:
                    self.where.clear()
            if model_hash is not None:
                self.models.setdefault(index, set()).add(model_hash)

    def discard_worker(self, index: int) -> None:
        with self.lock:
            self.models.pop(index, None)
            for key in [k for k, (i, _) in self.where.items() if i == index]:
                del self.where[key]


class EnginePool:
    def __init__(self, size: int, config: dict[str, Any], command_time_limit: float) -> None:
        self.config = config
        self.command_time_limit = command_time_limit
        self.known = _Known()
        self.workers = [_Worker(self, i) for i in range(max(1, size))]
        self._next = 0
        self._choose = threading.Lock()
        self._closed = False

    def close(self) -> None:
        self._closed = True
        for w in self.workers:
            with w.lock:
                w.close()

    def _pick(self, instance_id: str | None) -> _Worker:
        held = self.known.holder(instance_id)
        if held is not None:
            return self.workers[held]
        with self._choose:
            for offset in range(len(self.workers)):
                candidate = self.workers[(self._next + offset) % len(self.workers)]
                if not candidate.lock.locked():
                    self._next = (candidate.index + 1) % len(self.workers)
                    return candidate
            candidate = self.workers[self._next]
            self._next = (self._next + 1) % len(self.workers)
            return candidate

    def run(self, command: dict[str, Any], *, model_files: Any, load_state: Any = None,
            timeout: float | None = None, worker: int | None = None) -> EngineResult | dict[str, Any]:
        """Run a command; `model_files()` and `load_state()` are called when the worker needs them. Returns the
        result of a state-changing command, or the plain reply of others (ping, verify)."""
        if self._closed:
            raise EngineFailure("internal", "the engine is shut down")
        instance = command.get("instance")
        instance_id = instance["id"] if instance else command.get("instance_id")
        model_hash = command["model"]["hash"] if "model" in command else None
        chosen = self.workers[worker] if worker is not None else self._pick(instance_id)
        started = time.monotonic()
        with chosen.lock:
            if model_hash is not None and not self.known.has_model(chosen.index, model_hash):
                command = {**command, "model_files": model_files()}
            for _ in range(3):
                reply = chosen.call(command, timeout or self.command_time_limit)
                if reply.get("ok"):
                    break
                error = reply.get("error")
                if error == "need_model":
                    command = {**command, "model_files": model_files()}
                elif error == "need_state" and load_state is not None:
                    command = {**command, "state": load_state()}
                else:
                    if instance_id is not None:
                        self.known.note(chosen.index, instance_id, None, None)
                    raise EngineFailure(str(error), str(reply.get("message")), reply.get("element_id"),
                                        reply.get("errors"))
            else:
                raise EngineFailure("internal", "the engine worker kept asking for data")
            self.known.note(chosen.index, None, None, model_hash)
        log.debug("engine %s in %.1f ms", command["op"], (time.monotonic() - started) * 1000)
        if "snapshot" not in reply:
            return reply
        return EngineResult(header=reply["header"], inserts=reply["inserts"], updates=reply["updates"],
                            deletes=reply["deletes"], snapshot=_snapshot(reply["snapshot"]),
                            extra=reply.get("extra") or {}, worker=chosen.index)

    def committed(self, instance_id: str, token: str | None, worker_hint: int | None = None) -> None:
        """The service stored the state the worker holds under `token` (None: the instance ended or failed)."""
        index = worker_hint if worker_hint is not None else self.known.holder(instance_id)
        if index is not None:
            self.known.note(index, instance_id, token, None)


_SHARED: dict[str, EnginePool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(size: int, config: dict[str, Any], command_time_limit: float) -> EnginePool:
    """One pool per configuration in a process: apps created one after another (tests, a restart in place) reuse
    the running workers and the definitions they parsed. Workers hold workflows under (instance id, state token),
    and definitions under their content hash, so nothing one app left can be mistaken by another."""
    key = json.dumps([size, config, command_time_limit], sort_keys=True, default=str)
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None or pool._closed:
            pool = EnginePool(size, config, command_time_limit)
            _SHARED[key] = pool
        return pool


@atexit.register
def _close_shared() -> None:
    with _SHARED_LOCK:
        for pool in _SHARED.values():
            pool.close()
        _SHARED.clear()
