"""Migration of running instances to a new version of their definition: Hangzhou's draft regulation replaced by
a final text (a renamed step, a new step, a removed step, a changed deadline — tests/hangzhou_v2.py). A dry run
explains which instances can move; the migration moves them, each is driven to its end on the new version, and
the instances on the removed step stay where they are, reported."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.hangzhou_v2 import hangzhou_v2
from tests.operations_support import delivered, history, service, task, webhooks
from tests.support import REPO, Api

BASE: dict[str, Any] = {"project_name": "城市大脑数据中台", "department": "市数据资源局", "budget_wan": 80,
                        "is_build_dev": False}
STEPS: dict[str, dict[str, Any]] = {
    "prereview": {"decision": "pass"}, "expert_review": {"decision": "pass"},
    "expert_evaluation": {"decision": "pass"}, "budget_review": {"decision": "pass"},
    "lg_approval": {"decision": "pass"},
    "arrange_funds": {"budget_amount_wan": 80, "budget_issued_date": "2026-03-02"},
    "file_impl_plan": {"impl_plan_ref": "SSFA-1"}, "procurement": {"procurement_method": "open_tender"},
    "file_contract": {"contract_wan": 80, "warranty_years": 2}, "contract_review": {"contract_review_ref": "HT-1"},
    "security_assessment": {"dengbao_report_ref": "DB-1", "crypto_report_ref": "MP-1"},
    "catalog_compilation": {"catalog_ref": "ML-1"}, "register_data_resources": {"resource_catalog_ref": "ZY-1"},
    "acceptance": {"decision": "pass", "acceptance_date": "2026-03-02"},
    "upload_acceptance": {"acceptance_materials_ref": "YS-1"}, "performance_evaluation": {"decision": "pass"},
}
MESSAGES = {"wait_npc": ("npc_budget_approved", {}), "wait_contract": ("contract_signed", {"signed_on": "2026-03-01"}),
            "wait_construction": ("construction_completed", {})}
# the stage each instance is brought to before the new version is deployed
STAGES = {"HZ-A": "prereview", "HZ-B": "expert_review", "HZ-G": "wait_npc", "HZ-C": "file_impl_plan",
          "HZ-D": "file_contract", "HZ-F": "security_assessment", "HZ-E": "catalog_compilation"}


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    bpmn = tmp_path / "bpmn"
    bpmn.mkdir()
    for name in ("hangzhou.bpmn", "hangzhou.dmn"):
        shutil.copy(REPO / "bpmn" / name, bpmn / name)
    with service(tmp_path, database_url, bpmn_dir=bpmn) as a:
        yield a


def deploy_v2(api: Api) -> None:
    files = {"hangzhou.bpmn": hangzhou_v2((REPO / "bpmn" / "hangzhou.bpmn").read_bytes()),
             "hangzhou.dmn": (REPO / "bpmn" / "hangzhou.dmn").read_bytes()}
    r = api.admin.post("/deployments", files=[("files", (n, body)) for n, body in files.items()])
    assert r.status_code == 201, r.text
    assert [(d["key"], d["version"]) for d in r.json()["definitions"]] == [("hangzhou", 2)]


def step(api: Api, iid: str, bk: str) -> str | None:
    """Move the instance one step on: complete its first open task, or send the message it waits for."""
    view = api.instance(iid)
    if view["status"] != "running":
        return None
    if view["open_tasks"]:
        element = view["open_tasks"][0]["element_id"]
        api.complete(iid, element, STEPS.get(element, {}))
        return element
    for waiting in view["waiting_for"]:
        if waiting["kind"] == "message" and waiting["element_id"] in MESSAGES:
            name, variables = MESSAGES[waiting["element_id"]]
            api.message(name, bk, variables)
            return waiting["element_id"]
    raise AssertionError(f"{bk} is stuck: {view['waiting_for']}")


def bring_to(api: Api, bk: str, stage: str) -> str:
    iid = str(api.start("hangzhou", BASE, business_key=bk)["id"])
    for _ in range(40):
        view = api.instance(iid)
        here = [t["element_id"] for t in view["open_tasks"]] + [w["element_id"] for w in view["waiting_for"]]
        if stage in here:
            return iid
        step(api, iid, bk)
    raise AssertionError(f"{bk} did not reach {stage}")


def drive_to_end(api: Api, iid: str, bk: str) -> list[str]:
    visited = []
    for _ in range(60):
        done = step(api, iid, bk)
        if done is None:
            break
        visited.append(done)
    assert api.end_event(iid) == "end_completed", (bk, visited)
    return visited


def migrate(api: Api, **body: Any) -> dict[str, Any]:
    r = api.admin.post("/process-instances/migrations",
                       json={"process_key": "hangzhou", "from_version": 1, "to_version": 2, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def by_key(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["business_key"]: i for i in report["instances"]}


def test_hangzhou_instances_move_to_the_final_text_and_run_to_their_end(api: Api) -> None:
    ids = {bk: bring_to(api, bk, stage) for bk, stage in STAGES.items()}
    deploy_v2(api)
    before = {bk: api.instance(iid) for bk, iid in ids.items()}
    plan_due = {w["element_id"]: w["due_at"] for w in before["HZ-C"]["waiting_for"]}["impl_plan_overdue"]
    contract_due = {w["element_id"]: w["due_at"] for w in before["HZ-D"]["waiting_for"]}["contract_overdue"]
    api.clock.advance(timedelta(days=2))

    # a dry run explains which can move and why the others cannot; nothing changes
    report = migrate(api, all=True, dry_run=True)
    assert report["dry_run"] is True and report["migrated"] == 0 and report["not_migrated"] == 2
    found = by_key(report)
    assert set(found) == set(STAGES)
    assert {bk for bk, r in found.items() if r["can_move"]} == {"HZ-A", "HZ-G", "HZ-C", "HZ-D", "HZ-F"}
    assert found["HZ-B"]["reasons"] == [{"element_id": "expert_review", "reason":
                                         "the active user task 'expert_review' is not in version 2; map it to an "
                                         "element of version 2"}]
    assert [r["element_id"] for r in found["HZ-E"]["reasons"]] == ["catalog_compilation"]
    recomputed = found["HZ-C"]["recomputed_timers"]
    assert [(t["element_id"], t["due_at_before"]) for t in recomputed] == [("impl_plan_overdue", plan_due)]
    assert datetime.fromisoformat(recomputed[0]["due_at"]) - datetime.fromisoformat(plan_due) == timedelta(days=5)
    assert {c["element_id"]: c["changed"] for c in found["HZ-C"]["changes"]} == {
        "file_impl_plan": ["due_date"], "impl_plan_overdue": ["event"]}
    assert found["HZ-D"]["recomputed_timers"] == [] and found["HZ-A"]["changes"] == []
    for bk, iid in ids.items():
        assert api.instance(iid) == before[bk]
    # with the renamed step mapped, the instance on it can move too
    mapped = by_key(migrate(api, all=True, dry_run=True, mapping={"expert_review": "expert_evaluation"}))
    assert mapped["HZ-B"]["can_move"] is True
    assert mapped["HZ-B"]["changes"] == [{"element_id": "expert_review", "new_element_id": "expert_evaluation",
                                          "kind": "user task", "changed": ["element_id", "name"]}]

    # the migration
    expert_task = api.open_task(ids["HZ-B"], "expert_review")
    with webhooks(api, ["instance.migrated"]) as receiver:
        report = migrate(api, all=True, mapping={"expert_review": "expert_evaluation"})
        assert report["migrated"] == 6 and report["not_migrated"] == 1
        found = by_key(report)
        assert not found["HZ-E"]["migrated"] and not found["HZ-E"]["can_move"]
        assert "catalog_compilation" in found["HZ-E"]["reasons"][0]["reason"]
        events = {e["data"]["business_key"]: e for e in delivered(api, receiver)}
        assert set(events) == set(STAGES) - {"HZ-E"}
        assert events["HZ-B"]["data"]["from_version"] == 1 and events["HZ-B"]["data"]["to_version"] == 2
        assert events["HZ-B"]["data"]["mapping"] == {"expert_review": "expert_evaluation"}
        assert events["HZ-B"]["data"]["migrated_by"] == "admin"

    after = {bk: api.instance(iid) for bk, iid in ids.items()}
    assert {bk: v["definition_version"] for bk, v in after.items()} == {bk: 1 if bk == "HZ-E" else 2
                                                                        for bk in STAGES}
    assert after["HZ-E"] == before["HZ-E"]  # left untouched
    # the open task moved with its instance: same task, the new step's element, name and form
    [moved] = after["HZ-B"]["open_tasks"]
    assert moved["id"] == expert_task["id"] and moved["element_id"] == "expert_evaluation"
    assert moved["name"] == "专家论证评审"
    detail = task(api, moved["id"])
    assert detail["definition_id"] != expert_task["definition_id"] and detail["form"][0]["id"] == "decision"
    # the changed deadline was computed again from when it was armed, the unchanged one kept
    waits_c = {w["element_id"]: w["due_at"] for w in after["HZ-C"]["waiting_for"]}
    assert datetime.fromisoformat(waits_c["impl_plan_overdue"]) - datetime.fromisoformat(plan_due) == \
        timedelta(days=5)
    [plan_task] = after["HZ-C"]["open_tasks"]
    assert plan_task["due_at"] == waits_c["impl_plan_overdue"]
    assert {w["element_id"]: w["due_at"] for w in after["HZ-D"]["waiting_for"]}["contract_overdue"] == contract_due

    for bk, iid in ids.items():
        trail = history(api, iid)
        migrated = [e for e in trail if e["action"] == "instance.migrated"]
        if bk == "HZ-E":
            assert migrated == []
            continue
        assert len(migrated) == 1 and migrated[0]["actor"] == "admin"
        assert migrated[0]["data"]["from_version"] == 1 and migrated[0]["data"]["to_version"] == 2

    # each migrated instance runs to its end on the new version; the one left behind on the old
    paths = {bk: drive_to_end(api, iid, bk) for bk, iid in ids.items()}
    for bk in ("HZ-A", "HZ-B", "HZ-G", "HZ-C", "HZ-D", "HZ-F"):
        assert "register_data_resources" in paths[bk] and "catalog_compilation" not in paths[bk], paths[bk]
    for bk in ("HZ-A", "HZ-G", "HZ-C"):
        assert "contract_review" in paths[bk], paths[bk]
    assert "expert_evaluation" in paths["HZ-A"] and "expert_review" not in paths["HZ-A"]
    assert paths["HZ-E"][0] == "catalog_compilation" and "register_data_resources" not in paths["HZ-E"]
    for iid in ids.values():
        history(api, iid)


def test_migration_refusals(api: Api) -> None:
    iid = bring_to(api, "HZ-R", "expert_review")
    deploy_v2(api)
    body = {"process_key": "hangzhou", "from_version": 1, "to_version": 2, "all": True}
    post = api.admin.post
    # 403: administrators only
    assert api.as_("x", "applicant").post("/process-instances/migrations", json=body).status_code == 403
    # 404: a version that does not exist
    assert post("/process-instances/migrations", json={**body, "to_version": 9}).status_code == 404
    assert post("/process-instances/migrations", json={**body, "process_key": "nope"}).status_code == 404
    # 422: the same version; a mapping to or from elements that do not exist; neither or both of ids and all
    assert post("/process-instances/migrations", json={**body, "to_version": 1}).status_code == 422
    r = post("/process-instances/migrations", json={**body, "mapping": {"expert_review": "nowhere"}})
    assert r.status_code == 422 and "mapping.expert_review" in r.json()["errors"]
    r = post("/process-instances/migrations", json={**body, "mapping": {"nowhere": "expert_evaluation"}})
    assert r.status_code == 422
    assert post("/process-instances/migrations", json={**body, "all": False}).status_code == 422
    assert post("/process-instances/migrations", json={**body, "instance_ids": [iid]}).status_code == 422
    # instances that are not on the version, or not of the process, are reported, not moved
    report = migrate(api, instance_ids=[iid, "00000000-0000-0000-0000-000000000000", "not-an-id"])
    assert [i["can_move"] for i in report["instances"]] == [False, False, False]
    assert report["instances"][0]["reasons"][0]["element_id"] == "expert_review"
    assert api.instance(iid)["definition_version"] == 1
    # moved once, it is no longer on version 1
    report = migrate(api, instance_ids=[iid], mapping={"expert_review": "expert_evaluation"})
    assert report["migrated"] == 1
    again = migrate(api, instance_ids=[iid], mapping={"expert_review": "expert_evaluation"})
    assert again["migrated"] == 0 and again["instances"][0]["reasons"][0]["element_id"] == "definition_version"
    history(api, iid)


def test_an_instance_moves_back_and_forth(api: Api) -> None:
    """Version 2 to version 1 as well: the renamed step mapped back, the removed one mapped onto its successor."""
    iid = bring_to(api, "HZ-BACK", "expert_review")
    deploy_v2(api)
    assert migrate(api, instance_ids=[iid], mapping={"expert_review": "expert_evaluation"})["migrated"] == 1
    r = api.admin.post("/process-instances/migrations", json={
        "process_key": "hangzhou", "from_version": 2, "to_version": 1, "instance_ids": [iid],
        "mapping": {"expert_evaluation": "expert_review", "register_data_resources": "catalog_compilation"}})
    assert r.status_code == 200 and r.json()["migrated"] == 1, r.text
    assert api.instance(iid)["definition_version"] == 1
    assert api.open_elements(iid) == ["expert_review"]
    path = drive_to_end(api, iid, "HZ-BACK")
    assert "catalog_compilation" in path and "contract_review" not in path
    actions = [e["action"] for e in history(api, iid)]
    assert actions.count("instance.migrated") == 2


def test_instances_inside_a_sub_process_move_too(tmp_path: Path, database_url: str | None) -> None:
    """The returns fixture, version 2: the sub-process's inspection renamed, the approval's deadline shortened."""
    from tests.operations_support import OPERATIONS

    with service(tmp_path, database_url) as api:
        def bring(bk: str, element: str) -> str:
            iid = str(api.start("returns", {"project_name": bk}, business_key=bk)["id"])
            for name, data in (("declare", {"plan_ref": bk}), ("prereview", {}), ("funding_review", {}),
                               ("technical_review", {}), ("approve", {}), ("contract_signed", None),
                               ("build", {})):
                if element in api.open_elements(iid):
                    return iid
                if data is None:
                    api.message(name, bk)
                else:
                    api.complete(iid, name, data)
            assert element in api.open_elements(iid)
            return iid

        at_build, at_inspect, at_approve = bring("SP-1", "build"), bring("SP-2", "inspect"), bring("SP-3", "approve")
        approve_due = api.waiting(at_approve)[0]["due_at"]
        v2 = (OPERATIONS / "returns.bpmn").read_text(encoding="utf-8")
        v2 = v2.replace('"inspect"', '"inspection"').replace("P10D</bpmn:timeDuration>", "P5D</bpmn:timeDuration>")
        v2 = v2.replace('targetRef="inspect"', 'targetRef="inspection"').replace('sourceRef="inspect"',
                                                                               'sourceRef="inspection"')
        r = api.admin.post("/deployments", files=[("files", ("returns.bpmn", v2.encode()))])
        assert r.status_code == 201 and r.json()["definitions"][0]["version"] == 2, r.text
        r = api.admin.post("/process-instances/migrations", json={
            "process_key": "returns", "from_version": 1, "to_version": 2, "all": True,
            "mapping": {"inspect": "inspection"}})
        assert r.status_code == 200, r.text
        found = {i["business_key"]: i for i in r.json()["instances"]}
        assert all(i["migrated"] for i in found.values()), found
        assert found["SP-2"]["changes"][0]["new_element_id"] == "inspection"
        [timer] = found["SP-3"]["recomputed_timers"]
        assert datetime.fromisoformat(approve_due) - datetime.fromisoformat(timer["due_at"]) == timedelta(days=5)
        assert api.open_elements(at_inspect) == ["inspection"]
        for bk, iid in (("SP-1", at_build), ("SP-2", at_inspect), ("SP-3", at_approve)):
            for _ in range(10):
                if api.instance(iid)["status"] != "running":
                    break
                view = api.instance(iid)
                if view["open_tasks"]:
                    element = view["open_tasks"][0]["element_id"]
                    api.complete(iid, element, {"plan_ref": "x"} if element == "declare" else {})
                else:
                    api.message("contract_signed", bk)
            assert api.end_event(iid) == "end_completed", bk
            history(api, iid)
