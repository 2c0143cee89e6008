"""A step's decision reads with that step's own options wherever the console shows it: a 复查 whose options are
恢复建设 and 终止项目 showed its reject as the common 不予通过 in the project's records and history."""
from __future__ import annotations

import re
from datetime import timedelta

import httpx

from tests.support import Api

DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="susp" name="复查" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="check" name="初查" camunda:candidateGroups="data_bureau">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="decision" label="初查结论" type="enum">
          <camunda:value id="pass" name="通过" /><camunda:value id="reject" name="不予通过" />
        </camunda:formField></camunda:formData></bpmn:extensionElements>
      <bpmn:incoming>f0</bpmn:incoming><bpmn:outgoing>f1</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="suspension_review" name="暂停建设期间复查" camunda:candidateGroups="data_bureau">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="decision" label="复查结论" type="enum">
          <camunda:value id="pass" name="恢复建设" /><camunda:value id="reject" name="终止项目" />
        </camunda:formField></camunda:formData></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="after" name="归档" camunda:candidateGroups="data_bureau">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="check" />
    <bpmn:sequenceFlow id="f1" sourceRef="check" targetRef="suspension_review" />
    <bpmn:sequenceFlow id="f2" sourceRef="suspension_review" targetRef="after" />
    <bpmn:sequenceFlow id="f3" sourceRef="after" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_each_decision_reads_with_its_own_steps_options(api: Api) -> None:
    assert api.admin.post("/deployments", files=[("files", ("s.bpmn", DIAGRAM.encode()))]).status_code == 201
    instance = api.start("susp", {})
    li = api.as_("li", "data_bureau")
    for element in ("check", "suspension_review"):
        [task] = [t for t in api.instance(instance["id"])["open_tasks"] if t["element_id"] == element]
        decision = "pass" if element == "check" else "reject"
        r = li.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": decision}})
        assert r.status_code == 200, r.text
        api.clock.advance(timedelta(minutes=5))
    after = api.open_task(instance["id"], "after")
    with httpx.Client(base_url=api.server.url, timeout=30) as console:
        login = console.post("/console/login", data={"credential": api.token("li", ("data_bureau",)),
                                                     "next": "/console/inbox"})
        assert login.status_code == 303, login.text
        project = console.get(f"/console/projects/{instance['id']}").text
        task_page = console.get(f"/console/tasks/{after['id']}").text
    records = _text(project.split("<h2>办理记录</h2>", 1)[1].split("</section>", 1)[0])
    history = _text(project.split("<h2>历史</h2>", 1)[1].split("</section>", 1)[0])
    done = _text(task_page.split("<h2>已办记录</h2>", 1)[1].split("</section>", 1)[0])
    for shown in (records, history, done):
        assert "终止项目" in shown and "通过" in shown and "不予通过" not in shown, shown
