"""Camunda 7 diagrams in, SpiffWorkflow specs out — with what Camunda Modeler writes that Spiff ignores.

Adds to SpiffWorkflow's CamundaParser:
- user tasks carry camunda:candidateGroups/candidateUsers/assignee/dueDate/... in ``extensions``;
- forms (camunda:formData) on user tasks and start events, as a schema in ``extensions``;
- camunda:properties on events (e.g. ``calendar=cn_workdays`` on a timer);
- timer texts written the Camunda way (``P15D``) are read as the literal they are;
- a DMN file may hold several decisions (one decision table each).
"""
from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.parser.event_parsers import ReceiveTaskParser
from SpiffWorkflow.bpmn.parser.ProcessParser import ProcessParser
from SpiffWorkflow.bpmn.parser.util import BPMN_MODEL_NS, one
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent, IntermediateCatchEvent, ReceiveTask, StartEvent
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.camunda.parser import CamundaParser
from SpiffWorkflow.camunda.parser.CamundaParser import full_tag
from SpiffWorkflow.camunda.parser.event_parsers import (
    CamundaBoundaryEventParser,
    CamundaEventDefinitionParser,
    CamundaIntermediateCatchEventParser,
    CamundaStartEventParser,
)
from SpiffWorkflow.camunda.parser.task_spec import BusinessRuleTaskParser, UserTaskParser
from SpiffWorkflow.camunda.specs.business_rule_task import BusinessRuleTask
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.dmn.parser.DMNParser import DMNParser
from SpiffWorkflow.util.task import TaskState

from service.engine.forms import FormDefinitionError, parse_form
from service.engine.messages import GovflowMessageEventDefinition
from service.engine.timers import govflow_timer

C = "{http://camunda.org/schema/1.0/bpmn}"
RESULT_VARIABLE = "camunda:resultVariable"
RESULT_MAPPING = "camunda:mapDecisionResult"
FORM_KEY = "govflow:form"
OUTPUTS_KEY = "camunda:outputParameters"
PAYLOAD_PREFIX = "payload."
ASSIGNMENT_ATTRIBUTES = ("assignee", "candidateGroups", "candidateUsers", "dueDate", "followUpDate", "priority")

# ISO 8601 duration, date-time or repeating interval, as Camunda Modeler users type it
_ISO_LITERAL = re.compile(
    r"^(R\d*/)?(P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
    r"|\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?)(/.*)?$"
)


def _properties(parser: Any) -> dict[str, Any]:
    return {
        node.get("name"): node.get("value")
        for node in parser.xpath("./bpmn:extensionElements/camunda:properties/camunda:property")
    }


def _form_extension(parser: Any) -> dict[str, Any]:
    try:
        fields = parse_form(parser.node)
    except FormDefinitionError as e:
        raise ValidationException(str(e), node=parser.node, file_name=parser.filename) from e
    return {} if fields is None else {FORM_KEY: [f.to_dict() for f in fields]}


class _EventMixin:
    """Timer texts typed the Camunda way; messages that merge their variables into the instance."""

    def parse_message_event(self, message_event: Any) -> Any:
        message_ref = message_event.get("messageRef")
        if message_ref:
            message = one(self.doc_xpath(f'.//bpmn:message[@id="{message_ref}"]'))  # type: ignore[attr-defined]
            name = message.get("name")
            correlations = self.get_message_correlations(message_ref)  # type: ignore[attr-defined]
        else:
            name = message_event.getparent().get("name")
            correlations = {}
        return GovflowMessageEventDefinition(name, correlations)

    def parse_timer_event(self, event: Any) -> Any:
        definition = govflow_timer(super().parse_timer_event(event))  # type: ignore[misc]
        text = (definition.expression or "").strip()
        if _ISO_LITERAL.match(text):
            definition.expression = repr(text)
        return definition


def _output_parameters(parser: Any) -> list[tuple[str, str]]:
    """camunda:inputOutput output parameters as (variable, text); only text values (a literal or ${expression})."""
    found: list[tuple[str, str]] = []
    if parser.xpath("./bpmn:extensionElements/camunda:inputOutput/camunda:inputParameter"):
        raise ValidationException("input parameters are not supported; a user task takes its input from the "
                                  "process variables", node=parser.node, file_name=parser.filename)
    for node in parser.xpath("./bpmn:extensionElements/camunda:inputOutput/camunda:outputParameter"):
        name = (node.get("name") or "").strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValidationException(f"output parameter name {name!r} must be a letter followed by letters, digits "
                                      "or _", node=parser.node, file_name=parser.filename)
        if len(node):
            raise ValidationException(f"output parameter {name!r}: only a text value (a literal or ${{expression}}) "
                                      "is supported, not a script, list or map", node=parser.node,
                                      file_name=parser.filename)
        found.append((name, (node.text or "").strip()))
    return found


