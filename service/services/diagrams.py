"""Where an instance stands on its diagram: per BPMN element, completed (how often, when last), active (its open
tasks), waiting (a timer's due time, a message) or failed (a timer whose firing failed).

Everything is read from what the service stores — the human tasks, the waiting events, the audit trail and the
instance's engine task rows (parsed as JSON, never restored into a workflow): no engine work."""
from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth import Principal
from service.db.models import AuditEvent, HumanTask, InstanceTask, ProcessDefinition, ProcessInstance, WaitingEvent
from service.schemas import DiagramElementOut, InstanceDiagramOut
from service.services.context import AppContext

# SpiffWorkflow's task states, as stored in a task row's "state"
_WAITING, _READY, _STARTED, _COMPLETED = 8, 16, 32, 64
_BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
_PRECEDENCE = {"failed": 4, "active": 3, "waiting": 2, "completed": 1}

_index_cache: dict[tuple[int, str], DiagramIndex] = {}
_index_lock = threading.Lock()


class DiagramIndex(NamedTuple):
    ids: frozenset[str]  # every BPMN element of the definition (what a viewer can mark)
    gateways: frozenset[str]
    names: dict[str, str]  # element id → its name, where it has one


def diagram_index(definition_id: int, bpmn_xml: str) -> DiagramIndex:
    """The elements of a definition version's BPMN; parsed once per version."""
    key = (definition_id, hashlib.sha256(bpmn_xml.encode("utf-8")).hexdigest())  # ids repeat across databases
    cached = _index_cache.get(key)
    if cached is not None:
        return cached
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(bpmn_xml.encode("utf-8"), parser)
    ids: set[str] = set()
    gateways: set[str] = set()
    names: dict[str, str] = {}
    for node in root.iter():
        if not isinstance(node.tag, str) or not node.tag.startswith(f"{{{_BPMN}}}") or not node.get("id"):
            continue
        element_id = str(node.get("id"))
        ids.add(element_id)
        if node.tag.endswith("Gateway"):
            gateways.add(element_id)
        if node.get("name"):
            names[element_id] = " ".join(str(node.get("name")).split())
    index = DiagramIndex(frozenset(ids), frozenset(gateways), names)
    with _index_lock:
        _index_cache[key] = index
    return index


def _task_rows(session: Session, instance: ProcessInstance) -> list[tuple[str, dict[str, Any]]]:
    """The instance's engine tasks in creation order, as (workflow id, task) with the task as stored."""
    rows = session.execute(select(InstanceTask.workflow_id, InstanceTask.body)
                           .where(InstanceTask.instance_id == instance.id).order_by(InstanceTask.seq)).all()
    if rows:
        return [(r.workflow_id, json.loads(r.body)) for r in rows]
    # a state written before task rows existed keeps its tasks in the header
    header = json.loads(instance.state_json or "{}")
    out = [("", t) for t in (header.get("tasks") or {}).values()]
    for key, sub in (header.get("subprocesses") or {}).items():
        out.extend((str(key), t) for t in (sub.get("tasks") or {}).values())
    return out


def _completion_times(instance: ProcessInstance, tasks: list[tuple[str, dict[str, Any]]],
                      human: dict[str, HumanTask], events: list[AuditEvent]) -> dict[str, datetime]:
    """When each engine task finished, on the service's clock. The engine's own timestamps are the worker's wall
    clock; the times the service recorded are the completions of user tasks, timers and messages (the audit trail)
    and the start of the instance. Every other task (gateway, script, decision, end event) finished in the same
    step as the task that led to it, so it takes that task's time."""
    anchors: dict[str, datetime] = {t_id: h.completed_at for t_id, h in human.items()
                                    if h.status == "completed" and h.completed_at is not None}
    fired: dict[str, list[datetime]] = defaultdict(list)
    for e in events:
        if e.action in ("timer.fired", "message.correlated") and e.element_id:
            fired[e.element_id].append(e.at)
    by_element: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, t in tasks:
        if t.get("state") == _COMPLETED:
            by_element[str(t.get("task_spec"))].append(t)
    for element_id, times in fired.items():
        done = sorted(by_element.get(element_id, []), key=lambda t: t.get("last_state_change") or 0)
        for t, at in zip(done, times, strict=False):
            anchors[str(t["id"])] = at
    out: dict[str, datetime] = {}
    for workflow_id, t in tasks:  # creation order: a task comes after its parent
        task_id = str(t.get("id"))
        parent = t.get("parent")
        if task_id in anchors:
            out[task_id] = anchors[task_id]
        elif parent and str(parent) in out:
            out[task_id] = out[str(parent)]
        elif workflow_id and workflow_id in out:  # the first task of a sub-process: when it was entered
            out[task_id] = out[workflow_id]
        else:
            out[task_id] = instance.started_at
    return out


