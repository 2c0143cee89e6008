"""SpiffWorkflow's task iterators, as the service replaces their step (service/engine/runtime.py): the same tasks in
the same order as SpiffWorkflow's own step, for every filter the engine uses, on a workflow with a parallel split,
a boundary timer, a message, a sub-process and a loop."""
from __future__ import annotations

import types
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.util.task import TaskIterator, TaskState

from service.clock import FrozenClock
from service.engine import operations
from service.engine import runtime as runtime_module
from service.engine.calendar import BusinessCalendar
from service.engine.deployment import parse_files
from service.engine.runtime import ProcessModel, Runtime
from tests.support import FIXTURES, T0

FILTERS: list[dict[str, Any]] = [
    {}, {"state": TaskState.READY}, {"state": TaskState.WAITING}, {"state": TaskState.NOT_FINISHED_MASK},
    {"state": TaskState.FINISHED_MASK}, {"state": TaskState.COMPLETED}, {"state": TaskState.PREDICTED_MASK},
    {"state": TaskState.READY, "manual": False}, {"skip_subprocesses": True},
    {"state": TaskState.NOT_FINISHED_MASK, "skip_subprocesses": True}, {"end_at_spec": "join"},
    {"end_at_spec": "implementation"}, {"state": TaskState.READY, "spec_name": "approve"},
    {"state": TaskState.NOT_FINISHED_MASK, "updated_ts": 4e9}, {"spec_class": UserTask},
]  # (breadth first or with a depth limit, the service's step hands over to SpiffWorkflow's: neither is compared)


def _model(directory: Any, key: str) -> ProcessModel:
    parsed = parse_files({p.name: p.read_bytes() for p in directory.glob(f"{key}.*")})[0]
    return ProcessModel(definition_id=1, key=parsed.key, spec=parsed.spec, subprocess_specs=parsed.subprocess_specs)


def _spiff_order(cls: type, walk: Any, root: Any, kwargs: dict[str, Any]) -> list[Any]:
    iterator = cls(root, **kwargs)
    iterator._next = types.MethodType(walk, iterator)  # SpiffWorkflow's own step
    found = []
    while True:
        try:
            found.append(runtime_module._matching(iterator).id)  # and its own filtering
        except StopIteration:
            return found


def _check(workflow: Any) -> int:
    """Every filter, from the root and from each sub-process's root; returns how many walks were compared."""
    for wf in [workflow, *workflow.subprocesses.values()]:
        # Workflow.is_completed reads the task table: the same answer as SpiffWorkflow's walk for a first unfinished
        unfinished = TaskIterator(wf.task_tree, state=TaskState.NOT_FINISHED_MASK)
        unfinished._next = types.MethodType(runtime_module._walk, unfinished)
        completed, wf.completed = wf.completed, False
        assert wf.is_completed() == (next(unfinished, None) is None)
        wf.completed = completed  # as it was: the check must not change what it goes on to check
    compared = 0
    roots = [(BpmnTaskIterator, runtime_module._walk_bpmn, workflow.task_tree)]
    roots += [(TaskIterator, runtime_module._walk, workflow.task_tree)]
    roots += [(TaskIterator, runtime_module._walk, sub.task_tree) for sub in workflow.subprocesses.values()]
    for cls, walk, root in roots:
        for kwargs in FILTERS:
            if cls is TaskIterator and "skip_subprocesses" in kwargs:
                continue
            assert [t.id for t in cls(root, **kwargs)] == _spiff_order(cls, walk, root, kwargs), (cls, kwargs)
            compared += 1
    return compared


def test_the_same_tasks_in_the_same_order_through_a_whole_instance() -> None:
    runtime = Runtime(FrozenClock(T0), BusinessCalendar())
    workflow = runtime.start(_model(FIXTURES / "operations", "returns"), {"project_name": "城市大脑"})
    seen: set[str] = set()
    walks = _check(workflow)
    for _ in range(30):
        snap = runtime.snapshot(workflow, T0)
        if snap.status != "running":
            break
        seen.update(t.element_id for t in snap.open_tasks)
        if snap.open_tasks:
            task = runtime.find_ready_user_task(workflow, snap.open_tasks[-1].id)  # the other branch stays open
            runtime.complete(workflow, task, {})
        elif any(w.kind == "message" for w in snap.waiting):
            runtime.deliver_message(workflow, "contract_signed", {})
        else:
            runtime.clock.advance(timedelta(days=400))  # type: ignore[attr-defined]
            runtime.fire_due_timers(workflow)
        walks += _check(workflow)
    assert runtime.snapshot(workflow, T0).status == "completed"
    assert {"funding_review", "technical_review", "build", "inspect", "accept"} <= seen  # split, sub-process
    assert walks > 200


@pytest.mark.parametrize("rounds", [1, 40])
def test_the_same_tasks_in_the_same_order_after_rework_rounds(rounds: int) -> None:
    runtime = Runtime(FrozenClock(T0), BusinessCalendar())
    workflow = runtime.start(_model(FIXTURES, "review"), {"project_name": "x", "budget_wan": Decimal(10)})
    for _ in range(rounds):
        for data in ({"decision": "revise"}, {"budget_wan": Decimal(10)}):
            snap = runtime.snapshot(workflow, T0)
            runtime.complete(workflow, runtime.find_ready_user_task(workflow, snap.open_tasks[0].id), data)
    assert len(workflow.tasks) > 4 * rounds
    _check(workflow)
    # a token put back on the first review (as send-back and withdraw do): an unfinished task far above where the
    # last walks for unfinished tasks started
    first = next(t for t in workflow.tasks.values() if t.task_spec.bpmn_id == "review_task")
    reopened = operations.start_before(first.parent, first.task_spec, {"project_name": "x"})
    _check(workflow)
    runtime.advance(workflow)
    assert reopened.state != TaskState.FUTURE
    _check(workflow)


def test_finding_the_frontier_climbs_each_task_at_most_once() -> None:
    """A task waiting beside the root (a message caught from the start) and many unfinished tasks at the end of a
    long chain (a loop's history, then a parallel split): the frontier is near the root, and the climbs from the
    tasks below must not each go all the way up."""

    class Node:
        def __init__(self, ident: int, parent: int | None) -> None:
            self.id, self._parent = ident, parent

    class Counted(dict):  # type: ignore[type-arg]
        lookups = 0

        def get(self, key: Any, default: Any = None) -> Any:
            Counted.lookups += 1
            return super().get(key, default)

    tasks = Counted()
    tasks[0] = Node(0, None)
    tasks[1] = Node(1, 0)  # the waiting task, beside the chain
    for i in range(2, 1002):
        tasks[i] = Node(i, 0 if i == 2 else i - 1)
    leaves = [Node(2000 + i, 1001) for i in range(50)]
    for leaf in leaves:
        tasks[leaf.id] = leaf
    live = [tasks[1], *leaves]
    assert runtime_module._lowest_common(live, tasks[0], tasks) is tasks[0]
    assert Counted.lookups <= len(tasks) + len(live)
    assert runtime_module._lowest_common(leaves, tasks[0], tasks) is tasks[1001]
    assert runtime_module._lowest_common(live, tasks[1001], tasks) is None  # the waiting task is not below it
