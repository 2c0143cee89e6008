"""Operating running instances, in the engine worker: send a task back to an earlier step, withdraw a completion,
move tokens (instance modification), set variables, and move an instance to another version of its definition.

Every operation keeps the engine's history: nothing is reset in place. A step that is opened again is a new task
(a new id) hung below the task it replaces, so the records the service keeps of each task stay as they were, and
the task tree only grows, as it does when the process loops.
"""
from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit, BpmnStartTask
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent, EventBasedGateway
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask, MultiInstanceTask
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from service.clock import Clock
from service.engine.parser import FORM_KEY
from service.engine.serializer import SERIALIZER
from service.engine.timeline import using_clock

LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
SEND_BACK_PROPERTY = "sendBackTo"
# names SpiffWorkflow gives the specs it adds around an element: they follow the element's id
_SUFFIXES = (".BoundaryEventSplit", ".BoundaryEventJoin", ".EndJoin", ".StartEventSplit", ".StartEventJoin")
# internal data a timer keeps about its arming (service/engine/timers.py)
_TIMER_KEYS = ("event_value", "event_fired", "govflow_start", "govflow_workdays", "govflow_armed_at")


class OperationRefused(Exception):
    """The operation cannot be carried out on this instance. kind: invalid (422) or conflict (409); `errors` names
    each element or field that stands in the way."""

    def __init__(self, kind: str, message: str, element_id: str | None = None,
                 errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.element_id, self.errors = kind, message, element_id, errors


# ---- looking around a workflow -------------------------------------------------------------------------------

def workflows(top: Any) -> list[Any]:
    return [top, *top.subprocesses.values()]


def element_id(task_spec: Any) -> str:
    return str(getattr(task_spec, "bpmn_id", None) or task_spec.name)


def kind_of(task_spec: Any) -> str:
    """What an element is, in the words of a modeller."""
    if isinstance(task_spec, UserTask):
        return "user task"
    if isinstance(task_spec, EventBasedGateway):
        return "event-based gateway"
    if isinstance(task_spec, UnstructuredJoin):
        return "parallel gateway" if isinstance(task_spec, ParallelGateway) else "inclusive gateway"
    if isinstance(task_spec, SubWorkflowTask):
        return "sub-process"
    if isinstance(task_spec, CatchingEvent):
        definition = getattr(task_spec, "event_definition", None)
        what = "timer" if isinstance(definition, TimerEventDefinition) else (
            "message" if type(definition).__name__.endswith("MessageEventDefinition") else "event")
        return f"{what} {'boundary event' if isinstance(task_spec, BoundaryEvent) else 'catch event'}"
    return type(task_spec).__name__


def live_tasks(top: Any) -> list[Any]:
    return [t for wf in workflows(top) for t in wf.tasks.values() if t.has_state(LIVE)]


def current_data(top: Any) -> dict[str, Any]:
    """The instance's variables as the snapshot reports them: the data of its live tasks, the latest change last."""
    merged: dict[str, Any] = {}
    for task in sorted(live_tasks(top), key=lambda t: t.last_state_change):
        merged.update(task.data)
    return deepcopy(merged)


def find_element(top: Any, element: str) -> tuple[Any, Any] | None:
    """(process spec, task spec) of a BPMN element of the instance's definition (the process or a sub-process)."""
    for process in [top.spec, *top.subprocess_specs.values()]:
        for task_spec in process.task_specs.values():
            if getattr(task_spec, "bpmn_id", None) == element:
                return process, task_spec
    return None


def find_task(top: Any, task_id: str) -> Any:
    """The task with this id, or None (SpiffWorkflow raises for an unknown id)."""
    try:
        return top.get_task_from_id(UUID(task_id))
    except Exception:  # noqa: BLE001 - TaskNotFoundException, or not a UUID at all
        return None


def subtree(top: Any, task: Any) -> list[Any]:
    """A task and everything below it, sub-processes started below it included."""
    found: list[Any] = []
    stack = [task]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current.children)
        sub = top.subprocesses.get(current.id)
        if sub is not None:
            stack.append(sub.task_tree)
    return found


def purge_event_manager(top: Any) -> None:
    """Forget waiting events whose task left the tree or stopped waiting (SpiffWorkflow keeps them after a task
    is removed, and fails on them at the next step)."""
    manager = top.event_manager
    for task_id, task in list(manager.tasks.items()):
        if task.workflow.tasks.get(task_id) is not task or not task.has_state(TaskState.WAITING):
            manager.tasks.pop(task_id, None)


