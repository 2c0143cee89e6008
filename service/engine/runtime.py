"""Running workflows: start, complete a user task, deliver a message, fire timers — and a snapshot of
what the instance now waits for (people, messages, time), which the service projects into tables."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent, EndEvent, EventBasedGateway
from SpiffWorkflow.bpmn.specs.event_definitions import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.unstructured_join import UnstructuredJoin
from SpiffWorkflow.bpmn.util.task import BpmnTaskFilter, BpmnTaskIterator
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.exceptions import SpiffWorkflowException, WorkflowException
from SpiffWorkflow.util.deep_merge import DeepMerge
from SpiffWorkflow.util.task import TaskFilter, TaskIterator, TaskState
from SpiffWorkflow.workflow import Workflow

from service.clock import Clock
from service.engine import tracking
from service.engine.calendar import BusinessCalendar
from service.engine.contracts import MessageContract, message_contracts
from service.engine.forms import FormField, schema_for_api
from service.engine.messages import GovflowMessageEventDefinition
from service.engine.parser import FORM_KEY, OUTPUTS_KEY
from service.engine.scripting import ScriptError, make_script_engine
from service.engine.serializer import dump_state, load_parts, load_state, workflows
from service.engine.timeline import using_clock
from service.engine.timers import CALENDAR_PROPERTY, WORKDAY_CALENDAR, TimingError, due_at

# SpiffWorkflow's task iterators stop descending at depth 1000: after ~250 rounds of a rework loop
# the engine no longer sees the open tasks and reports the workflow completed. Lifecycles that loop
# for years need more; the iterators are not recursive, so a deeper limit costs nothing.
_MAX_TREE_DEPTH = 1_000_000
for _iterator in (TaskIterator, BpmnTaskIterator):
    _defaults = list(_iterator.__init__.__defaults__ or ())
    _defaults[1] = _MAX_TREE_DEPTH  # (end_at_spec, max_depth, ...)
    _iterator.__init__.__defaults__ = tuple(_defaults)  # type: ignore[attr-defined]

_FINISHED = TaskState.FINISHED_MASK
_UNFINISHED = TaskState.NOT_FINISHED_MASK
_walk_bpmn = BpmnTaskIterator._next
_walk = TaskIterator._next


def _push_children(stack: list[Any], task: Any) -> None:
    """A task's children onto a walk's stack, kept reversed: the first child is taken next."""
    get = task.workflow.tasks.get
    stack.extend([get(c) for c in reversed(task._children)])


def _next_bpmn(self: Any) -> Any:
    """BpmnTaskIterator._next, the same tasks in the same order, without its per-task list copies (a pop from
    the front and the children prepended: O(width) per task) and its depth bookkeeping (a walk up the ancestors
    at every leaf: O(depth)), which only served a depth limit these iterators no longer have. The engine walks
    the whole task tree several times per step, and a looping instance's tree grows with every round."""
    if not self.depth_first or self.max_depth < _MAX_TREE_DEPTH:
        return _walk_bpmn(self)
    stack = self.task_list  # kept reversed: the next task is the last
    if not stack:
        raise StopIteration()
    task = stack.pop()
    subprocesses = task.workflow.top_workflow.subprocesses
    subprocess = subprocesses.get(task.id) if subprocesses else None  # a UUID hashes in Python
    if subprocess is None:
        if task._children and task.state >= self.min_state and task.task_spec.name != self.end_at_spec:
            _push_children(stack, task)
    elif task.task_spec.name != self.end_at_spec:
        _push_children(stack, task)
        # as SpiffWorkflow: no descent into a finished sub-process when looking for unfinished tasks
        if not (self.skip_subprocesses or (task.state >= _FINISHED and self.task_filter.state <= _FINISHED)):
            stack.append(subprocess.task_tree)
    return task


def _next_plain(self: Any) -> Any:
    """TaskIterator._next (a workflow's own tasks, not its sub-processes'), as _next_bpmn."""
    if not self.depth_first or self.max_depth < _MAX_TREE_DEPTH:
        return _walk(self)
    stack = self.task_list
    if not stack:
        raise StopIteration()
    task = stack.pop()
    if task._children and task.state >= self.min_state and task.task_spec.name != self.end_at_spec:
        _push_children(stack, task)
    return task


