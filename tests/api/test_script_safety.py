"""A diagram whose script tries to reach the machine gets a clear error, not a shell."""
from __future__ import annotations

import time
from xml.sax.saxutils import escape

import pytest

from tests.support import Api

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="scripted" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="compute" name="计算" scriptFormat="python">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:userTask id="check" name="核对" camunda:candidateGroups="data_bureau">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="compute" />
    <bpmn:sequenceFlow id="f2" sourceRef="compute" targetRef="check" />
    <bpmn:sequenceFlow id="f3" sourceRef="check" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>"""


def deploy_script(api: Api, script: str) -> int:
    body = TEMPLATE.format(script=escape(script)).encode()
    return int(api.admin.post("/deployments", files=[("files", ("scripted.bpmn", body))]).status_code)


def test_an_ordinary_script_runs(api: Api) -> None:
    assert deploy_script(api, "total = sum([1, 2, 3])\nlabel = 'n=%d' % total") == 201
    inst = api.start("scripted", {})
    assert inst["variables"]["total"] == 6 and inst["variables"]["label"] == "n=6"


@pytest.mark.parametrize("script", ["import os", "x = ().__class__.__base__", "x = __builtins__"])
def test_escapes_are_refused_at_deploy(api: Api, script: str) -> None:
    assert deploy_script(api, script) == 422
    assert api.admin.get("/process-definitions/scripted").status_code == 404


@pytest.mark.parametrize("script, words", [
    ("x = open('/etc/hostname').read()", "open"),
    ("while True:\n    pass", "time limit"),
    ("x = 9 ** 9 ** 9", "power too large"),
])
def test_runtime_attempts_fail_cleanly_and_store_nothing(api: Api, script: str, words: str) -> None:
    assert deploy_script(api, script) == 201
    started = time.monotonic()
    r = api.admin.post("/process-instances", json={"process_key": "scripted", "business_key": "S", "variables": {}})
    assert time.monotonic() - started < 10
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"] == "/problems/process-error" and body["element_id"] == "compute" and words in body["detail"]
    assert api.admin.get("/process-instances", params={"business_key": "S"}).json()["items"] == []