# ---- cancelling and starting ---------------------------------------------------------------------------------

def cancel_activity(task: Any) -> list[Any]:
    """Cancel a live task as an activity: a task with boundary events goes with its boundary events, a sub-process
    with everything inside it. Returns the live tasks that were cancelled (those inside sub-processes included)."""
    top = task.workflow.top_workflow
    targets = [task]
    parent = task.parent
    if parent is not None and isinstance(parent.task_spec, BoundaryEventSplit) \
            and not isinstance(task.task_spec, BoundaryEvent):
        targets = [c for c in parent.children if c.has_state(TaskState.NOT_FINISHED_MASK)]
    cancelled: list[Any] = []
    for target in targets:
        if not target.has_state(TaskState.NOT_FINISHED_MASK):
            continue
        live = [t for t in subtree(top, target) if t.has_state(LIVE)]
        cancelled += live
        target.cancel()
        for t in live:
            _take_back_arrival(t)
    return cancelled


def _take_back_arrival(task: Any) -> None:
    """A token waiting at a parallel or inclusive join that is cancelled leaves the tree: the engine counts a
    join task below a completed step as that branch's arrival, cancelled or not, so a branch taken back (withdrawn,
    sent back past, cancelled) would still let the join fire without it."""
    if isinstance(task.task_spec, UnstructuredJoin) and task.parent is not None \
            and task.workflow.tasks.get(task.id) is task:
        task.workflow._remove_task(task.id)


def start_spec(task_spec: Any) -> Any:
    """The spec a token entering an element starts at: a task with boundary events is entered through the split
    that arms them."""
    if isinstance(task_spec, BoundaryEvent):
        raise OperationRefused("invalid", f"'{element_id(task_spec)}' is a boundary event: it cannot be entered, "
                                          "only its activity can", element_id(task_spec))
    if isinstance(task_spec, BpmnStartTask):
        raise OperationRefused("invalid", "a process cannot be entered before its start")
    if isinstance(task_spec, UnstructuredJoin):
        raise OperationRefused("invalid", f"'{element_id(task_spec)}' is a {kind_of(task_spec)}: a token started "
                                          "there merges with the tokens the gateway already has; start before the "
                                          "steps after it instead", element_id(task_spec))
    return next((i for i in task_spec.inputs if isinstance(i, BoundaryEventSplit)), task_spec)


def start_before(anchor: Any, task_spec: Any, data: dict[str, Any]) -> Any:
    """Put a token on an element, as a new task below `anchor` (a task of the same workflow), carrying `data`
    (not the anchor's data). The engine's next steps run it like any task that became ready."""
    spec = start_spec(task_spec)
    child = anchor._add_child(spec, TaskState.FUTURE)
    child.data = deepcopy(data)
    child._inherit_data = lambda: None  # the token carries the given data, not its anchor's
    try:
        spec._predict(child, mask=TaskState.PREDICTED_MASK | TaskState.FUTURE)
        spec._update(child)
    except SpiffWorkflowException as e:  # e.g. a multi-instance task whose item variable the data already has
        raise OperationRefused("invalid", f"'{element_id(task_spec)}' cannot be entered with the instance's data: "
                                          f"{getattr(e, 'message', None) or e}", element_id(task_spec)) from None
    finally:
        del child._inherit_data
    return child


def _scope(top: Any, process: Any) -> list[Any]:
    """The running (sub-)workflows of a process spec."""
    if process is top.spec:
        return [top]
    return [sub for sub in top.subprocesses.values() if sub.spec is process and not sub.completed]


def _ended_scopes(top: Any) -> list[str]:
    """Sub-processes left with nothing to do (every token inside cancelled): they could never finish."""
    stuck = []
    for sub_id, sub in top.subprocesses.items():
        owner = top.get_task_from_id(sub_id)
        if owner is None or owner.state != TaskState.STARTED or sub.completed:
            continue
        if not any(t.has_state(LIVE | TaskState.FUTURE) for t in sub.tasks.values()):
            stuck.append(element_id(owner.task_spec))
    return stuck


