"""Deploy-time parsing and checking of BPMN/DMN files: everything the engine would only find out
while running an instance (bad expressions, unsupported elements) is reported here, with the file,
the element id and the line."""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.defaults import ManualTask, NoneTask, SendTask, ServiceTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.exceptions import SpiffWorkflowException

from service.engine.contracts import message_contracts
from service.engine.forms import FormDefinitionError, FormField
from service.engine.operations import send_back_problems
from service.engine.parser import FORM_KEY, OUTPUTS_KEY, GovflowParser
from service.engine.scripting import compile_expression
from service.engine.serializer import dump_spec
from service.engine.timers import CALENDAR_PROPERTY, TimingError, due_at, parse_cycle

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
NS = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}


class ModelError(Exception):
    def __init__(self, message: str, file: str | None, element_id: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.element_id = element_id
        self.line = line


@dataclass
class ParsedProcess:
    key: str
    name: str | None
    resource_name: str
    bpmn_xml: str
    dmn_resources: dict[str, str]
    content_hash: str
    spec: Any
    subprocess_specs: dict[str, Any]
    spec_json: str
    start_form: list[FormField] | None
    documentation: str | None
    candidate_starter_groups: list[str] = field(default_factory=list)
    candidate_starter_users: list[str] = field(default_factory=list)


_validator: BpmnValidator | None = None


def _shared_validator() -> BpmnValidator:
    global _validator
    if _validator is None:
        _validator = BpmnValidator()
    return _validator


_LINES: dict[int, tuple[Any, dict[str, int]]] = {}


def _line_of(tree: Any, element_id: str | None) -> int | None:
    """The line of an element, from an index built once per tree (a search per element would make checking
    a large diagram quadratic)."""
    if tree is None or not element_id:
        return None
    held = _LINES.get(id(tree))
    if held is None or held[0] is not tree:
        if len(_LINES) > 16:
            _LINES.clear()
        held = (tree, {el.get("id"): el.sourceline for el in tree.iter() if isinstance(el.tag, str) and el.get("id")})
        _LINES[id(tree)] = held
    return held[1].get(element_id)


MAX_FILES = 50
MAX_ELEMENTS = 5_000  # elements with an id in one file: the five lifecycles have 250-300 each
MAX_TEXT = 20_000  # characters of one expression, script or documentation


def _xml(name: str, content: bytes) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        tree = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as e:
        raise ModelError(f"not well-formed XML: {e.msg}", name, None, e.lineno) from None
    count = 0
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        if el.get("id"):
            count += 1
        if el.text and len(el.text) > MAX_TEXT:
            raise ModelError(f"an element holds a text of {len(el.text)} characters; at most {MAX_TEXT}",
                             name, el.getparent().get("id") if el.getparent() is not None else None, el.sourceline)
    if count > MAX_ELEMENTS:
        raise ModelError(f"the file has {count} elements; a diagram may have at most {MAX_ELEMENTS}", name)
    return tree


def parse_files(files: dict[str, bytes]) -> list[ParsedProcess]:
    """Parse and check every BPMN/DMN file of one deployment; raise ModelError on the first problem."""
    if not files:
        raise ModelError("no files to deploy", None)
    if len(files) > MAX_FILES:
        raise ModelError(f"a deployment may have at most {MAX_FILES} files", None)
    trees: dict[str, Any] = {}
    for name, content in files.items():
        if not (name.endswith(".bpmn") or name.endswith(".dmn")):
            raise ModelError("only .bpmn and .dmn files can be deployed", name)
        trees[name] = _xml(name, content)
        _check_lengths(name, trees[name])
        try:  # kept as text: Camunda Modeler saves UTF-8; another encoding would be read back wrong
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError("the file is not UTF-8: save it as UTF-8 (Camunda Modeler does)", name) from None

    decision_files: dict[str, str] = {}
    for name, tree in trees.items():
        if name.endswith(".dmn"):
            for decision in tree.iter("{*}decision"):
                decision_files[decision.get("id")] = name
    # Each diagram gets its own parser, so that element ids (a sub-process is parsed as a process of its own)
    # only need to be unique within their file; a diagram that calls a process of another file gets that file too.
    process_files: dict[str, str] = {}
    defined: dict[str, str] = {}
    for name, tree in trees.items():
        if name.endswith(".bpmn"):
            _check_unsupported_xml(name, tree)
            for process in tree.findall("bpmn:process", NS):
                defined.setdefault(process.get("id"), name)
                if process.get("isExecutable", "true") == "true":
                    process_files[process.get("id")] = name
    if not process_files:
        raise ModelError("no executable process found", next(iter(files)))
    parsers = {name: _parser_for(name, trees, defined) for name in sorted(set(process_files.values()))}

    result = []
    for key, name in process_files.items():
        tree = trees[name]
        parser = parsers[name]
        spec = _guard(lambda k=key, p=parser: p.get_spec(k), name, tree)
        subs = _guard(lambda k=key, p=parser: p.get_subprocess_specs(k), name, tree)
        for s in [spec, *subs.values()]:
            _lint_spec(s, name, tree)
        try:
            message_contracts([spec, *subs.values()])
        except FormDefinitionError as e:
            element = str(e).split(":", 1)[0]
            raise ModelError(str(e), name, element, _line_of(tree, element)) from None
        for element, problem in send_back_problems(spec, subs):
            raise ModelError(problem, name, element, _line_of(tree, element))
        process_node = tree.find(f"bpmn:process[@id='{key}']", NS)
        refs = {n.get(f"{{{CAMUNDA_NS}}}decisionRef") for n in tree.iter(f"{{{BPMN_NS}}}businessRuleTask")}
        dmn_names = sorted({decision_files[r] for r in refs if r in decision_files})
        digest = hashlib.sha256(files[name])
        for dmn in dmn_names:
            digest.update(b"\0" + dmn.encode() + b"\0" + files[dmn])
        start_form = None
        for task_spec in spec.task_specs.values():
            if type(task_spec).__name__ == "StartEvent" and FORM_KEY in (task_spec.extensions or {}):
                start_form = [FormField.from_dict(f) for f in task_spec.extensions[FORM_KEY]]
        doc = process_node.find("bpmn:documentation", NS) if process_node is not None else None
        attributes = process_node.attrib if process_node is not None else {}
        starters = _split(attributes.get(f"{{{CAMUNDA_NS}}}candidateStarterGroups"))
        starter_users = _split(attributes.get(f"{{{CAMUNDA_NS}}}candidateStarterUsers"))
        result.append(
            ParsedProcess(
                key=key,
                name=process_node.get("name") if process_node is not None else None,
                resource_name=name,
                bpmn_xml=files[name].decode("utf-8"),
                dmn_resources={d: files[d].decode("utf-8") for d in dmn_names},
                content_hash=digest.hexdigest(),
                spec=spec,
                subprocess_specs=subs,
                spec_json=dump_spec(spec, subs),
                start_form=start_form,
                documentation=(doc.text or "").strip() or None if doc is not None else None,
                candidate_starter_groups=starters,
                candidate_starter_users=starter_users,
            )
        )
    return result


_REPARSED: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
_REPARSED_LIMIT = 64
_REPARSED_LOCK = threading.Lock()


def reparse(key: str, resource_name: str, bpmn_xml: str, dmn_resources: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """A deployed definition's spec parsed again from its stored files, so that what this version of the service
    does with a diagram (its timers, forms, checks) applies to definitions deployed before it. The same files give
    the same spec, which everything running the definition shares: a process parses a set of files once (a few
    dozen sets are kept)."""
    cache_key = (key, resource_name, hashlib.sha256(bpmn_xml.encode("utf-8")).hexdigest(),
                 tuple(sorted((n, hashlib.sha256(x.encode("utf-8")).hexdigest()) for n, x in dmn_resources.items())))
    found = _REPARSED.get(cache_key)
    if found is not None:
        return found
    files = {resource_name: bpmn_xml.encode("utf-8"), **{n: x.encode("utf-8") for n, x in dmn_resources.items()}}
    for parsed in parse_files(files):
        if parsed.key == key:
            with _REPARSED_LOCK:
                if len(_REPARSED) >= _REPARSED_LIMIT:
                    _REPARSED.pop(next(iter(_REPARSED)))
                _REPARSED[cache_key] = (parsed.spec, parsed.subprocess_specs)
            return parsed.spec, parsed.subprocess_specs
    raise ModelError(f"process '{key}' is not in its stored file", resource_name)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _guard(fn: Any, name: str, tree: Any) -> Any:
    try:
        return fn()
    except ModelError:
        raise
    except ValidationException as e:
        element = getattr(e, "id", None) or None
        line = e.line_number if isinstance(e.line_number, int) and e.line_number else _line_of(tree, element)
        file = e.file_name or name
        message = str(e).split("\n")[0]
        raise ModelError(message, file if isinstance(file, str) else name, element, line) from None
    except KeyError as e:
        if "decisionRef" in str(e):
            raise ModelError("a business rule task needs camunda:decisionRef", name) from None
        raise ModelError(f"missing attribute {e}", name) from None
    except SpiffWorkflowException as e:
        raise ModelError(str(e), name) from None


def _parser_for(name: str, trees: dict[str, Any], defined: dict[str, str]) -> GovflowParser:
    """A parser holding every decision file, this diagram, and the diagrams whose processes it calls."""
    parser = GovflowParser(validator=_shared_validator())
    for dmn, tree in trees.items():
        if dmn.endswith(".dmn"):
            _guard(lambda n=dmn, t=tree: parser.add_dmn_xml(t, filename=n), dmn, tree)
    wanted, added = [name], set()
    while wanted:
        current = wanted.pop()
        if current in added:
            continue
        added.add(current)
        tree = trees[current]
        _guard(lambda n=current, t=tree: parser.add_bpmn_xml(t, filename=n), current, tree)
        for call in tree.iter(f"{{{BPMN_NS}}}callActivity"):
            target = defined.get(call.get("calledElement") or "")
            if target is not None and target not in added:
                wanted.append(target)
    return parser


# what the tables keep of a diagram, at most (service/db/models.py): an element's id, a process's, task's or message's
# name, a lane's name, a candidate group or user or an assignee named in the diagram, a form key, a calendar
_ID_LENGTH, _NAME_LENGTH, _LANE_LENGTH, _PERSON_LENGTH, _FORM_KEY_LENGTH, _CALENDAR_LENGTH = 200, 500, 200, 200, 500, 50


def _check_lengths(name: str, tree: Any) -> None:
    """A diagram whose ids or names the database cannot keep is refused when it is deployed, naming the element;
    PostgreSQL would refuse its rows only when an instance reaches them, and SQLite would store them."""
    if len(name) > _NAME_LENGTH:
        raise ModelError(f"the file name is longer than {_NAME_LENGTH} characters", name[:100] + "…")

    def check(value: str | None, limit: int, what: str, element: Any) -> None:
        if value is not None and len(value) > limit:
            owner = element
            while owner is not None and not owner.get("id"):
                owner = owner.getparent()
            raise ModelError(f"{what} is longer than {limit} characters", name,
                             owner.get("id")[:100] if owner is not None else None, element.sourceline)

    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag.startswith(f"{{{BPMN_NS}}}"):  # the model's elements, not their layout (bpmndi)
            kind = element.tag[len(BPMN_NS) + 2:]
            check(element.get("id"), _ID_LENGTH, "the id", element)
            if kind == "lane":
                check(element.get("name"), _LANE_LENGTH, "the lane's name", element)
            elif kind in ("process", "message") or kind.endswith(("Task", "Event")):  # names the tables keep
                check(element.get("name"), _NAME_LENGTH, "the name", element)
        for attribute in ("candidateGroups", "candidateUsers", "candidateStarterGroups", "candidateStarterUsers"):
            value = element.get(f"{{{CAMUNDA_NS}}}{attribute}")
            if value and not value.strip().startswith("${"):
                for one in _split(value):
                    check(one, _PERSON_LENGTH, f"camunda:{attribute} {one[:40]!r}…", element)
        assignee = element.get(f"{{{CAMUNDA_NS}}}assignee")
        if assignee and not assignee.strip().startswith("${"):
            check(assignee, _PERSON_LENGTH, "camunda:assignee", element)
        check(element.get(f"{{{CAMUNDA_NS}}}formKey"), _FORM_KEY_LENGTH, "camunda:formKey", element)
        if element.tag == f"{{{CAMUNDA_NS}}}property" and element.get("name") == CALENDAR_PROPERTY:
            check(element.get("value"), _CALENDAR_LENGTH, "the calendar property", element)


def _check_unsupported_xml(name: str, tree: Any) -> None:
    for io in tree.iter(f"{{{CAMUNDA_NS}}}inputOutput"):
        owner = io.getparent().getparent() if io.getparent() is not None else None
        if owner is None or owner.tag != f"{{{BPMN_NS}}}userTask":
            raise ModelError(
                "camunda:inputOutput is supported on user tasks only (their output parameters)",
                name, owner.get("id") if owner is not None else None, io.sourceline,
            )
    for sub in tree.iter(f"{{{BPMN_NS}}}subProcess"):
        if sub.get("triggeredByEvent") == "true":
            raise ModelError(
                "event sub-processes are not supported; use boundary events on a task or sub-process",
                name, sub.get("id"), sub.sourceline,
            )
    for start in tree.iter(f"{{{BPMN_NS}}}startEvent"):
        parent = start.getparent()
        top_level = parent is not None and parent.tag == f"{{{BPMN_NS}}}process"
        if top_level and start.find("bpmn:timerEventDefinition", NS) is not None:
            raise ModelError(
                "timer start events are not supported; start instances over the API",
                name, start.get("id"), start.sourceline,
            )


def _compile(source: str | None, mode: str, what: str, name: str, tree: Any, element_id: str | None) -> None:
    if source is None or not str(source).strip():
        return
    try:
        compile_expression(str(source), mode)
    except SyntaxError as e:
        raise ModelError(f"{what} {source!r} is not a valid expression: {e}", name, element_id,
                         _line_of(tree, element_id)) from None


def _lint_spec(spec: Any, name: str, tree: Any) -> None:
    for task_spec in spec.task_specs.values():
        element = getattr(task_spec, "bpmn_id", None)
        if element is None:
            continue
        line = _line_of(tree, element)
        if isinstance(task_spec, (NoneTask, ManualTask)):
            raise ModelError("untyped and manual tasks are not supported: make it a user task", name, element, line)
        if isinstance(task_spec, (ServiceTask, SendTask)):
            raise ModelError("service and send tasks are not supported", name, element, line)
        for condition, _target in getattr(task_spec, "cond_task_specs", []) or []:
            text = condition.args[0] if hasattr(condition, "args") else condition
            _compile(text, "eval", "condition", name, tree, element)
        _compile(getattr(task_spec, "script", None), "exec", "script", name, tree, element)
        for attr in ("cardinality", "condition"):
            value = getattr(task_spec, attr, None)
            if isinstance(value, str):
                _compile(value, "eval", attr, name, tree, element)
        definition = getattr(task_spec, "event_definition", None)
        for d in getattr(definition, "event_definitions", None) or ([definition] if definition else []):
            if isinstance(d, TimerEventDefinition):
                _lint_timer(d, name, tree, element)
        ext = getattr(task_spec, "extensions", None) or {}
        for variable, text in ext.get(OUTPUTS_KEY) or []:
            if text.startswith("${") and text.endswith("}"):
                _compile(text[2:-1], "eval", f"output parameter {variable}", name, tree, element)
        for key in ("camunda:candidateGroups", "camunda:candidateUsers", "camunda:assignee", "camunda:dueDate"):
            value = ext.get(key)
            if value and value.strip().startswith("${"):
                _compile(value.strip()[2:-1], "eval", key, name, tree, element)
            elif value and key == "camunda:dueDate":
                _lint_time_literal(value.strip(), "due date", name, tree, element)
        engine = getattr(task_spec, "dmnEngine", None)
        if engine is not None:
            _lint_decision(engine.decision_table, name, tree, element)


def _lint_timer(d: TimerEventDefinition, name: str, tree: Any, element: str) -> None:
    text = d.expression.strip()
    if re.match(r"^(P\d|PT\d|R\d*/|\d{4}-\d{2})", text):
        # meant as an ISO literal but not one the parser recognised
        raise ModelError(f"timer {text!r} is not an ISO 8601 date, duration or cycle", name, element,
                         _line_of(tree, element))
    _compile(d.expression, "eval", "timer", name, tree, element)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        _lint_time_literal(text[1:-1], "timer", name, tree, element)


def _lint_time_literal(literal: str, what: str, name: str, tree: Any, element: str) -> None:
    """A literal date, duration or cycle is checked (and bounded) at deploy, not when an instance reaches it."""
    reference = datetime.now(UTC)
    try:
        if literal.strip().upper().startswith("R"):
            parse_cycle(literal, reference)
        else:
            due_at(literal, reference)
    except TimingError as e:
        raise ModelError(f"{what} {literal!r}: {e}", name, element, _line_of(tree, element)) from None


def _lint_decision(table: Any, name: str, tree: Any, element: str) -> None:
    for column in table.inputs:
        _compile(column.expression, "eval", f"decision {table.id} input", name, tree, element)
    for rule in table.rules:
        for entry in rule.inputEntries:
            for lhs in entry.lhs:
                if lhs is None or not str(lhs).strip() or str(lhs).strip() == "-":
                    continue
                text = str(lhs).replace("?", "dmninputexpr")
                if "dmninputexpr" in text:
                    _compile(text, "eval", f"decision {table.id} rule {rule.row_number}", name, tree, element)
                    continue
                try:
                    compile_expression(text, "eval")
                except SyntaxError:
                    _compile(f"value {text}", "eval", f"decision {table.id} rule {rule.row_number} cell",
                             name, tree, element)
        for out in rule.outputEntries:
            _compile(getattr(out, "text", None), "eval", f"decision {table.id} rule {rule.row_number} output",
                     name, tree, element)
