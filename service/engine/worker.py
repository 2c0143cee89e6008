"""The engine worker: a separate process that runs every step of the engine — and so every piece of diagram
code (conditions, scripts, decision cells, timer and due-date expressions) — under limits that code cannot
escape: the service kills the process when a command runs past its time, and the process's address space is
capped, so a call that holds the interpreter (a huge power) or takes all memory stops here, not in the service.

The service sends a command (pickled: it comes from the service itself); the worker answers in JSON (it does
not trust what ran here with anything the service would execute). A worker keeps the workflows it advanced,
keyed by the state token the service stored with them, and the parsed specs of the definitions it used.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import signal
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from SpiffWorkflow.util.deep_merge import DeepMerge
from SpiffWorkflow.util.task import TaskState

from service.clock import Clock, FrozenClock
from service.engine import operations, tracking
from service.engine.calendar import BusinessCalendar
from service.engine.forms import to_json_value
from service.engine.operations import OperationRefused
from service.engine.runtime import EngineError, ProcessModel, Runtime, Snapshot
from service.engine.serializer import (
    dump_header,
    dump_state,
    dump_task,
    iter_tasks,
    load_parts,
    load_spec,
    workflows,
)
from service.engine.timeline import using_clock
from service.engine.values import RESERVED_KEY, problems

_LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
# commands that only run the engine forward (or only read): their rows are found from the tracked changes
# (service/engine/tracking.py); the others edit finished tasks directly and are diffed by a pass over every task
_TRACKED_OPS = frozenset({"complete", "message", "fire_due", "fire_now", "verify"})
# the holiday tables of the years around now, built once in the fork server that starts the workers (the first use
# of a year costs tenths of a second, which must not count against a diagram step's time limit)
BusinessCalendar.warm(BusinessCalendar(), range(2020, datetime.now().year + 8))


class CommandClock(Clock):
    """The service's time, sent with every command (a worker never reads its own clock)."""

    def __init__(self) -> None:
        self.moment: datetime | None = None

    def now(self) -> datetime:
        if self.moment is None:
            raise RuntimeError("no time was sent with the command")
        return self.moment