_FRONTIER = "_govflow_frontier"  # on a workflow: the id of the task its last walk for unfinished tasks started at


def _frontier(root: Any) -> Any:
    """Where a walk from a workflow's root for unfinished tasks can start instead: the lowest task whose subtree
    holds every unfinished task (and every task that has a sub-process), or the root. Every task above it is
    finished, so a walk from the root passes through them to it and finds nothing else on the way: the same tasks
    in the same order. A looping instance's tree is a chain that grows with every round; this is near its end.

    The last walk's start is kept on the workflow as a hint: the unfinished tasks are walked up to it (a short
    way), and when one does not meet it (a task above it was reset), up to the root."""
    workflow = root.workflow
    tasks = workflow.tasks
    live = tracking.unfinished(workflow)
    if live is None:
        live = [t for t in tasks.values() if t._state & _UNFINISHED]
    subprocesses = workflow.top_workflow.subprocesses
    if subprocesses:
        live += [tasks[k] for k in subprocesses if k in tasks]
    if not live:
        return root
    hint = tasks.get(workflow.__dict__.get(_FRONTIER))
    for top in ((hint, root) if hint is not None else (root,)):
        found = _lowest_common(live, top, tasks)
        if found is not None:
            workflow.__dict__[_FRONTIER] = found.id
            return found
    return root


def _lowest_common(live: list[Any], top: Any, tasks: dict[Any, Any]) -> Any:
    """The lowest task above (or at) every task of live, if each has top above it (or is it); else None. Each task
    is climbed at most once: a climb stops at a task an earlier one passed."""
    chain = []  # from live[0] up to top
    task = live[0]
    while task is not top:
        chain.append(task)
        task = tasks.get(task._parent) if task._parent is not None else None
        if task is None:
            return None
    chain.append(top)
    meets = {id(t): height for height, t in enumerate(reversed(chain))}  # id() → height (below top) of the chain
    lowest = len(chain) - 1  # task a climb from it meets first
    for task in live[1:]:
        climbed = []
        while id(task) not in meets:
            climbed.append(id(task))
            task = tasks.get(task._parent) if task._parent is not None else None
            if task is None:
                return None
        height = meets[id(task)]
        for passed in climbed:
            meets[passed] = height
        lowest = min(lowest, height)
    return chain[len(chain) - 1 - lowest]


def _next_matching(self: Any) -> Any:
    """TaskIterator.__next__: the next task its filter matches. A filter on states alone (as the engine's own walks
    are) is checked as the state bits only; any other goes through the filter as SpiffWorkflow has it. A walk from
    a workflow's root for unfinished tasks only starts at the frontier (_frontier)."""
    states = self.__dict__.get("_states_only")
    if states is None:
        f = self.task_filter
        plain = (type(f) in (TaskFilter, BpmnTaskFilter) and f.updated_ts == 0 and f.manual is None
                 and f.spec_name is None and f.spec_class is None and getattr(f, "catches_event", None) is None
                 and getattr(f, "lane", None) is None)
        states = self._states_only = f.state if plain else 0
        stack = self.task_list
        if (not f.state & _FINISHED and self.depth_first and self.max_depth >= _MAX_TREE_DEPTH
                and self.end_at_spec is None and len(stack) == 1 and stack[0] is stack[0].workflow.task_tree):
            stack[0] = _frontier(stack[0])
    if not states:
        return _matching(self)
    task = self._next()
    while not task._state & states:
        task = self._next()
    return task


def _is_completed(self: Any) -> bool:
    """Workflow.is_completed: whether no task is unfinished, read from the workflow's task table instead of a
    walk of its tree (which holds the same tasks; the walk looked for the first unfinished one, from the root)."""
    if not self.completed:
        unfinished = tracking.has_unfinished(self)
        if unfinished is None:
            unfinished = any(t._state & _UNFINISHED for t in self.tasks.values())
        if not unfinished:
            self.completed = True
    return bool(self.completed)


_remove_task = Workflow._remove_task


