"""Which tasks of a held workflow changed, without walking its task tree.

A looping instance keeps every task of every round in one tree; a command changes a handful of them near its
frontier. The worker finds the rows to write, and the engine its unfinished tasks, from a journal kept on each
(sub-)workflow instead of a pass over every task:

- every task created, every state change (`Task._set_state`), every change of a task's children (a child added,
  a child removed — `Workflow._remove_task` edits the parent's list in place —, the children or parent set
  anew), every `Task._set_internal_data` and every `reset_branch` puts the task in the journal;
- every removed task (and every task of a deleted sub-process) is listed as removed.

A workflow is tracked once it is armed (`arm`: one pass over its tasks, when the worker has loaded or fully
diffed it); a sub-process started later is armed at the worker's next pass over it. Unarmed workflows are walked
as before.

What the journal does not see is a change to a task's data or internal data made in place without any of the
calls above. SpiffWorkflow and govflow make those to tasks at work (ready, waiting, started: they are written
on every command anyway) and to tasks they create; the service's own operations that edit finished tasks
(send back, withdraw, modify, migrate, set variables, the calendar's recomputation) are written from a full
pass. The test suite restores the stored state after every change and compares it with the held workflow
(GOVFLOW_VERIFY_STATE_STORAGE), which fails on any row the journal missed.
"""
from __future__ import annotations

from typing import Any

from SpiffWorkflow.bpmn.specs.defaults import EndEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from SpiffWorkflow.workflow import Workflow

_TRACK = "_govflow_track"
_ORDER = "_govflow_n"  # on a task: its place in its workflow's creation order
_UNFINISHED = TaskState.NOT_FINISHED_MASK


class Track:
    """The journal of one (sub-)workflow. Tasks are keyed by id(): a UUID hashes in Python, and a task kept here
    cannot be collected, so its id() is not reused while it is."""

    __slots__ = ("dirty", "removed", "pending", "unfinished", "ends", "next_order")

    def __init__(self) -> None:
        self.dirty: dict[int, Any] = {}  # changed since the worker's last diff
        self.removed: list[Any] = []  # ids (UUID) of the instance's tasks removed since the last diff (the top's)
        self.pending: dict[int, Any] = {}  # changed since the unfinished tasks were last brought up to date
        self.unfinished: dict[int, Any] = {}  # the workflow's unfinished tasks (as of the last refresh)
        self.ends: dict[int, Any] = {}  # its end event tasks (as of the last refresh)
        self.next_order = 0


def track_of(workflow: Any) -> Track | None:
    return workflow.__dict__.get(_TRACK)  # type: ignore[no-any-return]


def arm(workflow: Any) -> Track:
    """Start (or start over) tracking a workflow: one pass over its tasks."""
    track = Track()
    for order, task in enumerate(workflow.tasks.values()):
        task.__dict__[_ORDER] = order
        if task._state & _UNFINISHED:
            track.unfinished[id(task)] = task
        if isinstance(task.task_spec, EndEvent):
            track.ends[id(task)] = task
    track.next_order = len(workflow.tasks)
    workflow.__dict__[_TRACK] = track
    return track


def disarm(workflow: Any) -> None:
    workflow.__dict__.pop(_TRACK, None)


def order(task: Any) -> int:
    return task.__dict__[_ORDER]  # type: ignore[no-any-return]


def _refresh(track: Track, workflow: Any) -> None:
    if not track.pending:
        return
    tasks = workflow.tasks
    for key, task in track.pending.items():
        present = tasks.get(task.id) is task
        if present and task._state & _UNFINISHED:
            track.unfinished[key] = task
        else:
            track.unfinished.pop(key, None)
        if isinstance(task.task_spec, EndEvent):
            if present:
                track.ends[key] = task
            else:
                track.ends.pop(key, None)
    track.pending.clear()


def _current(workflow: Any) -> Track | None:
    """The workflow's journal with its indexes brought up to date, or None when it is not tracked."""
    track: Track | None = workflow.__dict__.get(_TRACK)
    if track is not None:
        _refresh(track, workflow)
    return track


def unfinished(workflow: Any) -> list[Any] | None:
    """The workflow's unfinished tasks (in no particular order), or None when it is not tracked."""
    track = _current(workflow)
    return None if track is None else list(track.unfinished.values())