def _check_movable(top: Any) -> None:
    stuck = _ended_scopes(top)
    if stuck:
        raise OperationRefused("invalid", f"nothing would be left to do inside sub-process '{stuck[0]}', so it could "
                                          "never finish: cancel the sub-process itself", stuck[0])
    if not top.is_completed() and not live_tasks(top):
        raise OperationRefused("invalid", "nothing would be active in the process instance afterwards: start a token "
                                          "somewhere, or cancel the instance")


# ---- send back -------------------------------------------------------------------------------------------

def send_back_targets(task_spec: Any) -> list[str]:
    raw = (getattr(task_spec, "extensions", None) or {}).get(SEND_BACK_PROPERTY) or ""
    return [v.strip() for v in str(raw).split(",") if v.strip()]


def _containing(top: Any, task: Any, process: Any) -> Any:
    """The task of the (sub-)workflow of `process` that holds `task`: the task itself, or the sub-process it is in."""
    inner = task
    while inner.workflow.spec is not process:
        parent_id = inner.workflow.parent_task_id
        if parent_id is None:
            return None
        inner = top.get_task_from_id(parent_id)
    return inner


def send_back(top: Any, task: Any, target: str) -> dict[str, Any]:
    """Return the instance from an open user task to an earlier step the diagram allows: every step that followed
    that step's last completion (the task sent back; other branches after a split) is cancelled, and the step
    opens again as a new task, with the instance's data as it is now."""
    if target not in send_back_targets(task.task_spec):
        raise OperationRefused("invalid", f"'{element_id(task.task_spec)}' cannot be sent back to '{target}'", target)
    found = find_element(top, target)
    if found is None or not isinstance(found[1], UserTask):
        raise OperationRefused("invalid", f"the step '{target}' is not a user task of this definition", target)
    process, target_spec = found
    inner = _containing(top, task, process)
    if inner is None:
        raise OperationRefused("invalid", f"the step '{target}' lies inside a sub-process that is not active", target)
    data = deepcopy(task.data)
    loop = task.parent.task_spec if task.parent is not None else None
    if isinstance(loop, MultiInstanceTask):  # an instance's item is not the process's: entering it again needs it unset
        for item in (loop.input_item, loop.output_item):
            data.pop(getattr(item, "bpmn_id", None), None)
    previous = inner.parent
    while previous is not None and previous.task_spec is not target_spec:
        previous = previous.parent
    cancelled: list[Any] = []
    if previous is not None:
        for t in subtree(top, previous):
            if t.workflow is inner.workflow and t.has_state(LIVE):
                cancelled += cancel_activity(t)
    # an instance of a multi-instance task leaves the tree when its loop is cancelled: hang the step below the loop
    while inner.workflow.tasks.get(inner.id) is not inner and inner.parent is not None:
        inner = inner.parent
    if inner.has_state(TaskState.NOT_FINISHED_MASK):
        cancelled += cancel_activity(inner)
    reopened = start_before(inner, target_spec, data)
    purge_event_manager(top)
    return {"cancelled": _ids(cancelled), "reopened_spiff_task": str(reopened.id)}


# ---- withdraw --------------------------------------------------------------------------------------------

def _significant(task: Any) -> bool:
    """A step whose completion moved the instance on: a person's decision or a fact reported (message, time)."""
    spec = task.task_spec
    return isinstance(spec, UserTask) or (isinstance(spec, CatchingEvent) and not isinstance(spec, StartEvent))


def withdraw(top: Any, task: Any) -> dict[str, Any]:
    """Take back a completed user task while what it led to has not moved on: everything that followed it is
    cancelled and the task opens again, as a new task with the data it had before it was completed."""
    if top.is_completed():
        raise OperationRefused("conflict", "the process instance has ended")
    below = [t for t in subtree(top, task) if t is not task]
    for t in below:
        if t.state == TaskState.COMPLETED and _significant(t):
            raise OperationRefused("conflict", f"the next step '{element_id(t.task_spec)}' has already completed",
                                   element_id(t.task_spec))
    live = [t for t in below if t.has_state(LIVE)]
    if not live:
        raise OperationRefused("conflict", "nothing that this task led to is still open")
    data = deepcopy(task.parent.data) if task.parent is not None else {}
    cancelled: list[Any] = []
    for t in live:
        if t.has_state(LIVE):
            cancelled += cancel_activity(t)
    reopened = start_before(task, task.task_spec, data)
    purge_event_manager(top)
    return {"cancelled": _ids(cancelled), "reopened_spiff_task": str(reopened.id)}


# ---- modify ------------------------------------------------------------------------------------------------

