"""What a process declares beyond its flow: the payload each message it waits for must carry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from SpiffWorkflow.bpmn.specs.defaults import EventBasedGateway

from service.engine.forms import FormDefinitionError, FormField, parse_payload_field
from service.engine.messages import GovflowMessageEventDefinition
from service.engine.parser import PAYLOAD_PREFIX


@dataclass
class MessageContract:
    name: str
    element_ids: list[str] = field(default_factory=list)
    fields: list[FormField] | None = None  # None: the message declares no payload and takes any variables


def _task_specs(specs: list[Any]) -> list[Any]:
    return [t for spec in specs for t in spec.task_specs.values() if getattr(t, "bpmn_id", None)]


def _message_catchers(specs: list[Any]) -> list[tuple[Any, Any]]:
    """(catching element, message definition) pairs. The engine moves the definitions of the catch events after an
    event-based gateway onto the gateway (the events themselves then hold none): they are paired back here."""
    found: list[tuple[Any, Any]] = []
    for task_spec in _task_specs(specs):
        definition = getattr(task_spec, "event_definition", None)
        if isinstance(task_spec, EventBasedGateway) and definition is not None:
            for d, output in zip(getattr(definition, "event_definitions", []), task_spec.outputs, strict=False):
                if isinstance(d, GovflowMessageEventDefinition):
                    found.append((output, d))
        elif isinstance(definition, GovflowMessageEventDefinition):
            found.append((task_spec, definition))
    return found


def message_contracts(specs: list[Any]) -> dict[str, MessageContract]:
    """Every message the process waits for, with the payload its catching elements declare (they must agree)."""
    found: dict[str, MessageContract] = {}
    declared: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for task_spec, definition in _message_catchers(specs):
        contract = found.setdefault(definition.name, MessageContract(definition.name))
        if task_spec.bpmn_id not in contract.element_ids:
            contract.element_ids.append(task_spec.bpmn_id)
        ext = getattr(task_spec, "extensions", None) or {}
        try:
            fields = [parse_payload_field(k[len(PAYLOAD_PREFIX):], str(v)) for k, v in sorted(ext.items())
                      if k.startswith(PAYLOAD_PREFIX)]
        except FormDefinitionError as e:
            raise FormDefinitionError(f"{task_spec.bpmn_id}: {e}") from None
        if not fields:
            continue
        shape = [f.to_dict() for f in fields]
        if definition.name in declared and declared[definition.name][1] != shape:
            raise FormDefinitionError(
                f"{task_spec.bpmn_id}: message '{definition.name}' declares another payload than "
                f"{declared[definition.name][0]}; every element catching a message must declare the same payload")
        declared[definition.name] = (task_spec.bpmn_id, shape)
        contract.fields = fields
    for name, contract in found.items():
        if contract.fields is not None:
            undeclared = [e for e in contract.element_ids if e != declared[name][0]]
            for task_spec in _task_specs(specs):
                if task_spec.bpmn_id in undeclared and not any(
                        k.startswith(PAYLOAD_PREFIX) for k in (getattr(task_spec, "extensions", None) or {})):
                    raise FormDefinitionError(
                        f"{task_spec.bpmn_id}: message '{name}' declares its payload on {declared[name][0]} but not "
                        "here; every element catching a message must declare the same payload")
    return found
