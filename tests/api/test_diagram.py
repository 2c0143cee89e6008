"""GET /api/v1/process-instances/{id}/diagram: the BPMN and, per element, where a Hangzhou project stands."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.api.test_scheduler import BROKEN_AFTER_A_DAY
from tests.support import T0, Api

PROCESS_KEY = "hangzhou"
START = {"project_name": "城市大脑数据中台", "department": "市数据资源局", "budget_wan": 80, "is_build_dev": True}


def diagram(api: Api, iid: str) -> dict[str, Any]:
    r = api.admin.get(f"/process-instances/{iid}/diagram")
    assert r.status_code == 200, r.text
    return dict(r.json())


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def test_completed_elements_are_counted_with_their_last_time_and_the_open_task_is_active(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = api.start(PROCESS_KEY, START, business_key="HZ-DIAGRAM-1")["id"]
    api.clock.advance(timedelta(hours=2))
    api.complete(iid, "prereview", {"decision": "pass"})
    api.clock.advance(timedelta(hours=3))
    api.complete(iid, "expert_review", {"decision": "revise"})
    api.clock.advance(timedelta(hours=4))
    api.complete(iid, "revise_after_review", {"plan_ref": "FA-2", "budget_wan": 75})
    api.clock.advance(timedelta(hours=5))
    api.complete(iid, "expert_review", {"decision": "pass"})

    d = diagram(api, iid)
    assert d["process_key"] == "hangzhou" and d["status"] == "running"
    assert d["bpmn_xml"].startswith("<?xml") and 'id="budget_review"' in d["bpmn_xml"]
    elements = d["elements"]
    # the start event and the gateways of the first step took the start's time
    assert elements["start"]["state"] == "completed" and elements["start"]["completed_count"] == 1
    assert at(elements["start"]["last_completed_at"]) == T0
    assert at(elements["prereview"]["last_completed_at"]) == T0 + timedelta(hours=2)
    assert at(elements["gw_prereview"]["last_completed_at"]) == T0 + timedelta(hours=2)
    # reviewed twice: counted twice, last time the second review's
    assert elements["expert_review"]["state"] == "completed"
    assert elements["expert_review"]["completed_count"] == 2
    assert at(elements["expert_review"]["last_completed_at"]) == T0 + timedelta(hours=14)
    assert elements["gw_expert"]["completed_count"] == 2
    assert elements["revise_after_review"]["completed_count"] == 1
    # the next step is active, with its open task
    task = api.open_task(iid, "budget_review")
    assert elements["budget_review"] == {**elements["budget_review"], "state": "active", "task_ids": [task["id"]],
                                         "completed_count": 0, "last_completed_at": None}
    # elements never reached are absent; the engine's own bookkeeping tasks are not elements of the diagram
    assert "lg_approval" not in elements and "Start" not in elements and "End" not in elements
    assert {e["state"] for e in elements.values()} == {"completed", "active"}


def test_waiting_messages_and_timers_carry_their_due_time(lifecycle_api: Api) -> None:
    api = lifecycle_api
    bk = "HZ-DIAGRAM-2"
    iid = api.start(PROCESS_KEY, {**START, "is_build_dev": False}, business_key=bk)["id"]
    for element_id in ("prereview", "expert_review", "budget_review", "lg_approval"):
        api.complete(iid, element_id, {"decision": "pass"})
    elements = diagram(api, iid)["elements"]
    assert elements["wait_npc"]["state"] == "waiting" and elements["wait_npc"]["kind"] == "message"
    assert elements["wait_npc"]["name"] == "npc_budget_approved" and elements["wait_npc"]["due_at"] is None

    api.clock.advance(timedelta(days=1))
    api.message("npc_budget_approved", bk)
    api.complete(iid, "arrange_funds", {"budget_amount_wan": 80, "budget_issued_date": "2026-03-02"})
    elements = diagram(api, iid)["elements"]
    assert elements["wait_npc"]["state"] == "completed"
    assert at(elements["wait_npc"]["last_completed_at"]) == T0 + timedelta(days=1)
    timer = elements["impl_plan_overdue"]
    waiting = {w["element_id"]: w for w in api.waiting(iid)}
    assert timer["state"] == "waiting" and timer["kind"] == "timer"
    assert timer["due_at"] == waiting["impl_plan_overdue"]["due_at"] is not None
    filing = elements["file_impl_plan"]
    assert filing["state"] == "active" and filing["due_at"] == api.open_task(iid, "file_impl_plan")["due_at"]


def test_the_diagram_is_shown_only_to_those_who_see_the_instance(lifecycle_api: Api) -> None:
    api = lifecycle_api
    iid = api.start(PROCESS_KEY, START, business_key="HZ-DIAGRAM-3")["id"]
    assert api.as_("stranger", "finance_bureau").get(f"/process-instances/{iid}/diagram").status_code == 404
    assert api.anonymous().get(f"/process-instances/{iid}/diagram").status_code == 401
    assert api.as_("reviewer", "third_party").get(f"/process-instances/{iid}/diagram").status_code == 200
    assert api.admin.get("/process-instances/not-an-id/diagram").status_code == 404


def test_a_timer_whose_firing_failed_is_marked_failed(api: Api) -> None:
    r = api.admin.post("/deployments", files=[("files", ("broken_timer.bpmn", BROKEN_AFTER_A_DAY.encode()))])
    assert r.status_code == 201
    iid = api.start("broken_timer", {})["id"]
    assert diagram(api, iid)["elements"]["wait"]["state"] == "waiting"
    api.advance(timedelta(days=2))
    wait = diagram(api, iid)["elements"]["wait"]
    assert wait["state"] == "failed" and wait["failed_attempts"] == 1 and "open" in wait["last_error"]