def modify(top: Any, instructions: list[dict[str, Any]]) -> dict[str, Any]:
    """Camunda's instance modification: instructions in order, each `cancel` (an element's live tokens, or one
    task) or `start_before` (a new token on an element, carrying the instance's variables as they were before the
    first instruction)."""
    data = current_data(top)
    anchors: dict[int, Any] = {}
    cancelled: list[Any] = []
    started: list[Any] = []
    for number, instruction in enumerate(instructions, start=1):
        kind = instruction.get("type")
        if kind == "cancel":
            targets = _live_for(top, instruction, number)
            for t in targets:
                if t.has_state(LIVE):
                    cancelled += cancel_activity(t)
                    # a join token left the tree: what follows hangs below the step it came from
                    anchors[id(t.workflow)] = t if t.workflow.tasks.get(t.id) is t else t.parent
        elif kind == "start_before":
            element = instruction.get("element_id") or ""
            found = find_element(top, element)
            if found is None:
                raise OperationRefused("invalid", f"instruction {number}: the definition has no element '{element}'",
                                       element, {f"instructions[{number - 1}].element_id": "no such element"})
            process, task_spec = found
            scopes = _scope(top, process)
            if len(scopes) != 1:
                where = "is not active" if not scopes else "is active more than once"
                raise OperationRefused("invalid", f"instruction {number}: '{element}' lies inside sub-process "
                                                  f"'{process.name}', which {where}", element)
            wf = scopes[0]
            anchor = anchors.get(id(wf)) or wf.task_tree
            started.append(start_before(anchor, task_spec, data))
        else:
            raise OperationRefused("invalid", f"instruction {number}: unknown type {kind!r}",
                                   errors={f"instructions[{number - 1}].type": "cancel or start_before"})
    purge_event_manager(top)
    return {"cancelled": _ids(cancelled), "started": [element_id(t.task_spec) for t in started]}


def _live_for(top: Any, instruction: dict[str, Any], number: int) -> list[Any]:
    task_id = instruction.get("task_id")
    if task_id:
        task = find_task(top, str(task_id))
        if task is None or not task.has_state(LIVE):
            raise OperationRefused("invalid", f"instruction {number}: no active task '{task_id}'",
                                   errors={f"instructions[{number - 1}].task_id": "not an active task"})
        return [task]
    element = instruction.get("element_id") or ""
    found = [t for t in live_tasks(top) if element_id(t.task_spec) == element]
    if not found:
        # a catch event after an event-based gateway waits as its gateway
        found = [t for t in live_tasks(top) if isinstance(t.task_spec, EventBasedGateway)
                 and any(element_id(o) == element for o in t.task_spec.outputs)]
    if not found:
        raise OperationRefused("invalid", f"instruction {number}: nothing is active at '{element}'", element,
                               {f"instructions[{number - 1}].element_id": "no active token here"})
    return found


def set_variables(top: Any, variables: dict[str, Any]) -> dict[str, Any]:
    """Set process variables: every live task carries them on."""
    live = live_tasks(top)
    if not live:
        raise OperationRefused("conflict", "nothing is active in the process instance")
    for task in live:
        task.data.update(deepcopy(variables))
    return {"names": sorted(variables)}


def _ids(tasks: list[Any]) -> list[str]:
    return sorted({str(t.id) for t in tasks})


# ---- migration to another version --------------------------------------------------------------------------

class _FixedClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@dataclass
class MigrationPlan:
    """How each (sub-)workflow and task of an instance maps onto the target version."""

    specs: dict[int, Any] = field(default_factory=dict)  # id(workflow) -> target process spec
    tasks: dict[UUID, Any] = field(default_factory=dict)  # task id -> target task spec (None: not in the target)
    drop_subprocesses: list[UUID] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def _target_name(name: str, mapping: dict[str, str]) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return mapping.get(base, base) + suffix
    return mapping.get(name, name)


def _definition_signature(task_spec: Any) -> Any:
    definition = getattr(task_spec, "event_definition", None)
    if definition is None:
        return None
    converted = SERIALIZER.registry.convert(definition)
    calendar = (getattr(task_spec, "extensions", None) or {}).get("calendar")
    return json.dumps([converted, calendar], sort_keys=True, default=str)


def _is_timer_task(task_spec: Any) -> bool:
    definition = getattr(task_spec, "event_definition", None)
    inner = getattr(definition, "event_definitions", None) or ([definition] if definition is not None else [])
    return any(isinstance(d, TimerEventDefinition) for d in inner)