class GovflowUserTaskParser(UserTaskParser):
    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        extensions = super().parse_extensions(node)
        for name in ASSIGNMENT_ATTRIBUTES:
            value = self.node.get(C + name)
            if value is not None and value.strip():
                extensions[f"camunda:{name}"] = value.strip()
        extensions.update(_form_extension(self))
        outputs = _output_parameters(self)
        if outputs:
            extensions[OUTPUTS_KEY] = [list(o) for o in outputs]
        return extensions


class GovflowStartEventParser(_EventMixin, CamundaStartEventParser):
    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        extensions = _properties(self)
        initiator = self.node.get(C + "initiator")
        if initiator:
            extensions["camunda:initiator"] = initiator
        extensions.update(_form_extension(self))
        return extensions


class GovflowBoundaryEvent(BoundaryEvent):
    """An interrupting boundary event on a sub-process carries on with the data recorded inside the sub-process
    (as in Camunda, where what an embedded sub-process sets belongs to the process instance); the engine would
    go on with the data the sub-process was entered with. Data the event brings (a message's variables) wins."""

    def _run_hook(self, my_task: Any) -> Any:
        result = super()._run_hook(my_task)
        if not self.cancel_activity or my_task.parent is None:
            return result
        split = my_task.parent
        main = next((c for c in split.children if not isinstance(c.task_spec, BoundaryEvent)), None)
        subprocess = my_task.workflow.top_workflow.subprocesses.get(main.id) if main is not None else None
        if subprocess is None:
            return result
        inner: dict[str, Any] = {}
        reached = TaskState.READY | TaskState.WAITING | TaskState.STARTED | TaskState.COMPLETED
        for task in sorted(subprocess.get_tasks(state=reached), key=lambda t: t.last_state_change):
            inner.update(task.data)
        brought = {k: v for k, v in my_task.data.items() if k not in split.data or split.data[k] != v}
        my_task.data = {**deepcopy(inner), **brought}
        return result


class GovflowBoundaryEventParser(_EventMixin, CamundaBoundaryEventParser):
    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        return _properties(self)


class GovflowIntermediateCatchEventParser(_EventMixin, CamundaIntermediateCatchEventParser):
    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        return _properties(self)


class GovflowReceiveTaskParser(_EventMixin, CamundaEventDefinitionParser, ReceiveTaskParser):
    def create_task(self) -> Any:
        return ReceiveTaskParser.create_task(self)

    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        return _properties(self)


class GovflowBusinessRuleTask(BusinessRuleTask):
    """A business rule task whose decision must match: a table with no matching row is a modelling gap that
    would otherwise set nothing and fail later at a gateway with a confusing 'name not defined'."""

    def _run_hook(self, my_task: Any) -> Any:
        table = self.dmnEngine.decision_table
        rules = self.dmnEngine.decide(my_task)
        if table.hit_policy != "COLLECT" and not rules:
            inputs = []
            for column in table.inputs:
                label = column.label or column.name or (column.expression or "").strip("()") or column.id
                try:
                    inputs.append(f"{label} = {my_task.workflow.script_engine.evaluate(my_task, column.expression)!r}")
                except Exception:  # noqa: BLE001 - the inputs only decorate the message
                    inputs.append(f"{label} = ?")
            raise WorkflowTaskException(
                f"decision '{table.name or table.id}' has no rule for {', '.join(inputs) or 'these inputs'}: "
                "add a row (or a catch-all row) to the decision table",
                task=my_task,
            )
        result = super()._run_hook(my_task)
        extensions = getattr(self, "extensions", None) or {}
        if extensions.get(RESULT_VARIABLE):
            mapped = self._mapped_result(my_task, extensions[RESULT_MAPPING], rules)
            my_task.data[extensions[RESULT_VARIABLE]] = mapped
        return result

    def _mapped_result(self, my_task: Any, mapping: str, rules: list[Any]) -> Any:
        """camunda:resultVariable as Camunda maps it (the outputs are also set under their own names)."""
        table = self.dmnEngine.decision_table
        if table.hit_policy != "COLLECT":
            rules = rules[:1]
        results = [dict(rule.output_as_dict(my_task)) for rule in rules]
        name = table.name or table.id
        if mapping in ("singleEntry", "collectEntries") and any(len(r) != 1 for r in results):
            raise WorkflowTaskException(f"decision '{name}': {mapping} needs exactly one output column", task=my_task)
        if mapping in ("singleEntry", "singleResult"):
            if len(results) > 1:
                raise WorkflowTaskException(f"decision '{name}': {mapping} needs at most one matching rule",
                                            task=my_task)
            if not results:
                return None
            return next(iter(results[0].values())) if mapping == "singleEntry" else results[0]
        if mapping == "collectEntries":
            return [next(iter(r.values())) for r in results]
        return results


