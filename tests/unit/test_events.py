"""Events the engine gets subtly wrong, made right by the service's runtime."""
from __future__ import annotations

from typing import Any

from service.engine.deployment import parse_files
from service.engine.runtime import Runtime
from tests.support import start_parsed

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="x">
  <bpmn:process id="events" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" camunda:candidateGroups="applicant"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:boundaryEvent id="change" cancelActivity="false" attachedToRef="work"><bpmn:outgoing>f3</bpmn:outgoing><bpmn:messageEventDefinition messageRef="m_change" /></bpmn:boundaryEvent>
    <bpmn:userTask id="handle" camunda:candidateGroups="data_bureau"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:scriptTask id="note" scriptFormat="python"><bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f9</bpmn:outgoing><bpmn:script>side_note = "handled"</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end_handled"><bpmn:incoming>f9</bpmn:incoming></bpmn:endEvent>
    <bpmn:eventBasedGateway id="which"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing><bpmn:outgoing>f6</bpmn:outgoing><bpmn:outgoing>f10</bpmn:outgoing></bpmn:eventBasedGateway>
    <bpmn:intermediateCatchEvent id="got_a"><bpmn:incoming>f5</bpmn:incoming><bpmn:outgoing>f7</bpmn:outgoing><bpmn:messageEventDefinition messageRef="m_a" /></bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="got_b"><bpmn:incoming>f6</bpmn:incoming><bpmn:outgoing>f8</bpmn:outgoing><bpmn:messageEventDefinition messageRef="m_b" /></bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="too_late"><bpmn:incoming>f10</bpmn:incoming><bpmn:outgoing>f11</bpmn:outgoing><bpmn:timerEventDefinition><bpmn:timeDuration>P30D</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f7</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_rejected"><bpmn:incoming>f8</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_terminated"><bpmn:incoming>f11</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="which" />
    <bpmn:sequenceFlow id="f3" sourceRef="change" targetRef="handle" />
    <bpmn:sequenceFlow id="f4" sourceRef="handle" targetRef="note" />
    <bpmn:sequenceFlow id="f9" sourceRef="note" targetRef="end_handled" />
    <bpmn:sequenceFlow id="f5" sourceRef="which" targetRef="got_a" />
    <bpmn:sequenceFlow id="f6" sourceRef="which" targetRef="got_b" />
    <bpmn:sequenceFlow id="f10" sourceRef="which" targetRef="too_late" />
    <bpmn:sequenceFlow id="f7" sourceRef="got_a" targetRef="end_completed" />
    <bpmn:sequenceFlow id="f8" sourceRef="got_b" targetRef="end_rejected" />
    <bpmn:sequenceFlow id="f11" sourceRef="too_late" targetRef="end_terminated" />
  </bpmn:process>
  <bpmn:message id="m_change" name="change_requested" /><bpmn:message id="m_a" name="msg_a" /><bpmn:message id="m_b" name="msg_b" />