def _merge(elements: dict[str, DiagramElementOut], element_id: str, state: str, **values: Any) -> DiagramElementOut:
    current = elements.get(element_id)
    if current is None:
        current = elements[element_id] = DiagramElementOut(state=state)
    elif _PRECEDENCE[state] > _PRECEDENCE[current.state]:
        current.state = state
    for name, value in values.items():
        setattr(current, name, value)
    return current


def element_states(session: Session, instance: ProcessInstance, bpmn_xml: str) -> dict[str, DiagramElementOut]:
    known, gateways, _ = diagram_index(instance.definition_id, bpmn_xml)
    tasks = _task_rows(session, instance)
    human = {h.id: h for h in session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id))}
    events = list(session.scalars(select(AuditEvent).where(
        AuditEvent.instance_id == instance.id,
        AuditEvent.action.in_(("timer.fired", "message.correlated"))).order_by(AuditEvent.seq)))
    times = _completion_times(instance, tasks, human, events)
    elements: dict[str, DiagramElementOut] = {}

    for _, t in tasks:
        element_id, state = str(t.get("task_spec")), t.get("state")
        if element_id not in known:
            continue  # the engine's own bookkeeping tasks (Start, End, joins of boundary events)
        if state == _COMPLETED:
            e = _merge(elements, element_id, "completed")
            e.completed_count += 1
            at = times.get(str(t.get("id")))
            if at is not None and (e.last_completed_at is None or at > e.last_completed_at):
                e.last_completed_at = at
        elif state in (_READY, _STARTED) and str(t.get("id")) not in human:
            _merge(elements, element_id, "active")  # a sub-process under way
        elif state == _WAITING and element_id in gateways:
            _merge(elements, element_id, "waiting", kind="gateway")  # a join waiting for its other branches

    for h in sorted(human.values(), key=lambda h: (h.created_at, h.id)):
        if h.status != "open" or h.element_id not in known:
            continue
        e = _merge(elements, h.element_id, "active")
        e.task_ids = [*e.task_ids, h.id]
        if h.due_at is not None and (e.due_at is None or h.due_at < e.due_at):
            e.due_at = h.due_at

    waiting = session.scalars(select(WaitingEvent).where(WaitingEvent.instance_id == instance.id)
                              .order_by(WaitingEvent.id))
    for w in waiting:
        if w.element_id not in known:
            continue
        failed = w.kind == "timer" and (w.attempts or 0) > 0
        _merge(elements, w.element_id, "failed" if failed else "waiting", kind=w.kind, name=w.name,
               due_at=w.due_at, failed_attempts=w.attempts or 0, last_error=w.last_error)
    return elements


def instance_diagram(ctx: AppContext, session: Session, principal: Principal, instance_id: str) -> InstanceDiagramOut:
    """The definition's BPMN and, per element, where the instance stands (for the instances the principal sees)."""
    from service.services.instances import load_row

    row = load_row(session, principal, instance_id)
    bpmn_xml = session.scalar(select(ProcessDefinition.bpmn_xml).where(ProcessDefinition.id == row.definition_id))
    return InstanceDiagramOut(
        process_instance_id=row.id, process_key=row.process_key, definition_id=row.definition_id,
        definition_version=row.definition_version, status=row.status, bpmn_xml=bpmn_xml or "",
        elements=element_states(session, row, bpmn_xml or ""))
