"""What a deployed process asks of the world: the candidate groups of its user tasks (with the lanes and tasks
that use them) and the messages it waits for, read from the parsed spec once per definition version."""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from SpiffWorkflow.bpmn.specs.defaults import EventBasedGateway
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.camunda.specs.user_task import UserTask

from service.engine.runtime import ProcessModel


@dataclass
class TaskUse:
    element_id: str
    name: str
    lane: str | None


@dataclass
class GroupUse:
    name: str
    computed: bool = False  # a ${…} expression: the group is known only when the task opens
    tasks: list[TaskUse] = field(default_factory=list)

    @property
    def lanes(self) -> list[str]:
        return sorted({t.lane for t in self.tasks if t.lane})


@dataclass
class MessageUse:
    name: str
    element_ids: list[str] = field(default_factory=list)


@dataclass
class Catalog:
    groups: list[GroupUse]
    messages: list[MessageUse]


# keyed by the parsed spec, which the context caches once per definition version: an entry lives as long as it
_cache: weakref.WeakKeyDictionary[Any, Catalog] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def describe(model: ProcessModel) -> Catalog:
    with _lock:
        found = _cache.get(model.spec)
    if found is not None:
        return found
    catalog = _read(model)
    with _lock:
        return _cache.setdefault(model.spec, catalog)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _read(model: ProcessModel) -> Catalog:
    groups: dict[str, GroupUse] = {}
    messages: dict[str, MessageUse] = {}
    for spec in [model.spec, *model.subprocess_specs.values()]:
        for task_spec in spec.task_specs.values():
            element_id = getattr(task_spec, "bpmn_id", None)
            if element_id is None:
                continue
            if isinstance(task_spec, UserTask):
                raw = ((task_spec.extensions or {}).get("camunda:candidateGroups") or "").strip()
                names = [raw] if raw.startswith("${") else _split(raw)
                for name in names:
                    use = groups.setdefault(name, GroupUse(name, computed=name.startswith("${")))
                    if all(t.element_id != element_id for t in use.tasks):
                        use.tasks.append(TaskUse(element_id, task_spec.bpmn_name or element_id,
                                                 getattr(task_spec, "lane", None)))
            definition = getattr(task_spec, "event_definition", None)
            if isinstance(task_spec, EventBasedGateway):
                # the engine moves the definitions of the catch events after the gateway onto it, in the order
                # of its outgoing flows: each belongs to the catch event it came from
                catchers = list(zip(getattr(definition, "event_definitions", []), task_spec.outputs, strict=False))
            else:
                catchers = [(d, task_spec) for d in
                            getattr(definition, "event_definitions", None) or ([definition] if definition else [])]
            for d, catcher in catchers:
                if isinstance(d, MessageEventDefinition):
                    message = messages.setdefault(d.name, MessageUse(d.name))
                    if catcher.bpmn_id not in message.element_ids:
                        message.element_ids.append(catcher.bpmn_id)
    for use in groups.values():
        use.tasks.sort(key=lambda t: t.element_id)
    for message in messages.values():
        message.element_ids.sort()
    return Catalog(groups=sorted(groups.values(), key=lambda g: g.name),
                   messages=sorted(messages.values(), key=lambda m: m.name))