</bpmn:definitions>"""


def _setup() -> tuple[Runtime, Any]:
    return start_parsed(parse_files({"events.bpmn": BPMN.encode()})[0])


def _open(runtime: Runtime, workflow: Any) -> list[str]:
    return sorted(t.element_id for t in runtime.snapshot(workflow, runtime.clock.now()).open_tasks)


def _complete(runtime: Runtime, workflow: Any, element: str) -> None:
    task = next(t for t in runtime.snapshot(workflow, runtime.clock.now()).open_tasks if t.element_id == element)
    runtime.complete(workflow, runtime.find_ready_user_task(workflow, task.id), {})


def test_a_non_interrupting_boundary_message_catches_every_time() -> None:
    runtime, wf = _setup()
    for round_ in range(3):
        assert [w.name for w in runtime.waiting(wf)] == ["change_requested"], round_
        runtime.deliver_message(wf, "change_requested", {"round": round_})
        assert _open(runtime, wf) == ["handle", "work"]
        _complete(runtime, wf, "handle")
    # once the activity is done, the boundary event listens no more
    _complete(runtime, wf, "work")
    assert "change_requested" not in [w.name for w in runtime.waiting(wf)]


def test_every_branch_of_an_event_based_gateway_is_listed_and_can_be_taken() -> None:
    runtime, wf = _setup()
    _complete(runtime, wf, "work")
    waiting = sorted((w.kind, w.element_id, w.name) for w in runtime.waiting(wf))
    assert waiting == [("message", "got_a", "msg_a"), ("message", "got_b", "msg_b"),
                       ("timer", "too_late", "too_late")]
    runtime.deliver_message(wf, "msg_b", {})
    assert runtime.snapshot(wf, runtime.clock.now()).end_event == "end_rejected"


def test_a_timer_after_an_event_based_gateway_can_be_fired_by_its_own_id() -> None:
    runtime, wf = _setup()
    _complete(runtime, wf, "work")
    assert runtime.make_timer_due(wf, "too_late")
    runtime.fire_due_timers(wf)
    snap = runtime.snapshot(wf, runtime.clock.now())
    assert (snap.status, snap.end_event) == ("completed", "end_terminated")


def test_the_lifecycle_end_wins_over_a_side_branch_that_ended_later_and_its_data_is_kept() -> None:
    runtime, wf = _setup()
    runtime.deliver_message(wf, "change_requested", {})
    _complete(runtime, wf, "work")
    runtime.deliver_message(wf, "msg_a", {})
    _complete(runtime, wf, "handle")  # the side branch ends after the main path
    snap = runtime.snapshot(wf, runtime.clock.now())
    assert (snap.status, snap.end_event) == ("completed", "end_completed")
    running, wf2 = _setup()
    running.deliver_message(wf2, "change_requested", {})
    _complete(running, wf2, "handle")
    assert running.snapshot(wf2, running.clock.now()).variables["side_note"] == "handled"



REPEATED_BRANCH = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://x">
  <bpmn:message id="m1" name="change_requested" />
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="impl" camunda:candidateGroups="applicant"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:boundaryEvent id="chg" cancelActivity="false" attachedToRef="impl"><bpmn:outgoing>f3</bpmn:outgoing><bpmn:messageEventDefinition id="md" messageRef="m1" /></bpmn:boundaryEvent>
    <bpmn:userTask id="submit" camunda:candidateGroups="applicant"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:exclusiveGateway id="gw" default="f6"><bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing><bpmn:outgoing>f6</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:userTask id="review" camunda:candidateGroups="data_bureau"><bpmn:incoming>f5</bpmn:incoming><bpmn:outgoing>f7</bpmn:outgoing></bpmn:userTask>
    <bpmn:exclusiveGateway id="merge"><bpmn:incoming>f6</bpmn:incoming><bpmn:incoming>f7</bpmn:incoming><bpmn:outgoing>f8</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:endEvent id="settled"><bpmn:incoming>f8</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="impl" />
    <bpmn:sequenceFlow id="f2" sourceRef="impl" targetRef="end_completed" />
    <bpmn:sequenceFlow id="f3" sourceRef="chg" targetRef="submit" />
    <bpmn:sequenceFlow id="f4" sourceRef="submit" targetRef="gw" />
    <bpmn:sequenceFlow id="f5" sourceRef="gw" targetRef="review"><bpmn:conditionExpression>x == 1</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f6" sourceRef="gw" targetRef="merge" />
    <bpmn:sequenceFlow id="f7" sourceRef="review" targetRef="merge" />
    <bpmn:sequenceFlow id="f8" sourceRef="merge" targetRef="settled" />
  </bpmn:process>
</bpmn:definitions>"""


def test_every_catch_of_a_non_interrupting_boundary_runs_its_whole_branch() -> None:
    """The second and later branches go past their first task: a gateway routes each one to the review."""
    runtime, wf = start_parsed(parse_files({"p.bpmn": REPEATED_BRANCH.encode()})[0])
    for round_ in range(3):
        runtime.deliver_message(wf, "change_requested", {})
        assert _open(runtime, wf) == ["impl", "submit"], round_
        task = next(t for t in runtime.snapshot(wf, runtime.clock.now()).open_tasks if t.element_id == "submit")
        runtime.complete(wf, runtime.find_ready_user_task(wf, task.id), {"x": 1})
        assert _open(runtime, wf) == ["impl", "review"], round_
        _complete(runtime, wf, "review")
        assert _open(runtime, wf) == ["impl"], round_
    _complete(runtime, wf, "impl")
    assert runtime.snapshot(wf, runtime.clock.now()).end_event == "end_completed"