class Refused(Exception):
    """A command the worker cannot carry out; sent back as {"ok": false, "error": kind}."""

    def __init__(self, kind: str, message: str, element_id: str | None = None,
                 errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.element_id, self.errors = kind, message, element_id, errors


def _fingerprint(task: Any) -> tuple[Any, ...] | None:
    """What identifies a stored task as unchanged; None for live tasks, which are always rewritten."""
    if task._state & _LIVE:
        return None
    internal = repr(task.internal_data) if task.internal_data else ""
    return task._state, task.last_state_change, tuple([c.int for c in task._children]), internal


class _Held:
    """A workflow as stored: per task row (keyed by the task id's integer: a UUID hashes and compares in Python),
    its fingerprint, row number and id."""

    def __init__(self, workflow: Any, stored: dict[int, tuple[Any, int, str]]) -> None:
        self.workflow = workflow
        self.stored = stored
        self.next_seq = max((seq for _, seq, _ in stored.values()), default=-1) + 1
        self.rewrite_all = False  # every row is written again, in tree order (after a migration)


class _Checked(Exception):
    """A dry run that went through: its report goes back, the changed workflow is dropped."""

    def __init__(self, extra: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.extra = extra


class WorkerEngine:
    def __init__(self, runtime: Runtime, cache_size: int = 128, model_cache_size: int = 64) -> None:
        self.runtime = runtime
        self.clock: CommandClock = runtime.clock  # type: ignore[assignment]
        # parsed definitions by content hash, the least recently used forgotten first
        self.models: LRUCache[str, ProcessModel] = LRUCache(model_cache_size)
        # (instance id, state token) -> the workflow as it is under that token (several tokens of one instance
        # may be held at once: a command whose result was not stored leaves one that is never asked for again)
        self.cache: OrderedDict[tuple[str, str], _Held] = OrderedDict()
        self.cache_size = cache_size
        self.current: _Held | None = None  # the workflow the running command works on

    # ---- dispatch --------------------------------------------------------------------------------------
    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        self.clock.moment = command.get("now")
        try:
            with using_clock(self.clock):  # today() and now() in diagram code read the service's time
                try:
                    return self._handle(command)
                except MemoryError:
                    if not self.cache:
                        raise
                    # the workflows kept for later requests took the room this step needs: let them go and try
                    # once more (an instance not kept any more is restored from the database: "need_state")
                    self.cache.clear()
                    gc.collect()
                    return self._handle(command)
        finally:
            self.clock.moment = None

    def _handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "frozen": gc.get_freeze_count()}
            if op == "check_decisions":
                return {"ok": True, "warnings": self._check_decisions(command["files"])}
            if op == "forget":
                for key in [k for k in self.cache if k[0] == command["instance"]["id"]]:
                    del self.cache[key]
                return {"ok": True}
            model = self._model(command)
            if op == "start":
                workflow = self.runtime.start(model, dict(command["variables"]))
                held = _Held(workflow, {})
                extra: dict[str, Any] = {}
            else:
                held = self._held(command, model)
                if op not in _TRACKED_OPS:
                    for _, wf in workflows(held.workflow):
                        tracking.disarm(wf)  # walked and diffed in full; armed again after the diff
                self.current = held
                extra = getattr(self, "_op_" + op)(held.workflow, command, model)
            return self._answer(command, held, extra)
        except _Checked as e:  # a dry run: nothing is kept (the workflow was taken out of the cache)
            return {"ok": True, "extra": e.extra}
        except (Refused, OperationRefused) as e:
            return {"ok": False, "error": e.kind, "message": e.message, "element_id": e.element_id,
                    "errors": e.errors}
        except EngineError as e:
            self._drop(command)
            if _caused_by_memory(e):
                raise MemoryError() from e
            return {"ok": False, "error": "engine", "message": str(e), "element_id": e.element_id}
        finally:
            self.current = None

    def _drop(self, command: dict[str, Any]) -> None:
        instance = command.get("instance")
        if instance:
            self.cache.pop((instance["id"], instance["token"]), None)

    def _check_decisions(self, files: dict[str, bytes]) -> list[str]:
        from service.engine.decisions import overlaps
        from service.engine.deployment import parse_files

        warnings: list[str] = []
        seen: set[str] = set()
        for parsed in parse_files(files):
            for spec in [parsed.spec, *parsed.subprocess_specs.values()]:
                for task_spec in spec.task_specs.values():
                    engine = getattr(task_spec, "dmnEngine", None)
                    table = getattr(engine, "decision_table", None)
                    if table is None or table.id in seen:
                        continue
                    seen.add(table.id)
                    warnings += overlaps(table, self.runtime.script_engine.environment)
        return warnings

    # ---- models and workflows --------------------------------------------------------------------------
    def _model(self, command: dict[str, Any], ref_key: str = "model", files_key: str = "model_files") -> ProcessModel:
        ref = command[ref_key]
        model = self.models.get(ref["hash"])
        if model is not None:
            return model
        files = command.get(files_key)
        if files is None:
            raise Refused("need_model", "the worker does not know this definition yet")
        from service.engine.deployment import ModelError, reparse

        try:
            spec, subs = reparse(ref["key"], files["resource_name"], files["bpmn_xml"], files["dmn_resources"])
        except ModelError:
            spec, subs = load_spec(files["spec_json"])
        model = ProcessModel(definition_id=ref["id"], key=ref["key"], spec=spec, subprocess_specs=subs)
        self.models[ref["hash"]] = model
        return model

    def _held(self, command: dict[str, Any], model: ProcessModel) -> _Held:
        instance = command["instance"]
        cached = self.cache.pop((instance["id"], instance["token"]), None)
        if cached is not None:
            return cached
        state = command.get("state")
        if state is None:
            raise Refused("need_state", "the worker does not hold this instance's state")
        rows = state["rows"]  # [workflow_id, task_id, seq, body] in creation order
        workflow = load_parts(state["header"], [(r[0], r[1], r[3]) for r in rows], model.spec,
                              model.subprocess_specs, self.runtime.script_engine)
        seqs = {r[1]: r[2] for r in rows}
        stored = {}
        tasks = iter_tasks(workflow)
        for _, task in tasks:
            task_id = str(task.id)
            if task_id in seqs:
                stored[task.id.int] = (_fingerprint(task), seqs[task_id], task_id)
        if len(stored) == len(tasks):  # else (a state stored whole, before task rows) its next diff is a full one
            for _, wf in workflows(workflow):
                tracking.arm(wf)
        return _Held(workflow, stored)

    # ---- operations ------------------------------------------------------------------------------------
    def _op_complete(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        task = self.runtime.find_ready_user_task(workflow, command["task_id"])
        if task is None:
            raise Refused("conflict", "the task is no longer open")
        written = self.runtime.complete(workflow, task, dict(command["data"]))
        return {"written": to_json_value(written)}

    def _op_message(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        catching = self.runtime.waiting_message_elements(workflow, command["name"])
        if not catching:
            raise Refused("conflict", "the process instance no longer waits for this message; try again")
        self.runtime.deliver_message(workflow, command["name"], dict(command["variables"]))
        return {"element_ids": sorted({t.task_spec.bpmn_id for t in catching})}

    def _op_fire_due(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        self.runtime.fire_due_timers(workflow)
        return {}

    def _op_fire_now(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        if not self.runtime.make_timer_due(workflow, command["element_id"]):
            raise Refused("conflict", "the timer is no longer waiting")
        self.runtime.fire_due_timers(workflow)
        return {}

    def _op_cancel(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        self.runtime.cancel(workflow)
        return {}

    def _op_recompute_calendar(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        from uuid import UUID

        changed = self.runtime.recompute_calendar_timers(workflow)
        dues: dict[str, list[Any]] = {}
        for task_id, created_at in command["tasks"]:
            task = workflow.get_task_from_id(UUID(task_id))
            if task is not None:
                # counted again as when the task was created: today() in the expression is that day, not this one
                with using_clock(FrozenClock(created_at)):
                    due, provisional = self.runtime.task_due(task, created_at)
                dues[task_id] = [due.isoformat() if due else None, provisional]
        return {"timers_changed": changed, "task_dues": dues}

    # ---- operating instances (service/engine/operations.py) ------------------------------------------------
    def _op_send_back(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        task = self.runtime.find_ready_user_task(workflow, command["task_id"])
        if task is None:
            raise Refused("conflict", "the task is no longer open")
        extra = operations.send_back(workflow, task, command["to_element_id"])
        self.runtime.advance(workflow)
        return extra

    def _op_withdraw(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        from SpiffWorkflow.camunda.specs.user_task import UserTask

        task = operations.find_task(workflow, command["task_id"])
        if task is None or task.state != TaskState.COMPLETED or not isinstance(task.task_spec, UserTask):
            raise Refused("conflict", "the task is not a completed step of the process instance")
        extra = operations.withdraw(workflow, task)
        self.runtime.advance(workflow)
        return extra

    def _op_modify(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        extra = operations.modify(workflow, list(command["instructions"]))
        self.runtime.advance(workflow)
        operations._check_movable(workflow)
        return extra

    def _op_set_variables(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        return operations.set_variables(workflow, dict(command["variables"]))

    def _op_migrate(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        """Move the instance to another version of its definition (dry_run: only say what would happen)."""
        from uuid import UUID

        from service.engine.serializer import load_state

        target = self._model(command, "target", "target_files")
        report = operations.migrate(workflow, target.spec, target.subprocess_specs, dict(command["mapping"]),
                                    int(command["target"]["version"]), self.clock.now())
        # restored from what will be stored: the workflow is what the next command will load
        moved = load_state(dump_state(workflow), target.spec, target.subprocess_specs, self.runtime.script_engine)
        assert self.current is not None
        self.current.workflow = moved
        self.current.rewrite_all = True
        self.runtime.advance(moved)
        operations._check_movable(moved)
        snap = self.runtime.snapshot(moved, self.clock.now())
        missing: dict[str, str] = {}
        variables = snap.variables
        for f in target.start_form or []:
            if f.required and f.id not in variables and snap.status == "running":
                missing[f.id] = f"required by the start form of version {command['target']['version']}, not set"
        for open_task in snap.open_tasks:
            spec = moved.get_task_from_id(UUID(open_task.id)).task_spec
            for raw in (spec.extensions or {}).get(operations.FORM_KEY) or []:
                if raw.get("readonly") and raw["id"] not in variables and raw.get("default") is None:
                    missing[raw["id"]] = f"shown read-only on '{open_task.element_id}', not set"
        if missing:
            raise Refused("conflict", "variables the new version's forms need are missing", errors=missing)
        dues: dict[str, list[Any]] = {}
        created = command.get("task_created") or {}
        for task_id in report["due_changed"]:
            task = moved.get_task_from_id(UUID(task_id))
            if task is not None and task_id in created:
                due, provisional = self.runtime.task_due(task, created[task_id])
                dues[task_id] = [due.isoformat() if due else None, provisional]
        report["task_dues"] = dues
        if command.get("dry_run"):
            raise _Checked(to_json_value(report))
        return report

    def _op_verify(self, workflow: Any, command: dict[str, Any], model: ProcessModel) -> dict[str, Any]:
        """Restore the state the service stored and compare it with the workflow held here (a test setting)."""
        state = command["stored"]
        restored = load_parts(state["header"], [(r[0], r[1], r[3]) for r in state["rows"]], model.spec,
                              model.subprocess_specs, self.runtime.script_engine)
        if not _same_state(restored, workflow):
            got, want = _unordered(json.loads(dump_state(restored))), _unordered(json.loads(dump_state(workflow)))
            if got != want:  # objects may differ where their dumps do not (a tuple restored as a list)
                raise Refused("internal",
                              f"the stored state does not restore to the workflow: {_differences(got, want)}")
        return {"verified": True}

    # ---- the answer: what changed, and where the instance now stands ---------------------------------
    def _answer(self, command: dict[str, Any], held: _Held, extra: dict[str, Any]) -> dict[str, Any]:
        workflow = held.workflow
        if command["op"] == "verify":
            self._keep(command, held, command["instance"]["token"])
            return {"ok": True, "extra": extra}
        created_at = command["now"]
        snap = self.runtime.snapshot(workflow, created_at)
        tracked = tracking.track_of(workflow) is not None and not held.rewrite_all
        if tracked:
            diff = self._tracked_diff(held, workflow)
        elif held.rewrite_all:  # after a migration: every row written again, the old ones deleted
            previous = [task_id for _, _, task_id in held.stored.values()]
            held.stored, held.next_seq, held.rewrite_all = {}, 0, False
            diff = {**self._diff(held, workflow), "deletes": previous}
        else:
            diff = self._diff(held, workflow)
        if not tracked:
            for _, wf in workflows(workflow):
                tracking.arm(wf)  # after a full pass: the next command's changes are tracked from here
        variables = to_json_value(snap.variables)
        if snap.status == "running":
            self._keep(command, held, command["new_token"])
        else:
            self._drop(command)
        return {"ok": True, "header": dump_header(workflow), **diff, "snapshot": _snapshot_json(snap, variables),
                "extra": extra}

    def _keep(self, command: dict[str, Any], held: _Held, token: str) -> None:
        instance_id = command["instance"]["id"] if command.get("instance") else command["instance_id"]
        self.cache[(instance_id, token)] = held
        self.cache.move_to_end((instance_id, token))
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _diff(self, held: _Held, workflow: Any) -> dict[str, Any]:
        """The task rows to insert, rewrite and delete; a task is stored as its changes against its parent's
        data, so it is rewritten when it changed itself, or when its parent did."""
        stored = held.stored
        next_seq = held.next_seq
        tasks = iter_tasks(workflow)
        changed: set[int] = set()
        current: dict[int, tuple[Any, int, str]] = {}
        for _, task in tasks:
            number = task.id.int
            before = stored.get(number)
            fingerprint = _fingerprint(task)
            if before is None:
                changed.add(number)
                current[number] = (fingerprint, -1, "")
            else:
                if fingerprint is None or fingerprint != before[0]:
                    changed.add(number)
                current[number] = (fingerprint, before[1], before[2])
        inserts: list[list[Any]] = []
        updates: list[list[Any]] = []
        for key, task in tasks:
            number = task.id.int
            parent = task._parent
            if number not in changed and (parent is None or (parent.int in current and parent.int not in changed)):
                continue
            _check_task_data(task)
            body = dump_task(task)
            fingerprint, seq, task_id = current[number]
            if seq < 0:
                task_id = str(task.id)
                current[number] = (fingerprint, next_seq, task_id)
                inserts.append([key, task_id, next_seq, body])
                next_seq += 1
            else:
                updates.append([task_id, body])
        _check_workflow_data(workflow)
        deletes = [task_id for number, (_, _, task_id) in stored.items() if number not in current]
        held.stored = current
        held.next_seq = next_seq
        return {"inserts": inserts, "updates": updates, "deletes": deletes}

    def _tracked_diff(self, held: _Held, workflow: Any) -> dict[str, Any]:
        """_diff from the tasks the journal names (service/engine/tracking.py) and the tasks at work, which are
        always written: the same rows, without a pass over every task of the instance's history."""
        stored = held.stored
        candidates: list[tuple[int, str, Any]] = []
        removed: list[Any] = []
        for index, (key, wf) in enumerate(workflows(workflow)):
            if tracking.track_of(wf) is None:  # a sub-process started by this command: every task is new
                tracking.arm(wf)
                candidates += [(index, key, t) for t in wf.tasks.values()]
                continue
            changed, gone = tracking.take_changes(wf)
            removed += gone
            seen = {id(t) for t in changed}
            candidates += [(index, key, t) for t in changed]
            candidates += [(index, key, t) for t in tracking.unfinished(wf) or ()
                           if t._state & _LIVE and id(t) not in seen]
        rewrite: dict[int, tuple[int, str, Any, Any]] = {}
        for index, key, task in candidates:
            fingerprint = _fingerprint(task)
            before = stored.get(task.id.int)
            if before is None or fingerprint is None or fingerprint != before[0]:
                rewrite[id(task)] = (index, key, task, fingerprint)
        for index, key, task, _ in list(rewrite.values()):
            tasks = task.workflow.tasks
            for child_id in task._children:  # stored as its change against this task's data
                child = tasks.get(child_id)
                if child is not None and id(child) not in rewrite:
                    rewrite[id(child)] = (index, key, child, _fingerprint(child))
        inserts: list[list[Any]] = []
        updates: list[list[Any]] = []
        next_seq = held.next_seq
        for _, key, task, fingerprint in sorted(rewrite.values(), key=lambda r: (r[0], tracking.order(r[2]))):
            _check_task_data(task)
            body = dump_task(task)
            number = task.id.int
            before = stored.get(number)
            if before is None:
                task_id = str(task.id)
                stored[number] = (fingerprint, next_seq, task_id)
                inserts.append([key, task_id, next_seq, body])
                next_seq += 1
            else:
                stored[number] = (fingerprint, before[1], before[2])
                updates.append([before[2], body])
        _check_workflow_data(workflow)
        deletes = []
        for task_id in removed:
            entry = stored.pop(task_id.int, None)
            if entry is not None:
                deletes.append(entry[2])
        held.next_seq = next_seq
        return {"inserts": inserts, "updates": updates, "deletes": deletes}


def _check_task_data(task: Any) -> None:
    found = problems(task.data, python_values=True)
    if found:
        path, reason = next(iter(found.items()))
        raise Refused("invalid", f"the process data cannot be stored: '{path}' {reason}",
                      element_id=task.task_spec.bpmn_id if hasattr(task.task_spec, "bpmn_id") else None,
                      errors=found)


def _check_workflow_data(workflow: Any) -> None:
    found = problems(workflow.data, python_values=True)
    if found:
        path, reason = next(iter(found.items()))
        raise Refused("invalid", f"the process data cannot be stored: '{path}' {reason}", errors=found)


def _caused_by_memory(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _snapshot_json(snap: Snapshot, variables: Any) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "status": snap.status, "end_event": snap.end_event, "variables": variables,
        "open_tasks": [{**t.__dict__, "due_at": when(t.due_at)} for t in snap.open_tasks],
        "waiting": [{**w.__dict__, "due_at": when(w.due_at)} for w in snap.waiting],
    }


def _task_fields(task: Any) -> tuple[Any, ...] | None:
    """Everything the serializer stores of a task, as it stores it: a task's data as its change against its
    parent's (SpiffWorkflow's own rule), the root's whole; None if some data cannot be put as text (then the full
    comparison decides)."""
    parent = task.parent
    if parent is None:
        data: Any = _canonical(task.data)
    else:
        updated = _canonical(DeepMerge.get_updated_keys(parent.data, task.data))
        data = None if updated is None else (updated, sorted(DeepMerge.get_deleted_keys(parent.data, task.data)))
    internal = _canonical(task.internal_data)
    if data is None or internal is None:
        return None
    return (task._parent, task._children, task.last_state_change, task.state, task.task_spec.name, task.triggered,
            internal, data)


def _canonical(value: Any) -> str | None:
    """Data as text that tells apart what == does not but the stored rows do (Decimal('11'), 11 and 11.0; True
    and 1), with keys sorted (a restored task's data may list its keys in another order); None if it cannot."""
    try:
        return json.dumps(value, sort_keys=True, default=_tagged)
    except (TypeError, ValueError, RecursionError):
        return None


def _tagged(value: Any) -> dict[str, Any]:
    """A value JSON does not know, with its type's full name, under the key that stored data may not use (so no
    list or object of the process data reads the same): an object by its attributes (an event kept in a task's
    internal data), anything else by its text (Decimal, date)."""
    attributes = getattr(value, "__dict__", None)
    kind = type(value)
    return {RESERVED_KEY: f"{kind.__module__}.{kind.__qualname__}",
            "value": attributes if isinstance(attributes, dict) else str(value)}


def _same_state(restored: Any, held: Any) -> bool:
    """Whether a workflow restored from the stored rows equals the one held here: the header (workflow data,
    sub-process headers, events) compared as dumped, every task compared field by field without dumping it (a full
    dump of both is most of the cost of this check)."""
    if _unordered(json.loads(dump_header(restored))) != _unordered(json.loads(dump_header(held))):
        return False
    got, want = iter_tasks(restored), iter_tasks(held)
    if len(got) != len(want):
        return False
    held_tasks = {(key, task.id): task for key, task in want}
    for key, task in got:
        other = held_tasks.get((key, task.id))
        if other is None:
            return False
        fields = _task_fields(task)
        if fields is None or fields != _task_fields(other):
            return False
    return True


def _unordered(state: Any) -> Any:
    """A dumped state with the keys a task's data lost against its parent's in a fixed order: the engine lists
    them in the parent's key order, which a restore does not keep (the same deletions either way)."""
    if isinstance(state, dict):
        return {k: (sorted(v) if k == "deletions" and isinstance(v, list) else _unordered(v))
                for k, v in state.items()}
    if isinstance(state, list):
        return [_unordered(v) for v in state]
    return state


def _differences(got: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(got, dict) and isinstance(want, dict):
        found: list[str] = []
        for key in sorted(set(got) | set(want)):
            if got.get(key) != want.get(key):
                found += _differences(got.get(key), want.get(key), f"{path}/{key}")
        return found[:10]
    return [f"{path}: {got!r:.200} != {want!r:.200}"]


# ---- the process ---------------------------------------------------------------------------------------

def _limit_memory(headroom_mb: int) -> None:
    """Cap the address space at what the worker uses now plus the headroom a step may take."""
    if headroom_mb <= 0:
        return
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    current = pages * os.sysconf("SC_PAGE_SIZE")
    limit = current + headroom_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent() -> None:
    """The kernel kills the worker when the process that started it goes (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(conn: Any, config: dict[str, Any], progress: Any) -> None:
    """The worker's loop: one command at a time, until the service closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service, which stops its workers
    _die_with_parent()
    calendar_file = config.get("calendar_file")
    calendar = BusinessCalendar.from_file(Path(calendar_file) if calendar_file else None)
    runtime = Runtime(CommandClock(), calendar, config["step_time_limit"])

    def report(element_id: str) -> None:
        progress.value = element_id.encode("utf-8", "replace")[:250]

    runtime.script_engine.progress = report
    engine = WorkerEngine(runtime, config.get("cache_size", 128), config.get("model_cache_size", 64))
    # the libraries and the runtime live as long as the worker: frozen out of the garbage collector's full
    # collections, which then walk only the cached workflows (measured: 58–66 ms → 32–36 ms each, the rest being the
    # freeing of evicted workflows, whose task trees are cycles)
    gc.freeze()
    _limit_memory(config.get("memory_limit_mb", 0))
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            return
        progress.value = b""
        try:
            reply = engine.handle(command)
            body = json.dumps(reply, separators=(",", ":"), allow_nan=False)
        except MemoryError:
            engine.cache.clear()
            conn.send_bytes(json.dumps({"ok": False, "error": "memory", "element_id": progress.value.decode(
                "utf-8", "replace") or None, "message": "the diagram's code took more memory than allowed"}).encode())
            os._exit(3)  # start afresh: the heap may be fragmented
        except Exception as e:  # noqa: BLE001 - whatever happened, the service gets an answer
            engine.cache.clear()
            body = json.dumps({"ok": False, "error": "internal", "message": f"{type(e).__name__}: {e}"[:2000]})
        conn.send_bytes(body.encode("utf-8"))