_COMPARED = {  # what a person sees of a user task, by the name the report gives it
    "name": lambda s: s.bpmn_name,
    "documentation": lambda s: s.documentation,
    "lane": lambda s: s.lane,
    "form": lambda s: (s.extensions or {}).get(FORM_KEY),
    "candidate_groups": lambda s: (s.extensions or {}).get("camunda:candidateGroups"),
    "candidate_users": lambda s: (s.extensions or {}).get("camunda:candidateUsers"),
    "assignee": lambda s: (s.extensions or {}).get("camunda:assignee"),
    "due_date": lambda s: ((s.extensions or {}).get("camunda:dueDate"), (s.extensions or {}).get("calendar")),
}


def plan_migration(top: Any, target_spec: Any, target_subs: dict[str, Any], mapping: dict[str, str],
                   version: int) -> MigrationPlan:
    """Align every task of the instance with the target version; live tasks that cannot be aligned are reasons
    the instance cannot move."""
    plan = MigrationPlan()
    plan.specs[id(top)] = target_spec
    pending = dict(top.subprocesses)
    # sub-processes after the workflow holding them: resolve in rounds
    for _ in range(len(pending) + 1):
        for sub_id, sub in list(pending.items()):
            owner = top.get_task_from_id(sub_id)
            owner_target = plan.specs.get(id(owner.workflow)) if owner is not None else None
            if owner is not None and id(owner.workflow) not in plan.specs:
                continue
            del pending[sub_id]
            new_owner = owner_target.task_specs.get(_target_name(owner.task_spec.name, mapping)) \
                if owner_target is not None else None
            new_spec = target_subs.get(new_owner.spec) if isinstance(new_owner, SubWorkflowTask) else None
            if new_spec is None:
                if owner is not None and owner.has_state(LIVE):
                    plan.reasons[element_id(owner.task_spec)] = (
                        f"the active sub-process '{element_id(owner.task_spec)}' has no counterpart in version "
                        f"{version}")
                plan.drop_subprocesses.append(sub_id)
            else:
                plan.specs[id(sub)] = new_spec
    dropped = set(plan.drop_subprocesses)
    for wf in workflows(top):
        if wf is not top and wf.parent_task_id in dropped:
            continue
        process = plan.specs.get(id(wf))
        for task in wf.tasks.values():
            new = process.task_specs.get(_target_name(task.task_spec.name, mapping)) if process is not None else None
            plan.tasks[task.id] = new
            if not task.has_state(LIVE):
                continue
            old_id = element_id(task.task_spec)
            if new is None:
                hint = "" if old_id in mapping else f"; map it to an element of version {version}"
                plan.reasons[old_id] = (f"the active {kind_of(task.task_spec)} '{old_id}' is not in version "
                                        f"{version}{hint}")
            elif type(new) is not type(task.task_spec):
                plan.reasons[old_id] = (f"the active {kind_of(task.task_spec)} '{old_id}' would become a "
                                        f"{kind_of(new)} ('{element_id(new)}') in version {version}")
            elif isinstance(new, CatchingEvent) and _is_timer_task(new) != _is_timer_task(task.task_spec):
                plan.reasons[old_id] = (f"the active {kind_of(task.task_spec)} '{old_id}' waits for something "
                                        f"else in version {version} ({kind_of(new)})")
    return plan