INTERRUPTED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="x">
  <bpmn:message id="m_stop" name="stop_requested" />
  <bpmn:process id="interrupted" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:subProcess id="build"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:startEvent id="build_start"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:scriptTask id="count" scriptFormat="python"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing><bpmn:script>counter = 41 + 1</bpmn:script></bpmn:scriptTask>
      <bpmn:userTask id="report" camunda:candidateGroups="applicant"><bpmn:incoming>g2</bpmn:incoming><bpmn:outgoing>g3</bpmn:outgoing></bpmn:userTask>
      <bpmn:userTask id="more" camunda:candidateGroups="applicant"><bpmn:incoming>g3</bpmn:incoming><bpmn:outgoing>g4</bpmn:outgoing></bpmn:userTask>
      <bpmn:endEvent id="build_end"><bpmn:incoming>g4</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="build_start" targetRef="count" />
      <bpmn:sequenceFlow id="g2" sourceRef="count" targetRef="report" />
      <bpmn:sequenceFlow id="g3" sourceRef="report" targetRef="more" />
      <bpmn:sequenceFlow id="g4" sourceRef="more" targetRef="build_end" />
    </bpmn:subProcess>
    <bpmn:boundaryEvent id="too_late" attachedToRef="build" cancelActivity="true"><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>P30D</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>
    <bpmn:boundaryEvent id="stopped" attachedToRef="build" cancelActivity="true"><bpmn:outgoing>f5</bpmn:outgoing>
      <bpmn:messageEventDefinition messageRef="m_stop" /></bpmn:boundaryEvent>
    <bpmn:userTask id="after" camunda:candidateGroups="data_bureau"><bpmn:incoming>f3</bpmn:incoming><bpmn:incoming>f5</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end_terminated"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="build" />
    <bpmn:sequenceFlow id="f2" sourceRef="build" targetRef="end_completed" />
    <bpmn:sequenceFlow id="f3" sourceRef="too_late" targetRef="after" />
    <bpmn:sequenceFlow id="f5" sourceRef="stopped" targetRef="after" />
    <bpmn:sequenceFlow id="f4" sourceRef="after" targetRef="end_terminated" />
  </bpmn:process>
</bpmn:definitions>"""


def _interrupted() -> tuple[Runtime, Any]:
    runtime, wf = start_parsed(parse_files({"interrupted.bpmn": INTERRUPTED.encode()})[0], {"progress": "entered"})
    task = next(t for t in runtime.snapshot(wf, runtime.clock.now()).open_tasks if t.element_id == "report")
    runtime.complete(wf, runtime.find_ready_user_task(wf, task.id), {"progress": "reported", "report_ref": "R-1"})
    return runtime, wf


def test_an_interrupting_boundary_event_keeps_what_the_sub_process_recorded() -> None:
    runtime, wf = _interrupted()
    assert runtime.make_timer_due(wf, "too_late")
    runtime.advance(wf)
    snap = runtime.snapshot(wf, runtime.clock.now())
    assert [t.element_id for t in snap.open_tasks] == ["after"]
    assert (snap.variables["counter"], snap.variables["progress"], snap.variables["report_ref"]) == (42, "reported", "R-1")


def test_the_data_an_interrupting_message_brings_wins_over_the_sub_process_data() -> None:
    runtime, wf = _interrupted()
    runtime.deliver_message(wf, "stop_requested", {"progress": "stopped by the unit"})
    snap = runtime.snapshot(wf, runtime.clock.now())
    assert [t.element_id for t in snap.open_tasks] == ["after"]
    assert (snap.variables["counter"], snap.variables["progress"], snap.variables["report_ref"]) == (
        42, "stopped by the unit", "R-1")