def has_unfinished(workflow: Any) -> bool | None:
    track = _current(workflow)
    return None if track is None else bool(track.unfinished)


def end_tasks(workflow: Any) -> list[Any] | None:
    """The workflow's end event tasks in creation order, or None when it is not tracked."""
    track = _current(workflow)
    return None if track is None else sorted(track.ends.values(), key=order)


def take_changes(workflow: Any) -> tuple[list[Any], list[Any]]:
    """The tasks changed since the last call that are still in the tree, and the ids of the tasks removed since;
    the journal starts anew."""
    track: Track = workflow.__dict__[_TRACK]
    tasks = workflow.tasks
    changed = [t for t in track.dirty.values() if tasks.get(t.id) is t]
    removed = track.removed  # kept on the top workflow's journal only
    track.dirty = {}
    track.removed = []
    return changed, removed


# ---- the hooks ----------------------------------------------------------------------------------------------

def _touch(task: Any) -> None:
    track = task.workflow.__dict__.get(_TRACK)
    if track is not None:
        key = id(task)
        track.dirty[key] = task
        track.pending[key] = task


_init = Task.__init__
_set_state = Task._set_state
_child_added_notify = Task._child_added_notify
_set_internal_data = Task._set_internal_data
_reset_branch = Task.reset_branch
_remove_task = Workflow._remove_task
_delete_subprocess = BpmnWorkflow.delete_subprocess
_parent_property = Task.parent
_children_property = Task.children


def _tracked_init(self: Any, workflow: Any, *args: Any, **kwargs: Any) -> None:
    _init(self, workflow, *args, **kwargs)
    track = workflow.__dict__.get(_TRACK)
    if track is not None:
        self.__dict__[_ORDER] = track.next_order
        track.next_order += 1
        key = id(self)
        track.dirty[key] = self
        track.pending[key] = self


def _tracked_set_state(self: Any, value: int) -> None:
    _set_state(self, value)
    _touch(self)


def _tracked_child_added_notify(self: Any, child: Any) -> None:
    _child_added_notify(self, child)
    _touch(self)


def _tracked_set_internal_data(self: Any, **kwargs: Any) -> None:
    _set_internal_data(self, **kwargs)
    _touch(self)


def _tracked_reset_branch(self: Any, data: Any) -> Any:
    _touch(self)
    return _reset_branch(self, data)


def _tracked_remove_task(self: Any, task_id: Any) -> None:
    track = self.__dict__.get(_TRACK)
    if track is not None:
        task = self.tasks[task_id]
        parent = task.parent
        if parent is not None:
            _touch(parent)  # its list of children is edited in place
        track.pending[id(task)] = task
    top = getattr(self, "top_workflow", self).__dict__.get(_TRACK)
    if top is not None:  # on the top workflow's journal: a sub-process deleted later takes its own journal along
        top.removed.append(task_id)
    _remove_task(self, task_id)


def _tracked_delete_subprocess(self: Any, my_task: Any) -> Any:
    removed = _delete_subprocess(self, my_task)
    track = self.__dict__.get(_TRACK)
    if track is not None:
        track.removed.extend(t.id for t in removed)
    return removed


def _set_parent(self: Any, task: Any) -> None:
    _parent_property.fset(self, task)  # type: ignore[misc]
    _touch(self)


def _set_children(self: Any, tasks: Any) -> None:
    _children_property.fset(self, tasks)  # type: ignore[misc]
    _touch(self)


Task.__init__ = _tracked_init  # type: ignore[method-assign]
Task._set_state = _tracked_set_state  # type: ignore[method-assign]
Task._child_added_notify = _tracked_child_added_notify  # type: ignore[method-assign]
Task._set_internal_data = _tracked_set_internal_data  # type: ignore[method-assign]
Task.reset_branch = _tracked_reset_branch  # type: ignore[method-assign]
Task.parent = _parent_property.setter(_set_parent)  # type: ignore[method-assign]
Task.children = _children_property.setter(_set_children)  # type: ignore[method-assign]
Workflow._remove_task = _tracked_remove_task  # type: ignore[method-assign]
BpmnWorkflow.delete_subprocess = _tracked_delete_subprocess  # type: ignore[method-assign]