def migrate(top: Any, target_spec: Any, target_subs: dict[str, Any], mapping: dict[str, str], version: int,
            now: datetime) -> dict[str, Any]:
    """Move the workflow onto the target version's specs in place: live tasks keep their ids, state, data and
    timers; predicted tasks are predicted again from the new diagram; finished tasks of elements the new version
    lacks leave the engine's tree (their records and audit events stay in the service). Raises OperationRefused
    (with every reason) when a live element has no counterpart; the workflow is then untouched."""
    plan = plan_migration(top, target_spec, target_subs, mapping, version)
    if plan.reasons:
        raise OperationRefused("conflict", f"the instance cannot move to version {version}", errors=plan.reasons)
    before_live = {t.id: (element_id(t.task_spec), t.task_spec) for t in live_tasks(top)}
    timer_signatures = {t.id: _definition_signature(t.task_spec) for t in live_tasks(top)
                        if _is_timer_task(t.task_spec)}

    # drop sub-processes the target has no place for (finished ones: live ones were refused above)
    for sub_id in plan.drop_subprocesses:
        if sub_id in top.subprocesses:
            top.delete_subprocess(top.get_task_from_id(sub_id) or _Stub(sub_id))
    # drop predicted tasks everywhere: they are predicted again from the new diagram
    for wf in workflows(top):
        for task in list(wf.tasks.values()):
            if task.id in wf.tasks and task.has_state(TaskState.PREDICTED_MASK | TaskState.FUTURE) \
                    and task.parent is not None:
                wf._remove_task(task.id)
    # the new specs
    top.spec = target_spec
    top.subprocess_specs = dict(target_subs)
    for wf in workflows(top):
        if wf is not top:
            wf.spec = plan.specs[id(wf)]
    spliced = 0
    for wf in workflows(top):
        for task in list(wf.tasks.values()):
            new = plan.tasks.get(task.id)
            if new is not None:
                task.task_spec = new
            elif task.parent is not None:
                _splice(wf, task)
                spliced += 1
    # tasks that gained boundary events in the new version are entered through their split, which arms them
    armed: list[str] = []
    with using_clock(_FixedClock(now)):
        for wf in workflows(top):
            for task in [t for t in wf.tasks.values() if t.has_state(LIVE)]:
                armed += _ensure_split(wf, task)
        recomputed = _rearm_changed_timers(top, timer_signatures, now)
        for wf in workflows(top):
            for task in [t for t in wf.tasks.values() if t.has_state(LIVE)]:
                task.task_spec._predict(task, mask=TaskState.NOT_FINISHED_MASK)
    for wf in workflows(top):
        if wf.last_task is not None and wf.last_task.id not in wf.tasks:
            wf.last_task = None
        _reorder(wf)
    purge_event_manager(top)
    changes = []
    for task_id, (old_id, old_spec) in before_live.items():
        task = top.get_task_from_id(task_id)
        if task is None:
            continue
        new_spec = task.task_spec
        changed = [name for name, read in _COMPARED.items()
                   if isinstance(new_spec, UserTask) and read(old_spec) != read(new_spec)]
        if element_id(new_spec) != old_id:
            changed.insert(0, "element_id")
        if _definition_signature(old_spec) != _definition_signature(new_spec):
            changed.append("event")
        if changed:
            changes.append({"element_id": old_id, "new_element_id": element_id(new_spec),
                            "kind": kind_of(new_spec), "spiff_task_id": str(task_id), "changed": changed})
    return {"changes": changes, "armed": armed, "recomputed_timers": recomputed, "history_removed": spliced,
            "due_changed": [c["spiff_task_id"] for c in changes if "due_date" in c["changed"]]}


class _Stub:
    def __init__(self, task_id: UUID) -> None:
        self.id = task_id


def _splice(wf: Any, task: Any) -> None:
    """Take a finished task out of the tree; its children take its place below its parent."""
    parent = task.parent
    position = parent._children.index(task.id)
    parent._children[position:position + 1] = list(task._children)
    for child in task.children:
        if child is not None:
            child._parent = parent.id
    wf.tasks.pop(task.id, None)
    if wf.last_task is task:
        wf.last_task = parent


def _ensure_split(wf: Any, task: Any) -> list[str]:
    """A live task whose element has boundary events in the new version, but was entered without them."""
    if isinstance(task.task_spec, BoundaryEvent):
        return []
    split_spec = next((i for i in task.task_spec.inputs if isinstance(i, BoundaryEventSplit)), None)
    parent = task.parent
    if split_spec is None or parent is None:
        return []
    armed: list[str] = []
    if parent.task_spec is not split_spec:
        split = Task(wf, split_spec, parent, state=TaskState.COMPLETED)
        parent._children.remove(split.id)
        parent._children[parent._children.index(task.id)] = split.id
        split._children = [task.id]
        task._parent = split.id
        split.data = deepcopy(task.data)
        split.last_state_change = task.last_state_change
        parent = split
    present = {c.task_spec for c in parent.children}
    for spec in split_spec.outputs:
        if spec in present or not isinstance(spec, BoundaryEvent):
            continue
        event = parent._add_child(spec, TaskState.WAITING)
        spec._predict(event, mask=TaskState.WAITING | TaskState.FUTURE | TaskState.PREDICTED_MASK)
        spec._update(event)
        armed.append(element_id(spec))
    return armed


