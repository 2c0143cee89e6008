"""Workflow state to JSON and back, with the spec kept apart (stored once per definition version)."""
from __future__ import annotations

import datetime as _dt
import json
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer, DefaultRegistry
from SpiffWorkflow.bpmn.serializer.default.event_definition import TimerConditionalEventDefinitionConverter
from SpiffWorkflow.bpmn.serializer.default.task_spec import BoundaryEventConverter, BpmnTaskSpecConverter
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.camunda.serializer.event_definition import MessageEventDefinitionConverter
from SpiffWorkflow.dmn.serializer.task_spec import BaseBusinessRuleTaskConverter

from service.engine.messages import GovflowMessageEventDefinition
from service.engine.parser import GovflowBoundaryEvent, GovflowBusinessRuleTask
from service.engine.timers import GOVFLOW_TIMERS


class _StateConverter(BpmnWorkflowConverter):
    """A workflow as state only: its spec and sub-process specs are stored once with the definition version, and
    SpiffWorkflow's own converter would convert every task spec on each dump only for them to be thrown away."""

    def to_dict(self, workflow: Any) -> dict[str, Any]:
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct


_CONFIG = {
    **CAMUNDA_CONFIG,
    BpmnWorkflow: _StateConverter,
    ServiceTask: BpmnTaskSpecConverter,
    GovflowMessageEventDefinition: MessageEventDefinitionConverter,
    GovflowBusinessRuleTask: BaseBusinessRuleTaskConverter,
    GovflowBoundaryEvent: BoundaryEventConverter,
    **{cls: TimerConditionalEventDefinitionConverter for cls in GOVFLOW_TIMERS.values()},
}


def _registry() -> Any:
    registry = DefaultRegistry()
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    registry.register(_dt.date, lambda v: {"value": v.isoformat()}, lambda v: _dt.date.fromisoformat(v["value"]))
    return registry


SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(_CONFIG, _registry()))


def dump_spec(spec: Any, subprocess_specs: dict[str, Any]) -> str:
    return json.dumps(
        {
            "spec": SERIALIZER.to_dict(spec),
            "subprocess_specs": {k: SERIALIZER.to_dict(v) for k, v in subprocess_specs.items()},
        },
        separators=(",", ":"),
    )


def load_spec(spec_json: str) -> tuple[Any, dict[str, Any]]:
    d = json.loads(spec_json)
    spec = SERIALIZER.from_dict(d["spec"])
    subs = {k: SERIALIZER.from_dict(v) for k, v in d["subprocess_specs"].items()}
    return spec, subs


def dump_state(workflow: BpmnWorkflow) -> str:
    """The instance's state without its spec: the spec lives with the definition version."""
    d = SERIALIZER.to_dict(workflow)
    d[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
    return json.dumps(d, cls=SERIALIZER._encoder_cls, separators=(",", ":"))


def load_state(state_json: str, spec: Any, subprocess_specs: dict[str, Any], script_engine: Any) -> BpmnWorkflow:
    """Restore a state written whole (tasks included) by dump_state."""
    return load_parts(state_json, [], spec, subprocess_specs, script_engine)


# ---- state as a header plus one row per task ------------------------------------------------------------
# A long-lived instance accumulates tasks (every loop adds some); writing the whole state on every request
# makes a request's cost grow with the instance's history. The header (workflow data, sub-process headers,
# events) is small; tasks are stored as rows and a request rewrites only the rows of tasks it changed.

def workflows(workflow: BpmnWorkflow) -> list[tuple[str, Any]]:
    """The workflow and its sub-processes, each with its key (the top workflow's is "")."""
    return [("", workflow), *((str(k), sub) for k, sub in workflow.subprocesses.items())]


def iter_tasks(workflow: BpmnWorkflow) -> list[tuple[str, Any]]:
    """Every task of the instance with the key of the (sub-)workflow holding it, in creation order."""
    return [(key, task) for key, wf in workflows(workflow) for task in wf.tasks.values()]


def dump_header(workflow: BpmnWorkflow) -> str:
    """The state without its spec and without tasks."""
    held = [(wf, wf.tasks) for _, wf in workflows(workflow)]
    try:
        for wf, _ in held:
            wf.tasks = {}
        return dump_state(workflow)
    finally:
        for wf, tasks in held:
            wf.tasks = tasks


def dump_task(task: Any) -> str:
    return json.dumps(SERIALIZER.registry.convert(task), cls=SERIALIZER._encoder_cls, separators=(",", ":"))


def load_parts(header_json: str, rows: list[tuple[str, str, str]], spec: Any, subprocess_specs: dict[str, Any],
               script_engine: Any) -> BpmnWorkflow:
    """Restore from the header and the task rows (workflow key, task id, body) in creation order. A header
    written before task rows existed holds the tasks itself (and there are no rows)."""
    d = json.loads(header_json)
    if rows:
        d["tasks"] = {}
        for sub in d.get("subprocesses", {}).values():
            sub["tasks"] = {}
        for key, task_id, body in rows:
            target = d["tasks"] if key == "" else d["subprocesses"][key]["tasks"]
            target[task_id] = json.loads(body)
    d["spec"] = spec
    d["subprocess_specs"] = dict(subprocess_specs)
    SERIALIZER.migrate(d)
    workflow: BpmnWorkflow = SERIALIZER.from_dict(d)
    workflow.script_engine = script_engine
    return workflow