def _remove_task_and_what_it_held(self: Any, task_id: Any) -> None:
    """Workflow._remove_task, and what the task held goes with it. SpiffWorkflow keeps a removed task among the
    events waited on, and its next refresh of the timers fails on the task without a parent; it keeps the
    sub-process a removed task ran, which no stored state can hold (a join fired again by a second token drops
    the branch it merged before: a boundary timer that waits, a sub-process)."""
    task = self.tasks.get(task_id)
    top = getattr(self, "top_workflow", None)
    if task is None or not isinstance(top, BpmnWorkflow):
        _remove_task(self, task_id)
        return
    removed = [task]
    if task_id in top.subprocesses:  # while the task is there: deleting a sub-process looks its parent task up
        removed += top.delete_subprocess(task)
    _remove_task(self, task_id)
    manager = top.event_manager
    for gone in removed:
        if manager.tasks.get(gone.id) is gone:
            del manager.tasks[gone.id]


def _join_run_hook(self: Any, my_task: Any) -> bool:
    """UnstructuredJoin._run_hook, skipping the earlier join tasks an earlier one of them already dropped: it drops
    the children of each completed one in turn, from a list made before, and failed on a task that left the tree
    (one token more on a branch than the join had seen: a second start_before, then a second arrival)."""
    tasks = my_task.workflow.tasks
    others = [t for t in tasks.values()
              if t.task_spec == self and t.has_state(TaskState.FINISHED_MASK) and not my_task.is_descendant_of(t)]
    for task in sorted(others, key=lambda t: t.last_state_change):
        if tasks.get(task.id) is not task:
            continue
        DeepMerge.merge(my_task.data, task.parent.data)
        if task.has_state(TaskState.COMPLETED):
            task._drop_children(force=True)
    my_task._inherit_data()
    return True


_matching = TaskIterator.__next__
TaskIterator.__next__ = _next_matching  # type: ignore[method-assign]
BpmnTaskIterator._next = _next_bpmn  # type: ignore[method-assign]
TaskIterator._next = _next_plain  # type: ignore[method-assign]
Workflow.is_completed = _is_completed  # type: ignore[method-assign]
Workflow._remove_task = _remove_task_and_what_it_held  # type: ignore[method-assign]
UnstructuredJoin._run_hook = _join_run_hook  # type: ignore[method-assign]

CONTRACT_END_EVENTS = ("end_completed", "end_rejected", "end_terminated")
_MAX_ROUNDS = 200
_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.S)


class EngineError(Exception):
    """The process could not advance (a failing expression, a decision with no matching rule...)."""

    def __init__(self, message: str, element_id: str | None = None) -> None:
        super().__init__(message)
        self.element_id = element_id