DECISION_RESULT_MAPPINGS = ("resultList", "singleEntry", "singleResult", "collectEntries")


class GovflowBusinessRuleTaskParser(BusinessRuleTaskParser):
    def create_task(self) -> Any:
        decision_ref = self.get_decision_ref(self.node)
        engine = self.process_parser.parser.get_engine(decision_ref, self.node)
        return GovflowBusinessRuleTask(self.spec, self.bpmn_id, dmnEngine=engine, **self.bpmn_attributes)

    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        extensions: dict[str, Any] = super().parse_extensions(node)
        variable = (self.node.get(C + "resultVariable") or "").strip()
        mapping = (self.node.get(C + "mapDecisionResult") or "").strip() or "resultList"
        if variable:
            if mapping not in DECISION_RESULT_MAPPINGS:
                self.raise_validation_exception(
                    f"camunda:mapDecisionResult must be one of {', '.join(DECISION_RESULT_MAPPINGS)}, not '{mapping}'")
            extensions[RESULT_VARIABLE] = variable
            extensions[RESULT_MAPPING] = mapping
        return extensions


class SingleDecisionParser(DMNParser):
    """Parses one named decision of a DMN file that may hold several."""

    def __init__(self, p: Any, node: Any, nsmap: Any, decision: Any, filename: str | None = None) -> None:
        super().__init__(p, node, nsmap, filename=filename)
        self.decision_node = decision

    def parse(self) -> None:
        self.decision = self._parse_decision([self.decision_node])
        # The engine appends a cell to its column's expression ("x if c else 0" + ">= 15" would bind to the
        # else branch): parenthesise every input expression so a cell always applies to the whole value.
        for table in self.decision.decisionTables:
            table.name = table.name or self.decision_node.get("id")  # named in error messages
            for column in table.inputs:
                if column.expression and column.expression.strip():
                    column.expression = f"({column.expression.strip()})"

    @property
    def bpmn_id(self) -> str:
        return self.decision_node.get("id")

    def get_name(self) -> str:
        return self.decision_node.get("name")


class GovflowProcessParser(ProcessParser):
    def _index_process_nodes(self) -> None:
        super()._index_process_nodes()
        # a BPMN element wins over an extension element with the same id (e.g. a camunda:formField named
        # like a sub-process): the engine would otherwise look up the form field and fail with no hint
        for node in self.xpath(".//*[@id]"):
            if etree.QName(node).namespace == BPMN_MODEL_NS:
                self.nodes_by_id[node.get("id")] = node


class GovflowParser(CamundaParser):
    PROCESS_PARSER_CLASS = GovflowProcessParser
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (GovflowUserTaskParser, UserTask),
        full_tag("startEvent"): (GovflowStartEventParser, StartEvent),
        full_tag("boundaryEvent"): (GovflowBoundaryEventParser, GovflowBoundaryEvent),
        full_tag("intermediateCatchEvent"): (GovflowIntermediateCatchEventParser, IntermediateCatchEvent),
        full_tag("receiveTask"): (GovflowReceiveTaskParser, ReceiveTask),
        full_tag("businessRuleTask"): (GovflowBusinessRuleTaskParser, GovflowBusinessRuleTask),
    }

    def add_dmn_xml(self, node: Any, filename: str | None = None) -> None:
        namespaces = self.namespaces.copy()
        namespaces.update(node.nsmap)
        if None in namespaces:
            namespaces["dmn"] = namespaces.pop(None)
        schema = self.dmn_schemas.get(namespaces.get("dmn"))
        if self.validator and schema is not None:
            from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator

            BpmnValidator(schema).validate(node, filename)
        decisions = node.findall("dmn:decision", namespaces=namespaces)
        if not decisions:
            raise ValidationException("No decisions found", node=node, file_name=filename)
        for decision in decisions:
            if decision.get("id") in self.dmn_parsers:
                raise ValidationException(
                    f"decision id '{decision.get('id')}' is defined twice", node=decision, file_name=filename
                )
            dmn_parser = SingleDecisionParser(self, node, namespaces, decision, filename=filename)
            self.dmn_parsers[dmn_parser.bpmn_id] = dmn_parser
            self.dmn_parsers_by_name[dmn_parser.get_name()] = dmn_parser


def timer_expression_is_literal(definition: TimerEventDefinition) -> bool:
    return bool(_ISO_LITERAL.match(definition.expression.strip("'\"")))
