"""Parsing diagrams deployed together: ids only need to be unique within their own file."""
from __future__ import annotations

import pytest

from service.engine.deployment import parse_files
from service.engine.runtime import EngineError
from tests.support import start_parsed


def _diagram(process_id: str, sub_id: str, field_id: str = "note") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d_{process_id}" targetNamespace="x">
  <bpmn:process id="{process_id}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:subProcess id="{sub_id}"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:startEvent id="inner_start"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:userTask id="work_{process_id}" camunda:candidateGroups="applicant"><bpmn:extensionElements><camunda:formData>
        <camunda:formField id="{field_id}" label="x" type="string" /></camunda:formData></bpmn:extensionElements>
        <bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:userTask>
      <bpmn:endEvent id="inner_end"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="inner_start" targetRef="work_{process_id}" />
      <bpmn:sequenceFlow id="g2" sourceRef="work_{process_id}" targetRef="inner_end" />
    </bpmn:subProcess>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="{sub_id}" />
    <bpmn:sequenceFlow id="f2" sourceRef="{sub_id}" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>""".encode()


def _run_through(parsed: object, value: str, field: str = "note") -> dict:
    runtime, wf = start_parsed(parsed)
    [task] = runtime.snapshot(wf, runtime.clock.now()).open_tasks
    runtime.complete(wf, runtime.find_ready_user_task(wf, task.id), {field: value})
    snap = runtime.snapshot(wf, runtime.clock.now())
    return {"end": snap.end_event, "element": task.element_id, "value": snap.variables.get(field)}


def test_two_diagrams_may_use_the_same_sub_process_and_element_ids() -> None:
    parsed = {p.key: p for p in parse_files({"a.bpmn": _diagram("a", "implementation"),
                                             "b.bpmn": _diagram("b", "implementation")})}
    assert sorted(parsed) == ["a", "b"]
    assert _run_through(parsed["a"], "x") == {"end": "end_completed", "element": "work_a", "value": "x"}
    assert _run_through(parsed["b"], "y") == {"end": "end_completed", "element": "work_b", "value": "y"}


def test_a_form_field_named_like_an_element_does_not_hide_the_element() -> None:
    [parsed] = parse_files({"c.bpmn": _diagram("c", "review", field_id="review")})
    assert _run_through(parsed, "ok", field="review") == {"end": "end_completed", "element": "work_c", "value": "ok"}


ENDLESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="x">
  <bpmn:process id="endless" isExecutable="true">
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="a" camunda:candidateGroups="applicant"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:subProcess id="sp"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:startEvent id="ss"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:userTask id="b" camunda:candidateGroups="applicant"><bpmn:incoming>g1</bpmn:incoming><bpmn:incoming>g3</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:userTask>
      <bpmn:scriptTask id="c" scriptFormat="python"><bpmn:incoming>g2</bpmn:incoming><bpmn:outgoing>g3</bpmn:outgoing><bpmn:script>n = 1</bpmn:script></bpmn:scriptTask>
      <bpmn:userTask id="x" camunda:candidateGroups="applicant"><bpmn:outgoing>g4</bpmn:outgoing></bpmn:userTask>
      <bpmn:endEvent id="se"><bpmn:incoming>g4</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g4" sourceRef="x" targetRef="se" />
      <bpmn:sequenceFlow id="g1" sourceRef="ss" targetRef="b" />
      <bpmn:sequenceFlow id="g2" sourceRef="b" targetRef="c" />
      <bpmn:sequenceFlow id="g3" sourceRef="c" targetRef="b" />
    </bpmn:subProcess>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a" />
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="sp" />
    <bpmn:sequenceFlow id="f3" sourceRef="sp" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>"""


def test_a_loop_with_no_way_out_is_a_clear_error_not_a_crash() -> None:
    [parsed] = parse_files({"endless.bpmn": ENDLESS.encode()})
    runtime, wf = start_parsed(parsed)
    [task] = runtime.snapshot(wf, runtime.clock.now()).open_tasks
    with pytest.raises(EngineError) as raised:
        runtime.complete(wf, runtime.find_ready_user_task(wf, task.id), {})
    assert "runs in a circle" in str(raised.value) and raised.value.element_id == "a"