@dataclass
class ProcessModel:
    """A parsed, deployed process definition version, shared by every instance of it."""

    definition_id: int
    key: str
    spec: Any
    subprocess_specs: dict[str, Any]
    # an element's form and its schema for clients, made once per model (a version never changes), then shared:
    # read, never changed
    _forms: dict[str, tuple[list[FormField], list[dict[str, Any]]] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def start_form(self) -> list[FormField] | None:
        for spec in self.spec.task_specs.values():
            if type(spec).__name__ == "StartEvent" and FORM_KEY in (spec.extensions or {}):
                return [FormField.from_dict(f) for f in spec.extensions[FORM_KEY]]
        return None

    @functools.cached_property
    def initiator(self) -> str | None:
        """camunda:initiator on the start event: the variable that holds the user who started the instance."""
        for spec in self.spec.task_specs.values():
            if type(spec).__name__ == "StartEvent":
                value = (spec.extensions or {}).get("camunda:initiator")
                if value:
                    return str(value)
        return None

    @functools.cached_property
    def messages(self) -> dict[str, MessageContract]:
        return message_contracts([self.spec, *self.subprocess_specs.values()])

    def form(self, element_id: str) -> tuple[list[FormField], list[dict[str, Any]]] | None:
        """An element's form (govflow:form) and the same as clients see it (forms.schema_for_api); None when the
        element declares none (an empty form declares that it records nothing)."""
        try:
            return self._forms[element_id]
        except KeyError:
            pass
        spec = self.element(element_id)
        raw = ((getattr(spec, "extensions", None) or {}).get(FORM_KEY)) if spec is not None else None
        fields = None if raw is None else [FormField.from_dict(f) for f in raw]
        made = None if fields is None else (fields, schema_for_api(fields))
        self._forms[element_id] = made
        return made

    def element(self, element_id: str) -> Any:
        for spec in [self.spec, *self.subprocess_specs.values()]:
            for task_spec in spec.task_specs.values():
                if getattr(task_spec, "bpmn_id", None) == element_id:
                    return task_spec
        return None

    def element_specs(self, element_id: str) -> list[Any]:
        """Every spec of an element: a multi-instance or loop task has two (the loop and the instances it runs)."""
        return [task_spec for spec in [self.spec, *self.subprocess_specs.values()]
                for task_spec in spec.task_specs.values() if getattr(task_spec, "bpmn_id", None) == element_id]


@dataclass
class OpenTask:
    id: str
    element_id: str
    name: str
    documentation: str | None
    lane: str | None
    candidate_groups: list[str]
    candidate_users: list[str]
    assignee: str | None
    due_at: datetime | None
    due_provisional: bool
    form_key: str | None


@dataclass
class Waiting:
    kind: str  # "timer" | "message"
    element_id: str
    name: str
    spiff_task_id: str
    due_at: datetime | None = None
    calendar: str | None = None
    provisional: bool = False


@dataclass
class Snapshot:
    status: str  # running | completed
    end_event: str | None
    open_tasks: list[OpenTask] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def _split(value: Any) -> list[str]:
    """The names of a candidate list (a comma-separated text or a list from an expression), each once, in order:
    a group named twice is one group (its candidate row is one row)."""
    if value is None:
        return []
    names = value if isinstance(value, (list, tuple, set)) else str(value).split(",")
    return list(dict.fromkeys(str(v).strip() for v in names if str(v).strip()))


class Runtime:
    def __init__(self, clock: Clock, calendar: BusinessCalendar, step_time_limit: float = 1.0) -> None:
        self.clock = clock
        self.calendar = calendar
        self.script_engine = make_script_engine(step_time_limit, calendar)

    # ---- life cycle -------------------------------------------------------------------------
    def start(self, model: ProcessModel, variables: dict[str, Any]) -> BpmnWorkflow:
        workflow = BpmnWorkflow(model.spec, model.subprocess_specs, script_engine=self.script_engine)
        workflow.task_tree.data.update(variables)
        self.advance(workflow)
        return workflow

    def load(self, model: ProcessModel, state_json: str) -> BpmnWorkflow:
        return load_state(state_json, model.spec, model.subprocess_specs, self.script_engine)

    def load_parts(self, model: ProcessModel, header_json: str, rows: list[tuple[str, str, str]]) -> BpmnWorkflow:
        return load_parts(header_json, rows, model.spec, model.subprocess_specs, self.script_engine)

    def dump(self, workflow: BpmnWorkflow) -> str:
        return dump_state(workflow)

    def find_ready_user_task(self, workflow: BpmnWorkflow, task_id: str) -> Any:
        try:
            task = workflow.get_task_from_id(UUID(task_id))
        except Exception:
            return None
        if task is None or task.state != TaskState.READY or not isinstance(task.task_spec, UserTask):
            return None
        return task

    def complete(self, workflow: BpmnWorkflow, task: Any, data: dict[str, Any]) -> dict[str, Any]:
        """Complete a user task with its submitted values; returns what the task wrote to the process variables.
        A task with output parameters keeps its submitted values to itself (as an activity with an input/output
        mapping has its own variable scope in Camunda) and writes only its outputs."""
        outputs = (task.task_spec.extensions or {}).get(OUTPUTS_KEY)
        with self._guard(task.task_spec.bpmn_id), using_clock(self.clock):
            if outputs:
                scope = {**task.data, **data}
                written = {}
                for variable, text in outputs:
                    try:
                        written[variable] = self._output_value(scope, text)
                    except (ScriptError, SyntaxError) as e:
                        raise EngineError(f"output parameter {variable} ({text}): {e}", task.task_spec.bpmn_id) \
                            from None
                    except Exception as e:  # noqa: BLE001 - diagram code: any error is the model's, named here
                        raise EngineError(f"output parameter {variable} ({text}): {type(e).__name__}: {e}",
                                          task.task_spec.bpmn_id) from None
            else:
                written = dict(data)
            task.data.update(written)
            task.run()
        self.advance(workflow)
        return written

    def _output_value(self, scope: dict[str, Any], text: str) -> Any:
        m = _EXPRESSION.match(text.strip())
        if not m:
            return text
        return self.script_engine.environment.evaluate(m.group(1), dict(scope))

    def waiting_message_elements(self, workflow: BpmnWorkflow, name: str) -> list[Any]:
        found = []
        for task in workflow.event_manager.tasks.values():
            for d in self._definitions(task):
                if isinstance(d, GovflowMessageEventDefinition) and d.name == name:
                    found.append(task)
        return found

    def deliver_message(self, workflow: BpmnWorkflow, name: str, variables: dict[str, Any]) -> None:
        catching = self.waiting_message_elements(workflow, name)
        event = BpmnEvent(GovflowMessageEventDefinition(name), payload={"payload": variables, "result_var": None})
        with self._guard(None), using_clock(self.clock):
            workflow.send_event(event)
            for task in catching:
                self._rearm(task)
        self.advance(workflow)

    @staticmethod
    def _rearm(task: Any) -> None:
        """A non-interrupting boundary message catches again while its activity is still active
        (BPMN semantics; the engine would catch it only once)."""
        spec = task.task_spec
        if not isinstance(spec, BoundaryEvent) or spec.cancel_activity or task.state == TaskState.WAITING:
            return
        split = task.parent
        main = next((c for c in split.children if not isinstance(c.task_spec, BoundaryEvent)), None)
        if main is None or main.has_state(TaskState.FINISHED_MASK):
            return
        again = split._add_child(spec, TaskState.WAITING)
        spec._predict(again, mask=TaskState.WAITING | TaskState.FUTURE | TaskState.PREDICTED_MASK)  # the whole branch
        spec._update(again)

    def fire_due_timers(self, workflow: BpmnWorkflow) -> None:
        self.advance(workflow)

    def make_timer_due(self, workflow: BpmnWorkflow, element_id: str) -> bool:
        """Set a waiting timer's due time to now, so that the next advance fires it."""
        past = (self.clock.now() - timedelta(seconds=1)).isoformat()
        for task in workflow.event_manager.tasks.values():
            for d, spec in self._waiting_on(task):
                if spec.bpmn_id != element_id:
                    continue
                if isinstance(d, CycleTimerEventDefinition):
                    value = task.internal_data.get("event_value")
                    if value:
                        value["next"] = past
                        return True
                elif isinstance(d, TimerEventDefinition):
                    task.internal_data["event_value"] = past
                    return True
        return False

    def cancel(self, workflow: BpmnWorkflow) -> None:
        workflow.cancel()

    # ---- running ------------------------------------------------------------------------------
    def advance(self, workflow: BpmnWorkflow) -> None:
        """Run engine steps until only people, messages or time can move the instance on."""
        with using_clock(self.clock):
            for _ in range(_MAX_ROUNDS):
                with self._guard(None):
                    workflow.refresh_timers()
                    workflow.do_engine_steps()
                if not workflow.get_tasks(state=TaskState.READY, manual=False) and not self._timers_due(workflow):
                    return
            raise EngineError("the process did not come to rest; check the diagram for an endless loop")

    def _timers_due(self, workflow: BpmnWorkflow) -> bool:
        now = self.clock.now()
        return any(w.due_at is not None and w.due_at < now for w in self.waiting(workflow) if w.kind == "timer")

    class _Guard:
        def __init__(self, element_id: str | None) -> None:
            self.element_id = element_id

        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
            if exc is None or isinstance(exc, EngineError):
                return False
            if isinstance(exc, RecursionError):
                raise EngineError(
                    "the engine cannot follow the flow from here: it runs in a circle (a loop of sequence flows "
                    "with no way out); give the loop an exclusive gateway with an exit",
                    self.element_id,
                ) from None
            if isinstance(exc, (SpiffWorkflowException, ScriptError, SyntaxError, WorkflowException)):
                task = getattr(exc, "task", None)
                element = getattr(getattr(task, "task_spec", None), "bpmn_id", None) or self.element_id
                notes = "; ".join(getattr(exc, "notes", []) or [])
                message = str(exc) + (f" ({notes})" if notes else "")
                cause = exc.__cause__ or exc.__context__
                if cause is not None and str(cause) and str(cause) not in message:
                    message += f": {type(cause).__name__}: {cause}"
                raise EngineError(message, element) from exc
            if isinstance(exc, Exception) and not isinstance(exc, MemoryError):
                # SpiffWorkflow failing inside a step on what a diagram or its data set up (a multi-instance over a
                # collection that is not there): the process cannot advance, and nothing of the step is kept
                raise EngineError(f"the engine failed in a step: {type(exc).__name__}: {exc}",
                                  _failing_element(tb) or self.element_id) from exc
            return False

    def _guard(self, element_id: str | None) -> Runtime._Guard:
        return Runtime._Guard(element_id)

    def recompute_calendar_timers(self, workflow: BpmnWorkflow) -> bool:
        """Re-derive working-day due times (after a year's 调休 arrangement is added)."""
        changed = False
        for task in workflow.event_manager.tasks.values():
            start = task.internal_data.get("govflow_start")
            days = task.internal_data.get("govflow_workdays")
            if start is None or days is None:
                continue
            due = self.calendar.add_working_days(datetime.fromisoformat(start), int(days)).isoformat()
            if due != task.internal_data.get("event_value"):
                task.internal_data["event_value"] = due
                changed = True
        return changed

    # ---- what the instance is waiting for -----------------------------------------------------
    @staticmethod
    def _definitions(task: Any) -> list[Any]:
        return [d for d, _ in Runtime._waiting_on(task)]

    @staticmethod
    def _waiting_on(task: Any) -> list[tuple[Any, Any]]:
        """(event definition, the element that catches it): an event-based gateway holds the
        definitions of the catch events after it, in the order of its outgoing flows."""
        spec = task.task_spec
        d = getattr(spec, "event_definition", None)
        if d is None:
            return []
        if not isinstance(d, MultipleEventDefinition):
            return [(d, spec)]
        if isinstance(spec, EventBasedGateway):
            return list(zip(d.event_definitions, spec.outputs, strict=False))
        return [(x, spec) for x in d.event_definitions]

    def waiting(self, workflow: BpmnWorkflow) -> list[Waiting]:
        result: list[Waiting] = []
        for task in workflow.event_manager.tasks.values():
            if task.state != TaskState.WAITING:
                continue
            for d, spec in self._waiting_on(task):
                if isinstance(d, GovflowMessageEventDefinition) or type(d).__name__ == "MessageEventDefinition":
                    result.append(Waiting("message", spec.bpmn_id, d.name, str(task.id)))
                elif isinstance(d, TimerEventDefinition):
                    due = _due(task, d)
                    calendar = (getattr(spec, "extensions", None) or {}).get(CALENDAR_PROPERTY)
                    provisional = bool(due and calendar == WORKDAY_CALENDAR and self.calendar.is_provisional(due))
                    result.append(
                        Waiting("timer", spec.bpmn_id, d.name or spec.bpmn_name or spec.bpmn_id, str(task.id),
                                due, calendar, provisional)
                    )
        return result

    def snapshot(self, workflow: BpmnWorkflow, created_at: datetime) -> Snapshot:
        completed = workflow.is_completed()
        ends = self._completed_ends(workflow)
        # a side branch that ended (an overdue notice) is not the end of the instance
        snap = Snapshot(status="completed" if completed else "running",
                        end_event=self._end_event(ends) if completed else None)
        if completed and snap.end_event is None and workflow.success:
            # a process ends at an end event; anything else means the engine lost track of its tasks
            raise EngineError("the process reported completion without reaching an end event")
        if completed:
            snap.variables = dict(workflow.data)
            return snap
        frontier: list[Any] = []
        live = TaskState.READY | TaskState.WAITING | TaskState.STARTED
        for task in _tasks_in(workflow, live):
            frontier.append(task)
            if task.state == TaskState.READY and isinstance(task.task_spec, UserTask):
                snap.open_tasks.append(self._open_task(task, created_at))
        for task in sorted(frontier, key=lambda t: t.last_state_change):
            snap.variables.update(task.data)
        for end in ends:
            # a side branch that ended (e.g. a notification) keeps the variables only it set
            for key, value in end.data.items():
                snap.variables.setdefault(key, value)
        snap.waiting = self.waiting(workflow)
        return snap

    @staticmethod
    def _completed_ends(workflow: BpmnWorkflow) -> list[Any]:
        ends = tracking.end_tasks(workflow)
        if ends is None:
            return [
                t for t in workflow.tasks.values()
                if t.state == TaskState.COMPLETED and isinstance(t.task_spec, EndEvent)
            ]
        return [t for t in ends if t.state == TaskState.COMPLETED]

    @staticmethod
    def _end_event(ends: list[Any]) -> str | None:
        """The end event the instance reached; when side branches ended too (a notification path),
        the lifecycle's own end events (end_completed, end_rejected, end_terminated) are reported."""
        if not ends:
            return None
        main = [t for t in ends if t.task_spec.bpmn_id in CONTRACT_END_EVENTS] or ends
        return str(max(main, key=lambda t: t.last_state_change).task_spec.bpmn_id)

    def _resolve(self, task: Any, raw: str | None) -> Any:
        if raw is None:
            return None
        m = _EXPRESSION.match(raw.strip())
        if not m:
            return raw
        with self._guard(task.task_spec.bpmn_id):
            return self.script_engine.evaluate(task, m.group(1))

    def _open_task(self, task: Any, created_at: datetime) -> OpenTask:
        spec = task.task_spec
        ext = spec.extensions or {}
        assignee = self._resolve(task, ext.get("camunda:assignee"))
        due_at, provisional = self._task_due(task, ext, created_at)
        return OpenTask(
            id=str(task.id),
            element_id=spec.bpmn_id,
            name=spec.bpmn_name or spec.bpmn_id,
            documentation=spec.documentation,
            lane=spec.lane,
            candidate_groups=_split(self._resolve(task, ext.get("camunda:candidateGroups"))),
            candidate_users=_split(self._resolve(task, ext.get("camunda:candidateUsers"))),
            assignee=str(assignee) if assignee else None,
            due_at=due_at,
            due_provisional=provisional,
            form_key=getattr(getattr(spec, "form", None), "key", None),
        )

    def task_due(self, task: Any, created_at: datetime) -> tuple[datetime | None, bool]:
        """A user task's due date (camunda:dueDate), counted from when the task was created."""
        return self._task_due(task, task.task_spec.extensions or {}, created_at)

    def _task_due(self, task: Any, ext: dict[str, Any], created_at: datetime) -> tuple[datetime | None, bool]:
        value = self._resolve(task, ext.get("camunda:dueDate"))
        if value in (None, ""):
            return None, False
        workdays = ext.get(CALENDAR_PROPERTY) == WORKDAY_CALENDAR
        try:
            due = due_at(value, created_at, workdays=workdays, calendar=self.calendar)
        except TimingError as e:
            raise EngineError(f"due date: {e}", task.task_spec.bpmn_id) from None
        return due, bool(workdays and self.calendar.is_provisional(due))


def _failing_element(tb: Any) -> str | None:
    """The element whose task SpiffWorkflow was working on where an error was raised: the innermost frame of the
    traceback with a task (`my_task`, SpiffWorkflow's name for it in task specs)."""
    found = None
    while tb is not None:
        task = tb.tb_frame.f_locals.get("my_task")
        element = getattr(getattr(task, "task_spec", None), "bpmn_id", None)
        if isinstance(element, str):
            found = element
        tb = tb.tb_next
    return found


def _tasks_in(workflow: BpmnWorkflow, states: int) -> list[Any]:
    """The instance's tasks in one of some unfinished states, as iter_tasks orders them (by workflow, in creation
    order): from the journal of a tracked workflow (service/engine/tracking.py), else from its task table."""
    found: list[Any] = []
    for _, wf in workflows(workflow):
        unfinished = tracking.unfinished(wf)
        if unfinished is None:
            found += [t for t in wf.tasks.values() if t._state & states]
        else:
            found += sorted((t for t in unfinished if t._state & states), key=tracking.order)
    return found


def _due(task: Any, definition: Any) -> datetime | None:
    value = task.internal_data.get("event_value")
    if value is None:
        return None
    try:
        if isinstance(definition, CycleTimerEventDefinition):
            return datetime.fromisoformat(value["next"]) if value.get("cycles", 0) != 0 else None
        if isinstance(definition, (DurationTimerEventDefinition, TimeDateEventDefinition)) and isinstance(value, str):
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo is not None else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return None
