"""Workflow state to JSON and back, with the spec kept apart (stored once per definition version)."""
from __future__ import annotations

import datetime as _dt
import json
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer, DefaultRegistry
from SpiffWorkflow.bpmn.serializer.default.task_spec import BoundaryEventConverter, BpmnTaskSpecConverter
from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.camunda.serializer.event_definition import MessageEventDefinitionConverter
from SpiffWorkflow.dmn.serializer.task_spec import BaseBusinessRuleTaskConverter

from service.engine.messages import GovflowMessageEventDefinition
from service.engine.parser import GovflowBoundaryEvent, GovflowBusinessRuleTask

_CONFIG = {
    **CAMUNDA_CONFIG,
    ServiceTask: BpmnTaskSpecConverter,
    GovflowMessageEventDefinition: MessageEventDefinitionConverter,
    GovflowBusinessRuleTask: BaseBusinessRuleTaskConverter,
    GovflowBoundaryEvent: BoundaryEventConverter,
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
    d.pop("spec", None)
    d.pop("subprocess_specs", None)
    d[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
    return json.dumps(d, cls=SERIALIZER._encoder_cls, separators=(",", ":"))


def load_state(state_json: str, spec: Any, subprocess_specs: dict[str, Any], script_engine: Any) -> BpmnWorkflow:
    d = json.loads(state_json)
    d["spec"] = spec
    d["subprocess_specs"] = dict(subprocess_specs)
    SERIALIZER.migrate(d)
    workflow: BpmnWorkflow = SERIALIZER.from_dict(d)
    workflow.script_engine = script_engine
    return workflow
