"""Camunda 7 REST response bodies (ProcessDefinitionDto, TaskDto, …) built from govflow's API models."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.api.engine_rest.mapping import definition_id, duration_ms, format_date, typed
from service.schemas import (
    AuditEventOut,
    CommentOut,
    FormFieldOut,
    ProcessDefinitionOut,
    ProcessInstanceOut,
    TaskSummary,
)


def link(base: str, path: str, rel: str = "self", method: str = "GET") -> dict[str, str]:
    return {"method": method, "href": f"{base}{path}", "rel": rel}


def definition_ref(d: ProcessDefinitionOut) -> str:
    return definition_id(d.key, d.version, d.deployment_id)


def process_definition(d: ProcessDefinitionOut) -> dict[str, Any]:
    return {
        "id": definition_ref(d), "key": d.key, "category": None, "description": d.documentation, "name": d.name,
        "version": d.version, "resource": d.resource_name, "deploymentId": str(d.deployment_id), "diagram": None,
        "suspended": False, "tenantId": None, "versionTag": None, "historyTimeToLive": None,
        "startableInTasklist": True,
    }


def decision_definition(key: str, name: str | None, resource: str, version: int,
                        deployment_id: str) -> dict[str, Any]:
    return {
        "id": definition_id(key, version, deployment_id), "key": key, "category": None, "name": name,
        "version": version, "resource": resource, "deploymentId": deployment_id, "tenantId": None,
        "decisionRequirementsDefinitionId": None, "decisionRequirementsDefinitionKey": None,
        "historyTimeToLive": None, "versionTag": None,
    }


def deployment(base: str, deployment_id: str, name: str | None, source: str | None,
               definitions: Iterable[ProcessDefinitionOut],
               decisions: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    defs = list(definitions)
    when = min((d.created_at for d in defs), default=None)
    return {
        "links": [link(base, f"/deployment/{deployment_id}")], "id": deployment_id, "name": name, "source": source,
        "deploymentTime": format_date(when), "tenantId": None,
        "deployedProcessDefinitions": {definition_ref(d): process_definition(d) for d in defs},
        "deployedCaseDefinitions": None,
        "deployedDecisionDefinitions": decisions or None,
        "deployedDecisionRequirementsDefinitions": None,
    }


def process_instance(base: str, i: ProcessInstanceOut, definition: str,
                     variables: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "links": [link(base, f"/process-instance/{i.id}")], "id": i.id, "definitionId": definition,
        "definitionKey": i.process_key, "businessKey": i.business_key, "caseInstanceId": None,
        "ended": i.status != "running", "suspended": False, "tenantId": None,
    }
    if variables is not None:
        out["variables"] = variables
    return out


def task(t: TaskSummary, definition: str | None, *, description: str | None = None,
         form_key: str | None = None) -> dict[str, Any]:
    return {
        "id": t.id, "name": t.name, "assignee": t.assignee, "owner": None, "created": format_date(t.created_at),
        "lastUpdated": None, "due": format_date(t.due_at), "followUp": None, "delegationState": None,
        "description": description, "executionId": t.process_instance_id, "parentTaskId": None, "priority": 50,
        "processDefinitionId": definition, "processInstanceId": t.process_instance_id, "caseExecutionId": None,
        "caseDefinitionId": None, "caseInstanceId": None, "taskDefinitionKey": t.element_id, "suspended": False,
        "formKey": form_key, "camundaFormRef": None, "tenantId": None,
    }


def identity_links(t: TaskSummary) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    if t.assignee:
        links.append({"userId": t.assignee, "groupId": None, "type": "assignee"})
    links += [{"userId": u, "groupId": None, "type": "candidate"} for u in t.candidate_users]
    links += [{"userId": None, "groupId": g, "type": "candidate"} for g in t.candidate_groups]
    return links


def form_variables(fields: Iterable[FormFieldOut], values: dict[str, Any]) -> dict[str, Any]:
    """Each form field with the current value of its variable, or its default."""
    return {f.id: typed(values.get(f.id, f.default), f.type) for f in fields}


def comment(base: str, c: CommentOut) -> dict[str, Any]:
    return {
        "links": [link(base, f"/task/{c.task_id}/comment/{c.id}")], "id": c.id, "userId": c.user_id,
        "time": format_date(c.time), "taskId": c.task_id, "processInstanceId": c.process_instance_id,
        "message": c.message, "removalTime": None, "rootProcessInstanceId": c.process_instance_id,
    }


def activity_tree(i: ProcessInstanceOut, definition: str, name: str | None) -> dict[str, Any]:
    """Where the instance stands: its open user tasks and what it waits for, below the process."""
    children = [
        {"id": f"{t.element_id}:{t.id}", "parentActivityInstanceId": i.id, "activityId": t.element_id,
         "activityType": "userTask", "processInstanceId": i.id, "processDefinitionId": definition,
         "childActivityInstances": [], "childTransitionInstances": [], "executionIds": [i.id],
         "activityName": t.name, "incidentIds": [], "incidents": [], "name": t.name}
        for t in i.open_tasks
    ]
    children += [
        {"id": f"{w.element_id}:{i.id}", "parentActivityInstanceId": i.id, "activityId": w.element_id,
         "activityType": "intermediateMessageCatch" if w.kind == "message" else "intermediateTimer",
         "processInstanceId": i.id, "processDefinitionId": definition, "childActivityInstances": [],
         "childTransitionInstances": [], "executionIds": [i.id], "activityName": w.name, "incidentIds": [],
         "incidents": [], "name": w.name}
        for w in i.waiting_for
    ]
    return {
        "id": i.id, "parentActivityInstanceId": None, "activityId": definition, "activityType": "processDefinition",
        "processInstanceId": i.id, "processDefinitionId": definition, "childActivityInstances": children,
        "childTransitionInstances": [], "executionIds": [i.id], "activityName": name, "incidentIds": [],
        "incidents": [], "name": name,
    }


STATES = {"running": "ACTIVE", "completed": "COMPLETED", "cancelled": "EXTERNALLY_TERMINATED"}


def historic_process_instance(i: ProcessInstanceOut, definition: str, name: str | None) -> dict[str, Any]:
    return {
        "id": i.id, "rootProcessInstanceId": i.id, "superProcessInstanceId": None, "superCaseInstanceId": None,
        "caseInstanceId": None, "processDefinitionName": name, "processDefinitionKey": i.process_key,
        "processDefinitionVersion": i.definition_version, "processDefinitionId": definition,
        "businessKey": i.business_key, "startTime": format_date(i.started_at), "endTime": format_date(i.ended_at),
        "removalTime": None, "durationInMillis": duration_ms(i.started_at, i.ended_at),
        "startUserId": i.started_by, "startActivityId": None, "deleteReason": i.cancel_reason, "tenantId": None,
        "state": STATES.get(i.status, i.status.upper()), "restartedProcessInstanceId": None,
    }


def historic_task(t: TaskSummary, definition: str | None) -> dict[str, Any]:
    ended = t.completed_at if t.status != "open" else None
    return {
        "id": t.id, "processDefinitionKey": t.process_key, "processDefinitionId": definition,
        "processInstanceId": t.process_instance_id, "executionId": t.process_instance_id,
        "caseDefinitionKey": None, "caseDefinitionId": None, "caseInstanceId": None, "caseExecutionId": None,
        "activityInstanceId": f"{t.element_id}:{t.id}", "name": t.name, "description": None,
        "deleteReason": {"completed": "completed", "cancelled": "deleted"}.get(t.status), "owner": None,
        "assignee": t.assignee, "startTime": format_date(t.created_at), "endTime": format_date(ended),
        "duration": duration_ms(t.created_at, ended), "taskDefinitionKey": t.element_id, "priority": 50,
        "due": format_date(t.due_at), "parentTaskId": None, "followUp": None, "tenantId": None,
        "removalTime": None, "rootProcessInstanceId": t.process_instance_id,
    }


_EVENT_ACTIVITY_TYPES = {"message.correlated": "intermediateMessageCatch", "timer.fired": "intermediateTimer",
                         "instance.completed": "noneEndEvent"}


def historic_activities(instance: ProcessInstanceOut, definition: str,
                        events: Iterable[AuditEventOut]) -> list[dict[str, Any]]:
    """The activities an instance went through, from its audit trail: user tasks from creation to completion
    or cancellation, and the messages, timers and end event it reached."""
    out: list[dict[str, Any]] = []
    tasks: dict[str, dict[str, Any]] = {}

    def activity(element_id: str, kind: str, at: Any, ident: str, name: str | None) -> dict[str, Any]:
        return {
            "id": ident, "parentActivityInstanceId": instance.id, "activityId": element_id, "activityName": name,
            "activityType": kind, "processDefinitionKey": instance.process_key, "processDefinitionId": definition,
            "processInstanceId": instance.id, "executionId": instance.id, "taskId": None,
            "calledProcessInstanceId": None, "calledCaseInstanceId": None, "assignee": None,
            "startTime": format_date(at), "endTime": None, "durationInMillis": None, "canceled": False,
            "completeScope": False, "tenantId": None, "removalTime": None, "rootProcessInstanceId": instance.id,
        }

    for e in events:
        if e.action == "task.created" and e.task_id and e.element_id:
            a = activity(e.element_id, "userTask", e.at, f"{e.element_id}:{e.task_id}", e.data.get("name"))
            a["taskId"], a["assignee"], a["_start"] = e.task_id, e.data.get("assignee"), e.at
            tasks[e.task_id] = a
            out.append(a)
        elif e.action in ("task.claimed", "task.completed", "task.cancelled") and e.task_id in tasks:
            a = tasks[e.task_id]
            if e.action != "task.cancelled":
                a["assignee"] = e.actor
            if e.action != "task.claimed":
                a["endTime"], a["durationInMillis"] = format_date(e.at), duration_ms(a["_start"], e.at)
                a["canceled"] = e.action == "task.cancelled"
        elif e.action in _EVENT_ACTIVITY_TYPES and e.element_id:
            name = e.data.get("name") if e.action == "message.correlated" else None
            a = activity(e.element_id, _EVENT_ACTIVITY_TYPES[e.action], e.at, f"{e.element_id}:{e.id}", name)
            a["endTime"], a["durationInMillis"] = format_date(e.at), 0
            a["completeScope"] = e.action == "instance.completed"
            out.append(a)
    for a in out:
        a.pop("_start", None)
    return out
