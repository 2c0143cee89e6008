"""Decision tables: several decisions in one file, and cells that apply to the whole input value."""
from __future__ import annotations

from decimal import Decimal

import pytest

from service.engine.deployment import parse_files
from service.engine.runtime import EngineError
from tests.support import start_parsed

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://govflow.example/bpmn">
  <bpmn:process id="share" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:businessRuleTask id="check" camunda:decisionRef="security_share">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:businessRuleTask>
    <bpmn:businessRuleTask id="track" camunda:decisionRef="track">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:businessRuleTask>
    <bpmn:userTask id="look" camunda:candidateGroups="data_bureau">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end_completed"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="check" />
    <bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="track" />
    <bpmn:sequenceFlow id="f3" sourceRef="track" targetRef="look" />
    <bpmn:sequenceFlow id="f4" sourceRef="look" targetRef="end_completed" />
  </bpmn:process>
</bpmn:definitions>"""

DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="x" name="x" namespace="http://camunda.org/schema/1.0/dmn">
  <decision id="security_share" name="安全经费占比">
    <decisionTable id="t1" hitPolicy="FIRST">
      <input id="i1"><inputExpression id="e1" typeRef="number">
        <text>security_wan * 100 / build_total_wan if build_total_wan &gt; 0 else 0</text></inputExpression></input>
      <output id="o1" name="share_ok" typeRef="boolean" />
      <rule id="r1"><inputEntry id="a"><text>&gt;= 15</text></inputEntry><outputEntry id="b"><text>True</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="c"><text>-</text></inputEntry><outputEntry id="d"><text>False</text></outputEntry></rule>
    </decisionTable>
  </decision>
  <decision id="track" name="路径">
    <decisionTable id="t2" hitPolicy="FIRST">
      <input id="i2"><inputExpression id="e2" typeRef="number"><text>budget_wan</text></inputExpression></input>
      <output id="o2" name="track" typeRef="string" />
      <rule id="r3"><inputEntry id="e"><text>10 &lt;= ? &lt; 200</text></inputEntry><outputEntry id="f"><text>"filing"</text></outputEntry></rule>
      <rule id="r4"><inputEntry id="g"><text>&gt;= 200</text></inputEntry><outputEntry id="h"><text>"approval"</text></outputEntry></rule>
      <rule id="r5"><inputEntry id="i"><text>-</text></inputEntry><outputEntry id="j"><text>"self"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>"""


def _run(variables: dict) -> dict:
    runtime, wf = start_parsed(parse_files({"share.bpmn": BPMN.encode(), "share.dmn": DMN.encode()})[0], variables)
    return runtime.snapshot(wf, runtime.clock.now()).variables


def test_a_conditional_input_expression_is_compared_as_a_whole() -> None:
    below = _run({"security_wan": Decimal("14.99"), "build_total_wan": Decimal(100), "budget_wan": Decimal(5)})
    at = _run({"security_wan": Decimal(15), "build_total_wan": Decimal(100), "budget_wan": Decimal(5)})
    assert below["share_ok"] is False and at["share_ok"] is True


def test_two_decisions_in_one_file_and_range_cells() -> None:
    tracks = {amount: _run({"security_wan": 0, "build_total_wan": 0, "budget_wan": Decimal(amount)})["track"]
              for amount in ("9.99", "10", "199.99", "200")}
    assert tracks == {"9.99": "self", "10": "filing", "199.99": "filing", "200": "approval"}


GAP_DMN = DMN.replace('<rule id="r5"><inputEntry id="i"><text>-</text></inputEntry><outputEntry id="j"><text>"self"'
                      '</text></outputEntry></rule>', "")


def _start_with_gap(variables: dict) -> dict:
    parsed = parse_files({"share.bpmn": BPMN.encode(), "share.dmn": GAP_DMN.encode()})[0]
    runtime, wf = start_parsed(parsed, variables, as_stored=True)  # the spec as stored with the version
    return runtime.snapshot(wf, runtime.clock.now()).variables


def test_a_decision_with_no_matching_rule_names_the_table_and_the_inputs() -> None:
    assert GAP_DMN != DMN
    assert _start_with_gap({"security_wan": 0, "build_total_wan": 0, "budget_wan": Decimal(10)})["track"] == "filing"
    with pytest.raises(EngineError) as raised:
        _start_with_gap({"security_wan": 0, "build_total_wan": 0, "budget_wan": Decimal("9.99")})
    message = str(raised.value)
    assert "decision 'track' has no rule" in message and "budget_wan" in message and "9.99" in message
    assert raised.value.element_id == "track"


def _with_result(attributes: str) -> dict:
    bpmn = BPMN.replace('<bpmn:businessRuleTask id="track" camunda:decisionRef="track">',
                        f'<bpmn:businessRuleTask id="track" camunda:decisionRef="track" {attributes}>')
    assert bpmn != BPMN
    parsed = parse_files({"share.bpmn": bpmn.encode(), "share.dmn": DMN.encode()})[0]
    variables = {"security_wan": 0, "build_total_wan": 0, "budget_wan": Decimal(200)}
    runtime, wf = start_parsed(parsed, variables, as_stored=True)
    return runtime.snapshot(wf, runtime.clock.now()).variables


@pytest.mark.parametrize("attributes, expected", [
    ('camunda:resultVariable="route" camunda:mapDecisionResult="singleEntry"', "approval"),
    ('camunda:resultVariable="route" camunda:mapDecisionResult="singleResult"', {"track": "approval"}),
    ('camunda:resultVariable="route" camunda:mapDecisionResult="collectEntries"', ["approval"]),
    ('camunda:resultVariable="route"', [{"track": "approval"}]),  # Camunda's default: resultList
])
def test_the_result_variable_is_mapped_as_camunda_maps_it(attributes: str, expected: object) -> None:
    variables = _with_result(attributes)
    assert variables["route"] == expected
    assert variables["track"] == "approval"  # the outputs stay available under their own names


def test_an_unknown_result_mapping_is_refused_at_deploy() -> None:
    from service.engine.deployment import ModelError

    with pytest.raises(ModelError) as raised:
        _with_result('camunda:resultVariable="route" camunda:mapDecisionResult="firstEntry"')
    assert "mapDecisionResult" in str(raised.value)
