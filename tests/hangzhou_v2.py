"""A second version of the Hangzhou lifecycle, as the final text of the draft regulation might bring it, derived
from bpmn/hangzhou.bpmn for the migration tests:

- renamed step: `expert_review` becomes `expert_evaluation` (专家论证评审);
- removed step: `catalog_compilation` (目录编制与数据归集) is gone ...
- new steps: ... `register_data_resources` (数据资源登记) takes its place, and `contract_review` (合同审查, by the
  data bureau) follows the contract filing;
- changed timer: the implementation plan is due 20 days after approval, not 15 (`impl_plan_overdue` and the
  due date of `file_impl_plan`).
"""
from __future__ import annotations

import re

from lxml import etree

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "dc": "http://www.omg.org/spec/DD/20100524/DC", "di": "http://www.omg.org/spec/DD/20100524/DI",
      "camunda": "http://camunda.org/schema/1.0/bpmn"}
B = f"{{{NS['bpmn']}}}"


def _one(tree: etree._Element, xpath: str) -> etree._Element:
    found = tree.xpath(xpath, namespaces=NS)
    assert len(found) == 1, (xpath, len(found))
    return found[0]


def _user_task(task_id: str, name: str, group: str, incoming: str, outgoing: str, field: str) -> etree._Element:
    xml = f"""<bpmn:userTask xmlns:bpmn="{NS['bpmn']}" xmlns:camunda="{NS['camunda']}" id="{task_id}" name="{name}"
        camunda:candidateGroups="{group}">
      <bpmn:extensionElements>
        <camunda:formData>
          <camunda:formField id="{field}" label="{name}编号" type="string">
            <camunda:validation><camunda:constraint name="required"/></camunda:validation>
          </camunda:formField>
        </camunda:formData>
      </bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming>
      <bpmn:outgoing>{outgoing}</bpmn:outgoing>
    </bpmn:userTask>"""
    return etree.fromstring(xml)


def _shape(element: str, x: int, y: int) -> etree._Element:
    return etree.fromstring(
        f'<bpmndi:BPMNShape xmlns:bpmndi="{NS["bpmndi"]}" xmlns:dc="{NS["dc"]}" id="{element}_di" '
        f'bpmnElement="{element}"><dc:Bounds x="{x}" y="{y}" width="100" height="80"/></bpmndi:BPMNShape>')


def hangzhou_v2(original: bytes) -> bytes:
    text = original.decode("utf-8")
    # the renamed step: its id wherever it is referred to (attributes, flow node references), and its name
    text = re.sub(r'"expert_review"', '"expert_evaluation"', text)
    text = text.replace(">expert_review<", ">expert_evaluation<")
    text = text.replace('name="专家评审"', 'name="专家论证评审"')
    # the changed deadline
    text = text.replace("else budget_issued_date, 15)", "else budget_issued_date, 20)")
    tree = etree.fromstring(text.encode("utf-8"))
    process = _one(tree, "bpmn:process[@id='hangzhou']")
    plane = _one(tree, ".//bpmndi:BPMNPlane")

    # the removed step, and the new one in its place (the flows around it now lead through the new step)
    old = _one(process, "bpmn:userTask[@id='catalog_compilation']")
    process.replace(old, _user_task("register_data_resources", "数据资源登记", "applicant",
                                    "f_security_assessment__catalog_compilation",
                                    "f_catalog_compilation__gw_rectify_merge", "resource_catalog_ref"))
    _one(process, "bpmn:sequenceFlow[@id='f_security_assessment__catalog_compilation']").set(
        "targetRef", "register_data_resources")
    _one(process, "bpmn:sequenceFlow[@id='f_catalog_compilation__gw_rectify_merge']").set(
        "sourceRef", "register_data_resources")
    _one(process, ".//bpmn:flowNodeRef[text()='catalog_compilation']").text = "register_data_resources"
    _one(plane, "bpmndi:BPMNShape[@bpmnElement='catalog_compilation']").set("bpmnElement", "register_data_resources")

    # a new step after the contract filing
    flow = _one(process, "bpmn:sequenceFlow[@id='f_file_contract__wait_construction']")
    flow.set("targetRef", "contract_review")
    _one(process, "bpmn:intermediateCatchEvent[@id='wait_construction']/bpmn:incoming").text = \
        "f_contract_review__wait_construction"
    process.append(_user_task("contract_review", "合同审查", "data_bureau", "f_file_contract__wait_construction",
                              "f_contract_review__wait_construction", "contract_review_ref"))
    new_flow = etree.SubElement(process, B + "sequenceFlow")
    new_flow.set("id", "f_contract_review__wait_construction")
    new_flow.set("sourceRef", "contract_review")
    new_flow.set("targetRef", "wait_construction")
    lane = _one(process, ".//bpmn:lane[bpmn:flowNodeRef='conformity_check']")
    etree.SubElement(lane, B + "flowNodeRef").text = "contract_review"
    plane.append(_shape("contract_review", 4330, 1300))
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