def _rearm_changed_timers(top: Any, before: dict[UUID, Any], now: datetime) -> list[dict[str, Any]]:
    """Waiting timers whose definition changed are armed again from the moment they were armed first; the others
    keep their due times."""
    from service.engine.runtime import _due

    report = []
    for task_id, signature in before.items():
        task = top.get_task_from_id(task_id)
        if task is None or task.state != TaskState.WAITING or _definition_signature(task.task_spec) == signature:
            continue
        definition = task.task_spec.event_definition
        inner = getattr(definition, "event_definitions", None) or [definition]
        timer = next((d for d in inner if isinstance(d, TimerEventDefinition)), None)
        before_due = _due(task, timer) if timer is not None else None
        armed_at = task.internal_data.get("govflow_armed_at") or task.internal_data.get("govflow_start")
        start = datetime.fromisoformat(armed_at) if armed_at else now
        for key in _TIMER_KEYS:
            task.internal_data.pop(key, None)
        with using_clock(_FixedClock(start)):
            for d in inner:
                if isinstance(d, TimerEventDefinition):
                    d.has_fired(task) if not hasattr(d, "cycle_complete") else d.cycle_complete(task)
        task.internal_data["govflow_armed_at"] = start.isoformat()
        after_due = _due(task, timer) if timer is not None else None
        report.append({"element_id": element_id(task.task_spec), "spiff_task_id": str(task_id),
                       "due_at_before": before_due.isoformat() if before_due else None,
                       "due_at": after_due.isoformat() if after_due else None})
    return report


def _reorder(wf: Any) -> None:
    """Tasks in tree order (a parent before its children), as they are stored and restored."""
    ordered: dict[UUID, Any] = {}
    stack = [wf.task_tree]
    while stack:
        task = stack.pop()
        if task is None or task.id in ordered:
            continue
        ordered[task.id] = task
        stack.extend(reversed(task.children))
    for task_id, task in wf.tasks.items():  # nothing should be left over; keep it rather than lose it
        ordered.setdefault(task_id, task)
    wf.tasks = ordered


# ---- checked at deployment ---------------------------------------------------------------------------------

def send_back_problems(spec: Any, subprocess_specs: dict[str, Any]) -> list[tuple[str, str]]:
    """(element, problem) for each `sendBackTo` property that does not name an earlier user task of the process:
    a user task from which the flow leads to the task that names it."""
    processes = [spec, *subprocess_specs.values()]
    user_tasks = {t.bpmn_id: t for p in processes for t in p.task_specs.values()
                  if isinstance(t, UserTask) and getattr(t, "bpmn_id", None)}
    owners: dict[str, list[Any]] = {}  # sub-process spec name -> the tasks that run it
    for p in processes:
        for t in p.task_specs.values():
            if isinstance(t, SubWorkflowTask):
                owners.setdefault(t.spec, []).append(t)
    problems: list[tuple[str, str]] = []
    for task in user_tasks.values():
        for target in send_back_targets(task):
            if target == task.bpmn_id:
                problems.append((task.bpmn_id, f"{SEND_BACK_PROPERTY}: a task cannot be sent back to itself"))
            elif target not in user_tasks:
                problems.append((task.bpmn_id, f"{SEND_BACK_PROPERTY}: '{target}' is not a user task of the process"))
            elif task not in _reachable(user_tasks[target], subprocess_specs, owners):
                problems.append((task.bpmn_id, f"{SEND_BACK_PROPERTY}: '{target}' is not an earlier step: no flow "
                                               f"leads from it to '{task.bpmn_id}'"))
    return problems


def _reachable(start: Any, subprocess_specs: dict[str, Any], owners: dict[str, list[Any]]) -> set[Any]:
    """Every spec the flow can reach from `start`, into sub-processes and out of them again."""
    seen: set[Any] = set()
    stack = [start]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(current.outputs)
        if isinstance(current, LoopTask):  # a multi-instance or loop task runs its instances as a spec of their own
            inner = current._wf_spec.task_specs.get(current.task_spec)
            if inner is not None:
                stack.append(inner)
        if isinstance(current, SubWorkflowTask) and current.spec in subprocess_specs:
            stack.append(subprocess_specs[current.spec].start)
        if current.name == "End" and not current.outputs:  # the end of a sub-process: on after it
            stack.extend(owners.get(current._wf_spec.name, []))
    return seen
